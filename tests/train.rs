//! Training: schedule, loss, optimizer groups, and the real `s5 train` / `s5 predict` /
//! `s5 eval` on a tiny synthetic dataset (kill and resume, NaN stop, predictions).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use s5::run::EventKind;
use s5::run::curation::{CurationReport, ReportStage, ThumbnailRole};

use crate::common::{Rng, device, max_abs_diff, s5, small_segmentor, to_vec};

pub(crate) fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `s5 train FLAGS [--config CONFIG] --out OUT`, run to the end.
pub(crate) fn train_cmd(flags: &[&str], config: Option<&Path>, out: impl AsRef<Path>) -> Output {
    let mut cmd = s5();
    cmd.arg("train").args(flags);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.arg("--out").arg(out.as_ref()).output().unwrap()
}

/// A tiny synthetic dataset, made once per test process.
fn synth() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = s5()
            .args(["synth", "--tile-px", "64", "--train", "4", "--val", "2"])
            .args(["--pool", "2", "--pool-ood", "1", "--out"])
            .arg(dir.path())
            .output()
            .unwrap();
        ok(&out, "s5 synth");
        dir
    })
    .path()
}

/// The steps of a run's `train` events, in log order.
pub(crate) fn train_steps(events: &[s5::run::Event]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Train)
        .map(|e| e.step)
        .collect()
}

/// A training config for a tiny model (dropout and drop path on, to prove their draws
/// resume too).
pub(crate) fn tiny_config(dir: &Path, steps: u64, lr: f64) -> PathBuf {
    let spec = synth().join("urban/urban.ron");
    let text = format!(
        r#"(
    datasets: [(spec: "{}")],
    model: (
        backbone: Custom((dim: 32, depth: 2, heads: 2, patch_px: 16, mlp_ratio: 2,
            pos_grid_px: 64, drop_path: 0.0, feature_blocks: (0, 1, 1, 1), ffn: Dense,
            activation: Gelu)),
        decoder_channels: 16, head_dropout: 0.1, drop_path: 0.1,
    ),
    steps: {steps},
    batch: 2,
    optimizer: (lr: {lr}, warmup_steps: 1, clip_grad_norm: Some(1.0), layer_decay: Some(0.9)),
    augment: (crop_px: 64),
    val: (every_steps: 0, mode: Slide(window_px: 64, stride_px: 48, flip: true), sample_images: 1),
    checkpoint_every: 2,
    keep_checkpoints: 5,
    seed: 7,
)"#,
        spec.display()
    );
    let path = dir.join("config.ron");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every float parameter (and BatchNorm statistic) of a model with its path.
pub(crate) fn weights(model: &impl Module) -> Vec<(String, Vec<f32>)> {
    #[derive(Default)]
    struct Collect(Vec<String>, Vec<(String, Vec<f32>)>);
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.1.push((self.0.join("."), to_vec(param.val())));
        }
    }
    let mut c = Collect::default();
    model.visit(&mut c);
    c.1
}

/// The largest absolute difference between two models' weights (BatchNorm statistics
/// included), and where.
pub(crate) fn max_weight_diff(a: &Path, b: &Path) -> (f32, String) {
    max_diff_where(a, b, |_| true)
}

/// [`max_weight_diff`] over the values whose path `keep` accepts.
pub(crate) fn max_diff_where(a: &Path, b: &Path, keep: impl Fn(&str) -> bool) -> (f32, String) {
    let dev = device();
    let (ma, _, _) = s5::train::load_model(a, &dev).unwrap();
    let (mb, _, _) = s5::train::load_model(b, &dev).unwrap();
    let (wa, wb) = (weights(&ma), weights(&mb));
    assert_eq!(wa.len(), wb.len());
    wa.iter()
        .zip(&wb)
        .filter(|((path, _), _)| keep(path))
        .map(|((path, x), (_, y))| (max_abs_diff(path, x, y), path.clone()))
        .fold((0.0, String::new()), |best, cur| {
            if cur.0 > best.0 { cur } else { best }
        })
}

/// Trains 6 steps in one go; separately trains, crashes (abort) after step 3 — between the
/// checkpoints of steps 2 and 4 — and resumes: the weights must match.
#[test]
fn a_killed_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), 6, 1e-3);
    let whole = dir.path().join("whole");
    let out = train_cmd(&["--quiet"], Some(&config), &whole);
    ok(&out, "uninterrupted s5 train");

    let crashed = dir.path().join("crashed");
    let out = train_cmd(
        &["--quiet", "--abort-after-step", "3"],
        Some(&config),
        &crashed,
    );
    assert!(!out.status.success(), "the run was meant to crash");
    let events = s5::run::read_events(&crashed.join("events.jsonl")).unwrap();
    assert_eq!(
        events.iter().filter(|e| e.kind == EventKind::Train).count(),
        3
    );
    // Starting over the crashed run without --resume is refused. (The crash left its lock
    // behind: this next writer takes it over and says so.)
    assert!(crashed.join("lock").exists(), "the crash left its lock");
    let out = train_cmd(&["--quiet"], Some(&config), &crashed);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("took over the lock"), "{stderr}");

    let out = train_cmd(&["--quiet", "--resume"], None, &crashed);
    ok(&out, "resumed s5 train");
    assert!(
        !crashed.join("lock").exists(),
        "a finished run releases its lock"
    );
    let events = s5::run::read_events(&crashed.join("events.jsonl")).unwrap();
    assert_eq!(
        train_steps(&events),
        [1, 2, 3, 3, 4, 5, 6],
        "step 3 redone after the crash"
    );
    let (diff, at) = max_weight_diff(&whole, &crashed);
    assert!(
        diff <= 1e-6,
        "resumed weights differ by {diff} (most in {at})"
    );

    // The run directory is complete: manifest, config, validation metrics, samples.
    let run = s5::run::RunDir::new(&crashed);
    s5::run::Manifest::load(&run).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::Val && e.metrics.contains_key("synth-urban/mIoU"))
    );
    let steps = s5::run::samples::sample_steps(&run).unwrap();
    assert_eq!(steps, [6]);
    let index = s5::run::samples::SampleIndex::load(&run.sample_step(6)).unwrap();
    for file in index.entries[0].files.values() {
        assert!(run.sample_step(6).join(file).is_file(), "{file}");
    }

    // The trained model predicts a tile of odd size with sliding windows...
    let image = synth().join("urban/img_dir/val");
    let pred = dir.path().join("pred");
    // Predict and eval use the same sliding windows, so their scores can be compared.
    let slide = ["--window-px", "64", "--stride-px", "40", "--flip"];
    let out = s5()
        .arg("predict")
        .args(slide)
        .arg("--model")
        .arg(&crashed)
        .arg("--out")
        .arg(&pred)
        .arg(&image)
        .output()
        .unwrap();
    ok(&out, "s5 predict");
    assert!(String::from_utf8_lossy(&out.stdout).contains("peak memory"));
    let first = std::fs::read_dir(&image)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = format!("{}.png", first.file_stem().unwrap().to_string_lossy());
    let index = image::open(pred.join("index").join(&name))
        .unwrap()
        .to_luma8();
    let color = image::open(pred.join("color").join(&name))
        .unwrap()
        .to_rgb8();
    let conf = image::open(pred.join("confidence").join(&name))
        .unwrap()
        .to_luma8();
    assert_eq!(index.dimensions(), (64, 64));
    assert_eq!(color.dimensions(), (64, 64));
    assert_eq!(conf.dimensions(), (64, 64));
    let spec = s5::data::DatasetSpec::load(&synth().join("urban/urban.ron")).unwrap();
    for (l, c) in index.pixels().zip(color.pixels()) {
        assert!(usize::from(l[0]) < spec.num_classes());
        assert_eq!(c.0, spec.palette[usize::from(l[0])]);
    }
    // ... and (the classes being 6) no pixel has confidence below 1/6.
    assert!(conf.pixels().all(|p| p[0] >= 255 / 6));

    // `--mode resize`: resized to the long side, predicted whole, resized back. At the
    // image's own size that is the whole-image prediction; at another, the picture still
    // has the image's size and the dataset's classes.
    let predict_as = |mode: &[&str], name_out: &str| {
        let folder = dir.path().join(name_out);
        let out = s5()
            .arg("predict")
            .args(mode)
            .arg("--model")
            .arg(&crashed)
            .arg("--out")
            .arg(&folder)
            .arg(&first)
            .output()
            .unwrap();
        ok(&out, &format!("s5 predict {mode:?}"));
        image::open(folder.join("index").join(&name))
            .unwrap()
            .to_luma8()
    };
    let whole = predict_as(&["--mode", "whole"], "pred-whole");
    let same_size = predict_as(&["--mode", "resize", "--resize-px", "64"], "pred-resize-64");
    assert_eq!(
        whole, same_size,
        "resize to the image's own size is the whole image"
    );
    let resized = predict_as(&["--mode", "resize", "--resize-px", "96"], "pred-resize-96");
    assert_eq!(resized.dimensions(), (64, 64));
    assert!(
        resized
            .pixels()
            .all(|l| usize::from(l[0]) < spec.num_classes())
    );
    let out = s5()
        .args(["eval", "--mode", "resize", "--resize-px", "96", "--model"])
        .arg(&crashed)
        .output()
        .unwrap();
    ok(&out, "s5 eval --mode resize");
    assert!(String::from_utf8_lossy(&out.stdout).contains("resized to a 96-px long side"));

    // The prediction folder scores like the model itself, through both forms of s5 eval.
    let metrics_a = dir.path().join("a.json");
    let out = s5()
        .arg("eval")
        .args(slide)
        .arg("--model")
        .arg(&crashed)
        .arg("--out")
        .arg(&metrics_a)
        .output()
        .unwrap();
    ok(&out, "s5 eval --model");
    assert!(String::from_utf8_lossy(&out.stdout).contains("mIoU"));
    let metrics_b = dir.path().join("b.json");
    let out = s5()
        .args(["eval", "--pred"])
        .arg(pred.join("index"))
        .arg("--gt")
        .arg(synth().join("urban/ann_dir/val"))
        .arg("--spec")
        .arg(synth().join("urban/urban.ron"))
        .arg("--out")
        .arg(&metrics_b)
        .output()
        .unwrap();
    ok(&out, "s5 eval --pred");
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    assert_eq!(
        read(&metrics_a)["confusion_matrix"],
        read(&metrics_b)["confusion_matrix"]
    );
    // `s5 predict --f16` where the adapter has `shader-f16`; a clear refusal elsewhere.
    let pred16 = dir.path().join("pred16");
    let out = s5()
        .arg("predict")
        .args(slide)
        .arg("--f16")
        .arg("--model")
        .arg(&crashed)
        .arg("--out")
        .arg(&pred16)
        .arg(&image)
        .output()
        .unwrap();
    if !crate::common::adapter().shader_f16 {
        crate::common::assert_f16_refused(&out);
        return;
    }
    half_precision_predicts_like_full_precision(&crashed);
    // ... writes the same classes.
    ok(&out, "s5 predict --f16");
    assert!(String::from_utf8_lossy(&out.stderr).contains("f16"));
    let (a, b) = (
        image::open(pred.join("index").join(&name))
            .unwrap()
            .to_luma8(),
        image::open(pred16.join("index").join(&name))
            .unwrap()
            .to_luma8(),
    );
    let same = a.pixels().zip(b.pixels()).filter(|(p, q)| p == q).count();
    assert!(
        same as f64 >= 0.999 * f64::from(a.width() * a.height()),
        "{same} pixels agree"
    );
}

