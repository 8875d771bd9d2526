//! The real `s5` binary, run as a user would.

use crate::common::{json_of, s5};

#[test]
fn info_lists_the_selected_adapter() {
    let out = s5().arg("info").output().expect("run s5");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "s5 info failed ({}): {}\nWithout a GPU install `mesa-vulkan-drivers`.",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("s5 will use"), "{stdout}");
    assert!(stdout.contains("workgroup storage"), "{stdout}");
}

#[test]
fn info_without_any_driver_explains_and_exits_2() {
    // Hide every Vulkan ICD and every EGL vendor (the GL fallback).
    for extra in [&[][..], &["--backend", "vulkan"][..]] {
        let out = s5()
            .arg("info")
            .args(extra)
            .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
            .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
            .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl.json")
            .env_remove("S5_BACKEND")
            .output()
            .expect("run s5");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "args {extra:?}: {stderr}");
        assert!(stderr.contains("no GPU adapter"), "{stderr}");
        assert!(stderr.contains("mesa-vulkan-drivers"), "{stderr}");
    }
}

#[test]
fn unknown_backend_in_env_is_a_clear_error() {
    let out = s5()
        .arg("info")
        .env("S5_BACKEND", "cuda")
        .output()
        .expect("run s5");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("unknown GPU backend `cuda`"), "{stderr}");
}

/// `s5 bench ARGS --tiny --warmup 0 --reps 1 --json`, which must succeed, as JSON.
fn bench_json(args: &[&str]) -> serde_json::Value {
    json_of(
        s5().arg("bench")
            .args(args)
            .args(["--tiny", "--warmup", "0", "--reps", "1", "--json"]),
    )
}

#[test]
fn bench_kernels_prints_ratios() {
    let doc = bench_json(&["kernels"]);
    let rows = doc["rows"].as_array().expect("rows");
    let name_of = |r: &serde_json::Value| r["name"].as_str().unwrap_or_default().to_string();
    for name in [
        "pixel_stats (WGSL)",
        "moe_ffn (WGSL, workgroup tiles)",
        "moe_ffn (WGSL, register tiles)",
    ] {
        let ratios: Vec<f64> = rows
            .iter()
            .filter(|r| name_of(r).starts_with(name))
            .filter_map(|r| r["ratio"].as_f64())
            .collect();
        assert_eq!(ratios.len(), 2, "{name}: two baselines");
        assert!(
            ratios.iter().all(|r| r.is_finite() && *r > 0.0),
            "{name}: {ratios:?}"
        );
    }
    // The tiling `moe_ffn` picks on this adapter is marked, on its two rows.
    let auto = rows
        .iter()
        .filter(|r| name_of(r).ends_with("[auto]"))
        .count();
    assert_eq!(auto, 2, "one moe_ffn tiling marked [auto]");
}

