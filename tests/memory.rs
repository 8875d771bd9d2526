//! Training memory: activation checkpointing (balanced and per block) changes memory, not
//! gradients; the dry-run memory plan of `s5 bench memory` matches a real step's.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Int, Tensor, TensorData};
use s5::model::{FfnKind, Segmentor};
use s5::train::config::Checkpointing;
use s5::train::loss::cross_entropy_over;
use s5::train::trainer::autodiff_device;

use crate::common::{Rng, assert_grads_close, children, device, s5, small_segmentor, to_vec};

/// Every float parameter's value (or gradient, given `grads`), in visiting order.
pub(crate) fn collect(model: &Segmentor, grads: Option<&GradientsParams>) -> Vec<Vec<f32>> {
    struct Collect<'a>(Option<&'a GradientsParams>, Vec<Vec<f32>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            match self.0 {
                Some(grads) => {
                    if let Some(g) = grads.get::<D>(param.id) {
                        self.1.push(to_vec(g));
                    }
                }
                None => self.1.push(to_vec(param.val())),
            }
        }
    }
    let mut c = Collect(grads, Vec::new());
    model.visit(&mut c);
    c.1
}

/// The crop side of [`step_grads`].
const STEP_PX: usize = 48;

/// The gradients of one training step of `cfg` with the weights in `weights` (a checkpoint
/// file: the same weights every call, whatever other tests draw from the device RNG) on a
/// batch of two images, one per dataset of `datasets` (FFN-MoE routes each to its expert),
/// computed with `checkpointing`, in f32 or mixed precision.
fn step_grads(
    cfg: &s5::model::SegmentorConfig,
    weights: &std::path::Path,
    (images, labels): &(Vec<f32>, Vec<i32>),
    datasets: [usize; 2],
    checkpointing: Checkpointing,
    mixed: bool,
) -> Vec<Vec<f32>> {
    let (s, b) = (STEP_PX, 2);
    let train = autodiff_device(&device(), checkpointing);
    let model = s5::model::checkpoint::load(Segmentor::new(cfg, &train), weights)
        .expect("the saved weights load")
        .with_mixed_precision(mixed)
        .with_block_recomputation(checkpointing.blocks());
    let logits = model.forward_mixed(
        Tensor::from_data(TensorData::new(images.clone(), [b, 3, s, s]), &train),
        &datasets,
    );
    let loss = cross_entropy_over(
        Tensor::cat(logits, 0),
        Tensor::from_data(TensorData::new(labels.clone(), [b, s, s]), &train),
        Tensor::ones([b, s, s], &train),
        (b * s * s) as f64,
    );
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    collect(&model, Some(&grads))
}

/// Whether this adapter computes in f16: the precisions to test.
fn precisions() -> &'static [bool] {
    if crate::common::f16_adapter() {
        &[false, true]
    } else {
        &[false]
    }
}

/// Balanced checkpointing and per-block recomputation give the gradients of a plain step,
/// per parameter: dense and FFN-MoE backbones, in f32 and, where the adapter has
/// `shader-f16`, in mixed precision. (Drop path in a recomputed block: the next test; on a
/// whole FixMatch run: `train.rs`.)
#[test]
fn activation_checkpointing_gives_the_same_gradients() {
    let k = 4;
    let dense = small_segmentor(3, k);
    let mut moe = dense.clone();
    moe.backbone.ffn = FfnKind::Moe {
        datasets: 2,
        expert_dim: 8,
    };
    moe.classes = vec![k, k];
    let (s, b) = (STEP_PX, 2);
    let mut rng = Rng::fresh("checkpointing");
    let batch = (
        (0..b * 3 * s * s).map(|_| rng.normal(1.0)).collect(),
        (0..b * s * s).map(|_| rng.below(k) as i32).collect(),
    );
    let dir = tempfile::tempdir().unwrap();
    for (name, cfg, datasets) in [("dense", &dense, [0, 0]), ("FFN-MoE", &moe, [1, 0])] {
        let weights = dir.path().join(format!("{name}.bpk"));
        s5::model::checkpoint::save(&Segmentor::new(cfg, &device()), &weights).unwrap();
        for &mixed in precisions() {
            let plain = step_grads(cfg, &weights, &batch, datasets, Checkpointing::Off, mixed);
            for mode in [Checkpointing::Balanced, Checkpointing::Blocks] {
                let grads = step_grads(cfg, &weights, &batch, datasets, mode, mixed);
                assert_grads_close(
                    &format!("{name}, mixed {mixed}, {mode:?}"),
                    &grads,
                    &plain,
                    1e-5,
                );
            }
        }
    }
}