/// The trained model in f16 (on an adapter with `shader-f16`) against itself in f32 on every
/// synthetic validation tile, sliding windows with flips: the same class on ≥ 99.9 % of the
/// pixels, confidence within 1e-2 everywhere.
fn half_precision_predicts_like_full_precision(run: &Path) {
    use s5::eval::infer::{InferMode, predict_bands};
    let dev = device();
    // Two loads: clones share BatchNorm's running statistics, which `to_f16` casts.
    let load = || s5::train::load_model(run, &dev).unwrap().0.valid();
    let (model, half) = (load(), s5::model::half::to_f16(load()));
    assert_eq!(half.float_dtype(), burn::tensor::DType::F16);
    let mode = InferMode::Slide {
        window_px: 64,
        stride_px: 40,
        flip: true,
    };
    let predict = |m: &s5::model::Segmentor, image: &image::RgbImage| {
        let (mut labels, mut conf) = (Vec::new(), Vec::new());
        predict_bands(m, 0, image, mode, 4, &dev, |band| {
            labels.extend(band.labels);
            conf.extend(band.confidence);
            Ok(())
        })
        .unwrap();
        (labels, conf)
    };
    let (mut same, mut total, mut worst) = (0usize, 0usize, 0f32);
    for entry in std::fs::read_dir(synth().join("urban/img_dir/val")).unwrap() {
        let image = image::open(entry.unwrap().path()).unwrap().to_rgb8();
        let (l32, c32) = predict(&model, &image);
        let (l16, c16) = predict(&half, &image);
        same += l32.iter().zip(&l16).filter(|(a, b)| a == b).count();
        total += l32.len();
        worst = worst.max(max_abs_diff("f16 vs f32 confidence", &c32, &c16));
    }
    let agreement = same as f64 / total as f64;
    eprintln!("f16 vs f32: argmax agreement {agreement:.5}, max confidence difference {worst:.2e}");
    assert!(total > 0);
    assert!(agreement >= 0.999, "argmax agreement {agreement}");
    assert!(worst <= 1e-2, "confidence differs by {worst}");
}

/// A loss that blows up stops the run with a clear message and keeps the last good
/// checkpoint.
#[test]
fn a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), 6, 1e30);
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
    assert!(stderr.contains("last good checkpoint"), "{stderr}");
    let (step, dir) = s5::run::RunDir::new(&run)
        .latest_checkpoint()
        .unwrap()
        .unwrap();
    assert!(step >= 1 && dir.join("model.bpk").is_file());
    let events = s5::run::read_events(&run.join("events.jsonl")).unwrap();
    assert_eq!(events.last().unwrap().kind, EventKind::Diverged);
}