#[test]
fn bench_step_times_one_gpu_against_data_parallel() {
    let doc = bench_json(&["step", "--gpus-on-one-adapter", "2"]);
    assert_eq!(doc["adapters"].as_array().map(Vec::len), Some(2));
    let rows = doc["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    assert!(rows[0]["shape"].as_str().unwrap().ends_with("on 1 GPU(s)"));
    assert!(rows[1]["shape"].as_str().unwrap().ends_with("on 2 GPU(s)"));
    let ratio = rows[1]["ratio"].as_f64().expect("a ratio against one GPU");
    assert!(ratio.is_finite() && ratio > 0.0, "{ratio}");
    // The one-GPU step's device memory.
    let reserved = doc["device_memory"]["reserved_bytes"].as_u64();
    assert!(
        reserved.is_some_and(|b| b > 0),
        "{:?}",
        doc["device_memory"]
    );
    // ... and an MoE-MDF step against the same step with a dense backbone.
    assert_eq!(rows[3]["group"], "moe-mdf step");
    assert_eq!(rows[3]["baseline"], "forward + backward, dense backbone");
    let ratio = rows[3]["ratio"]
        .as_f64()
        .expect("a ratio against the dense step");
    assert!(ratio.is_finite() && ratio > 0.0, "{ratio}");
    // A FixMatch step in f32 and, where the adapter computes in f16, in mixed precision,
    // each with its own device memory.
    let steps = doc["fixmatch"].as_array().expect("fixmatch steps");
    let precisions: Vec<bool> = steps.iter().map(|s| s["mixed"] == true).collect();
    let expected = if crate::common::adapter().shader_f16 {
        vec![false, true]
    } else {
        vec![false]
    };
    assert_eq!(precisions, expected);
    for s in steps {
        let ms = s["median_ms"].as_f64().unwrap_or(f64::NAN);
        assert!(ms.is_finite() && ms > 0.0, "{s}");
        assert!(
            s["device_memory"]["reserved_bytes"]
                .as_u64()
                .is_some_and(|b| b > 0),
            "{s}"
        );
    }
}

/// `s5 bench score` times curation's scoring against the forward alone, in one run.
#[test]
fn bench_score_times_scoring_against_the_forward() {
    let doc = bench_json(&["score"]);
    let rows = doc["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["baseline"], "forward alone (logits)");
    let ratio = rows[1]["ratio"]
        .as_f64()
        .expect("a ratio against the forward");
    assert!(ratio.is_finite() && ratio > 0.0, "{ratio}");
}

#[test]
fn synth_output_passes_data_check_and_a_broken_dataset_fails_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("synth");
    let run = s5()
        .args(["synth", "--out"])
        .arg(&out)
        .args([
            "--tile-px",
            "64",
            "--train",
            "2",
            "--val",
            "1",
            "--pool",
            "2",
            "--pool-ood",
            "1",
        ])
        .output()
        .expect("run s5");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.join("preview.png").is_file());
    // Written through temporary files, yet readable by others like any data file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("urban/urban.ron"))
            .expect("spec")
            .permissions()
            .mode();
        assert_eq!(mode & 0o044, 0o044, "mode {mode:o}");
    }
    for spec in ["urban/urban.ron", "rural/rural.ron", "pool/pool.ron"] {
        let check = s5()
            .args(["data", "check"])
            .arg(out.join(spec))
            .output()
            .expect("run s5");
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success(),
            "{spec}: {stdout}{}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(stdout.contains("no problems"), "{stdout}");
    }
    // Break one mask: the check names it and fails.
    let mask = out.join("urban/ann_dir/train/train_0000.png");
    std::fs::write(&mask, b"garbage").expect("overwrite mask");
    let check = s5()
        .args(["data", "check"])
        .arg(out.join("urban/urban.ron"))
        .output()
        .expect("run s5");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("train_0000.png"), "{stdout}");
}

/// `s5 bench data`, with `--peer`: the bundled PIL recipe (the README's command; it needs
/// numpy and pillow, which `.ci/run` installs) and a script of one's own, each run between
/// the single-thread rounds and set against s5's rate.
#[test]
fn bench_data_reports_images_per_second() {
    let bench = [
        "bench",
        "data",
        "--crop-px",
        "64",
        "--images",
        "4",
        "--json",
    ];
    let doc: serde_json::Value = json_of(s5().args(bench).arg("--peer"));
    check_data_bench(&doc);
    let peer = &doc["peer"];
    assert!(
        peer["script"]
            .as_str()
            .is_some_and(|s| s.contains("assets/peers/augment_pil.py")),
        "{peer}"
    );
    let rate = peer["images_per_s"].as_f64().expect("the peer's rate");
    let ratio = peer["s5_ratio"].as_f64().expect("s5 against the peer");
    assert!(rate > 0.0 && ratio > 0.0, "{peer}");
    let full_one_thread = doc["rows"][3]["images_per_s"].as_f64().unwrap();
    assert!(
        (ratio - full_one_thread / rate).abs() <= 1e-9 * ratio,
        "{peer} vs {full_one_thread}"
    );
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("mine.py");
    std::fs::write(&script, "print('250.5 images/s (mine)')\n").unwrap();
    let doc: serde_json::Value = json_of(s5().args(bench).arg("--peer").arg(&script));
    assert_eq!(doc["peer"]["images_per_s"], 250.5);
}

