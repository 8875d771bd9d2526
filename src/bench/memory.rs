//! `s5 bench memory`: the GPU memory of one training step (forward, backward, AdamW update)
//! per model, in f32 and mixed precision, with each activation checkpointing mode, and a
//! projection to models too big to measure here.
//!
//! # Method
//! Each measurement runs in a fresh process (the caller's job), so the allocator's reserved
//! bytes after the step are that step's high-water mark: cubecl keeps every page it took.
//! The projection reads ViT-B at depth 12 and depth 6, each at batch 1 and 2, and fits each
//! setting (a precision and a checkpointing mode) on its own:
//! * per image: `A = peak(b = 2) − peak(b = 1)`; fixed: `F = peak(b = 1) − A` (weights,
//!   gradients, AdamW moments, workspace);
//! * per block and image: `a = (A₁₂ − A₆) / 6`; the rest of an image (patch embedding, neck,
//!   decoder, loss): `r = A₁₂ − 12·a`. With per-block recomputation a block keeps only its
//!   input, tokens × 768 values, far below what the allocator's pages resolve between the two
//!   depths: `a` is that size (exact by construction) and `r` still `A₁₂ − 12·a`.
//!
//! The probes stay at batches 1 and 2: above them (f32) an attention tensor of ViT-B at
//! 512 px exceeds 128 MiB, the largest allocation lavapipe's plans show, and lavapipe's plans
//! stop growing with the batch.
//!
//! A block's activations are tokens × width tensors (and heads × tokens² for attention, with
//! heads ∝ width at 64 channels per head), so at 512 px (1024 tokens) `a` and `r` scale with the
//! width `D`; `F` scales with the parameter count. For a model of width D, depth L and P
//! parameters: `peak(b) = F_B·P/P_B + b·(L·a·D/768 + r·D/768)`. ViT-H's 80-channel heads make
//! its attention term smaller than this assumes, so its figure errs high.

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::memory::device_memory;
use crate::model::{Segmentor, SegmentorConfig, VitConfig, count_params};
use crate::train::config::{Checkpointing, OptimizerSetup};
use crate::train::loss::cross_entropy_over;
use crate::train::optimizer::Optimizer;
use crate::train::trainer::autodiff_device;

use super::random_batch;

/// Classes of the measured models (iSAID's, the S4P labeled set).
const CLASSES: usize = 16;

/// One measurement: a backbone, a batch and how the step keeps its activations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryProbe {
    /// Preset name (`vit-b`, ...), or `vit-b/6` for ViT-B cut to 6 blocks.
    pub model: String,
    pub batch: usize,
    pub crop_px: usize,
    /// What the backward pass recomputes (also read from the older `true` / `false`).
    pub checkpointing: Checkpointing,
    /// Plan the step's memory without running its kernels (cubecl's dry run: every launch is
    /// compiled and dropped, every allocation still made).
    #[serde(default)]
    pub dry_run: bool,
    /// Mixed precision: f32 parameters and AdamW state, f16 activations
    /// ([`crate::model::mixed`]).
    #[serde(default)]
    pub mixed: bool,
}

impl MemoryProbe {
    /// The segmentor measured (see [`segmentor`]).
    pub fn segmentor(&self) -> Result<SegmentorConfig> {
        segmentor(&self.model, self.crop_px)
    }

    /// Its precision and checkpointing mode.
    pub fn setting(&self) -> MemorySetting {
        MemorySetting {
            mixed: self.mixed,
            checkpointing: self.checkpointing,
        }
    }
}

/// How a step computes and which activations it keeps: what one memory model is fitted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemorySetting {
    /// Mixed precision (else f32).
    pub mixed: bool,
    pub checkpointing: Checkpointing,
}

impl MemorySetting {
    /// Every setting `s5 bench memory` measures: f32, then mixed precision, each without
    /// checkpointing, balanced and per block.
    pub const ALL: [Self; 6] = {
        use Checkpointing::{Balanced, Blocks, Off};
        [
            Self::new(false, Off),
            Self::new(false, Balanced),
            Self::new(false, Blocks),
            Self::new(true, Off),
            Self::new(true, Balanced),
            Self::new(true, Blocks),
        ]
    };

    pub const fn new(mixed: bool, checkpointing: Checkpointing) -> Self {
        Self {
            mixed,
            checkpointing,
        }
    }

