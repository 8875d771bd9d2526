//! `s5::bench` in-process: `bench all`'s report and events, the select benchmark through its
//! child processes, and the child protocol's errors. (The CLI tests in `cli.rs` run the same
//! through the binary.)

use s5::bench::select_report::{SelectOptions, bench_select};
use s5::bench::{AllEvent, AllOptions, Children, Job, bench_all};

use crate::common::{adapter, children, device, s5};

/// `bench_all` on this adapter (a software one here, so the scaled-down sizes): every
/// section measured, the events in the order the work ran, and the JSON the CLI prints.
#[test]
fn bench_all_measures_every_section_in_order() {
    device();
    let gpu = s5::device::gpu(None).expect("initialised");
    let facts = adapter();
    let options = AllOptions::default();
    let mut events = Vec::new();
    let report =
        bench_all(gpu, &options, &children(), &mut |e| events.push(e)).expect("bench all runs");
    let mut expected_events = vec![AllEvent::FixMatchStep];
    if facts.shader_f16 {
        expected_events.push(AllEvent::FixMatchStepMixed);
    }
    expected_events.extend([AllEvent::Kernels, AllEvent::Predict, AllEvent::Augmentation]);
    assert_eq!(
        events, expected_events,
        "no batch planned without --memory-gib; shader-f16: {}",
        facts.shader_f16
    );
    assert_eq!(report.scaled_down, facts.device_type == "Cpu");
    assert!(report.batch_choice.is_none());
    for group in ["pixel_stats", "moe_ffn"] {
        let rows: Vec<_> = report.kernels.iter().filter(|r| r.group == group).collect();
        assert!(rows.len() >= 2, "{group}: {rows:?}");
        // Every row but the baseline carries its ratio, finite and positive.
        for r in rows.iter().filter(|r| r.baseline.is_some()) {
            assert!(
                r.ratio.is_some_and(|x| x.is_finite() && x > 0.0),
                "{group}: {r:?}"
            );
        }
    }
    let step = &report.fixmatch_step;
    assert_eq!(step.batch, 2, "the default batch");
    assert!(step.median_ms.is_finite() && step.median_ms > 0.0);
    assert!(step.device_memory.is_some_and(|m| m.reserved_bytes > 0));
    assert!(!step.mixed);
    // The mixed-precision step: the same shapes, its own process's memory.
    match &report.fixmatch_step_mixed {
        Some(mixed) => {
            assert!(facts.shader_f16, "a mixed step without shader-f16");
            assert!(mixed.mixed);
            assert_eq!((mixed.batch, mixed.crop_px), (step.batch, step.crop_px));
            assert!(mixed.median_ms.is_finite() && mixed.median_ms > 0.0);
            assert!(mixed.device_memory.is_some_and(|m| m.reserved_bytes > 0));
        }
        None => assert!(!facts.shader_f16, "shader-f16 but no mixed step"),
    }
    let precisions: Vec<&str> = report.predict.iter().map(|p| p.precision).collect();
    let expected: &[&str] = if facts.shader_f16 {
        &["f32", "f16"]
    } else {
        &["f32"]
    };
    assert_eq!(precisions, expected, "shader-f16: {}", facts.shader_f16);
    assert!(
        report
            .predict
            .iter()
            .all(|p| p.mpx_per_s.is_finite() && p.mpx_per_s > 0.0)
    );
    assert_eq!(report.data.rows.len(), 5);
    assert!(report.seconds > 0.0);
    // The tables show what was measured: the step's time and every kernel row.
    let text = report.to_string();
    assert!(
        text.contains(&format!("{:.0} ms", step.median_ms)),
        "{text}"
    );
    assert!(report.kernels.iter().all(|r| text.contains(r.name)));
    // The JSON has every section under the names the CLI's --json promises.
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "adapter",
        "scaled_down",
        "batch_choice",
        "kernels",
        "fixmatch_step",
        "predict",
        "data",
        "seconds",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
}

/// `bench_select` writes each pool and selects from it in a child: each run selects the
/// budget from as many records as were written.
#[test]
fn bench_select_runs_each_pool_in_a_child() {
    let options = SelectOptions {
        records: vec![300, 2_000],
        budget: 120,
        clusters: 3,
        shards: 3,
    };
    let report = bench_select(&children(), &options).expect("the select benchmark runs");
    let records: Vec<u64> = report.runs.iter().map(|r| r.records).collect();
    assert_eq!(records, [300, 2_000]);
    for run in &report.runs {
        assert_eq!((run.budget, run.selected), (120, 120), "{run:?}");
        assert!(run.peak_rss_bytes > 0 && run.seconds.is_finite());
    }
    let text = report.to_string();
    assert!(
        text.lines().count() == 3,
        "a header and a row per pool:\n{text}"
    );
}