#[test]
fn bad_training_configs_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.ron");
    std::fs::write(
        &path,
        "(steps: 10, datasets: [(spec: \"x.ron\")], augment: (crop_px: 100))",
    )
    .unwrap();
    let out = train_cmd(&[], Some(&path), dir.path().join("run"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.ron") && stderr.contains("multiple of 32"),
        "{stderr}"
    );
    std::fs::write(&path, "(steps: 10, datsets: [])").unwrap();
    let out = train_cmd(&[], Some(&path), dir.path().join("run"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.ron") && stderr.contains("datsets"),
        "{stderr}"
    );
    // A model that cannot be built is named before any training starts.
    let config = tiny_config(dir.path(), 2, 1e-3);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "feature_blocks: (0, 1, 1, 1)",
        "feature_blocks: (0, 1, 2, 9)",
    );
    std::fs::write(&config, text).unwrap();
    let out = train_cmd(&[], Some(&config), dir.path().join("run2"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`model.backbone.Custom.feature_blocks`")
            && stderr.contains("below depth 2 (got 2)"),
        "{stderr}"
    );
    let out = train_cmd(&["--resume"], None, dir.path().join("empty"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing to resume"), "{stderr}");
    // Sampling ratios must match the datasets.
    std::fs::write(
        &path,
        "(datasets: [(spec: \"a.ron\"), (spec: \"b.ron\")], sampling: Ratios([1.0]))",
    )
    .unwrap();
    let out = train_cmd(&[], Some(&path), dir.path().join("run3"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.ron") && stderr.contains("1 ratios for 2 datasets"),
        "{stderr}"
    );
}

/// Every config value out of range, given to its command, is one line naming the file, the
/// field's path and the values it allows; no panic, and no run directory is created. One
/// case per class: ranges (P of FFN-MoE, probabilities, τ), sizes of 0, dropouts of 1, NaN.
#[test]
fn every_bad_config_value_is_named_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = std::fs::read_to_string(tiny_config(dir.path(), 2, 1e-3)).unwrap();
    let fixmatch = std::fs::read_to_string(pretrain_config(dir.path(), 2)).unwrap();
    let finetune = |mode: &str| {
        tiny.replace(
            "seed: 7,",
            &format!("seed: 7, recipe: Finetune((mode: {mode})),"),
        )
    };
    // (command, config text, the field named, what the message says it allows)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "finetune",
            finetune("MoeMdf(0)"),
            "recipe.Finetune.mode.MoeMdf",
            "1..=31",
        ),
        (
            "finetune",
            finetune("MoeMdf(32)"),
            "recipe.Finetune.mode.MoeMdf",
            "1..=31",
        ),
        (
            "train",
            tiny.replace(
                "decoder_channels: 16,",
                "decoder_channels: 16, moe_expert_dim: Some(40),",
            ),
            "model.moe_expert_dim",
            "1..=31",
        ),
        (
            "train",
            tiny.replace("head_dropout: 0.1", "head_dropout: 1.0"),
            "model.head_dropout",
            "[0, 1)",
        ),
        (
            "train",
            tiny.replace("drop_path: 0.1,", "drop_path: 1.0,"),
            "model.drop_path",
            "[0, 1)",
        ),
        (
            "train",
            tiny.replace("dim: 32,", "dim: 0,"),
            "model.backbone.Custom.dim",
            "at least 1",
        ),
        (
            "train",
            tiny.replace("mlp_ratio: 2,", "mlp_ratio: 0,"),
            "model.backbone.Custom.mlp_ratio",
            "at least 1",
        ),
        (
            "train",
            tiny.replace("pos_grid_px: 64,", "pos_grid_px: 0,"),
            "model.backbone.Custom.pos_grid_px",
            "at least 1",
        ),
        (
            "train",
            tiny.replace("decoder_channels: 16,", "decoder_channels: 0,"),
            "model.decoder_channels",
            "at least 1",
        ),
        (
            "train",
            tiny.replace("(lr: 0.001,", "(lr: NaN,"),
            "optimizer.lr",
            "finite number > 0",
        ),
        (
            "train",
            tiny.replace(
                "augment: (crop_px: 64)",
                "augment: (crop_px: 64, hflip_p: 2.0)",
            ),
            "augment.hflip_p",
            "[0, 1]",
        ),
        (
            "pretrain",
            fixmatch.replace("threshold: 0.2,", "threshold: 0.2, lambda: NaN,"),
            "recipe.FixMatch.lambda",
            "finite number ≥ 0",
        ),
        (
            "pretrain",
            fixmatch.replace("threshold: 0.2,", "threshold: 1.5,"),
            "recipe.FixMatch.threshold",
            "[0, 1]",
        ),
    ];
    for (i, (command, text, field, allowed)) in cases.iter().enumerate() {
        assert!(
            *text != tiny && *text != fixmatch,
            "case {i}: the replacement did not apply"
        );
        let config = dir.path().join(format!("case-{i}.ron"));
        std::fs::write(&config, text).unwrap();
        let run = dir.path().join(format!("run-{i}"));
        let out = s5()
            .args([command, "--quiet", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&run)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "case {i} ({field}): {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("`{field}`")))
            .unwrap_or_else(|| panic!("case {i}: no line names `{field}`: {stderr}"));
        assert!(
            line.contains(&format!("case-{i}.ron")) && line.contains(allowed),
            "case {i}: {line}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
        assert!(
            !run.exists(),
            "case {i}: a refused config created {}",
            run.display()
        );
    }
    // A flag out of range is named the same way, and an existing run stays untouched.
    let good = dir.path().join("good.ron");
    std::fs::write(&good, &tiny).unwrap();
    let run = dir.path().join("existing");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("notes.txt"), "mine").unwrap();
    let out = train_cmd(&["--quiet", "--steps", "0"], Some(&good), &run);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("`steps` must be at least 1"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["notes.txt"], "the folder was touched");
    // `s5 synth`'s arguments too.
    let out = s5()
        .args(["synth", "--tile-px", "0", "--out"])
        .arg(dir.path().join("synth"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--tile-px") && stderr.contains("[32, 4096]"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!dir.path().join("synth").exists());
    // Tiles larger than the default pool width: the pool images widen with them.
    let large = dir.path().join("large");
    let out = s5()
        .args(["synth", "--tile-px", "512", "--train", "1", "--val", "1"])
        .args(["--pool", "1", "--pool-ood", "0", "--out"])
        .arg(&large)
        .output()
        .unwrap();
    ok(&out, "s5 synth --tile-px 512");
    let pool: Vec<_> = std::fs::read_dir(large.join("pool/images"))
        .unwrap()
        .map(|e| image::image_dimensions(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(pool, [(768, 512)]);
}

/// Multi-dataset sampling: `Zip` gives every dataset its batch each step; `Ratios` and
/// `Temperature` share the step's crops by their probabilities, the same for a step
/// whenever it is drawn, and `consumed` is where each stream stands at a step.
#[test]
fn sampling_shares_each_step_by_ratio_or_temperature() {
    use s5::train::config::Sampling;
    use s5::train::sampling::Sampler;
    let zip = Sampler::new(&Sampling::Zip, vec![2, 3], &[10, 1000], 0);
    assert_eq!(zip.counts(17), [2, 3]);
    assert_eq!(zip.consumed(4), [8, 12]);
    assert!(zip.probabilities().is_none());

    let ratios = Sampler::new(&Sampling::Ratios(vec![1.0, 3.0]), vec![4, 4], &[10, 10], 5);
    assert_eq!(ratios.probabilities().unwrap(), [0.25, 0.75]);
    let steps = 2000;
    let mut total = [0u64; 2];
    for step in 0..steps {
        let c = ratios.counts(step);
        assert_eq!(c.iter().sum::<usize>(), 8, "a step keeps its size");
        assert_eq!(c, ratios.counts(step), "a step's counts are fixed");
        total[0] += c[0] as u64;
        total[1] += c[1] as u64;
    }
    assert_eq!(ratios.consumed(steps).as_slice(), total);
    let share = total[1] as f64 / (8 * steps) as f64;
    assert!((share - 0.75).abs() < 0.02, "{share}");
    // Another seed, other draws.
    let other = Sampler::new(&Sampling::Ratios(vec![1.0, 3.0]), vec![4, 4], &[10, 10], 6);
    assert!((0..50).any(|s| other.counts(s) != ratios.counts(s)));

    // T = 1 samples by size; T → ∞ evenly; T = 2 by the square root of the size.
    let sizes = [100, 400];
    let p = |t: f64| Sampler::new(&Sampling::Temperature(t), vec![1, 1], &sizes, 0);
    assert!((p(1.0).probabilities().unwrap()[1] - 0.8).abs() < 1e-12);
    assert!((p(2.0).probabilities().unwrap()[1] - 2.0 / 3.0).abs() < 1e-12);
    assert!((p(1e9).probabilities().unwrap()[1] - 0.5).abs() < 1e-6);
}

/// Under MPI each rank decodes only its crops of each step: asked position by position in
/// stream order (as a loader's thread asks, from a resumed step on), the ranks' crops of a
/// dataset are the step's crops of their shares of the concatenated active datasets, every
/// forwarded crop goes to exactly one rank, and a gated dataset's crops to none.
#[test]
fn each_rank_keeps_the_crops_of_its_shares_of_every_step() {
    use s5::train::config::Sampling;
    use s5::train::parallel::{RankSlots, shares};
    use s5::train::sampling::{RankCrops, Sampler};
    let (batches, start_steps) = (vec![3, 2, 4], [0u64, 5, 0]);
    for sampling in [Sampling::Zip, Sampling::Ratios(vec![1.0, 2.0, 1.0])] {
        let sampler = Sampler::new(&sampling, batches.clone(), &[10, 10, 10], 3);
        for (slots, devices) in [(3usize, 1usize), (2, 1), (4, 2)] {
            let ranks = slots / devices;
            let first = 2u64; // the streams resume at step 2
            let consumed = sampler.consumed(first);
            let mut cursors: Vec<Vec<RankCrops>> = (0..ranks)
                .map(|r| {
                    let place = RankSlots {
                        first_slot: r * devices,
                        devices,
                        slots,
                    };
                    (0..batches.len())
                        .map(|d| {
                            RankCrops::new(&sampler, d, &start_steps, place, first, consumed[d])
                        })
                        .collect()
                })
                .collect();
            let mut at = consumed.clone();
            for step in first..first + 12 {
                let counts = sampler.counts(step);
                let active: Vec<bool> = (0..counts.len())
                    .map(|d| step >= start_steps[d] && counts[d] > 0)
                    .collect();
                let total: usize = (0..counts.len())
                    .filter(|&d| active[d])
                    .map(|d| counts[d])
                    .sum();
                let cut = shares(total, slots);
                let mut offset = 0;
                for d in 0..counts.len() {
                    for i in 0..counts[d] {
                        let position = at[d] + i as u64;
                        let keepers: Vec<usize> = (0..ranks)
                            .filter(|&r| cursors[r][d].keeps(position))
                            .collect();
                        if !active[d] {
                            assert!(keepers.is_empty(), "step {step}: a gated crop decoded");
                            continue;
                        }
                        let slot = cut
                            .iter()
                            .position(|c| c.contains(&(offset + i)))
                            .expect("every crop has a share");
                        assert_eq!(
                            keepers,
                            [slot / devices],
                            "step {step} dataset {d} crop {i}"
                        );
                    }
                    if active[d] {
                        offset += counts[d];
                    }
                    at[d] += counts[d] as u64;
                }
            }
        }
    }
}

/// The loss against its definition computed by hand: ignored pixels weigh nothing.
#[test]
fn masked_cross_entropy_matches_a_hand_computation() {
    use s5::train::loss::cross_entropy_over;
    let dev = device();
    let mut rng = Rng::fresh("masked ce");
    let (b, k, h, w) = (2, 3, 3, 5);
    let logits = rng.tensor([b, k, h, w], 2.0, &dev);
    let labels: Vec<i32> = (0..b * h * w).map(|_| rng.below(k) as i32).collect();
    let valid: Vec<f32> = (0..b * h * w)
        .map(|i| if i % 4 == 0 { 0.0 } else { 1.0 })
        .collect();
    let valid_px: f32 = valid.iter().sum();
    let loss = cross_entropy_over(
        logits.clone(),
        Tensor::<3, Int>::from_data(TensorData::new(labels.clone(), [b, h, w]), &dev),
        Tensor::<3>::from_data(TensorData::new(valid.clone(), [b, h, w]), &dev),
        f64::from(valid_px),
    );
    let l = to_vec(logits);
    let (mut sum, mut n) = (0.0f64, 0.0f64);
    for bi in 0..b {
        for p in 0..h * w {
            let i = bi * h * w + p;
            if valid[i] == 0.0 {
                continue;
            }
            let z: Vec<f64> = (0..k)
                .map(|c| f64::from(l[(bi * k + c) * h * w + p]))
                .collect();
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            sum += lse - z[labels[i] as usize];
            n += 1.0;
        }
    }
    let got = s5::train::loss::scalar(loss).unwrap();
    assert!((got - sum / n).abs() < 1e-4, "{got} vs {}", sum / n);
}

/// Weight-decay exemptions and layer indices come from the module paths; global clipping
/// brings the norm to the limit.
#[test]
fn optimizer_groups_and_global_clipping() {
    use burn::optim::GradientsParams;
    use s5::model::Segmentor;
    use s5::train::optimizer::{clip_global_norm, param_infos};
    let dev: Device = device().autodiff();
    let model = Segmentor::new(&small_segmentor(3, 3), &dev);
    let infos = param_infos(&model);
    let find = |p: &str| {
        infos.iter().find(|i| i.path == p).unwrap_or_else(|| {
            panic!(
                "no {p} in {:?}",
                infos.iter().map(|i| &i.path).collect::<Vec<_>>()
            )
        })
    };
    let qkv = find("backbone.blocks.2.attn.qkv.weight");
    assert!(!qkv.exempt_from_decay());
    assert_eq!(qkv.layer(3), 3);
    assert!(find("backbone.blocks.0.attn.qkv.bias").exempt_from_decay());
    assert!(find("backbone.pos_embed").exempt_from_decay());
    assert_eq!(find("backbone.patch_embed.weight").layer(3), 0);
    assert_eq!(find("decoders.0.classifier.weight").layer(3), 4);

    let mut rng = Rng::fresh("clip");
    let x = rng.tensor([1, 3, 32, 32], 1.0, &dev);
    let loss = model.forward(x, 0).powi_scalar(2).mean() * 1e4;
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    let before = clip_global_norm(&model, &mut grads, 0.5).unwrap();
    assert!(
        before > 0.5,
        "the test wants a norm above the limit, got {before}"
    );
    let after = clip_global_norm(&model, &mut grads, f64::INFINITY).unwrap();
    assert!((after - 0.5).abs() < 1e-3, "clipped norm {after}");
}

#[test]
fn sliding_windows_cover_the_image_flush_with_its_end() {
    use s5::eval::infer::window_starts;
    assert_eq!(window_starts(100, 128, 64), [0]);
    assert_eq!(window_starts(128, 128, 64), [0]);
    assert_eq!(window_starts(300, 128, 64), [0, 64, 128, 172]);
    assert_eq!(window_starts(256, 128, 128), [0, 128]);
}

/// Sliding-window prediction streamed by bands equals the whole-image average of window
/// logits built from plain tensor ops, with overlapping windows and with finished rows
/// handed over in several bands per window row (80 finished rows leave as 64 + 16).
#[test]
fn streamed_sliding_windows_equal_a_tensor_reference() {
    use s5::eval::infer::{InferMode, forward_any_size, image_tensor, predict_bands};
    use s5::model::Segmentor;
    let dev = device();
    let model = Segmentor::new(&small_segmentor(2, 4), &dev).valid();
    let mut rng = Rng::fresh("slide");
    let (w, h) = (90 + rng.below(20) as u32, 170 + rng.below(20) as u32);
    let image = image::RgbImage::from_fn(w, h, |_, _| {
        image::Rgb([
            rng.below(256) as u8,
            rng.below(256) as u8,
            rng.below(256) as u8,
        ])
    });
    for (win, stride) in [(64usize, 40usize), (96, 80)] {
        let mut labels = vec![0u8; (w * h) as usize];
        let mut conf = vec![0f32; (w * h) as usize];
        let mut bands = Vec::new();
        predict_bands(
            &model,
            0,
            &image,
            InferMode::Slide {
                window_px: win as u32,
                stride_px: stride as u32,
                flip: false,
            },
            3,
            &dev,
            |band| {
                let start = band.y * w as usize;
                labels[start..start + band.labels.len()].copy_from_slice(&band.labels);
                conf[start..start + band.confidence.len()].copy_from_slice(&band.confidence);
                assert_eq!(band.labels.len(), band.rows * w as usize);
                bands.push(band.y..band.y + band.rows);
                Ok(())
            },
        )
        .unwrap();
        let (hh, ww) = (h as usize, w as usize);
        let window_rows = s5::eval::infer::window_starts(hh, win, stride);
        assert!(
            bands.first().map(|b| b.start) == Some(0)
                && bands.last().map(|b| b.end) == Some(hh)
                && bands.windows(2).all(|p| p[0].end == p[1].start),
            "bands tile the rows top to bottom: {bands:?}"
        );
        if stride > 64 {
            assert!(
                bands.len() > window_rows.len(),
                "a window row's {stride} finished rows leave in two bands: {bands:?}"
            );
        }
        // Reference: every window's logits added into a full map, divided by the coverage.
        let full = image_tensor(&image, &dev);
        let mut sum = Tensor::<4>::zeros([1, 4, hh, ww], &dev);
        let mut count = Tensor::<4>::zeros([1, 1, hh, ww], &dev);
        for &y in &window_rows {
            for x in s5::eval::infer::window_starts(ww, win, stride) {
                let (wy, wx) = (win.min(hh), win.min(ww));
                let crop = full.clone().narrow(2, y, wy).narrow(3, x, wx);
                let logits = forward_any_size(&model, 0, crop, false);
                let region = [0..1, 0..4, y..y + wy, x..x + wx];
                sum = sum
                    .clone()
                    .slice_assign(region.clone(), sum.slice(region) + logits);
                let cregion = [0..1, 0..1, y..y + wy, x..x + wx];
                count = count
                    .clone()
                    .slice_assign(cregion.clone(), count.slice(cregion) + 1.0);
            }
        }
        let probs = burn::tensor::activation::softmax(sum / count, 1);
        let (max, arg) = probs.max_dim_with_indices(1);
        let ref_conf = to_vec(max);
        let ref_labels: Vec<i64> = arg.into_data().convert::<i64>().try_to_vec().unwrap();
        let mut mismatched = 0;
        for i in 0..labels.len() {
            assert!(
                (conf[i] - ref_conf[i]).abs() < 1e-4,
                "window {win}, stride {stride}: confidence at {i}: {} vs {}",
                conf[i],
                ref_conf[i]
            );
            if i64::from(labels[i]) != ref_labels[i] {
                mismatched += 1;
            }
        }
        // Only exact ties could differ.
        assert!(
            mismatched * 1000 <= labels.len(),
            "window {win}, stride {stride}: {mismatched} labels differ"
        );
    }
}

#[test]
fn sample_folders_are_thinned_to_a_bound() {
    use s5::run::samples::{SampleEntry, SampleRole, SampleWriter, sample_steps};
    let dir = tempfile::tempdir().unwrap();
    let run = s5::run::RunDir::new(dir.path());
    let picture = image::RgbImage::new(4, 4);
    for step in 1..=40u64 {
        let mut writer = SampleWriter::new(&run, step).keep(8);
        writer
            .add(
                SampleEntry::default(),
                &[(SampleRole::Image, (&picture).into())],
            )
            .unwrap();
        writer.finish().unwrap();
        let steps = sample_steps(&run).unwrap();
        assert!(steps.len() <= 8, "{steps:?}");
        assert_eq!(steps[0], 1, "the first step stays");
        assert_eq!(*steps.last().unwrap(), step, "the newest step is there");
    }
}

#[test]
fn cosine_schedule_warms_up_then_decays_to_its_floor() {
    use s5::train::CosineSchedule;
    let s = CosineSchedule {
        base_lr: 1e-3,
        final_lr: 0.0,
        warmup_steps: 10,
        total_steps: 110,
    };
    assert!((s.lr(0) - 1e-4).abs() < 1e-15);
    assert!((s.lr(9) - 1e-3).abs() < 1e-15);
    assert!((s.lr(10) - 1e-3).abs() < 1e-15);
    assert!(
        (s.lr(60) - 5e-4).abs() < 1e-12,
        "half way down: {}",
        s.lr(60)
    );
    assert!(s.lr(110).abs() < 1e-15 && s.lr(500).abs() < 1e-15);
    let mut last = f64::INFINITY;
    for step in 10..=110 {
        assert!(s.lr(step) <= last, "not monotone at {step}");
        last = s.lr(step);
    }
    // The paper's S4P: no warm-up, cosine to 0 from the first iteration.
    let s4p = CosineSchedule {
        base_lr: 5e-5,
        final_lr: 0.0,
        warmup_steps: 0,
        total_steps: 120_000,
    };
    assert_eq!(s4p.lr(0), 5e-5);
}

/// Two datasets train jointly (one backbone pass, a decoder each) and are both validated.
#[test]
fn two_datasets_train_jointly_with_a_decoder_each() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), 2, 1e-3);
    let rural = synth().join("rural/rural.ron");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "datasets: [(spec: ",
        &format!(
            "datasets: [(spec: \"{}\", loss_weight: 0.5), (spec: ",
            rural.display()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let run = dir.path().join("run");
    let out = train_cmd(&["--quiet"], Some(&config), &run);
    ok(&out, "two-dataset s5 train");
    let events = s5::run::read_events(&run.join("events.jsonl")).unwrap();
    let train = events.iter().find(|e| e.kind == EventKind::Train).unwrap();
    let (u, r) = (
        train.losses["loss/synth-urban"],
        train.losses["loss/synth-rural"],
    );
    assert!(
        (train.losses["loss"] - (u + 0.5 * r)).abs() < 1e-4,
        "{:?}",
        train.losses
    );
    let val = events.iter().find(|e| e.kind == EventKind::Val).unwrap();
    assert!(
        val.metrics.contains_key("synth-rural/mIoU")
            && val.metrics.contains_key("synth-urban/mIoU")
    );
    let (_, card, _) = s5::train::load_model(&run, &device()).unwrap();
    assert_eq!(card.dataset_index(Some("synth-urban")).unwrap(), 1);
    assert!(
        card.dataset_index(None).is_err(),
        "two decoders need --dataset"
    );
}

/// What `--resume` checks before it continues: the kind of run (`s5 pretrain --resume` on a
/// supervised run is refused, as is `s5 train` given a FixMatch config), a config given
/// again that differs from the run's, and the checkpoints' checksums: a damaged checkpoint
/// is never loaded for prediction, and resume passes over it to the newest intact one.
#[test]
fn resume_checks_what_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), 4, 1e-3);
    let run = dir.path().join("run");
    ok(&train_cmd(&["--quiet"], Some(&config), &run), "s5 train");
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();

    let out = s5()
        .args(["pretrain", "--quiet", "--resume", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(!out.status.success(), "pretrain resumed a supervised run");
    assert!(
        stderr(&out).contains("s5 train --resume"),
        "{}",
        stderr(&out)
    );

    let fixmatch_dir = dir.path().join("fixmatch");
    std::fs::create_dir(&fixmatch_dir).unwrap();
    let fixmatch = pretrain_config(&fixmatch_dir, 2);
    let out = train_cmd(&["--quiet"], Some(&fixmatch), dir.path().join("other"));
    assert!(!out.status.success(), "s5 train ran a FixMatch config");
    assert!(stderr(&out).contains("s5 pretrain"), "{}", stderr(&out));

    let other_dir = dir.path().join("other-lr");
    std::fs::create_dir(&other_dir).unwrap();
    let other_lr = tiny_config(&other_dir, 4, 5e-4);
    let out = train_cmd(&["--quiet", "--resume"], Some(&other_lr), &run);
    assert!(!out.status.success(), "resumed with another optimizer");
    assert!(stderr(&out).contains("optimizer"), "{}", stderr(&out));

    // Truncate the newest checkpoint's model (steps 2 and 4 were written).
    let model = run.join("checkpoints/step-00000004/model.bpk");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let out = s5()
        .args(["predict", "--model"])
        .arg(&run)
        .arg("--out")
        .arg(dir.path().join("preds"))
        .arg(synth().join("urban/img_dir/val"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "predicted with a damaged checkpoint");
    let text = stderr(&out);
    assert!(
        text.contains("step-00000004/model.bpk") && text.contains("damaged"),
        "{text}"
    );
    // `s5 eval --model` refuses it too, and so does `--init` of a new run, which then
    // creates nothing.
    let out = s5()
        .args(["eval", "--mode", "whole", "--model"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(!out.status.success(), "evaluated a damaged checkpoint");
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
    let fresh = dir.path().join("from-damaged");
    let out = train_cmd(
        &["--quiet", "--init", run.to_str().unwrap()],
        Some(&config),
        &fresh,
    );
    assert!(!out.status.success(), "started from a damaged checkpoint");
    assert!(
        stderr(&out).contains("step-00000004/model.bpk") && stderr(&out).contains("damaged"),
        "{}",
        stderr(&out)
    );
    assert!(!fresh.exists(), "a refused run left {}", fresh.display());

    let out = train_cmd(&["--quiet", "--resume", "--steps", "5"], None, &run);
    ok(&out, "resume past a damaged checkpoint");
    let text = stderr(&out);
    assert!(
        text.contains("model.bpk") && text.contains("step 2"),
        "{text}"
    );
    let events = s5::run::read_events(&run.join("events.jsonl")).unwrap();
    assert_eq!(
        train_steps(&events),
        [1, 2, 3, 4, 3, 4, 5],
        "steps 3 and 4 redone from step 2"
    );
    let (latest, _) = s5::run::RunDir::new(&run)
        .latest_checkpoint()
        .unwrap()
        .unwrap();
    assert_eq!(latest, 5);
}

/// Curation end to end on a trained model: `s5 curate prototypes` embeds the labeled images
/// and clusters them (every image counted once, unit-length prototypes, the model's hash as
/// its checkpoint recorded it); plan, two shards (one from Slurm's variables), status and
/// select on the pool, an unreadable image skipped and counted; `s5 pretrain` trains on the
/// selection; a bad level and a training run as `--out` are clear errors.
/// The report after a selection of `budget` patches: every count adds up, the projection
/// holds every patch of this small pool, the thumbnails it names exist.
fn check_final_report(run: &s5::run::RunDir, budget: u64) {
    let report = CurationReport::load(run).unwrap();
    assert_eq!(report.stage, ReportStage::Selected);
    assert_eq!(report.budget, Some(budget));
    assert_eq!(report.shards_finished, report.shards);
    assert_eq!(report.patches_scored, report.patches_planned);
    let filled: u64 = report.clusters.iter().map(|c| c.filled).sum();
    assert_eq!(filled, budget);
    assert_eq!(report.entropy.selected.iter().sum::<u64>(), budget);
    let scored: u64 = report.clusters.iter().map(|c| c.scored).sum();
    assert_eq!(report.entropy.pool.iter().sum::<u64>(), scored);
    for c in &report.clusters {
        assert_eq!(Some(c.filled), c.quota_final);
        assert!(c.filled == 0 || c.entropy_cut.is_some());
    }
    assert_eq!(
        report.projection.points.len() as u64,
        scored,
        "a small pool: all sampled"
    );
    assert_eq!(
        report
            .projection
            .points
            .iter()
            .filter(|p| p.selected)
            .count() as u64,
        budget
    );
    assert_eq!(report.projection.centroids.len(), report.clusters.len());
    let (pool_ood, _) = report.ood_shares().expect("the plan knows the kinds");
    assert!(pool_ood > 0.0 && pool_ood < 1.0, "{pool_ood}");
    assert!(report.projection.points.iter().all(|p| p.kind.is_some()));
    assert!(!report.thumbnails.is_empty());
    for t in &report.thumbnails {
        let path = run.curation().join(&t.file);
        let image = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(image.width() <= 96 && image.height() <= 96);
    }
    assert!(
        report
            .thumbnails
            .iter()
            .any(|t| t.role == ThumbnailRole::Best)
    );
}

#[test]
fn curation_from_prototypes_to_a_pretrain_on_the_selection() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), 2, 1e-3);
    let run = dir.path().join("run");
    ok(&train_cmd(&["--quiet"], Some(&config), &run), "s5 train");
    let curation = dir.path().join("curation");
    let prototypes = |extra: &[&str], out: &Path| {
        s5().args(["curate", "prototypes", "--model"])
            .arg(&run)
            .arg("--out")
            .arg(out)
            .args(["--clusters", "2", "--restarts", "2"])
            .args(extra)
            .output()
            .unwrap()
    };
    ok(&prototypes(&[], &curation), "s5 curate prototypes");
    let file = curation.join("curation/prototypes.json");
    let p = s5::run::curation::Prototypes::load(&file).unwrap();
    assert_eq!(
        p.labeled_per_cluster.iter().sum::<u64>(),
        4,
        "the 4 training tiles"
    );
    assert_eq!(p.centroids.len(), 2);
    for c in &p.centroids {
        let norm: f32 = c.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    let sums: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.model.checkpoint.join("checksums.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        sums["files"]["model.bpk"]["sha256"],
        p.model.sha256.as_str()
    );
    let manifest = s5::run::Manifest::load(&s5::run::RunDir::new(&curation)).unwrap();
    assert_eq!(manifest.kind, "curate");

    // The rest of the pipeline on the pool: plan, two shards (one through a Slurm array's
    // variables), status, select; an image broken after planning is skipped and counted.
    let curate = |args: &[&str], envs: &[(&str, &str)]| {
        let mut cmd = s5();
        cmd.arg("curate").args(args).arg("--out").arg(&curation);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let pool = synth().join("pool/pool.ron");
    let truth = synth().join("pool/truth.ron");
    let out = curate(
        &[
            "plan",
            "--spec",
            pool.to_str().unwrap(),
            "--patch-px",
            "64",
            "--truth",
            truth.to_str().unwrap(),
        ],
        &[],
    );
    ok(&out, "s5 curate plan");
    let plan = s5::run::curation::Plan::load(&s5::run::RunDir::new(&curation)).unwrap();
    let broken = dir.path().join("broken.png");
    std::fs::copy(&plan.images[0].path, &broken).unwrap();
    std::fs::write(&plan.images[0].path, b"no longer an image").unwrap();
    let model = run.to_str().unwrap();
    let out = curate(&["score", "--model", model, "--shard", "0/2"], &[]);
    std::fs::copy(&broken, &plan.images[0].path).unwrap();
    ok(&out, "s5 curate score 0/2");
    let out = curate(&["status"], &[]);
    ok(&out, "s5 curate status");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 of 2 shards"));
    // The report while scoring runs: the finished shard only, nothing selected.
    let curation_run = s5::run::RunDir::new(&curation);
    let partial = CurationReport::load(&curation_run).unwrap();
    assert_eq!(partial.stage, ReportStage::Scoring);
    assert_eq!((partial.shards_finished, partial.shards), (1, 2));
    assert!(partial.patches_scored < partial.patches_planned);
    assert!(
        partial
            .clusters
            .iter()
            .all(|c| c.filled == 0 && c.quota_final.is_none())
    );
    assert!(partial.entropy.selected.is_empty());
    assert!(!partial.projection.points.is_empty());
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "2"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_COUNT", "2"),
    ];
    ok(
        &curate(&["score", "--model", model], &slurm),
        "s5 curate score (Slurm)",
    );
    let summary = s5::run::curation::ShardSummary::load(&s5::run::RunDir::new(&curation), 0, 2)
        .unwrap()
        .unwrap();
    assert_eq!(summary.unreadable.len(), 1, "the broken image is listed");
    assert!(summary.records < summary.end_patch - summary.first_patch);
    // The prototypes came before the plan: the floor is calibrated on its own, on the
    // labeled tiles cut as the plan cuts the pool.
    let out = curate(&["select", "--budget", "4"], &[]);
    assert!(!out.status.success(), "selected without a floor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("s5 curate floor"), "{stderr}");
    ok(
        &curate(&["floor", "--model", model], &[]),
        "s5 curate floor",
    );
    let floor = s5::run::curation::SimilarityFloor::load(&curation_run).unwrap();
    let labeled_patches =
        s5::curate::plan::make_plan(&synth().join("urban/urban.ron"), "train", 64, 64)
            .unwrap()
            .patches;
    // Every labeled patch counts but those whose image is alone in its cluster (no
    // prototype without it): 4 tiles in 2 clusters leave at least 2.
    let counted = floor.labeled_patches.iter().sum::<u64>();
    assert!(
        (2..=labeled_patches).contains(&counted),
        "{counted} of {labeled_patches}"
    );
    assert!(floor.leave_one_out);
    assert_eq!((floor.patch_px, floor.per_cluster.len()), (64, 2));
    assert!(floor.per_cluster.iter().all(|f| f.is_finite() && *f <= 1.0));
    // With the floor, every selected patch reaches its cluster's, and the report says so.
    ok(
        &curate(&["select", "--budget", "4"], &[]),
        "s5 curate select (floor)",
    );
    let table = curation.join("curation/selected.tsv");
    for line in std::fs::read_to_string(&table).unwrap().lines().skip(1) {
        let fields: Vec<&str> = line.split('\t').collect();
        let (cluster, similarity): (usize, f32) =
            (fields[8].parse().unwrap(), fields[9].parse().unwrap());
        assert!(similarity >= floor.per_cluster[cluster], "{line}");
    }
    let report = CurationReport::load(&curation_run).unwrap();
    for (c, f) in report.clusters.iter().zip(&floor.per_cluster) {
        assert_eq!(c.similarity_floor, Some(*f));
        assert!(c.below_floor.is_some());
    }
    // Without it, the budget is filled (this small pool has room for it).
    let out = curate(
        &[
            "select",
            "--budget",
            "4",
            "--foreground-min",
            "0.0",
            "--no-floor",
        ],
        &[],
    );
    ok(&out, "s5 curate select");
    let rows = std::fs::read_to_string(&table).unwrap().lines().count();
    assert_eq!(rows, 1 + 4, "a header and the budget");
    check_final_report(&curation_run, 4);

    // The same pool scored in 1 shard, and in 3 shards side by side, one of them killed
    // (SIGKILL) midway and restarted: the same selection, byte for byte.
    let fresh = |name: &str| {
        let other = dir.path().join(name);
        std::fs::create_dir_all(other.join("curation")).unwrap();
        for file in [
            "manifest.json",
            "curation/plan.json",
            "curation/prototypes.json",
            "curation/floor.json",
        ] {
            std::fs::copy(curation.join(file), other.join(file)).unwrap();
        }
        other
    };
    let score = |out: &Path, shard: &str, extra: &[&str]| {
        s5().args([
            "curate", "score", "--model", model, "--shard", shard, "--batch", "4",
        ])
        .args(extra)
        .arg("--out")
        .arg(out)
        .spawn()
        .unwrap()
    };
    let select = |out: &Path| {
        let done = s5()
            .args(["curate", "select", "--budget", "5", "--out"])
            .arg(out)
            .output()
            .unwrap();
        ok(&done, "s5 curate select");
        std::fs::read(out.join("curation/selected.tsv")).unwrap()
    };
    let one = fresh("one-shard");
    assert!(score(&one, "0/1", &[]).wait().unwrap().success());
    let three = fresh("three-shards");
    let crashed = score(&three, "1/3", &["--abort-after-patches", "4"])
        .wait()
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(crashed.signal(), Some(9), "killed by SIGKILL midway");
    }
    assert!(!crashed.success(), "meant to crash");
    // Shard 0 by --shard, shard 1 as rank 1 of 3 under OpenMPI's mpirun scores it (its
    // environment, no --shard), shard 2 as a Kubernetes Indexed Job's pod scores it
    // (`JOB_COMPLETION_INDEX` with --shards); all three side by side.
    let mut side_by_side = vec![score(&three, "0/3", &[])];
    side_by_side.push(
        s5().args(["curate", "score", "--model", model, "--batch", "4"])
            .env("OMPI_COMM_WORLD_RANK", "1")
            .env("OMPI_COMM_WORLD_SIZE", "3")
            .arg("--out")
            .arg(&three)
            .spawn()
            .unwrap(),
    );
    side_by_side.push(
        s5().args([
            "curate", "score", "--model", model, "--shards", "3", "--batch", "4",
        ])
        .env("JOB_COMPLETION_INDEX", "2")
        .arg("--out")
        .arg(&three)
        .spawn()
        .unwrap(),
    );
    for mut child in side_by_side {
        assert!(child.wait().unwrap().success());
    }
    assert!(
        s5::run::curation::ShardSummary::load(&s5::run::RunDir::new(&three), 2, 3)
            .unwrap()
            .is_some(),
        "JOB_COMPLETION_INDEX=2 --shards 3 scored shard 2 of 3"
    );
    assert_eq!(select(&one), select(&three));
    // The reports agree too, whatever the sharding.
    let (one_report, three_report) = (
        CurationReport::load(&s5::run::RunDir::new(&one)).unwrap(),
        CurationReport::load(&s5::run::RunDir::new(&three)).unwrap(),
    );
    // (Means summed in another order differ in the last bits.)
    let rounded = |r: &CurationReport| -> Vec<_> {
        r.clusters
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.pool_mean_entropy = (c.pool_mean_entropy * 1e9).round();
                c.pool_mean_similarity = (c.pool_mean_similarity * 1e9).round();
                c
            })
            .collect()
    };
    assert_eq!(rounded(&one_report), rounded(&three_report));
    assert_eq!(one_report.entropy, three_report.entropy);
    assert_eq!(one_report.projection, three_report.projection);
    assert_eq!(one_report.thumbnails, three_report.thumbnails);
    // A shard scored by another model: select refuses, naming both models' hashes.
    let summary = three.join("curation/shards/shard-00001-of-00003.json");
    let text = std::fs::read_to_string(&summary).unwrap();
    let sha = p.model.sha256.as_str();
    std::fs::write(&summary, text.replace(sha, &"f".repeat(64))).unwrap();
    let out = s5()
        .args(["curate", "select", "--budget", "5", "--out"])
        .arg(&three)
        .output()
        .unwrap();
    assert!(!out.status.success(), "mixed models selected");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(sha) && stderr.contains(&"f".repeat(64)),
        "{stderr}"
    );

    // `s5 curate run` on the same run goes on from where the stages are: plan and
    // prototypes are there, the score and the selection follow.
    let out = s5()
        .args([
            "curate",
            "run",
            "--model",
            model,
            "--spec",
            pool.to_str().unwrap(),
        ])
        .args([
            "--patch-px",
            "64",
            "--clusters",
            "2",
            "--restarts",
            "2",
            "--budget",
            "4",
            "--batch",
            "4",
        ])
        .arg("--out")
        .arg(&curation)
        .output()
        .unwrap();
    ok(&out, "s5 curate run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[1/5] plan: there")
            && stderr.contains("[2/5] prototypes: there")
            && stderr.contains("[3/5] similarity floor: there"),
        "{stderr}"
    );

    // s5 pretrain trains two steps on the selection.
    let pretrain_dir = dir.path().join("pretrain");
    std::fs::create_dir(&pretrain_dir).unwrap();
    let config = pretrain_config(&pretrain_dir, 2);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "split: \"unlabeled-95pct\"),",
        &format!(
            "split: \"unlabeled-95pct\", patches: Some(\"{}\")),",
            table.display()
        ),
    );
    assert!(text.contains("patches: Some"), "{text}");
    std::fs::write(&config, text).unwrap();
    let out = s5()
        .args(["pretrain", "--quiet", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(dir.path().join("s4p"))
        .output()
        .unwrap();
    ok(&out, "s5 pretrain on the selection");

    let out = prototypes(&["--level", "7"], &curation);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("level 7"), "{stderr}");
    let out = prototypes(&[], &run);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a curation run"), "{stderr}");
}

