//! `s5 demo` end to end at the micro preset: every stage a run in one folder, a summary; a
//! rerun skips what is finished; Ctrl-C in a stage and a rerun give the summary of an
//! uninterrupted demo.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use s5::run::demo::{DemoStage, DemoState, StageResult};

use crate::common::s5;

/// Each finished stage's numbers in `demo.json`, by stage key and name.
fn stage_numbers(demo: &Path) -> BTreeMap<String, BTreeMap<String, f64>> {
    let state = DemoState::load(demo).unwrap().expect("demo.json");
    state
        .stages
        .iter()
        .map(|(stage, finished)| (stage.key().to_string(), numbers_of(&finished.result)))
        .collect()
}

/// A stage result's numbers by name (what two demos are compared by).
fn numbers_of(result: &StageResult) -> BTreeMap<String, f64> {
    let value = serde_json::to_value(result).unwrap();
    let (_, fields) = value.as_object().unwrap().iter().next().unwrap();
    let mut numbers = BTreeMap::new();
    for (key, v) in fields.as_object().unwrap() {
        match v {
            serde_json::Value::Object(map) => {
                for (k, x) in map {
                    numbers.insert(format!("{key}.{k}"), x.as_f64().unwrap_or(f64::NAN));
                }
            }
            other => {
                numbers.insert(key.clone(), other.as_f64().unwrap_or(f64::NAN));
            }
        }
    }
    numbers
}

fn demo(out: &Path) -> std::process::Command {
    let mut cmd = s5();
    cmd.args([
        "demo",
        "--preset",
        "micro",
        "--quiet",
        "--stage-steps",
        "4",
        "--out",
    ])
    .arg(out);
    cmd
}