/// A child that fails, cannot start, or is sent what it does not understand is an error that
/// names the job and the reason, never a number made up.
#[test]
fn child_failures_name_the_job_and_the_reason() {
    let missing = tempfile::tempdir().unwrap().path().join("nothing-here");
    let err = children()
        .select(&missing, 10, 2)
        .expect_err("no records to select from")
        .to_string();
    assert!(
        err.contains("the selection from") && err.contains("nothing-here"),
        "{err}"
    );
    let absent = Children::new("/nonexistent/s5", None);
    let err = absent
        .plan_fixmatch("vit-t", 64, 1)
        .expect_err("no binary")
        .to_string();
    assert!(
        err.contains("/nonexistent/s5") && err.contains("FixMatch step of vit-t"),
        "{err}"
    );
    let out = s5()
        .args(["bench", "child", r#"{"job":"weigh_the_moon"}"#])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("takes a job")
            && stderr.contains("weigh_the_moon"),
        "{stderr}"
    );
    // Each cause is said once, though the library's error names its source.
    let out = s5()
        .args(["bench", "child"])
        .arg(r#"{"job":"select","dir":"/nonexistent/records","budget":1,"clusters":1}"#)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.matches("/nonexistent/records").count() == 1,
        "{stderr}"
    );
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
    // The protocol is what the parent sends: a job round-trips through its JSON.
    let job = Job::Select {
        dir: "/tmp/x".into(),
        budget: 5,
        clusters: 2,
    };
    let text = serde_json::to_string(&job).unwrap();
    assert_eq!(serde_json::from_str::<Job>(&text).unwrap(), job);
}

/// The projection's communication time is the ring all-reduce's 2 (N − 1) / N of the f32
/// gradients plus one broadcast of the weights, per rank, over the link; the efficiency
/// falls with the GPUs and rises with the link, and hiding the blocks' sums only raises it.
#[test]
fn the_scaling_projection_follows_the_ring_model() {
    use s5::bench::scaling::{PROJECTED_GPUS, PROJECTED_LINKS_GBPS, project, sum_seconds};
    let model = s5::model::SegmentorConfig::vit_b();
    let values = s5::model::count_params(&model).total();
    let step_s = 0.8;
    let projection = project(&model, step_s, 24, true);
    assert_eq!(projection.gradient_values, values);
    assert_eq!(
        projection.rows.len(),
        PROJECTED_GPUS.len() * PROJECTED_LINKS_GBPS.len()
    );
    // The ViT-B blocks: 12 × (2 LayerNorms, qkv, projection, the FFN's two layers).
    let (d, f) = (768usize, 3072usize);
    let block = 4 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d);
    assert_eq!(projection.block_values, 12 * block);
    let share = projection.block_values as f64 / values as f64;
    assert!(
        (0.75..0.9).contains(&share),
        "ViT-B's blocks hold {share} of its gradients"
    );
    for row in &projection.rows {
        let n = row.gpus as f64;
        let bytes_per_s = row.link_gbps * 1e9 / 8.0;
        let gradient_bytes = 4.0 * values as f64;
        let want = (2.0 * (n - 1.0) / n + 1.0) * gradient_bytes / bytes_per_s;
        assert!(
            row.comm_s.is_finite() && (row.comm_s - want).abs() <= 1e-9 * want,
            "{row:?}: {want}"
        );
        assert_eq!(row.efficiency, step_s / (step_s + row.comm_s));
        assert!(row.efficiency > 0.0 && row.efficiency < 1.0, "{row:?}");
        assert!(
            row.efficiency_overlapped > row.efficiency && row.efficiency_overlapped < 1.0,
            "{row:?}"
        );
    }
    // 8 GPUs over 100 Gb/s: 1.75 × 0.41 GB summed and 0.41 GB broadcast per rank, 0.09 s.
    let cell = |gpus, link| {
        projection
            .rows
            .iter()
            .find(|r| r.gpus == gpus && r.link_gbps == link)
            .expect("a projected cell")
    };
    assert!(
        (cell(8, 100.0).comm_s - 0.0908).abs() < 5e-4,
        "{:?}",
        cell(8, 100.0)
    );
    for link in PROJECTED_LINKS_GBPS {
        assert!(cell(8, link).efficiency > cell(32, link).efficiency);
        assert!(cell(32, link).efficiency > cell(128, link).efficiency);
    }
    for gpus in PROJECTED_GPUS {
        assert!(cell(gpus, 25.0).efficiency < cell(gpus, 100.0).efficiency);
        assert!(cell(gpus, 100.0).efficiency < cell(gpus, 200.0).efficiency);
    }
    assert_eq!(sum_seconds(values, 1, 100.0), 0.0, "one rank sends nothing");
}