/// A config of a format-1 run spells the FixMatch recipe `semi: Some((...))`: it still loads
/// (so such runs resume), as the FixMatch recipe.
#[test]
fn a_format_1_config_with_semi_loads_as_the_fixmatch_recipe() {
    use s5::train::config::RecipeSetup;
    let dir = tempfile::tempdir().unwrap();
    let config = pretrain_config(dir.path(), 2);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("recipe: FixMatch((", "semi: Some((");
    let old = dir.path().join("old.ron");
    std::fs::write(&old, &text).unwrap();
    let loaded = s5::train::TrainConfig::load(&old).unwrap();
    let new = s5::train::TrainConfig::load(&config).unwrap();
    assert!(matches!(loaded.recipe, RecipeSetup::FixMatch(_)));
    assert_eq!(loaded.recipe, new.recipe);
    assert!(
        !loaded.to_ron().contains("semi"),
        "the old spelling is never written"
    );
}

/// A run that s5 wrote in run format 1 (no checksums, no lock) with real weights, kept as
/// files (`tests/fixtures/run-v1-weights`, [`tiny_config`]'s model after 2 steps; its
/// config names the synthetic data as `@SYNTH@`): this build predicts with it, and resumes
/// it, upgrading the manifest and writing checksums from then on.
#[test]
fn a_format_1_run_with_weights_predicts_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run-v1");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-v1-weights");
    let mut stack = vec![(fixture.clone(), run.clone())];
    while let Some((from, to)) = stack.pop() {
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push((entry.path(), target));
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let config = run.join("config.ron");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("@SYNTH@"), "{text}");
    std::fs::write(
        &config,
        text.replace("@SYNTH@", &synth().display().to_string()),
    )
    .unwrap();
    let runs = s5::run::RunDir::new(&run);
    assert_eq!(s5::run::Manifest::load(&runs).unwrap().format_version, 1);
    let (step, checkpoint) = runs.latest_checkpoint().unwrap().unwrap();
    assert_eq!(step, 2);
    assert!(
        !checkpoint.join("checksums.json").exists(),
        "format 1 has no checksums"
    );
    let image = synth().join("urban/img_dir/val");
    let out = s5()
        .args(["predict", "--mode", "whole", "--model"])
        .arg(&run)
        .arg("--out")
        .arg(dir.path().join("pred"))
        .arg(&image)
        .output()
        .unwrap();
    ok(&out, "s5 predict with a format-1 run");
    // The weights are real: the loaded model is the trained one, not an initialisation.
    let (model, card, _) = s5::train::load_model(&run, &device()).unwrap();
    assert_eq!(card.datasets[0].name, "synth-urban");
    let fresh = s5::model::Segmentor::new(&card.segmentor, &device());
    let (trained, initial) = (weights(&model), weights(&fresh));
    assert!(
        trained.iter().zip(&initial).any(|((_, a), (_, b))| a != b),
        "the fixture's weights are an initialisation"
    );
    let out = train_cmd(&["--quiet", "--resume", "--steps", "3"], None, &run);
    ok(&out, "s5 train --resume of a format-1 run");
    assert_eq!(
        s5::run::Manifest::load(&runs).unwrap().format_version,
        s5::run::FORMAT_VERSION
    );
    let (step, checkpoint) = runs.latest_checkpoint().unwrap().unwrap();
    assert_eq!(step, 3);
    s5::run::checkpoint::verify(&checkpoint).unwrap();
    assert!(checkpoint.join("checksums.json").is_file());
}