/// A block recomputed in the backward pass applies the drop-path masks its forward pass
/// applied: its output and the gradients of its input and parameters equal the plain
/// block's, with masks that drop one sample's attention branch and the other's FFN branch
/// (dense and FFN-MoE, f32 and mixed precision).
#[test]
fn a_recomputed_block_drops_what_its_forward_pass_dropped() {
    let train = autodiff_device(&device(), Checkpointing::Off);
    let mut rng = Rng::fresh("recomputed block");
    let (b, n) = (2, 17);
    for ffn in [
        FfnKind::Dense,
        FfnKind::Moe {
            datasets: 2,
            expert_dim: 8,
        },
    ] {
        let mut cfg = small_segmentor(1, 3).backbone;
        cfg.ffn = ffn;
        cfg.drop_path = 0.5;
        let block = s5::model::vit::Vit::new(&cfg, &train).blocks.remove(0);
        let d = cfg.dim;
        let x: Vec<f32> = (0..b * n * d).map(|_| rng.normal(1.0)).collect();
        let ids: Vec<i32> = (0..b * n).map(|i| (i / n) as i32).collect();
        let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), &train);
        for &mixed in precisions() {
            let dtype = if mixed { DType::F16 } else { DType::F32 };
            let run = |recomputed: bool| {
                let input = Tensor::<3>::from_data(TensorData::new(x.clone(), [b, n, d]), &train)
                    .require_grad();
                let mask = |v: [f32; 2]| Some(Tensor::<1>::from_floats(v, &train).cast(dtype));
                let masks = [mask([0.0, 1.0]), mask([1.0, 0.0])];
                let out = if recomputed {
                    s5::model::recompute::block(0, &block, input.clone().cast(dtype), &ids, masks)
                } else {
                    block.forward_masked(input.clone().cast(dtype), &ids, &masks)
                }
                .cast(DType::F32);
                let grads = (out.clone() * out.clone()).mean().backward();
                let mut all = vec![to_vec(out), to_vec(input.grad(&grads).expect("dx"))];
                struct Grads<'g>(&'g burn::tensor::Gradients, Vec<Vec<f32>>);
                impl ModuleVisitor for Grads<'_> {
                    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                        self.1
                            .push(to_vec(param.val().grad(self.0).expect("a gradient")));
                    }
                }
                let mut params = Grads(&grads, Vec::new());
                block.visit(&mut params);
                all.extend(params.1);
                all
            };
            let (plain, recomputed) = (run(false), run(true));
            assert_grads_close(
                &format!("{ffn:?}, mixed {mixed}: output, input and parameter gradients"),
                &recomputed,
                &plain,
                1e-5,
            );
        }
    }
}

/// One probe of `s5 bench memory`, measured in a child process as the benchmark does.
fn measure(
    model: &str,
    batch: usize,
    crop_px: usize,
    checkpointing: Checkpointing,
    dry_run: bool,
) -> u64 {
    measure_in(model, batch, crop_px, checkpointing, dry_run, false)
}

/// [`measure`] in f32 or (`mixed`) mixed precision.
fn measure_in(
    model: &str,
    batch: usize,
    crop_px: usize,
    checkpointing: Checkpointing,
    dry_run: bool,
    mixed: bool,
) -> u64 {
    let probe = s5::bench::memory::MemoryProbe {
        model: model.into(),
        batch,
        crop_px,
        checkpointing,
        dry_run,
        mixed,
    };
    let run = children().step_memory(&probe).expect("the step's memory");
    assert_eq!(run.probe, probe, "the child measured the probe it was sent");
    run.peak_bytes
}

#[test]
fn the_dry_run_memory_plan_matches_a_real_step_and_checkpointing_lowers_it() {
    // Real and planned: the same allocations, so (nearly) the same reserved bytes.
    let real = measure("vit-t/4", 2, 64, Checkpointing::Off, false) as f64;
    let planned = measure("vit-t/4", 2, 64, Checkpointing::Off, true) as f64;
    assert!(
        (planned - real).abs() <= 0.05 * real,
        "dry run {planned} vs real {real} bytes"
    );
    // Where activations dominate, checkpointing keeps fewer of them, and recomputing whole
    // blocks fewer still.
    let plain = measure("vit-t/4", 4, 256, Checkpointing::Off, true);
    let balanced = measure("vit-t/4", 4, 256, Checkpointing::Balanced, true);
    let blocks = measure("vit-t/4", 4, 256, Checkpointing::Blocks, true);
    assert!(
        blocks < balanced && balanced < plain,
        "per block {blocks}, balanced {balanced}, plain {plain} bytes"
    );
}

/// Mixed precision keeps at most 0.6 of f32's activation memory per image (dry-run plans,
/// the difference between batches of 4 and 1 images, so that weights, AdamW moments and the
/// allocator's first pages cancel out). Both batches keep the decoder's BatchNorm channels
/// within `LONG_CHANNEL` values, where f32 takes burn's BatchNorm (above it, s5's keeps
/// less). Measured: 0.43 here, 0.32 for ViT-B at 512 px.
#[test]
fn mixed_precision_keeps_at_most_six_tenths_of_the_activations() {
    if !crate::common::f16_adapter() {
        return;
    }
    let (crop_px, batches) = (256, [1usize, 4]);
    assert!(batches[1] * (crop_px / 4) * (crop_px / 4) <= s5::kernels::LONG_CHANNEL);
    let per_image = |mixed: bool| {
        let plan =
            |batch| measure_in("vit-t/4", batch, crop_px, Checkpointing::Off, true, mixed) as f64;
        let (small, large) = (plan(batches[0]), plan(batches[1]));
        assert!(
            large > small,
            "a larger batch plans more ({large} vs {small} bytes)"
        );
        (large - small) / (batches[1] - batches[0]) as f64
    };
    let (f32_bytes, mixed_bytes) = (per_image(false), per_image(true));
    let ratio = mixed_bytes / f32_bytes;
    eprintln!("mixed precision keeps {ratio:.2} of f32's activation bytes per image");
    assert!(
        ratio <= 0.6,
        "mixed precision plans {mixed_bytes} bytes per image against f32's {f32_bytes} ({ratio:.2})"
    );
}