    /// `f32` or `mixed`.
    pub fn precision(&self) -> &'static str {
        if self.mixed { "mixed" } else { "f32" }
    }

    /// `no`, `balanced` or `blocks`.
    pub fn checkpointing_name(&self) -> &'static str {
        match self.checkpointing {
            Checkpointing::Off => "no",
            Checkpointing::Balanced => "balanced",
            Checkpointing::Blocks => "blocks",
        }
    }
}

/// A segmentor for the benchmarks by backbone name: a preset (`vit-b`, ...), `/N` keeping its
/// first N blocks (`vit-b/6`), its position table sized for `crop_px`, iSAID's 16 classes.
pub fn segmentor(model: &str, crop_px: usize) -> Result<SegmentorConfig> {
    let (name, depth) = match model.split_once('/') {
        Some((name, depth)) => (
            name,
            Some(depth.parse::<usize>().map_err(|_| Error::Config {
                reason: format!("`{model}`: the blocks after `/` must be a number"),
            })?),
        ),
        None => (model, None),
    };
    let mut vit = VitConfig::by_name(name).ok_or_else(|| Error::Config {
        reason: format!("unknown backbone `{model}`: use vit-t, vit-s, vit-b, vit-l, vit-h"),
    })?;
    if let Some(depth) = depth {
        if depth < 4 || depth > vit.depth {
            return Err(Error::Config {
                reason: format!(
                    "`{model}`: keep between 4 and {} blocks of {name}",
                    vit.depth
                ),
            });
        }
        vit.depth = depth;
        vit.feature_blocks = [depth / 4 - 1, depth / 2 - 1, 3 * depth / 4 - 1, depth - 1];
    }
    vit.pos_grid_px = crop_px;
    Ok(SegmentorConfig::new(vit, vec![CLASSES]))
}

/// What one step took on the device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepMemory {
    pub probe: MemoryProbe,
    pub params: usize,
    /// Reserved after the first step (AdamW's moments are made during its update, after
    /// the activations are gone).
    pub first_step_bytes: u64,
    /// Reserved after the second step: the peak of a step in steady state (weights, moments,
    /// activations and gradients at once).
    pub peak_bytes: u64,
    /// Both steps.
    pub seconds: f64,
}

