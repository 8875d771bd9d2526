//! `s5 bench all`'s training row: one whole FixMatch (S4P) step (teacher forward on the weak
//! views, CutMix, student forward on labeled + strong views, both losses, backward, AdamW
//! update) on random data, timed, with the device memory after it; in f32 or in mixed
//! precision (the loss scaled, the gradients checked and unscaled, as training does).

use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{BenchConfig, StepShapes, op, random_batch, time_interleaved};
use crate::error::{Error, Result};
use crate::memory::{DeviceMemory, device_memory};
use crate::model::{Segmentor, SegmentorConfig};
use crate::train::config::{FixMatchSetup, LossScaling, OptimizerSetup};
use crate::train::fixmatch::{Normalizers, UnlabeledTensors, fixmatch_step};
use crate::train::loss_scale::{LossScaler, ScaledStep};
use crate::train::optimizer::Optimizer;

/// A timed FixMatch step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixMatchTiming {
    /// ViT width / depth of the student.
    pub dim: usize,
    pub depth: usize,
    /// Mixed precision (f32 master weights, f16 activations, loss scaling); else f32.
    #[serde(default)]
    pub mixed: bool,
    /// Labeled images per step; as many unlabeled ones.
    pub batch: usize,
    pub crop_px: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    /// Labeled + unlabeled images per second.
    pub images_per_s: f64,
    /// After the first step (warm-up), in a process that ran nothing bigger: the step's peak.
    pub device_memory: Option<DeviceMemory>,
}

/// Random unlabeled tensors: every pixel valid, the left half of each crop cut-mixed.
fn unlabeled(b: usize, s: usize, k: usize, seed: u64, device: &Device) -> UnlabeledTensors {
    let (weak, truth) = random_batch(b, s, k, seed);
    let (strong, _) = random_batch(b, s, k, seed ^ 0x9e37);
    let f4 = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [b, 3, s, s]), device);
    let plane = |v: f32| Tensor::<3>::full([b, s, s], v, device);
    let boxes: Vec<f32> = (0..b * s * s)
        .map(|i| f32::from(u8::from(i % s < s / 2)))
        .collect();
    UnlabeledTensors {
        weak: f4(weak),
        strong: f4(strong),
        valid: plane(1.0),
        boxes: Tensor::from_data(TensorData::new(boxes, [b, s, s]), device),
        truth: Tensor::<3, Int>::from_data(TensorData::new(truth, [b, s, s]), device),
        truth_valid: plane(1.0),
    }
}

/// The device memory two FixMatch steps of `model` at `shapes` would reserve, planned in a
/// cubecl dry run (every allocation made, no kernel run; `s5 bench memory` checks such plans
/// against real steps). The dry run holds for the whole process while it lasts: call this in
/// a process of its own.
pub fn plan_fixmatch_memory(
    device: &Device,
    model: &SegmentorConfig,
    shapes: StepShapes,
) -> Result<Option<u64>> {
    let _dry = burn::cubecl::dry_run::DryRun::new();
    // A warm-up step and a timed one (each ended by a device sync): the second holds the AdamW
    // moments too.
    bench_fixmatch_step(
        device,
        model,
        shapes,
        BenchConfig { warmup: 1, reps: 1 },
        false,
    )?;
    // A step reserves memory: 0 bytes means the runtime keeps no statistics.
    Ok(device_memory(device)
        .map(|m| m.reserved_bytes)
        .filter(|&bytes| bytes > 0))
}

/// The largest batch among `planned` (batch, planned bytes) whose plan fits `memory_bytes`
/// with 10 % left for the driver and fragmentation. A plan without bytes (an adapter whose
/// runtime keeps no allocator statistics) makes the choice impossible: an error, never a
/// batch chosen as if it needed nothing.
pub fn choose_batch(planned: &[(usize, Option<u64>)], memory_bytes: u64) -> Result<usize> {
    let fail = |reason: String| Error::Config { reason };
    if let Some((batch, _)) = planned.iter().find(|(_, bytes)| bytes.is_none()) {
        return Err(fail(format!(
            "--memory-gib: this adapter reports no allocator statistics (the plan of batch \
             {batch} has none), so no batch can be chosen to fit; give --batch instead"
        )));
    }
    let gib = memory_bytes as f64 / f64::from(1u32 << 30);
    planned
        .iter()
        .filter_map(|&(batch, bytes)| Some((batch, bytes?)))
        .filter(|&(_, bytes)| (bytes as f64) <= 0.9 * memory_bytes as f64)
        .map(|(batch, _)| batch)
        .max()
        .ok_or_else(|| match planned.first() {
            Some(&(batch, Some(bytes))) => fail(format!(
                "--memory-gib {gib}: even a FixMatch step of batch {batch} plans {:.1} GiB, \
                 more than 90 % of it: try a smaller --model or --crop-px",
                bytes as f64 / f64::from(1u32 << 30)
            )),
            _ => fail("--memory-gib: no batch was planned".into()),
        })
}