/// `s5 bench data`'s JSON: five pipelines (weak and full on all threads and one, the
/// reference), the stages of the full one, and s5 against the reference.
fn check_data_bench(doc: &serde_json::Value) {
    let rows = doc["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter()
            .all(|r| r["images_per_s"].as_f64().is_some_and(|v| v > 0.0))
    );
    let stages: Vec<&str> = doc["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["stage"].as_str())
        .collect();
    for stage in [
        "scale + crop",
        "colour jitter",
        "blur",
        "normalise (both views)",
    ] {
        assert!(stages.contains(&stage), "{stage} in {stages:?}");
    }
    let share: f64 = doc["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["share"].as_f64())
        .sum();
    assert!((share - 1.0).abs() < 1e-6, "stage shares sum to {share}");
    assert!(doc["reference_ratio"].as_f64().is_some_and(|r| r > 0.0));
}

/// `s5 bench all --json`: every section, on this adapter (a software one here, so the
/// scaled-down sizes), in one document.
#[test]
fn bench_all_reports_every_section_in_one_json() {
    let doc: serde_json::Value = json_of(s5().args(["bench", "all", "--json"]));
    assert!(
        doc["adapter"]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
    );
    let adapter = crate::common::adapter();
    assert_eq!(
        doc["scaled_down"],
        adapter.device_type == "Cpu",
        "bench all scales down on a software adapter only ({})",
        adapter.device_type
    );
    let kernels = doc["kernels"].as_array().expect("kernel rows");
    assert!(kernels.iter().any(|r| r["group"] == "pixel_stats"));
    assert!(kernels.iter().any(|r| r["group"] == "moe_ffn"));
    let step = &doc["fixmatch_step"];
    assert!(step["median_ms"].as_f64().is_some_and(|v| v > 0.0));
    assert!(
        step["device_memory"]["reserved_bytes"]
            .as_u64()
            .is_some_and(|v| v > 0)
    );
    let precisions: Vec<&str> = doc["predict"]
        .as_array()
        .expect("predict rows")
        .iter()
        .filter(|p| p["mpx_per_s"].as_f64().is_some_and(|v| v > 0.0))
        .filter_map(|p| p["precision"].as_str())
        .collect();
    let expected: &[&str] = if adapter.shader_f16 {
        &["f32", "f16"]
    } else {
        &["f32"]
    };
    assert_eq!(precisions, expected, "shader-f16: {}", adapter.shader_f16);
    check_data_bench(&doc["data"]);
    // The projection is made from the faster of the measured steps.
    let scaling = &doc["scaling"];
    let medians: Vec<(f64, bool)> = [&doc["fixmatch_step"], &doc["fixmatch_step_mixed"]]
        .into_iter()
        .filter_map(|s| Some((s["median_ms"].as_f64()?, s["mixed"].as_bool()?)))
        .collect();
    let fastest = medians
        .iter()
        .copied()
        .fold(None, |best: Option<(f64, bool)>, m| match best {
            Some(b) if b.0 <= m.0 => Some(b),
            _ => Some(m),
        })
        .expect("a step time");
    // serde_json parses floats to within a unit of the last place (no `float_roundtrip`),
    // so the step time read back may differ from the one computed in its last bit.
    let step_s = scaling["step_s"].as_f64().expect("step_s");
    let want_s = fastest.0 / 1e3;
    assert!(
        step_s.is_finite() && (step_s - want_s).abs() <= 1e-12 * want_s,
        "{scaling}: the faster step is {want_s} s"
    );
    assert_eq!(scaling["mixed"], fastest.1, "{scaling}");
    assert_eq!(
        scaling["crops_per_gpu"],
        2 * step["batch"].as_u64().unwrap()
    );
    assert_eq!(
        scaling["rows"].as_array().map(Vec::len),
        Some(9),
        "{scaling}"
    );
}

#[test]
fn model_summary_prints_the_papers_six_counts() {
    let rows: serde_json::Value = json_of(s5().args(["model", "summary", "--json"]));
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 6);
    for r in rows {
        let ours = r["params"].as_f64().expect("params") / 1e6;
        let paper = r["paper_m"].as_f64().expect("paper");
        assert!(
            (ours - paper).abs() <= 0.2,
            "{}: {ours} vs {paper}",
            r["model"]
        );
    }
    // The table prints s5's own count beside the paper's: parse s5's column (the first
    // number of each row) and hold it to the JSON count and to the paper's.
    let table = s5().args(["model", "summary"]).output().expect("run s5");
    let text = String::from_utf8_lossy(&table.stdout);
    for r in rows {
        let name = r["model"].as_str().expect("name");
        let line = text
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with("  "))
            .unwrap_or_else(|| panic!("no row for {name} in:\n{text}"));
        let numbers: Vec<f64> = line[name.len()..]
            .split_whitespace()
            .map(|n| n.parse().expect("a number"))
            .collect();
        let [s5_m, paper_m, diff_m] = numbers[..] else {
            panic!("{line}: expected three numbers")
        };
        let counted = r["params"].as_f64().expect("params") / 1e6;
        assert!(
            (s5_m - counted).abs() <= 0.05,
            "{line}: s5's column vs {counted}"
        );
        assert_eq!(paper_m, r["paper_m"].as_f64().unwrap(), "{line}");
        assert!((diff_m - (counted - paper_m)).abs() <= 0.01, "{line}");
        assert!((s5_m - paper_m).abs() <= 0.2, "{line}");
    }
    // The paper's α (P = α · 1024) gives Table 3's MoE-MDF counts of ViT-B, four datasets.
    for (alpha, paper_m) in [("0.125", 146.2), ("0.25", 160.4), ("0.5", 188.7)] {
        let doc = json_of(
            s5().args(["model", "summary", "--backbone", "vit-b", "--datasets", "4"])
                .args([
                    "--classes",
                    "5",
                    "--classes",
                    "5",
                    "--classes",
                    "7",
                    "--classes",
                    "9",
                ])
                .args(["--alpha", alpha, "--json"]),
        );
        let ours = doc["total"].as_f64().expect("total") / 1e6;
        assert!(
            (ours - paper_m).abs() <= 0.2,
            "α {alpha}: {ours} vs Table 3's {paper_m}"
        );
    }
}

