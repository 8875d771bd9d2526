//! Measurements that must not share a process: a peak of the device allocator (cubecl keeps
//! every page it took, so an earlier measurement would count too), a dry run (it holds for the
//! whole process), a peak resident set. The parent sends a [`Job`] as JSON on the command line
//! of a child `s5` (`s5 bench child JOB`); the child runs it with [`Job::run`] and prints one
//! [`Answer`] as JSON. [`Children`] is the parent's side, with a typed method per job.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::fixmatch::{FixMatchTiming, bench_fixmatch_step};
use super::memory::{MemoryProbe, StepMemory, measure_step};
use super::select::{SelectRun, measure_select};
use super::{BenchConfig, StepShapes};
use crate::device::{self, GpuBackend};
use crate::error::{Error, Result};
use crate::model::SegmentorConfig;

/// A measurement a child process makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    /// The dry-run memory plan of a FixMatch step of `model` (a backbone name, see
    /// [`super::memory::segmentor`]).
    FixMatchPlan {
        model: String,
        crop_px: usize,
        batch: usize,
    },
    /// Two training steps and the allocator after each.
    StepMemory { probe: MemoryProbe },
    /// Timed FixMatch steps, in f32 or mixed precision, with the device memory after the
    /// first (this process's own).
    FixMatchStep {
        model: SegmentorConfig,
        shapes: StepShapes,
        config: BenchConfig,
        mixed: bool,
    },
    /// A selection from the record files (`*.bin`) in `dir`, with the process's peak memory.
    Select {
        dir: PathBuf,
        budget: u64,
        clusters: u32,
    },
}

/// What a child answers to a [`Job`]: the variant of the same name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// `None`: the adapter keeps no allocator statistics.
    FixMatchPlan {
        reserved_bytes: Option<u64>,
    },
    StepMemory(StepMemory),
    FixMatchStep(FixMatchTiming),
    Select(SelectRun),
}

impl Job {
    /// Runs the job in this process (the child's side); GPU jobs on `backend`.
    pub fn run(&self, backend: Option<GpuBackend>) -> Result<Answer> {
        Ok(match self {
            Job::FixMatchPlan {
                model,
                crop_px,
                batch,
            } => {
                let gpu = device::gpu(backend)?;
                let cfg = super::memory::segmentor(model, *crop_px)?;
                let shapes = super::StepShapes {
                    batch: *batch,
                    crop_px: *crop_px,
                };
                Answer::FixMatchPlan {
                    reserved_bytes: super::fixmatch::plan_fixmatch_memory(
                        &gpu.device,
                        &cfg,
                        shapes,
                    )?,
                }
            }
            Job::StepMemory { probe } => {
                Answer::StepMemory(measure_step(&device::gpu(backend)?.device, probe)?)
            }
            Job::FixMatchStep {
                model,
                shapes,
                config,
                mixed,
            } => Answer::FixMatchStep(bench_fixmatch_step(
                &device::gpu(backend)?.device,
                model,
                *shapes,
                *config,
                *mixed,
            )?),
            Job::Select {
                dir,
                budget,
                clusters,
            } => Answer::Select(measure_select(dir, *budget, *clusters)?),
        })
    }

    /// The job in words, for errors.
    fn describe(&self) -> String {
        match self {
            Job::FixMatchPlan { model, batch, .. } => {
                format!("the memory plan of a FixMatch step of {model}, batch {batch}")
            }
            Job::StepMemory { probe } => {
                format!("the memory of {} batch {}", probe.model, probe.batch)
            }
            Job::FixMatchStep { shapes, mixed, .. } => format!(
                "a {} FixMatch step of batch {}",
                if *mixed { "mixed-precision" } else { "f32" },
                shapes.batch
            ),
            Job::Select { dir, .. } => format!("the selection from {}", dir.display()),
        }
    }
}

/// Runs [`Job`]s in child processes of an `s5` binary, each in a fresh process.
#[derive(Debug, Clone)]
pub struct Children {
    exe: PathBuf,
    backend: Option<GpuBackend>,
}

impl Children {
    /// Children of the `s5` binary at `exe`, on `backend` (wgpu's choice when `None`).
    pub fn new(exe: impl Into<PathBuf>, backend: Option<GpuBackend>) -> Self {
        Self {
            exe: exe.into(),
            backend,
        }
    }

    /// Children of the running binary: what the `s5` command line uses.
    pub fn of_current_exe(backend: Option<GpuBackend>) -> Result<Self> {
        let exe = std::env::current_exe().map_err(|e| {
            Error::Execution(format!("locating the s5 binary for a child process: {e}"))
        })?;
        Ok(Self::new(exe, backend))
    }

    /// The binary the children run.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Runs `job` in a child and reads its answer.
    pub fn run(&self, job: &Job) -> Result<Answer> {
        let what = job.describe();
        let fail = |reason: String| Error::Execution(format!("{what}: {reason}"));
        let json = serde_json::to_string(job).map_err(|e| fail(e.to_string()))?;
        let mut command = Command::new(&self.exe);
        if let Some(backend) = self.backend {
            command.args(["--backend", backend.name()]);
        }
        let out = command
            .args(["bench", "child", &json])
            .output()
            .map_err(|e| fail(format!("running {}: {e}", self.exe.display())))?;
        if !out.status.success() {
            return Err(fail(format!(
                "the child process failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            fail(format!(
                "its answer is not one s5 understands ({e}): {}",
                String::from_utf8_lossy(&out.stdout).trim()
            ))
        })
    }

    /// [`Job::FixMatchPlan`]: the reserved bytes, `None` without allocator statistics.
    pub fn plan_fixmatch(&self, model: &str, crop_px: usize, batch: usize) -> Result<Option<u64>> {
        let job = Job::FixMatchPlan {
            model: model.to_string(),
            crop_px,
            batch,
        };
        match self.run(&job)? {
            Answer::FixMatchPlan { reserved_bytes } => Ok(reserved_bytes),
            other => Err(mismatch(&job, &other)),
        }
    }

    /// [`Job::StepMemory`].
    pub fn step_memory(&self, probe: &MemoryProbe) -> Result<StepMemory> {
        let job = Job::StepMemory {
            probe: probe.clone(),
        };
        match self.run(&job)? {
            Answer::StepMemory(run) => Ok(run),
            other => Err(mismatch(&job, &other)),
        }
    }

    /// [`Job::FixMatchStep`].
    pub fn fixmatch_step(
        &self,
        model: &SegmentorConfig,
        shapes: StepShapes,
        config: BenchConfig,
        mixed: bool,
    ) -> Result<FixMatchTiming> {
        let job = Job::FixMatchStep {
            model: model.clone(),
            shapes,
            config,
            mixed,
        };
        match self.run(&job)? {
            Answer::FixMatchStep(timing) => Ok(timing),
            other => Err(mismatch(&job, &other)),
        }
    }

    /// [`Job::Select`].
    pub fn select(&self, dir: &Path, budget: u64, clusters: u32) -> Result<SelectRun> {
        let job = Job::Select {
            dir: dir.to_path_buf(),
            budget,
            clusters,
        };
        match self.run(&job)? {
            Answer::Select(run) => Ok(run),
            other => Err(mismatch(&job, &other)),
        }
    }
}

fn mismatch(job: &Job, answer: &Answer) -> Error {
    Error::Execution(format!(
        "{}: the child answered another job ({answer:?})",
        job.describe()
    ))
}