/// [`tiny_config`] with the FixMatch recipe on the synthetic pool.
pub(crate) fn pretrain_config(dir: &Path, steps: u64) -> PathBuf {
    let config = tiny_config(dir, steps, 1e-3);
    let urban = synth().join("urban/urban.ron");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            &format!("datasets: [(spec: \"{}\")]", urban.display()),
            &format!(
                "datasets: [(spec: \"{}\", train_split: \"labeled-5pct\")]",
                urban.display()
            ),
        )
        .replace(
            "seed: 7,",
            &format!(
                "seed: 7,\n    recipe: FixMatch((unlabeled: (spec: \"{}\", split: \"unlabeled-95pct\"), \
                 unlabeled_batch: 2, threshold: 0.2, samples: (every_steps: 2, images: 2, keep: 3))),",
                urban.display()
            ),
        );
    std::fs::write(&config, text).unwrap();
    config
}

/// Both loops run data parallel over two devices (two wgpu devices on the one adapter: the
/// multi-GPU code path without a second GPU) and log what one-GPU runs log; asking for more
/// GPUs than exist names the adapters and the fix.
#[test]
fn data_parallel_runs_train_and_pretrain_and_too_many_gpus_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let semi = dir.path().join("semi");
    std::fs::create_dir(&semi).unwrap();
    let supervised = tiny_config(dir.path(), 3, 1e-3);
    let flags = ["--quiet", "--gpus-on-one-adapter", "2"];
    for (command, config) in [
        ("pretrain", pretrain_config(&semi, 3)),
        ("train", supervised),
    ] {
        let run = dir.path().join(command);
        let out = s5()
            .arg(command)
            .args(flags)
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&run)
            .output()
            .unwrap();
        ok(&out, command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("data parallel over 2 GPUs"), "{stderr}");
        let events = s5::run::read_events(&run.join("events.jsonl")).unwrap();
        let train: Vec<_> = events
            .iter()
            .filter(|e| e.kind == EventKind::Train)
            .collect();
        assert_eq!(train.len(), 3);
        for e in &train {
            assert!(
                e.losses["loss"].is_finite() && e.losses["loss"] > 0.0,
                "{e:?}"
            );
            if command == "pretrain" {
                // The code form, (L_s + λ L_u) / 2, from the two shares' sums.
                let (l_s, l_u) = (e.losses["L_s"], e.losses["L_u"]);
                assert!((e.losses["loss"] - (l_s + l_u) / 2.0).abs() < 1e-4, "{e:?}");
                let ratio = e.extra["mask_ratio"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&ratio));
            }
        }
        s5::train::load_model(&run, &device()).expect("a checkpoint of the main device's model");
    }
    let config = tiny_config(dir.path(), 3, 1e-3);
    let out = train_cmd(
        &["--quiet", "--gpus", "64"],
        Some(&config),
        dir.path().join("many"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--gpus 64") && stderr.contains("s5 info"),
        "{stderr}"
    );
}