/// Times FixMatch steps of `model` with `shapes.batch` labeled and as many unlabeled crops,
/// in f32 or (`mixed`) mixed precision.
pub fn bench_fixmatch_step(
    device: &Device,
    model: &SegmentorConfig,
    shapes: StepShapes,
    config: BenchConfig,
    mixed: bool,
) -> Result<FixMatchTiming> {
    if mixed && !crate::model::half::supports_f16(device) {
        return Err(Error::NoShaderF16 {
            adapter: crate::device::adapter_name(),
            asked: "a mixed-precision FixMatch step".into(),
            instead: "time the f32 step only".into(),
        });
    }
    let train = device.clone().autodiff();
    let (b, s, k) = (shapes.batch.max(1), shapes.crop_px, model.classes[0]);
    let mut student = Some(Segmentor::new(model, &train).with_mixed_precision(mixed));
    let mut scaler = mixed.then(|| LossScaler::new(&LossScaling::default(), None));
    let mut optimizer =
        Optimizer::new(&OptimizerSetup::default(), student.as_ref().expect("built"));
    let (images, labels) = random_batch(b, s, k, 0x2545_f491_4f6c_dd1d);
    let u = unlabeled(b, s, k, 0x5851_f42d, device);
    let partner = unlabeled(b, s, k, 0x1405_7b7e, device);
    let setup = FixMatchSetup::default();
    let norms = Normalizers {
        labeled_px: (b * s * s) as f64,
        mixed_px: (b * s * s) as f64,
    };
    // A GPU failure (a read that fails) ends the timing and is returned after it.
    let mut failed: Option<Error> = None;
    let mut step = || {
        if failed.is_some() {
            return;
        }
        let model = student.take().expect("the student is back after each step");
        let labeled = (
            Tensor::<4>::from_data(TensorData::new(images.clone(), [b, 3, s, s]), &train),
            Tensor::<3, Int>::from_data(TensorData::new(labels.clone(), [b, s, s]), &train),
            Tensor::<3>::ones([b, s, s], &train),
        );
        let out = fixmatch_step(&model, labeled, &u, &partner, &setup, None, norms);
        let Some(scaler) = scaler.as_mut() else {
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            match optimizer.step(1e-4, model, grads) {
                Ok((updated, _)) => student = Some(updated),
                Err(e) => failed = Some(e),
            }
            return;
        };
        // As training does: the scaled loss backward, one read-back to check and unscale.
        let scaled = out.loss.clone().mul_scalar(scaler.scale());
        let mut grads = GradientsParams::from_grads(scaled.backward(), &model);
        let checked = crate::train::loss::scalar(out.loss)
            .and_then(|loss| scaler.check(loss, &model, &mut grads));
        let next = match checked {
            Ok(ScaledStep::Clean) => optimizer
                .step(1e-4, model, grads)
                .map(|(updated, _)| updated.with_mixed_precision(true)),
            Ok(ScaledStep::Skipped | ScaledStep::Diverged) => Ok(model),
            Err(e) => Err(e),
        };
        match next {
            Ok(model) => student = Some(model),
            Err(e) => failed = Some(e),
        }
    };
    let warmup = BenchConfig { warmup: 0, reps: 1 };
    time_interleaved(device, warmup, &mut [op(&mut step)])?;
    let device_memory = device_memory(device);
    let times = time_interleaved(
        device,
        BenchConfig {
            warmup: config.warmup.saturating_sub(1),
            reps: config.reps,
        },
        &mut [op(&mut step)],
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    let (median_ms, min_ms) = times[0];
    Ok(FixMatchTiming {
        dim: model.backbone.dim,
        depth: model.backbone.depth,
        mixed,
        batch: b,
        crop_px: s,
        median_ms,
        min_ms,
        images_per_s: (2 * b) as f64 / (median_ms / 1e3),
        device_memory,
    })
}

/// FixMatch steps of `model` timed in f32 and, where `device` has `shader-f16`, in mixed
/// precision, each in a child process of its own (so that each device memory is the step's
/// own), one after the other.
pub fn bench_fixmatch_precisions(
    children: &super::Children,
    device: &Device,
    model: &SegmentorConfig,
    shapes: StepShapes,
    config: BenchConfig,
) -> Result<Vec<FixMatchTiming>> {
    let mut out = vec![children.fixmatch_step(model, shapes, config, false)?];
    if crate::model::half::supports_f16(device) {
        out.push(children.fixmatch_step(model, shapes, config, true)?);
    }
    Ok(out)
}

impl std::fmt::Display for FixMatchTiming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FixMatch step ({}), ViT {}x{} at {} px, {} labeled + {} unlabeled: {:.0} ms \
             ({:.2} images/s){}",
            if self.mixed { "mixed" } else { "f32" },
            self.dim,
            self.depth,
            self.crop_px,
            self.batch,
            self.batch,
            self.median_ms,
            self.images_per_s,
            self.device_memory.map_or(String::new(), |m| format!(
                ", {:.0} MiB of device memory",
                super::mib(m.reserved_bytes as f64)
            ))
        )
    }
}

/// The line comparing a mixed-precision step with the f32 one.
pub fn fmt_precision_ratio(
    f: &mut std::fmt::Formatter<'_>,
    f32_step: &FixMatchTiming,
    mixed: &FixMatchTiming,
) -> std::fmt::Result {
    write!(
        f,
        "mixed precision: {:.2}x the f32 step's time",
        mixed.median_ms / f32_step.median_ms
    )?;
    if let (Some(a), Some(b)) = (mixed.device_memory, f32_step.device_memory) {
        write!(
            f,
            ", {:.2}x its device memory",
            a.reserved_bytes as f64 / b.reserved_bytes as f64
        )?;
    }
    writeln!(f)
}
