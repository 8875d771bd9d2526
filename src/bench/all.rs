//! `s5 bench all`: everything that matters on a new GPU, in one run: a FixMatch step with its
//! device memory (first, so that its memory is its own), the kernels against their references,
//! prediction in f32 (and f16), augmentation on the CPU.

use std::fmt;
use std::time::Instant;

use serde::Serialize;

use super::child::Children;
use super::fixmatch::{FixMatchTiming, bench_fixmatch_step, choose_batch, fmt_precision_ratio};
use super::predict::{PredictTiming, bench_predict};
use super::scaling::{ScalingProjection, project};
use super::step::synth_model;
use super::{BenchConfig, KernelShapes, StepShapes, Timing, bench_kernels, format_table};
use crate::data::throughput::{DataBench, augment_throughput};
use crate::device::{AdapterSummary, Gpu};
use crate::error::Result;

/// What `s5 bench all` measures.
#[derive(Debug, Clone)]
pub struct AllOptions {
    /// Backbone of the FixMatch step and of prediction (a preset name, see
    /// [`super::memory::segmentor`]).
    pub model: String,
    /// Labeled crops per FixMatch step (as many unlabeled ones); `None`: 2, or with
    /// `memory_gib` the largest that fits.
    pub batch: Option<usize>,
    /// The GPU's memory: the FixMatch step's batch is then chosen to fit it, from dry-run
    /// plans of batches 1 to 16 with 10 % kept free.
    pub memory_gib: Option<f64>,
    /// Crop side of the FixMatch step and the prediction windows.
    pub crop_px: usize,
    /// The sizes above even on a software adapter, where by default a small model at 128 px
    /// keeps the run to minutes.
    pub full: bool,
}

impl Default for AllOptions {
    fn default() -> Self {
        Self {
            model: "vit-b".into(),
            batch: None,
            memory_gib: None,
            crop_px: 512,
            full: false,
        }
    }
}

/// How the FixMatch batch was chosen from the memory.
#[derive(Debug, Clone, Serialize)]
pub struct BatchChoice {
    pub memory_gib: f64,
    /// (batch, planned reserved bytes; `None` without allocator statistics).
    pub planned: Vec<(usize, Option<u64>)>,
    pub chosen: usize,
}

/// Everything `s5 bench all` measured.
#[derive(Debug, Clone, Serialize)]
pub struct AllReport {
    pub adapter: AdapterSummary,
    /// A software adapter without `full`: a small model at 128 px.
    pub scaled_down: bool,
    pub batch_choice: Option<BatchChoice>,
    pub kernels: Vec<Timing>,
    pub fixmatch_step: FixMatchTiming,
    /// The same step in mixed precision, in a child process (so that its device memory is
    /// its own); `None` where the adapter has no `shader-f16`.
    pub fixmatch_step_mixed: Option<FixMatchTiming>,
    pub predict: Vec<PredictTiming>,
    pub data: DataBench,
    /// The faster FixMatch step projected to 8, 32 and 128 GPUs over MPI.
    pub scaling: ScalingProjection,
    pub seconds: f64,
}

/// What [`bench_all`] is doing, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AllEvent {
    /// `memory_gib` was given but the sizes are scaled down: it is not used.
    MemoryGibUnused,
    /// Planning the memory of a FixMatch step of this batch (in a child process).
    Planning {
        batch: usize,
    },
    FixMatchStep,
    /// The same step in mixed precision (in a child process), where the adapter has
    /// `shader-f16`.
    FixMatchStepMixed,
    Kernels,
    Predict,
    Augmentation,
}

impl fmt::Display for AllEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllEvent::MemoryGibUnused => f.write_str(
                "--memory-gib chooses the batch of the full sizes: add --full to use it here",
            ),
            AllEvent::Planning { batch } => {
                write!(f, "planning the memory of a FixMatch step of batch {batch}")
            }
            AllEvent::FixMatchStep => {
                f.write_str("a FixMatch step (first, so that its device memory is its own)")
            }
            AllEvent::FixMatchStepMixed => {
                f.write_str("the FixMatch step in mixed precision (in a process of its own)")
            }
            AllEvent::Kernels => f.write_str("kernels against their references"),
            AllEvent::Predict => f.write_str("prediction"),
            AllEvent::Augmentation => f.write_str("augmentation on the CPU"),
        }
    }
}

/// Whether `gpu` is a software adapter on which `options` scale the sizes down.
pub fn scaled_down(gpu: &Gpu, options: &AllOptions) -> bool {
    gpu.adapter.is_cpu() && !options.full
}

/// Batches [`bench_all`] plans, in order, until one exceeds the memory.
const PLANNED_BATCHES: [usize; 8] = [1, 2, 3, 4, 6, 8, 12, 16];