/// `s5 pretrain` logs the FixMatch numbers and leaves pictures for the viewer while it runs;
/// a reader polling the run directory meanwhile only ever finds whole files.
#[test]
fn pretrain_logs_fixmatch_and_samples_appear_whole_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = pretrain_config(dir.path(), 8);
    let run_dir = dir.path().join("run");
    let mut child = s5()
        .args(["pretrain", "--quiet", "--loss-form", "paper", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&run_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let run = s5::run::RunDir::new(&run_dir);
    let mut seen_while_running = 0;
    let check = |run: &s5::run::RunDir| -> usize {
        s5::run::read_events(&run.events()).expect("events always parse");
        let steps = s5::run::samples::sample_steps(run).unwrap();
        for step in &steps {
            let folder = run.sample_step(*step);
            // A folder may be thinned away between listing and reading: that is fine.
            let Ok(index) = s5::run::samples::SampleIndex::load(&folder) else {
                assert!(
                    !folder.exists(),
                    "{} without a readable index",
                    folder.display()
                );
                continue;
            };
            for entry in &index.entries {
                for file in entry.files.values() {
                    if let Err(e) = image::open(folder.join(file)) {
                        assert!(!folder.exists(), "{file}: {e}");
                    }
                }
            }
        }
        steps.len()
    };
    while child.try_wait().unwrap().is_none() {
        if check(&run) > 0 {
            seen_while_running += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        seen_while_running > 0,
        "no samples appeared while the run was going"
    );
    check(&run);
    assert_eq!(s5::run::Manifest::load(&run).unwrap().kind, "pretrain");
    let events = s5::run::read_events(&run.events()).unwrap();
    let train: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Train)
        .collect();
    assert_eq!(train.len(), 8);
    let mut confident_steps = 0;
    for e in &train {
        for key in ["L_s", "L_u", "loss"] {
            assert!(e.losses[key].is_finite(), "{key} in {e:?}");
        }
        // The paper's form: L_s + λ L_u with λ = 1.
        assert!((e.losses["loss"] - e.losses["L_s"] - e.losses["L_u"]).abs() < 1e-4);
        for key in ["mask_ratio", "pseudo_label_acc_all"] {
            let v = e.extra[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
        // The confident accuracy is defined only where some pixel passed τ (absent, never 0,
        // where none did: `fixmatch.rs` checks the rule).
        if let Some(v) = e.extra.get("pseudo_label_acc_confident") {
            let v = v.as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "pseudo_label_acc_confident = {v}");
            confident_steps += 1;
        }
        assert!(e.images_per_s.unwrap() > 0.0);
    }
    assert!(
        confident_steps > 0,
        "τ 0.2 of 6 classes: some pixels pass it"
    );
    // Thinned to at most `keep`, the newest kept; its pictures are all there.
    let steps = s5::run::samples::sample_steps(&run).unwrap();
    assert!(steps.len() <= 3 && steps.contains(&8), "{steps:?}");
    let index = s5::run::samples::SampleIndex::load(&run.sample_step(8)).unwrap();
    let unlabeled: Vec<_> = index
        .entries
        .iter()
        .filter(|e| e.kind == "unlabeled")
        .collect();
    assert_eq!(unlabeled.len(), 2);
    for entry in unlabeled {
        let roles: Vec<&str> = entry.files.keys().map(|role| role.as_str()).collect();
        assert_eq!(
            roles,
            [
                "confidence",
                "mask",
                "pseudo_label",
                "strong",
                "student",
                "truth",
                "valid",
                "weak"
            ]
        );
        for key in ["mask_ratio", "mean_entropy", "tau"] {
            assert!(entry.stats.contains_key(key), "{key}");
        }
        // The stored confidence gives the trainer's τ-mask back, pixel for pixel.
        let step_dir = run.sample_step(8);
        let file = |role: &str| {
            let role = s5::run::SampleRole::try_from(role.to_string()).unwrap();
            step_dir.join(&entry.files[&role])
        };
        let confidence = image::open(file("confidence")).unwrap().into_luma16();
        let valid = image::open(file("valid")).unwrap().into_luma8();
        let mask = image::open(file("mask")).unwrap().into_luma8();
        let tau = entry.stats["tau"] as f32;
        let mut confident = 0usize;
        for ((c, v), m) in confidence.pixels().zip(valid.pixels()).zip(mask.pixels()) {
            let recomputed = s5::run::samples::passes(c[0], tau) && v[0] > 127;
            assert_eq!(recomputed, m[0] > 127);
            confident += usize::from(recomputed);
        }
        let valid_px = valid.pixels().filter(|v| v[0] > 127).count();
        let ratio = confident as f64 / valid_px.max(1) as f64;
        assert!((ratio - entry.stats["mask_ratio"]).abs() < 1e-12);
    }
    assert_eq!(index.datasets.len(), 1, "the legend of the dataset");
    assert!(!index.datasets[0].classes.is_empty());
    assert!(
        index.entries.iter().any(|e| e.kind == "val"),
        "validation shares the step folder"
    );
}

/// Ctrl-C (SIGINT) finishes the step, checkpoints it and exits cleanly; `--resume` goes on.
#[cfg(unix)]
#[test]
fn ctrl_c_checkpoints_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), 1000, 1e-3);
    let run_dir = dir.path().join("run");
    let mut child = s5()
        .args(["train", "--quiet", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&run_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let events = run_dir.join("events.jsonl");
    let started = std::time::Instant::now();
    while s5::run::read_events(&events).unwrap().len() < 3 {
        assert!(started.elapsed().as_secs() < 300, "training never started");
        assert!(child.try_wait().unwrap().is_none(), "s5 train ended early");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("s5 train --resume"), "{stdout}");
    let events = s5::run::read_events(&events).unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.kind, EventKind::Stop);
    let (step, _) = s5::run::RunDir::new(&run_dir)
        .latest_checkpoint()
        .unwrap()
        .unwrap();
    assert_eq!(step, last.step, "the stop step is checkpointed");
    assert!(step < 1000);
}

