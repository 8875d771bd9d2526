//! `s5 bench kernels`, `step` and `score` as reports: the models and shapes they time, the
//! runs, and the tables they print.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::child::Children;
use super::fixmatch::{FixMatchTiming, bench_fixmatch_precisions, fmt_precision_ratio};
use super::{
    BenchConfig, KernelGroup, KernelShapes, StepShapes, Timing, bench_kernels, bench_moe_step,
    bench_score, bench_train_step, format_table, mib,
};
use crate::device::{AdapterSummary, Gpu};
use crate::error::{Error, Result};
use crate::memory::DeviceMemory;
use crate::model::{FfnKind, SegmentorConfig, VitConfig};
use crate::train::TrainConfig;

/// The model of `assets/configs/train-synth.ron` with batch 8 of 128 px; `tiny`: a smoke-test
/// size (ViT 32 × 1 at 32 px, batch 2), not a measurement.
pub fn synth_model(tiny: bool) -> (SegmentorConfig, StepShapes) {
    let mut backbone = VitConfig::vit_tiny();
    let (dim, depth, heads, batch, crop_px, decoder) = if tiny {
        (32, 1, 2, 2, 32, 8)
    } else {
        (96, 4, 3, 8, 128, 32)
    };
    backbone.dim = dim;
    backbone.depth = depth;
    backbone.heads = heads;
    backbone.pos_grid_px = crop_px;
    backbone.feature_blocks = [0, 1, 2, 3].map(|i: usize| i.min(depth - 1));
    let mut model = SegmentorConfig::new(backbone, vec![6]);
    model.decoder_channels = decoder;
    (model, StepShapes { batch, crop_px })
}

/// The model, batch and crop of a training config (RON) at `config`, or [`synth_model`].
pub fn step_model(config: Option<&Path>, tiny: bool) -> Result<(SegmentorConfig, StepShapes)> {
    let Some(path) = config else {
        return Ok(synth_model(tiny));
    };
    let config = TrainConfig::load(path)?;
    let classes = config
        .datasets
        .iter()
        .map(|d| d.load_spec().map(|s| s.num_classes()))
        .collect::<Result<Vec<_>>>()?;
    let classes = if classes.is_empty() { vec![6] } else { classes };
    let shapes = StepShapes {
        batch: config.batch,
        crop_px: config.augment.crop_px as usize,
    };
    Ok((config.model.segmentor(classes)?, shapes))
}

impl KernelShapes {
    /// A smoke test of the benchmark itself (odd sizes), not a measurement.
    pub fn tiny() -> Self {
        Self {
            logits: [2, 5, 33, 31],
            moe_images: 2,
            moe_tokens: 40,
            moe_hidden: 48,
            moe_out: 24,
            moe_expert: 8,
            moe_datasets: 3,
        }
    }

    /// What `s5 bench all` times on a software adapter: minutes, not hours.
    pub fn scaled_down() -> Self {
        Self {
            logits: [2, 6, 128, 128],
            moe_images: 2,
            moe_tokens: 256,
            moe_hidden: 384,
            moe_out: 96,
            moe_expert: 24,
            moe_datasets: 4,
        }
    }
}

/// `s5 bench kernels`: each kernel against its reference on one adapter.
#[derive(Debug, Clone, Serialize)]
pub struct KernelReport {
    pub adapter: AdapterSummary,
    pub rows: Vec<Timing>,
}

/// Times the kernel `groups` (all when empty) on `gpu`.
pub fn kernel_report(
    gpu: &Gpu,
    shapes: KernelShapes,
    config: BenchConfig,
    groups: &[KernelGroup],
) -> Result<KernelReport> {
    Ok(KernelReport {
        adapter: gpu.adapter.clone(),
        rows: bench_kernels(&gpu.device, shapes, config, groups)?,
    })
}

impl fmt::Display for KernelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_table(&self.rows))
    }
}

/// The MoE-MDF rows of `s5 bench step`: `datasets` datasets, experts of width `expert_dim`.
#[derive(Debug, Clone, Copy)]
pub struct MoeStep {
    pub datasets: usize,
    /// P; `None`: a quarter of the width, as the paper's 256 of 1024.
    pub expert_dim: Option<usize>,
}