#[test]
fn model_import_names_the_mismatched_key_and_the_bad_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit_timm_tiny.pth");
    // The fixture is 32 wide: importing it into ViT-T (192) must fail naming the key.
    let out = s5()
        .args(["model", "import"])
        .arg(&fixture)
        .args(["--backbone", "vit-t"])
        .output()
        .expect("run s5");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("patch_embed.proj.weight"), "{stderr}");
    // A corrupt checkpoint names its file.
    let bad = dir.path().join("bad.pth");
    std::fs::write(&bad, b"not a zip").expect("write");
    let out = s5()
        .args(["model", "import"])
        .arg(&bad)
        .output()
        .expect("run s5");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.pth"), "{stderr}");
}

#[test]
fn eval_scores_prediction_masks_against_ground_truth() {
    use image::{GrayImage, Luma};
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/datasets/potsdam.ron");
    std::fs::create_dir_all(d.join("gt")).unwrap();
    std::fs::create_dir_all(d.join("pred")).unwrap();
    // Ground truth: left half class 0, right half class 1, one clutter (ignored) pixel.
    let mut gt = GrayImage::from_fn(4, 2, |x, _| Luma([u8::from(x >= 2)]));
    gt.put_pixel(0, 0, Luma([5]));
    gt.save(d.join("gt/a.png")).unwrap();
    // Prediction: everything class 0.
    GrayImage::from_pixel(4, 2, Luma([0]))
        .save(d.join("pred/a.png"))
        .unwrap();
    let eval = || {
        s5().current_dir(d)
            .args(["eval", "--pred", "pred", "--gt", "gt", "--spec"])
            .arg(&spec)
            .output()
            .expect("run s5")
    };
    let out = eval();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("metrics.json")).unwrap()).unwrap();
    // 7 counted pixels: 3 of class 0 right, 4 of class 1 predicted 0. IoU0 = 3/7, IoU1 = 0.
    let miou = doc["summary"]["miou"].as_f64().unwrap();
    assert!((miou - (3.0 / 7.0) / 2.0).abs() < 1e-9, "{doc}");
    assert_eq!(doc["summary"]["classes_counted"], 2);
    // A prediction without ground truth is named.
    GrayImage::from_pixel(4, 2, Luma([0]))
        .save(d.join("pred/b.png"))
        .unwrap();
    let out = eval();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pred/b.png"), "{stderr}");
}

/// Two inputs whose outputs would be the same file (`tile.png` and `tile.tif` both make
/// `index/tile.png`) are refused before any work (here before the model is even opened):
/// nothing is overwritten. The same file given twice is simply predicted once.
#[test]
fn predict_refuses_inputs_that_would_write_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let (png, tif) = (dir.path().join("a/tile.png"), dir.path().join("b/tile.tif"));
    for file in [&png, &tif] {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, b"never read").unwrap();
    }
    let out = s5()
        .args(["predict", "--model"])
        .arg(dir.path().join("no-model"))
        .arg("--out")
        .arg(dir.path().join("preds"))
        .arg(&png)
        .arg(&tif)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tile.png") && stderr.contains("tile.tif"),
        "{stderr}"
    );
    assert!(stderr.contains("would both be written"), "{stderr}");
    assert!(!dir.path().join("preds").exists(), "nothing was written");

    let kept =
        s5::eval::predict::distinct_outputs(vec![png.clone(), png.clone()], dir.path()).unwrap();
    assert_eq!(kept, [png]);
}

/// `s5 bench select` measures each pool size in its own process and reports what it
/// selected (the numbers themselves are the README's, not asserted here).
#[test]
fn bench_select_reports_each_pool_size() {
    let runs: serde_json::Value = json_of(
        s5().args(["bench", "select", "--records", "500", "--records", "20000"])
            .args(["--budget", "300", "--clusters", "4", "--json"]),
    );
    let runs = runs.as_array().expect("one row per pool size");
    assert_eq!(runs.len(), 2);
    for (run, records) in runs.iter().zip([500, 20_000]) {
        assert_eq!(run["records"], records);
        assert_eq!(run["selected"], 300);
        assert!(run["peak_rss_bytes"].as_u64().unwrap() > 0);
    }
}