/// Runs two training steps of `probe` on `device` and reads the allocator after each. Call
/// it once per process: what an earlier step reserved would count too.
pub fn measure_step(device: &Device, probe: &MemoryProbe) -> Result<StepMemory> {
    let cfg = probe.segmentor()?;
    let read = || {
        device
            .sync()
            .map_err(|e| Error::Execution(format!("device sync: {e}")))?;
        device_memory(device)
            .ok_or_else(|| Error::Execution("this backend reports no memory statistics".into()))
    };
    let _dry = probe.dry_run.then(burn::cubecl::dry_run::DryRun::new);
    let train = autodiff_device(device, probe.checkpointing);
    let mut model = Segmentor::new(&cfg, &train)
        .with_mixed_precision(probe.mixed)
        .with_block_recomputation(probe.checkpointing.blocks());
    let mut optimizer = Optimizer::new(&OptimizerSetup::default(), &model);
    let (b, s) = (probe.batch, probe.crop_px);
    let (images, labels) = random_batch(b, s, CLASSES, 0x51_7cc1_b727_220a);
    let started = Instant::now();
    let mut reserved = Vec::new();
    for _ in 0..2 {
        let loss = cross_entropy_over(
            model.forward(
                Tensor::from_data(TensorData::new(images.clone(), [b, 3, s, s]), &train),
                0,
            ),
            Tensor::from_data(TensorData::new(labels.clone(), [b, s, s]), &train),
            Tensor::ones([b, s, s], &train),
            (b * s * s) as f64,
        );
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-4, model, grads)?.0;
        reserved.push(read()?.reserved_bytes);
    }
    Ok(StepMemory {
        probe: probe.clone(),
        params: count_params(&cfg).total(),
        first_step_bytes: reserved[0],
        peak_bytes: reserved[1],
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The probes `s5 bench memory` runs: for each of `settings`, each of `models` at `batch`,
/// and ViT-B (12 and 6 blocks) at batch 1 and 2 for the projection.
pub fn probes(
    models: &[String],
    batch: usize,
    crop_px: usize,
    settings: &[MemorySetting],
) -> Vec<MemoryProbe> {
    let mut out = Vec::new();
    for setting in settings {
        let mut add = |model: &str, batch: usize| {
            let p = MemoryProbe {
                model: model.to_string(),
                batch,
                crop_px,
                checkpointing: setting.checkpointing,
                dry_run: true,
                mixed: setting.mixed,
            };
            if !out.contains(&p) {
                out.push(p);
            }
        };
        for m in models {
            add(m, batch);
        }
        for m in ["vit-b", "vit-b/6"] {
            add(m, 1);
            add(m, 2);
        }
    }
    out
}

/// The fitted memory model of one setting (see the module doc).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemoryFit {
    pub setting: MemorySetting,
    /// ViT-B's fixed bytes per parameter.
    pub fixed_bytes_per_param: f64,
    /// Per image and block, at width 768.
    pub block_bytes: f64,
    /// Per image outside the blocks, at width 768.
    pub rest_bytes: f64,
    /// What a second image of ViT-B adds, as a share of the plan of one.
    pub per_image_share: f64,
}

impl MemoryFit {
    /// Whether the fit resolves what it models: a second image of ViT-B adds at least 2 %
    /// to the plan of one (below that, one of the allocator's pages, up to 128 MiB here, is
    /// the whole difference), a block keeps no negative bytes and the rest of an image is
    /// positive. At small crops the activations are below the pages' size and the plans do
    /// not grow with the batch.
    pub fn resolved(&self) -> bool {
        self.block_bytes >= 0.0 && self.rest_bytes > 0.0 && self.per_image_share >= 0.02
    }

    /// Fits from the ViT-B probes of `setting` among `runs`; `None` when one is missing.
    pub fn from_runs(runs: &[StepMemory], setting: MemorySetting) -> Option<Self> {
        let run = |model: &str, batch: usize| {
            runs.iter().find(|r| {
                r.probe.model == model && r.probe.batch == batch && r.probe.setting() == setting
            })
        };
        let (one, two) = (run("vit-b", 1)?, run("vit-b", 2)?);
        let (b1, b2, params) = (
            one.peak_bytes as f64,
            two.peak_bytes as f64,
            one.params as f64,
        );
        let (h1, h2) = (run("vit-b/6", 1)?.peak_bytes, run("vit-b/6", 2)?.peak_bytes);
        let (a12, a6) = (b2 - b1, (h2 as f64) - (h1 as f64));
        let block = if setting.checkpointing.blocks() {
            // A recomputed block keeps its input alone: tokens × width values, 3 MiB per
            // image for ViT-B at 512 px in f32, below what the allocator's pages resolve
            // between depth 12 and 6. Exact by construction.
            let tokens = 1 + (one.probe.crop_px / 16).pow(2);
            (tokens * 768) as f64 * if setting.mixed { 2.0 } else { 4.0 }
        } else {
            (a12 - a6) / 6.0
        };
        Some(Self {
            setting,
            fixed_bytes_per_param: (b1 - a12) / params,
            block_bytes: block,
            rest_bytes: a12 - 12.0 * block,
            per_image_share: a12 / b1,
        })
    }

    /// Bytes per image of a backbone.
    pub fn per_image_bytes(&self, vit: &VitConfig) -> f64 {
        let width = vit.dim as f64 / 768.0;
        (vit.depth as f64 * self.block_bytes + self.rest_bytes) * width
    }

    /// Fixed bytes of a model.
    pub fn fixed_bytes(&self, cfg: &SegmentorConfig) -> f64 {
        self.fixed_bytes_per_param * count_params(cfg).total() as f64
    }

    /// Projected peak of a step at `batch`.
    pub fn peak_bytes(&self, cfg: &SegmentorConfig, batch: usize) -> f64 {
        self.fixed_bytes(cfg) + batch as f64 * self.per_image_bytes(&cfg.backbone)
    }

    /// The largest batch whose projected peak fits `memory_bytes` (0 if none).
    pub fn max_batch(&self, cfg: &SegmentorConfig, memory_bytes: f64) -> usize {
        let free = memory_bytes - self.fixed_bytes(cfg);
        let per = self.per_image_bytes(&cfg.backbone);
        if free <= 0.0 || per <= 0.0 {
            0
        } else {
            (free / per).floor() as usize
        }
    }
}
