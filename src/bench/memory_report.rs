//! `s5 bench memory`'s report: each probe measured in its own process, the memory model
//! fitted to them (see [`super::memory`]) and what it projects for the presets.

use std::fmt;

use serde::Serialize;

use super::child::Children;
use super::memory::{MemoryFit, MemoryProbe, MemorySetting, StepMemory, probes, segmentor};
use super::mib;
use crate::error::Result;

/// GPU sizes of the projection, in GiB.
pub const GPU_GIB: [u64; 4] = [16, 24, 48, 80];

/// The presets the projection covers.
const PRESETS: [&str; 5] = ["vit-t", "vit-s", "vit-b", "vit-l", "vit-h"];

/// One preset under one setting, projected.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionRow {
    pub model: String,
    pub setting: MemorySetting,
    pub fixed_bytes: f64,
    pub per_image_bytes: f64,
    /// (GPU GiB, largest batch that fits) for each of [`GPU_GIB`].
    pub max_batch: Vec<(u64, usize)>,
}

/// Everything `s5 bench memory` measured and projected.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// The adapter's name.
    pub adapter: String,
    pub crop_px: usize,
    pub measured: Vec<StepMemory>,
    pub fits: Vec<MemoryFit>,
    /// Settings whose fit did not resolve (see [`MemoryFit::resolved`]): not projected.
    pub unresolved: Vec<MemorySetting>,
    pub projection: Vec<ProjectionRow>,
}

/// What [`bench_memory`] reports while it runs.
#[derive(Debug, Clone, Copy)]
pub enum MemoryEvent<'a> {
    /// Probe `index` (from 0) of `of` starts.
    Measuring {
        index: usize,
        of: usize,
        probe: &'a MemoryProbe,
    },
    /// It ended.
    Measured(&'a StepMemory),
}

/// Measures `models` at `batch` and the projection's probes under each of `settings`, each
/// in a child, and projects.
pub fn bench_memory(
    children: &Children,
    adapter: &str,
    models: &[String],
    batch: usize,
    crop_px: usize,
    settings: &[MemorySetting],
    on_event: &mut dyn FnMut(MemoryEvent<'_>),
) -> Result<MemoryReport> {
    let todo = probes(models, batch, crop_px, settings);
    let mut measured = Vec::new();
    for (index, probe) in todo.iter().enumerate() {
        on_event(MemoryEvent::Measuring {
            index,
            of: todo.len(),
            probe,
        });
        let run = children.step_memory(probe)?;
        on_event(MemoryEvent::Measured(&run));
        measured.push(run);
    }
    let (fits, unfit): (Vec<MemoryFit>, Vec<MemoryFit>) = settings
        .iter()
        .filter_map(|&setting| MemoryFit::from_runs(&measured, setting))
        .partition(MemoryFit::resolved);
    let unresolved = unfit.iter().map(|fit| fit.setting).collect();
    let mut projection = Vec::new();
    for fit in &fits {
        for name in PRESETS {
            let cfg = segmentor(name, crop_px)?;
            projection.push(ProjectionRow {
                model: name.to_string(),
                setting: fit.setting,
                fixed_bytes: fit.fixed_bytes(&cfg),
                per_image_bytes: fit.per_image_bytes(&cfg.backbone),
                max_batch: GPU_GIB
                    .iter()
                    .map(|&g| (g, fit.max_batch(&cfg, (g << 30) as f64)))
                    .collect(),
            });
        }
    }
    Ok(MemoryReport {
        adapter: adapter.to_string(),
        crop_px,
        measured,
        fits,
        unresolved,
        projection,
    })
}

impl MemoryReport {
    fn fmt_measured(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: training steps (forward, backward, AdamW) at {} px, the allocator's plan \
             from a dry run (every allocation made, no kernel run); peak = after the second step",
            self.adapter, self.crop_px
        )?;
        writeln!(
            f,
            "{:<10} {:>9} {:>9} {:>6} {:>9} {:>14} {:>10} {:>13}",
            "model",
            "precision",
            "ckpt",
            "batch",
            "params M",
            "1st step MiB",
            "peak MiB",
            "projected MiB"
        )?;
        for r in &self.measured {
            let setting = r.probe.setting();
            let projected = r.probe.segmentor().ok().and_then(|cfg| {
                self.fits
                    .iter()
                    .find(|fit| fit.setting == setting)
                    .map(|fit| mib(fit.peak_bytes(&cfg, r.probe.batch)))
            });
            writeln!(
                f,
                "{:<10} {:>9} {:>9} {:>6} {:>9.1} {:>14.0} {:>10.0} {:>13}",
                r.probe.model,
                setting.precision(),
                setting.checkpointing_name(),
                r.probe.batch,
                r.params as f64 / 1e6,
                mib(r.first_step_bytes as f64),
                mib(r.peak_bytes as f64),
                projected.map_or("-".to_string(), |p| format!("{p:.0}"))
            )?;
        }
        Ok(())
    }

    fn fmt_projection(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gib = f64::from(1u32 << 30);
        for setting in &self.unresolved {
            writeln!(
                f,
                "\n{} with checkpointing {}: not projected: at {} px a second image of ViT-B \
                 adds less than 2 % to the plan of one (its activations are below the \
                 allocator's page size); measure at a larger --crop-px (the paper's is 512)",
                setting.precision(),
                setting.checkpointing_name(),
                self.crop_px
            )?;
        }
        if self.projection.is_empty() {
            return Ok(());
        }
        writeln!(
            f,
            "\nlargest batch (images with gradients per GPU) that fits at {} px, from the memory \
             model fitted to ViT-B at depth 12 and 6 (exact for ViT-B; the column \"projected\" \
             above shows its error on the others; ViT-L/H projected)",
            self.crop_px
        )?;
        write!(
            f,
            "{:<10} {:>9} {:>9} {:>10} {:>13}",
            "model", "precision", "ckpt", "fixed GiB", "GiB / image"
        )?;
        for g in GPU_GIB {
            write!(f, " {:>7}", format!("{g} GB"))?;
        }
        writeln!(f)?;
        for row in &self.projection {
            write!(
                f,
                "{:<10} {:>9} {:>9} {:>10.2} {:>13.3}",
                row.model,
                row.setting.precision(),
                row.setting.checkpointing_name(),
                row.fixed_bytes / gib,
                row.per_image_bytes / gib,
            )?;
            for (_, batch) in &row.max_batch {
                write!(f, " {batch:>7}")?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "(the paper's S4P step keeps activations of 24 images per GPU: 12 labeled + 12 \
             strong views; ckpt: balanced = burn's balanced checkpointing, blocks = each ViT \
             block recomputed; GB here are GiB)"
        )
    }
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_measured(f)?;
        self.fmt_projection(f)
    }
}