#[test]
fn the_demo_runs_every_stage_resumes_and_survives_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let out = demo(&whole).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "# s5 demo (preset `micro`)",
        "2 curation",
        "S4P + MoE-MDF",
        "baseline",
    ] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
    // Every stage is a run the viewer finds, and the summary is kept with its picture.
    for (run, kind) in [
        ("1-seed", "train"),
        ("2-curation", "curate"),
        ("3-s4p", "pretrain"),
        ("4-moe-mdf", "finetune"),
        ("5-baseline", "finetune"),
    ] {
        let manifest = s5::run::Manifest::load(&s5::run::RunDir::new(whole.join(run))).unwrap();
        assert_eq!(manifest.kind.to_string(), kind, "{run}");
    }
    // The summary ends what the demo prints (stages print their own lines before it).
    let summary = std::fs::read_to_string(whole.join("summary.md")).unwrap();
    assert!(stdout.trim_end().ends_with(summary.trim_end()), "{stdout}");
    let picture = image::open(whole.join("summary.png")).unwrap();
    assert_eq!(picture.width(), 4 * 160 + 5 * 4, "four columns");
    let numbers = stage_numbers(&whole);
    assert_eq!(numbers.len(), 6, "{numbers:?}");
    assert!(numbers["curation"]["selected_patches"] > 0.0);
    for stage in ["moe-mdf", "baseline"] {
        for key in [
            "val.synth-urban/mF1",
            "val.synth-rural/mIoU",
            "val.synth-suburb/mIoU",
            "val.val_mean",
        ] {
            assert!(numbers[stage][key].is_finite(), "{stage} {key}");
        }
    }
    let state = DemoState::load(&whole).unwrap().unwrap();
    assert!(
        state.running.is_none(),
        "nothing runs once the demo is done"
    );

    // A rerun finds every stage finished and prints the same summary.
    let again = demo(&whole).output().unwrap();
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("[6/6] 5 baseline: MoE-MDF, no pre-training: done")
    );
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim_end(),
        summary.trim_end()
    );
    // Another preset on the same folder is refused, naming the one there.
    let other = s5()
        .args(["demo", "--preset", "tiny", "--quiet", "--out"])
        .arg(&whole)
        .output()
        .unwrap();
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("--preset micro"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    // So is another seed, naming the flags the folder's demo was trained with.
    let other = demo(&whole).args(["--seed", "3"]).output().unwrap();
    let said = String::from_utf8_lossy(&other.stderr);
    assert!(
        !other.status.success() && said.contains("`--precision f32 --seed 0`"),
        "{said}"
    );

    // Ctrl-C during S4P: the step finishes, a checkpoint is written, the demo says how to
    // continue; the rerun ends with the same numbers as the uninterrupted demo.
    let stopped = dir.path().join("stopped");
    let child = demo(&stopped)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let events = stopped.join("3-s4p/events.jsonl");
    let t0 = Instant::now();
    while !std::fs::read_to_string(&events).is_ok_and(|t| t.contains("\"train\"")) {
        assert!(t0.elapsed() < Duration::from_secs(600), "S4P never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: sends SIGINT to the child process we started; nothing else is touched.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let interrupted = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&interrupted.stdout);
    assert!(interrupted.status.success(), "{said}");
    assert!(said.contains("stopped in stage `s4p`"), "{said}");
    let partial = stage_numbers(&stopped);
    assert!(!partial.contains_key("s4p") && partial.contains_key("curation"));
    let resumed = demo(&stopped).output().unwrap();
    assert!(resumed.status.success());
    same_numbers(&whole, &stopped);

    // Ctrl-C outside training (the curation stage, as soon as its run exists): the demo
    // stops at once with exit status 130; the rerun ends with the same numbers.
    let cut = dir.path().join("cut-in-curation");
    let child = demo(&cut)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let manifest = cut.join("2-curation/manifest.json");
    let t0 = Instant::now();
    while !manifest.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "curation never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: sends SIGINT to the child process we started; nothing else is touched.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let interrupted = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&interrupted.stderr);
    assert_eq!(interrupted.status.code(), Some(130), "{said}");
    assert!(
        said.contains("Ctrl-C: stopped (run the command again to continue)"),
        "{said}"
    );
    assert!(!stage_numbers(&cut).contains_key("curation"));
    let resumed = demo(&cut).output().unwrap();
    assert!(resumed.status.success());
    same_numbers(&whole, &cut);
}

/// `--precision mixed --seed 1`: every training stage is a mixed-precision run of that seed
/// and says how many steps it skipped; the summary's title names both. On an adapter without
/// `shader-f16` the demo is refused before it writes anything.
#[test]
fn a_mixed_precision_demo_trains_every_stage_in_mixed_precision() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("mixed");
    let mut cmd = demo(&out_dir);
    cmd.args(["--precision", "mixed", "--seed", "1"]);
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if !crate::common::adapter().shader_f16 {
        assert!(
            !out.status.success()
                && stderr.contains("has no `shader-f16`")
                && stderr.contains("--precision mixed"),
            "{stderr}"
        );
        assert!(!out_dir.exists(), "a refused demo writes nothing");
        return;
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("# s5 demo (preset `micro`, mixed precision, seed 1)"),
        "{stdout}"
    );
    let state = DemoState::load(&out_dir).unwrap().unwrap();
    assert!(state.training.mixed_precision && state.training.seed == 1);
    for stage in [
        DemoStage::Seed,
        DemoStage::S4p,
        DemoStage::MoeMdf,
        DemoStage::Baseline,
    ] {
        let config =
            std::fs::read_to_string(out_dir.join(stage.folder()).join("config.ron")).unwrap();
        assert!(
            config.contains("precision: Mixed") && config.contains("seed: 1,"),
            "{stage:?}: {config}"
        );
        let trained = state.trained(stage).unwrap();
        let skipped = trained
            .skipped_steps
            .expect("a mixed stage counts its skips");
        assert!(skipped <= trained.steps, "{stage:?}: {trained:?}");
        assert!(
            stdout.contains(&format!("{skipped} of {} steps skipped", trained.steps)),
            "{stdout}"
        );
    }
}

/// Every stage's numbers of the demo in `b` are those of the demo in `a`.
fn same_numbers(a: &Path, b: &Path) {
    let (a, b) = (stage_numbers(a), stage_numbers(b));
    for (stage, numbers) in &a {
        for (key, value) in numbers {
            let other = b[stage][key];
            assert!(
                (value - other).abs() <= 1e-6 || (value.is_nan() && other.is_nan()),
                "{stage} {key}: {value} uninterrupted, {other} after Ctrl-C and a rerun"
            );
        }
    }
}