/// Runs every measurement of `s5 bench all` on `gpu`; dry-run memory plans (with
/// `memory_gib` at full sizes) run in `children`.
pub fn bench_all(
    gpu: &Gpu,
    options: &AllOptions,
    children: &Children,
    on_event: &mut dyn FnMut(AllEvent),
) -> Result<AllReport> {
    let started = Instant::now();
    let scaled_down = scaled_down(gpu, options);
    if scaled_down && options.memory_gib.is_some() {
        on_event(AllEvent::MemoryGibUnused);
    }
    let mut batch_choice = None;
    let (model, shapes, predict_px, window_px) = if scaled_down {
        let (model, shapes) = synth_model(false);
        let shapes = StepShapes {
            batch: options.batch.unwrap_or(2),
            ..shapes
        };
        (model, shapes, 256u32, shapes.crop_px as u32)
    } else {
        let batch = match (options.batch, options.memory_gib) {
            (Some(batch), _) => batch,
            (None, None) => 2,
            (None, Some(gib)) => {
                let choice = choose_batch_for(children, options, gib, on_event)?;
                let chosen = choice.chosen;
                batch_choice = Some(choice);
                chosen
            }
        };
        let shapes = StepShapes {
            batch,
            crop_px: options.crop_px,
        };
        let model = super::memory::segmentor(&options.model, options.crop_px)?;
        (model, shapes, 2048, options.crop_px as u32)
    };
    on_event(AllEvent::FixMatchStep);
    let step_config = BenchConfig { warmup: 1, reps: 3 };
    let fixmatch_step = bench_fixmatch_step(&gpu.device, &model, shapes, step_config, false)?;
    let fixmatch_step_mixed = if crate::model::half::supports_f16(&gpu.device) {
        on_event(AllEvent::FixMatchStepMixed);
        Some(children.fixmatch_step(&model, shapes, step_config, true)?)
    } else {
        None
    };
    let fastest = fixmatch_step_mixed
        .as_ref()
        .filter(|mixed| mixed.median_ms < fixmatch_step.median_ms)
        .unwrap_or(&fixmatch_step);
    let scaling = project(
        &model,
        fastest.median_ms / 1e3,
        2 * fastest.batch,
        fastest.mixed,
    );
    on_event(AllEvent::Kernels);
    let kernel_shapes = if scaled_down {
        KernelShapes::scaled_down()
    } else {
        KernelShapes::default()
    };
    let config = BenchConfig { warmup: 2, reps: 5 };
    let kernels = bench_kernels(&gpu.device, kernel_shapes, config, &[])?;
    on_event(AllEvent::Predict);
    let predict = bench_predict(&gpu.device, &model, predict_px, window_px)?;
    on_event(AllEvent::Augmentation);
    let data = augment_throughput(512, 512, 32, None)?;
    Ok(AllReport {
        adapter: gpu.adapter.clone(),
        scaled_down,
        batch_choice,
        kernels,
        fixmatch_step,
        fixmatch_step_mixed,
        predict,
        data,
        scaling,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Dry-run memory plans of FixMatch steps of growing batch, each in its own process, until
/// one exceeds 90 % of `gib`; the largest that fits.
fn choose_batch_for(
    children: &Children,
    options: &AllOptions,
    gib: f64,
    on_event: &mut dyn FnMut(AllEvent),
) -> Result<BatchChoice> {
    let limit = gib * f64::from(1u32 << 30);
    let mut planned = Vec::new();
    for batch in PLANNED_BATCHES {
        on_event(AllEvent::Planning { batch });
        let bytes = children.plan_fixmatch(&options.model, options.crop_px, batch)?;
        planned.push((batch, bytes));
        // Without statistics there is nothing to plan by: choose_batch says so.
        if bytes.is_none_or(|b| b as f64 > 0.9 * limit) {
            break;
        }
    }
    let chosen = choose_batch(&planned, limit as u64)?;
    Ok(BatchChoice {
        memory_gib: gib,
        planned,
        chosen,
    })
}

impl fmt::Display for AllReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_table(&self.kernels))?;
        writeln!(f, "\n{}", self.fixmatch_step)?;
        if let Some(mixed) = &self.fixmatch_step_mixed {
            writeln!(f, "{mixed}")?;
            fmt_precision_ratio(f, &self.fixmatch_step, mixed)?;
        }
        if let Some(choice) = &self.batch_choice {
            writeln!(
                f,
                "(batch {} chosen to fit {} GiB from the plans of batches {})",
                choice.chosen,
                choice.memory_gib,
                choice
                    .planned
                    .iter()
                    .map(|(b, _)| b.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        for p in &self.predict {
            writeln!(
                f,
                "predict ({}), {} px scene in {} px windows: {:.3} Mpx/s",
                p.precision, p.image_px, p.window_px, p.mpx_per_s
            )?;
        }
        writeln!(f)?;
        write!(f, "{}", self.data)?;
        write!(f, "\n{}", self.scaling)?;
        writeln!(f, "\nall in {:.0} s", self.seconds)
    }
}