/// `s5 bench all --memory-gib` chooses the FixMatch batch from dry-run plans: a plan grows
/// with the batch, and the choice is the largest batch within 90 % of the memory.
#[test]
fn the_fixmatch_batch_is_chosen_to_fit_the_memory() {
    let plan = |batch: usize| {
        children()
            .plan_fixmatch("vit-t", 128, batch)
            .expect("a memory plan")
            .expect("lavapipe and real GPUs keep allocator statistics")
    };
    let (one, two) = (plan(1), plan(2));
    assert!(
        one > 0 && two > one,
        "batch 1 plans {one} bytes, batch 2 {two}"
    );
    let choose = |planned: &[(usize, Option<u64>)], bytes| {
        s5::bench::fixmatch::choose_batch(planned, bytes).map_err(|e| e.to_string())
    };
    let planned = [(1, Some(one)), (2, Some(two))];
    assert_eq!(choose(&planned, two * 2), Ok(2));
    assert_eq!(choose(&planned, (two as f64 / 0.9) as u64 + 1), Ok(2));
    assert_eq!(choose(&planned, two), Ok(1), "10 % stays free");
    let too_small = choose(&planned, one).unwrap_err();
    assert!(
        too_small.contains("even a FixMatch step of batch 1"),
        "{too_small}"
    );
    // An adapter without allocator statistics plans no bytes: never a batch chosen as if
    // it needed nothing, whatever the memory.
    for planned in [vec![(1, None)], vec![(1, Some(one)), (2, None)]] {
        let e = choose(&planned, u64::MAX).unwrap_err();
        assert!(e.contains("no allocator statistics"), "{e}");
    }
    // --batch and --memory-gib contradict each other.
    let out = s5()
        .args(["bench", "all", "--batch", "2", "--memory-gib", "8"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--memory-gib") && err.contains("cannot be used with"),
        "{err}"
    );
}

/// `s5 bench memory` runs the probes of the settings asked for, fits each setting's memory
/// model and projects every preset: fixed and per-image bytes positive, the largest batch
/// never shrinking with the card's memory, fewer bytes per image with per-block
/// recomputation; at a crop too small for the allocator to resolve, it projects nothing and
/// says why.
#[test]
fn bench_memory_projects_each_setting_it_measured() {
    let run = |crop_px: &str| {
        crate::common::json_of(s5().args([
            "bench",
            "memory",
            "--model",
            "vit-b",
            "--crop-px",
            crop_px,
            "--precision",
            "f32",
            "--checkpointing",
            "no",
            "--checkpointing",
            "blocks",
            "--json",
        ]))
    };
    let doc = run("512");
    let measured = doc["measured"].as_array().expect("measured rows");
    // Per setting: ViT-B at depth 12 and 6, batch 1 and 2 (ViT-B at batch 2 among them).
    assert_eq!(measured.len(), 2 * 4, "{measured:?}");
    let modes: Vec<&str> = doc["fits"]
        .as_array()
        .expect("fits")
        .iter()
        .map(|f| f["setting"]["checkpointing"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(modes, ["Off", "Blocks"], "both resolve at 512 px");
    let rows = doc["projection"].as_array().expect("projection rows");
    assert_eq!(rows.len(), 2 * 5, "five presets per setting");
    for row in rows {
        let fixed = row["fixed_bytes"].as_f64().unwrap_or(f64::NAN);
        let per_image = row["per_image_bytes"].as_f64().unwrap_or(f64::NAN);
        assert!(fixed > 0.0 && per_image > 0.0, "{row}");
        let batches: Vec<u64> = row["max_batch"]
            .as_array()
            .expect("max_batch")
            .iter()
            .map(|pair| pair[1].as_u64().expect("a batch"))
            .collect();
        assert!(batches.windows(2).all(|w| w[0] <= w[1]), "{row}");
    }
    let per_image = |mode: &str, model: &str| {
        rows.iter()
            .find(|r| r["model"] == model && r["setting"]["checkpointing"] == mode)
            .and_then(|r| r["per_image_bytes"].as_f64())
            .expect("a row")
    };
    assert!(per_image("Blocks", "vit-b") < per_image("Off", "vit-b"));
    // At 64 px the plans do not grow with the batch: no projection, and the report says so.
    let small = run("64");
    assert_eq!(
        small["projection"].as_array().map(Vec::len),
        Some(0),
        "{small}"
    );
    assert_eq!(
        small["unresolved"].as_array().map(Vec::len),
        Some(2),
        "{small}"
    );
}
