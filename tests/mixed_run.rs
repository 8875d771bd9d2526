//! Mixed-precision training runs through the real `s5` binary: the loss scaler's skips
//! (weights and AdamW state untouched, scale halved, `skipped_steps` logged), its divergence
//! stop at the smallest scale, a killed run resumed to the uninterrupted trajectory (losses,
//! scale, weights), and the refusal on an adapter without `shader-f16`.

use std::path::{Path, PathBuf};

use s5::run::{Event, EventKind, keys};

use crate::common::s5;
use crate::train::{max_diff_where, max_weight_diff, ok, tiny_config, train_cmd, train_steps};

/// `tiny_config` trained in mixed precision with the given loss scaling.
fn mixed_config(dir: &Path, steps: u64, lr: f64, loss_scaling: &str) -> PathBuf {
    let path = tiny_config(dir, steps, lr);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "    seed: 7,\n",
        &format!("    seed: 7,\n    precision: Mixed,\n    loss_scaling: {loss_scaling},\n"),
    );
    assert!(text.contains("precision: Mixed"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The train events of a run, the last one per step (a resumed run redoes a step).
fn train_events(run: &Path) -> Vec<Event> {
    let events = s5::run::read_events(&run.join("events.jsonl")).unwrap();
    let mut out: Vec<Event> = Vec::new();
    for e in events.into_iter().filter(|e| e.kind == EventKind::Train) {
        out.retain(|o| o.step != e.step);
        out.push(e);
    }
    out.sort_by_key(|e| e.step);
    out
}

fn number(event: &Event, key: &str) -> f64 {
    event
        .extra
        .get(key)
        .and_then(|v| v.as_f64())
        .unwrap_or_else(|| panic!("step {}: no `{key}` in {:?}", event.step, event.extra))
}

fn skip_adapters_without_f16() -> bool {
    !crate::common::f16_adapter()
}

#[test]
fn a_forced_overflow_skips_the_step_and_halves_the_scale() {
    if skip_adapters_without_f16() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 1e30 × the loss: its gradient overflows f16 at the logits' cast.
    let config = mixed_config(dir.path(), 2, 1e-3, "(initial: 1e30, growth_interval: 100)");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("checkpoint_every: 2", "checkpoint_every: 1");
    std::fs::write(&config, text).unwrap();
    let run = dir.path().join("run");
    ok(
        &train_cmd(&["--quiet"], Some(&config), &run),
        "mixed s5 train",
    );
    let events = train_events(&run);
    assert_eq!(events.len(), 2);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            number(e, keys::SKIPPED_STEPS.as_str()),
            (i + 1) as f64,
            "step {}",
            e.step
        );
        // (serde_json reads floats to within an ulp.)
        let (scale, want) = (
            number(e, keys::LOSS_SCALE.as_str()),
            1e30 / 2f64.powi(i as i32 + 1),
        );
        assert!(
            (scale / want - 1.0).abs() < 1e-12,
            "step {}: scale {scale}, not {want}",
            e.step
        );
        assert!(
            !e.extra.contains_key(keys::GRAD_NORM.as_str()),
            "no update, no norm"
        );
    }
    // Step 2 was skipped: its checkpoint holds step 1's weights and AdamW state, bit for
    // bit. (BatchNorm's running averages took in the step's batch, as in PyTorch: its
    // forward ran.)
    let checkpoints = run.join("checkpoints");
    let (one, two) = (
        checkpoints.join("step-00000001"),
        checkpoints.join("step-00000002"),
    );
    let (diff, at) = max_diff_where(&one, &two, |path| !path.contains(".running_"));
    assert_eq!(diff, 0.0, "weights moved in a skipped step (most in {at})");
    let read = |d: &Path| std::fs::read(d.join("optimizer.bpk")).unwrap();
    assert!(
        read(&one) == read(&two),
        "AdamW state moved in a skipped step"
    );
    let state = s5::run::checkpoint::read_state(&two).unwrap();
    let scaler = state
        .loss_scale
        .expect("a mixed checkpoint keeps its scaler");
    assert_eq!((scaler.scale, scaler.skipped_steps), (1e30 / 4.0, 2));
}