/// A [`tiny_config`] text with the rural domain added as the second dataset, with `fields`
/// (e.g. `start_step: 3`) in its entry.
pub(crate) fn with_rural_second(text: &str, fields: &str) -> String {
    let rural = synth().join("rural/rural.ron");
    let out = text.replace(
        "\")],",
        &format!("\"), (spec: \"{}\", {fields})],", rural.display()),
    );
    assert!(out.contains(fields), "{out}");
    out
}

/// A dense run of [`tiny_config`] trained 2 steps in `dir/dense` (what fine-tuning starts
/// from).
fn dense_run(dir: &Path) -> PathBuf {
    let run = dir.join("dense");
    ok(
        &train_cmd(&["--quiet"], Some(&tiny_config(dir, 2, 1e-3)), &run),
        "dense s5 train",
    );
    run
}

/// `s5 finetune`: MoeMdf from a dense run expands its FFNs into experts (a `finetune` run),
/// Sdf trains the one dataset it names; `s5 finetune export` writes one dataset of the MoE
/// model as a dense model that computes what the MoE model computes for it, and `s5 eval`
/// takes it.
#[test]
fn moe_from_a_dense_run_then_a_dense_export_per_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let dense_run = dense_run(dir.path());
    let config = tiny_config(dir.path(), 2, 1e-3);
    let rural = synth().join("rural/rural.ron");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "datasets: [(spec: ",
            &format!("datasets: [(spec: \"{}\"), (spec: ", rural.display()),
        )
        .replace("seed: 7,", "seed: 7, recipe: Finetune((mode: MoeMdf(8))),");
    assert!(text.contains("MoeMdf"), "{text}");
    std::fs::write(&config, text.clone()).unwrap();
    let finetune = |config: &Path, out: &Path| {
        s5().args(["finetune", "--quiet", "--init"])
            .arg(&dense_run)
            .arg("--config")
            .arg(config)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let moe_run = dir.path().join("moe");
    ok(
        &finetune(&config, &moe_run),
        "s5 finetune MoeMdf from the dense run",
    );
    let manifest = s5::run::Manifest::load(&s5::run::RunDir::new(&moe_run)).unwrap();
    assert_eq!(manifest.kind, "finetune");
    // `s5 train` refuses a fine-tuning config and names the command.
    let out = train_cmd(&["--quiet"], Some(&config), dir.path().join("nope"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("s5 finetune"));
    // Sdf trains the one dataset it names, dense.
    let sdf_config = dir.path().join("sdf.ron");
    std::fs::write(
        &sdf_config,
        text.replace("MoeMdf(8)", "Sdf(\"synth-rural\")"),
    )
    .unwrap();
    let sdf_run = dir.path().join("sdf");
    ok(&finetune(&sdf_config, &sdf_run), "s5 finetune Sdf");
    let (_, sdf_card, _) = s5::train::load_model(&sdf_run, &device()).unwrap();
    assert_eq!(sdf_card.datasets.len(), 1);
    assert_eq!(sdf_card.datasets[0].name, "synth-rural");
    assert_eq!(sdf_card.segmentor.backbone.ffn, s5::model::FfnKind::Dense);
    std::fs::write(&sdf_config, text.replace("MoeMdf(8)", "Sdf(\"nowhere\")")).unwrap();
    let out = finetune(&sdf_config, &dir.path().join("sdf-bad"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
    let export_cmd = |dataset: &str, out: &Path| {
        s5().args(["finetune", "export", "--dataset", dataset, "--model"])
            .arg(&moe_run)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let export = dir.path().join("rural-dense");
    let out = export_cmd("synth-rural", &export);
    ok(&out, "s5 finetune export");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("dense model of"), "{stdout}");
    let device = device();
    let (moe, moe_card, _) = s5::train::load_model(&moe_run, &device).unwrap();
    let (dense, dense_card, _) = s5::train::load_model(&export, &device).unwrap();
    assert_eq!(dense_card.datasets.len(), 1);
    assert_eq!(dense_card.datasets[0].name, "synth-rural");
    assert_eq!(dense_card.segmentor.backbone.ffn, s5::model::FfnKind::Dense);
    let rural_index = moe_card.dataset_index(Some("synth-rural")).unwrap();
    let x = Rng::fresh("export e2e").tensor([1, 3, 64, 64], 1.0, &device);
    let (a, b) = (
        to_vec(dense.forward(x.clone(), 0)),
        to_vec(moe.forward(x, rural_index)),
    );
    let worst = max_abs_diff("export vs FFN-MoE logits", &a, &b);
    assert!(worst <= 1e-4, "the export's logits differ by {worst}");
    let out = s5()
        .args(["eval", "--mode", "whole", "--model"])
        .arg(&export)
        .current_dir(dir.path())
        .output()
        .unwrap();
    ok(&out, "s5 eval of the export");
    // An export into a run folder that exists is refused; a dataset the model lacks, too.
    let again = export_cmd("synth-rural", &export);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("holds a run already"));
    let missing = export_cmd("nowhere", &dir.path().join("x"));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nowhere"));
}

/// A dataset gated by its `start_step` adds no gradient before that step, and the other
/// datasets' gradients are exactly what they are without it (same model, same batches).
#[test]
fn a_gated_dataset_adds_no_gradient_and_leaves_the_others_alone() {
    use s5::train::recipe::Recipe;
    use s5::train::recipe::supervised::Supervised;
    let dir = tempfile::tempdir().unwrap();
    // No dropout or drop path: two steps must compute the same thing.
    let deterministic = |text: String| {
        text.replace(
            "head_dropout: 0.1, drop_path: 0.1,",
            "head_dropout: 0.0, drop_path: 0.0, moe_expert_dim: Some(8),",
        )
    };
    let config = tiny_config(dir.path(), 10, 1e-3);
    let alone_text = deterministic(std::fs::read_to_string(&config).unwrap());
    assert!(alone_text.contains("moe_expert_dim"), "{alone_text}");
    // Urban is dataset 0 in both configs (its loader draws the same batches); the gated
    // rural dataset comes second.
    let gated_text = with_rural_second(&alone_text, "start_step: 5");
    let load = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        s5::train::TrainConfig::load(&path).unwrap()
    };
    let gated = load("gated.ron", &gated_text);
    let alone = load("alone.ron", &alone_text);
    // The same two datasets with the gate open from the start: what training on the rural
    // batch changes, so the bound below is shown to catch it.
    let open = load("open.ron", &with_rural_second(&alone_text, "start_step: 0"));
    let device = device().autodiff();
    let datasets = s5::train::batch::load_datasets(&gated).unwrap();
    let cfg = gated
        .model
        .segmentor(datasets.iter().map(|d| d.spec.num_classes()).collect())
        .unwrap();
    let model = s5::model::Segmentor::new(&cfg, &device);
    let step = |config: &s5::train::TrainConfig| {
        let datasets = s5::train::batch::load_datasets(config).unwrap();
        Supervised::new(config, &datasets, 0)
            .step(
                &model,
                s5::train::parallel::Replicas::local(std::slice::from_ref(&device)),
                1.0,
            )
            .unwrap()
    };
    // A first step tunes every kernel of these shapes (burn's autotune), so the steps
    // compared below all run the same kernels.
    step(&alone);
    let a = step(&gated);
    let c = step(&alone);
    // The same ungated step again: the noise floor of this adapter's kernels (reductions
    // that sum in an order set by the scheduler differ between two identical steps in the
    // last bits; deterministic kernels give 0, and then the comparison is exact to 1e-4).
    let again = step(&alone);
    let trained = step(&open);
    assert_eq!(a.stats["gate/synth-rural"], 0.0);
    assert_eq!(a.stats["gate/synth-urban"], 1.0);
    assert!(!a.losses.contains_key("loss/synth-rural"), "{:?}", a.losses);
    let (la, lc) = (a.losses["loss"], c.losses["loss"]);
    assert!((la - lc).abs() <= 1e-6 * lc.abs(), "{la} vs {lc}");
    /// Every parameter's gradient in the four steps, by path.
    struct Collect<'a> {
        steps: [&'a burn::optim::GradientsParams; 4],
        path: Vec<String>,
        grads: Vec<(String, [Option<Vec<f32>>; 4])>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let grads = self.steps.map(|g| g.get::<D>(param.id).map(to_vec));
            self.grads.push((self.path.join("."), grads));
        }
    }
    let mut collect = Collect {
        steps: [&a.grads, &c.grads, &again.grads, &trained.grads],
        path: Vec::new(),
        grads: Vec::new(),
    };
    model.visit(&mut collect);
    let (mut compared, mut backbone, mut caught) = (0, 0, 0);
    for (path, [ga, gc, gagain, gtrained]) in &collect.grads {
        if path.starts_with("decoders.1") {
            assert!(ga.is_none(), "{path}: the gated decoder got a gradient");
            continue;
        }
        let (ga, gc, gagain) = match (ga, gc, gagain) {
            (Some(ga), Some(gc), Some(gagain)) => (ga, gc, gagain),
            (None, None, None) => continue,
            (ga, gc, _) => panic!(
                "{path}: a gradient in one run only ({} / {})",
                ga.is_some(),
                gc.is_some()
            ),
        };
        let scale = crate::common::max_abs(path, gc).max(1e-12);
        let noise = max_abs_diff(path, gagain, gc);
        // Gradients that are zero but for rounding, as of a bias before BatchNorm, get an
        // absolute floor; a noisy adapter gets ten times the noise it showed.
        let bound = (1e-4 * scale + 1e-7).max(10.0 * noise);
        let worst = max_abs_diff(path, ga, gc);
        assert!(
            worst <= bound,
            "{path}: differs by {worst} (of {scale}; bound {bound}, noise floor {noise})"
        );
        compared += 1;
        // The backbone is shared: the rural loss reaches every one of its parameters.
        if path.starts_with("backbone") {
            backbone += 1;
            let gt = gtrained
                .as_ref()
                .expect("the open step trains the backbone");
            caught += usize::from(max_abs_diff(path, gt, gc) > bound);
        }
    }
    assert!(compared > 20, "{compared} gradients compared");
    assert!(
        backbone > 10 && caught * 10 >= backbone * 9,
        "training on the rural batch moved only {caught} of {backbone} backbone gradients past \
         the bound: the comparison could not see a gated dataset that trained"
    );
}