/// `s5 bench step`: a training step on one GPU against data parallel (and MoE-MDF against
/// dense), with the device memory of the one-GPU step.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub adapters: Vec<AdapterSummary>,
    pub rows: Vec<Timing>,
    /// `None`: the backend keeps no allocator statistics.
    pub device_memory: Option<DeviceMemory>,
    /// A FixMatch step of the same model and batch in f32 and (where the adapter has
    /// `shader-f16`) mixed precision, in that order, each in a process of its own.
    pub fixmatch: Vec<FixMatchTiming>,
}

/// Times a training step of `model` on `gpus` (the main one first); with `moe`, also an
/// MoE-MDF step on the main GPU against the dense one. `model`'s backbone must then be dense.
/// Then a FixMatch step in f32 and in mixed precision, in `children`.
pub fn step_report(
    gpus: &[Gpu],
    children: &Children,
    model: &SegmentorConfig,
    shapes: StepShapes,
    config: BenchConfig,
    moe: Option<MoeStep>,
) -> Result<StepReport> {
    let fail = |reason: String| Error::Config { reason };
    let expert_dim = match moe {
        Some(moe) if moe.datasets > 0 => {
            if model.backbone.ffn != FfnKind::Dense {
                return Err(fail(
                    "the MoE-MDF rows (--moe-datasets) compare FFN-MoE with a dense backbone: \
                     give a dense model, or --moe-datasets 0"
                        .into(),
                ));
            }
            let dim = model.backbone.dim;
            let p = moe.expert_dim.unwrap_or((dim / 4).max(4) / 4 * 4);
            if p == 0 || p >= dim {
                return Err(fail(format!(
                    "the MoE-MDF expert width (--moe-expert-dim) must be between 1 and the \
                     width {dim} (exclusive), not {p}"
                )));
            }
            Some((moe.datasets, p))
        }
        _ => None,
    };
    let devices: Vec<_> = gpus.iter().map(|g| g.device.clone()).collect();
    let (mut rows, device_memory) = bench_train_step(&devices, model, shapes, config)?;
    if let Some((datasets, p)) = expert_dim {
        rows.extend(bench_moe_step(
            &devices[0],
            model,
            datasets,
            p,
            shapes,
            config,
        )?);
    }
    let fixmatch = bench_fixmatch_precisions(children, &devices[0], model, shapes, config)?;
    Ok(StepReport {
        adapters: gpus.iter().map(|g| g.adapter.clone()).collect(),
        rows,
        device_memory,
        fixmatch,
    })
}

impl fmt::Display for StepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_table(&self.rows))?;
        match self.device_memory {
            Some(m) => writeln!(
                f,
                "device memory after the one-GPU step: {:.0} MiB reserved (its peak), {:.0} MiB \
                 in use",
                mib(m.reserved_bytes as f64),
                mib(m.in_use_bytes as f64)
            ),
            None => writeln!(f, "device memory: this backend reports none"),
        }?;
        for step in &self.fixmatch {
            writeln!(f, "{step}")?;
        }
        match self.fixmatch.as_slice() {
            [f32_step, mixed] => fmt_precision_ratio(f, f32_step, mixed),
            _ => Ok(()),
        }
    }
}

/// `s5 bench score`: curation's scoring against the forward alone.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    pub adapters: Vec<AdapterSummary>,
    pub rows: Vec<Timing>,
}

/// Prototypes [`score_report`] scores against.
const SCORE_PROTOTYPES: usize = 16;

/// Times curation's scoring of a batch of `model` on `gpu`.
pub fn score_report(
    gpu: &Gpu,
    model: &SegmentorConfig,
    shapes: StepShapes,
    config: BenchConfig,
) -> Result<ScoreReport> {
    Ok(ScoreReport {
        adapters: vec![gpu.adapter.clone()],
        rows: bench_score(&gpu.device, model, shapes, SCORE_PROTOTYPES, config)?,
    })
}

impl fmt::Display for ScoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_table(&self.rows))
    }
}