#[test]
fn a_non_finite_loss_at_the_smallest_scale_stops_the_run() {
    if skip_adapters_without_f16() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // lr 1e30: the first update blows the weights up, every later loss is not finite.
    let config = mixed_config(dir.path(), 8, 1e30, "(initial: 4.0, min_scale: 1.0)");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("clip_grad_norm: Some(1.0)", "clip_grad_norm: None")
        .replace("checkpoint_every: 2", "checkpoint_every: 1");
    std::fs::write(&config, text).unwrap();
    let run = dir.path().join("run");
    let out = train_cmd(&["--quiet"], Some(&config), &run);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("training stopped at step"), "{stderr}");
    let events = s5::run::read_events(&run.join("events.jsonl")).unwrap();
    assert_eq!(events.last().unwrap().kind, EventKind::Diverged);
    // Overflows first: the scale halves from 4 to the smallest, 1, then the run stops.
    let scales: Vec<f64> = train_events(&run)
        .iter()
        .map(|e| number(e, keys::LOSS_SCALE.as_str()))
        .collect();
    assert!(scales.ends_with(&[2.0, 1.0]), "{scales:?}");
}

/// Trains 6 mixed steps in one go; separately crashes after step 3 and resumes: losses,
/// loss scales and weights match the uninterrupted run's. The scale doubles every 2 clean
/// steps, so the resumed scaler must carry its count of clean steps.
#[test]
fn a_killed_mixed_run_resumes_to_the_same_trajectory() {
    if skip_adapters_without_f16() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = mixed_config(dir.path(), 6, 1e-3, "(initial: 1024.0, growth_interval: 3)");
    let whole = dir.path().join("whole");
    ok(
        &train_cmd(&["--quiet"], Some(&config), &whole),
        "uninterrupted mixed run",
    );
    let crashed = dir.path().join("crashed");
    let out = train_cmd(
        &["--quiet", "--abort-after-step", "3"],
        Some(&config),
        &crashed,
    );
    assert!(!out.status.success(), "the run was meant to crash");
    ok(
        &train_cmd(&["--quiet", "--resume"], None, &crashed),
        "resumed mixed run",
    );
    let events = s5::run::read_events(&crashed.join("events.jsonl")).unwrap();
    assert_eq!(train_steps(&events), [1, 2, 3, 3, 4, 5, 6], "step 3 redone");
    let (a, b) = (train_events(&whole), train_events(&crashed));
    assert_eq!(a.len(), 6);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.step, y.step);
        assert_eq!(x.losses, y.losses, "step {}: losses", x.step);
        for key in [keys::LOSS_SCALE, keys::SKIPPED_STEPS] {
            assert_eq!(
                number(x, key.as_str()),
                number(y, key.as_str()),
                "step {}: {key}",
                x.step
            );
        }
    }
    let scales: Vec<f64> = a
        .iter()
        .map(|e| number(e, keys::LOSS_SCALE.as_str()))
        .collect();
    assert_eq!(
        scales,
        [1024.0, 1024.0, 2048.0, 2048.0, 2048.0, 4096.0],
        "grown every 3 clean steps"
    );
    let (diff, at) = max_weight_diff(&whole, &crashed);
    assert_eq!(diff, 0.0, "resumed weights differ (most in {at})");
}

#[test]
fn mixed_precision_without_shader_f16_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = mixed_config(dir.path(), 2, 1e-3, "()");
    let run = dir.path().join("run");
    let out = s5()
        .env(s5::device::HIDE_SHADER_F16_VAR, "1")
        .args(["train", "--quiet", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("`precision: Mixed`")
            && stderr.contains("has no `shader-f16`")
            && stderr.contains("precision: F32")
            && stderr.contains(&crate::common::adapter().name),
        "{stderr}"
    );
    assert!(
        !stderr.contains("training on"),
        "a refused run announces no training: {stderr}"
    );
    assert!(!run.exists(), "a refused run writes nothing");
    let out = s5()
        .env(s5::device::HIDE_SHADER_F16_VAR, "1")
        .arg("info")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mixed precision:          not available"),
        "{text}"
    );
}