/// An `s5 finetune` MoE-MDF run (two datasets with experts initialised from a dense run, the
/// second gated until step 3, with its own crop size and validation mode, the step's crops
/// shared by `Ratios` sampling) killed after step 3 and resumed ends with the weights of an
/// uninterrupted run: every dataset's stream, the sampler and the gate resume where they were.
#[test]
fn a_killed_moe_mdf_finetune_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let dense_run = dense_run(dir.path());
    let config = tiny_config(dir.path(), 6, 1e-3);
    let text = with_rural_second(
        &std::fs::read_to_string(&config).unwrap(),
        "start_step: 3, crop_px: 96, val_mode: Some(Whole(flip: false))",
    )
    .replace(
        "seed: 7,",
        "seed: 7, sampling: Ratios([1.0, 3.0]), recipe: Finetune((mode: MoeMdf(8))),",
    );
    assert!(
        text.contains("Ratios") && text.contains("crop_px: 96"),
        "{text}"
    );
    std::fs::write(&config, text).unwrap();
    let finetune = |flags: &[&str], config: Option<&Path>, out: &Path| {
        let mut cmd = s5();
        cmd.arg("finetune").args(flags);
        if let Some(config) = config {
            cmd.arg("--init")
                .arg(&dense_run)
                .arg("--config")
                .arg(config);
        }
        cmd.arg("--out").arg(out).output().unwrap()
    };
    let whole = dir.path().join("whole");
    ok(
        &finetune(&["--quiet"], Some(&config), &whole),
        "uninterrupted MoE-MDF run",
    );
    let crashed = dir.path().join("crashed");
    let out = finetune(
        &["--quiet", "--abort-after-step", "3"],
        Some(&config),
        &crashed,
    );
    assert!(!out.status.success(), "the run was meant to crash");
    ok(
        &finetune(&["--quiet", "--resume"], None, &crashed),
        "resumed MoE-MDF run",
    );
    let events = s5::run::read_events(&crashed.join("events.jsonl")).unwrap();
    let train: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Train)
        .collect();
    let gates: Vec<f64> = train
        .iter()
        .map(|e| e.extra["gate/synth-rural"].as_f64().unwrap())
        .collect();
    // Steps 1-3, then 3 again (the checkpoint was of step 2) and 4-6; the loss counts from
    // the fourth step (index 3).
    assert_eq!(gates, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    // Passes over each split: 6 steps of 4 crops (2 + 2 batches) shared by the ratios, over
    // 4 training tiles per domain; rural (ratio 3) takes the larger share here.
    let last = train.last().unwrap();
    let passes: Vec<f64> = ["synth-urban", "synth-rural"]
        .iter()
        .map(|name| last.extra[&format!("passes/{name}")].as_f64().unwrap())
        .collect();
    assert!((passes[0] + passes[1] - 6.0).abs() < 1e-9, "{passes:?}");
    assert!(passes[1] > passes[0], "{passes:?}");
    // Both datasets validated, rural in its own mode.
    let val = events.iter().rfind(|e| e.kind == EventKind::Val).unwrap();
    assert!(
        val.metrics.contains_key("synth-rural/mIoU"),
        "{:?}",
        val.metrics
    );
    let (diff, at) = max_weight_diff(&whole, &crashed);
    assert!(
        diff <= 1e-6,
        "resumed weights differ by {diff} (most in {at})"
    );
}

/// Every validation logs the mean of each dataset's chosen metric (`metric: MF1` for one
/// here); the model where it was highest is `checkpoints/best`, which `s5 eval` takes.
#[test]
fn the_best_checkpoint_follows_the_mean_of_each_datasets_metric() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), 4, 1e-3);
    // A checkpoint every step and none kept but the newest: every older step folder is
    // pruned, the best one's too.
    let text = with_rural_second(&std::fs::read_to_string(&config).unwrap(), "metric: MF1")
        .replace("val: (every_steps: 0,", "val: (every_steps: 1,")
        .replace("checkpoint_every: 2,", "checkpoint_every: 1,")
        .replace("keep_checkpoints: 5,", "keep_checkpoints: 0,");
    assert!(
        text.contains("every_steps: 1,")
            && text.contains("MF1")
            && text.contains("keep_checkpoints: 0,"),
        "{text}"
    );
    std::fs::write(&config, text).unwrap();
    let run = dir.path().join("run");
    ok(&train_cmd(&["--quiet"], Some(&config), &run), "s5 train");
    let events = s5::run::read_events(&run.join("events.jsonl")).unwrap();
    let vals: Vec<_> = events.iter().filter(|e| e.kind == EventKind::Val).collect();
    assert_eq!(vals.len(), 4);
    let mut best = (f64::NEG_INFINITY, 0);
    for e in &vals {
        let mean = (e.metrics["synth-urban/mIoU"] + e.metrics["synth-rural/mF1"]) / 2.0;
        assert!(
            (e.metrics["val_mean"] - mean).abs() < 1e-9,
            "{:?}",
            e.metrics
        );
        if mean > best.0 {
            best = (mean, e.step);
        }
    }
    let run_dir = s5::run::RunDir::new(&run);
    let score = s5::run::checkpoint::read_best(&run_dir).unwrap().unwrap();
    assert_eq!(score.step, best.1);
    assert!((score.score - best.0).abs() < 1e-9);
    let names: Vec<&str> = score.metrics.iter().map(|k| k.as_str()).collect();
    assert_eq!(names, ["synth-urban/mIoU", "synth-rural/mF1"]);
    let best_dir = run_dir.best_checkpoint();
    s5::run::checkpoint::verify(&best_dir).unwrap();
    assert_eq!(
        s5::run::checkpoint::read_state(&best_dir).unwrap().step,
        best.1
    );
    // Pruning keeps it (it is no step folder), and `s5 eval` takes it.
    assert_eq!(
        s5::run::checkpoint::checkpoint_steps(&run_dir).unwrap(),
        [4],
        "the older step folders were pruned"
    );
    let out = s5()
        .args([
            "eval",
            "--mode",
            "whole",
            "--dataset",
            "synth-rural",
            "--model",
        ])
        .arg(&best_dir)
        .current_dir(dir.path())
        .output()
        .unwrap();
    ok(&out, "s5 eval of the best checkpoint");
}

/// The training configs shipped in `assets/configs/` load and pass the config checks.
#[test]
fn the_shipped_training_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/configs");
    for name in [
        "train-synth.ron",
        "train-synth-5pct.ron",
        "s4p-synth.ron",
        "moe-mdf-synth.ron",
        "predict-memory.ron",
    ] {
        let config =
            s5::train::TrainConfig::load(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name == "moe-mdf-synth.ron" {
            assert_eq!(config.datasets.len(), 3);
            assert!(matches!(
                config.recipe,
                s5::train::config::RecipeSetup::Finetune(ref f)
                    if f.mode == s5::train::config::FinetuneMode::MoeMdf(32)
            ));
        }
    }
}

/// Activation checkpointing recomputes activations in the backward pass: FixMatch runs with
/// it, balanced (spelt `true`, as run format 1 did) and per block (dropout and drop path on),
/// log the same losses and gradient norms as one without, and every step reports the GPU's
/// memory. (Per-parameter gradients: `memory.rs`.)
#[test]
fn a_checkpointed_run_logs_the_same_losses_and_its_memory() {
    let dir = tempfile::tempdir().unwrap();
    let plain = pretrain_config(dir.path(), 3);
    let text = std::fs::read_to_string(&plain).unwrap();
    let with = |name: &str, mode: &str| {
        let path = dir.path().join(format!("{name}.ron"));
        std::fs::write(
            &path,
            text.replace(
                "seed: 7,",
                &format!("seed: 7,\n    activation_checkpointing: {mode},"),
            ),
        )
        .unwrap();
        path
    };
    let checkpointed = with("checkpointed", "true");
    let blocks = with("blocks", "Blocks");
    let mut logs = Vec::new();
    for (name, config) in [
        ("plain", &plain),
        ("checkpointed", &checkpointed),
        ("blocks", &blocks),
    ] {
        let out = dir.path().join(name);
        ok(
            &s5()
                .args(["pretrain", "--quiet", "--config"])
                .arg(config)
                .arg("--out")
                .arg(&out)
                .output()
                .unwrap(),
            name,
        );
        let run = s5::run::RunDir::new(&out);
        let events = s5::run::read_events(&run.events()).unwrap();
        let train: Vec<_> = events
            .into_iter()
            .filter(|e| e.kind == EventKind::Train)
            .collect();
        assert_eq!(train.len(), 3, "{name}");
        for e in &train {
            let bytes = e
                .extra_f64(&s5::run::keys::DEVICE_MEMORY_BYTES)
                .unwrap_or(0.0);
            assert!(
                bytes > 0.0,
                "{name} step {}: no device memory logged",
                e.step
            );
        }
        logs.push(train);
    }
    // A resumed session may switch checkpointing on (and nothing else).
    let plain_run = dir.path().join("plain");
    ok(
        &s5()
            .args([
                "pretrain", "--quiet", "--resume", "--steps", "4", "--config",
            ])
            .arg(&checkpointed)
            .arg("--out")
            .arg(&plain_run)
            .output()
            .unwrap(),
        "resume with checkpointing",
    );
    let resumed = std::fs::read_to_string(plain_run.join("config.ron")).unwrap();
    assert!(
        resumed.contains("activation_checkpointing: Balanced"),
        "{resumed}"
    );
    // Rounding may differ once the weights have moved (the recomputed activations are summed
    // in another order), so later steps get a rounding-sized margin.
    for (x, y) in logs[0]
        .iter()
        .zip(&logs[1])
        .chain(logs[0].iter().zip(&logs[2]))
    {
        let tolerance = if x.step == 1 { 1e-6 } else { 1e-4 };
        for (key, v) in &x.losses {
            let w = y.losses[key];
            assert!(
                (v - w).abs() <= tolerance * v.abs().max(1e-3),
                "step {} {key}: {v} vs {w}",
                x.step
            );
        }
        let (g, h) = (
            x.extra_f64(&s5::run::keys::GRAD_NORM).unwrap(),
            y.extra_f64(&s5::run::keys::GRAD_NORM).unwrap(),
        );
        assert!(
            (g - h).abs() <= tolerance * g.abs().max(1e-6),
            "step {} gradient norm: {g} vs {h}",
            x.step
        );
    }
}
