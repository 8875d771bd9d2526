//! The UI's copy of a run, built only from the reader's [`Update`]s: curves, the sample
//! steps there are and a bounded cache of decoded ones, the curation report, diagnostics and
//! the run's state.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use egui::ColorImage;
use s5_run::keys::{self, KeyKind, Known, MetricKey, Score};
use s5_run::{Event, EventKind, Manifest, RunKind};

use crate::bounded::Bounded;
use crate::decoded::{DecodedReport, StepSamples};
use crate::reader::Update;

/// Decoded sample steps kept per run (older ones are decoded again when visited).
pub const DECODED_STEPS_KEPT: usize = 6;
/// Diagnostics kept per run (the newest).
pub const DIAGNOSTICS_KEPT: usize = 50;
/// Pool-patch pictures kept (a box selection shows at most a few dozen at a time).
pub const CROPS_KEPT: usize = 256;
/// A run whose writer holds the lock but whose events have not changed for this long is
/// shown as stalled.
pub const STALLED_AFTER_S: f64 = 300.0;

/// One curve: `(step, wall_s, value)` in arrival order (steps ascending after purges).
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub steps: Vec<f64>,
    pub wall_s: Vec<f64>,
    pub values: Vec<f64>,
}

impl Series {
    fn push(&mut self, step: u64, wall_s: f64, value: f64) {
        self.steps.push(step as f64);
        self.wall_s.push(wall_s);
        self.values.push(value);
    }

    /// Drops the points at `step` and after.
    fn purge_from(&mut self, step: u64) {
        let keep = self.steps.partition_point(|&s| s < step as f64);
        self.steps.truncate(keep);
        self.wall_s.truncate(keep);
        self.values.truncate(keep);
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Nothing read yet.
    Unknown,
    Running,
    /// A writer holds the lock but nothing was logged for [`STALLED_AFTER_S`].
    Stalled,
    /// No writer, and it did not diverge.
    Finished,
    /// Its loss stopped being a number.
    Diverged,
    /// Its folder is gone (what was read stays shown).
    Deleted,
}

impl RunState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Running => "running",
            Self::Stalled => "stalled",
            Self::Finished => "finished",
            Self::Diverged => "diverged",
            Self::Deleted => "deleted",
        }
    }
}

/// Everything shown of one run.
#[derive(Debug, Default)]
pub struct RunStore {
    pub path: PathBuf,
    pub name: String,
    pub manifest: Option<Result<Manifest, String>>,
    pub config: Option<String>,
    /// Curves by key (`loss`, `L_u`, `lr`, `images_per_s`, `mask_ratio`, `urban/mIoU`, ...).
    pub series: BTreeMap<MetricKey, Series>,
    pub events: u64,
    pub last_step: Option<u64>,
    pub last_kind: Option<EventKind>,
    /// Sample step folders there now, ascending.
    pub steps: Vec<u64>,
    /// Decoded steps, the most recently used last.
    decoded: VecDeque<Arc<StepSamples>>,
    pub report: Option<Arc<DecodedReport>>,
    /// Pictures of pool patches, by patch (at most [`CROPS_KEPT`], the least recently
    /// used dropped).
    pub crops: Bounded<u64, ColorImage, CROPS_KEPT>,
    pub diagnostics: VecDeque<String>,
    pub deleted: bool,
    pub locked: bool,
    pub events_age_s: Option<f64>,
    /// Times the run went back in steps (a restart): later points were dropped.
    pub restarts: u32,
    /// The reader's first poll is complete.
    pub first_look: bool,
    /// Bytes of `events.jsonl` not read yet (a long file takes several polls).
    pub events_behind_bytes: u64,
    /// The newest validation: its step and metrics.
    pub last_val: Option<(u64, BTreeMap<MetricKey, f64>)>,
}

impl RunStore {
    pub fn new(path: PathBuf) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Self {
            path,
            name,
            ..Self::default()
        }
    }

    pub fn kind(&self) -> Option<RunKind> {
        self.manifest.as_ref()?.as_ref().ok().map(|m| m.kind)
    }

    pub fn state(&self) -> RunState {
        if self.deleted {
            RunState::Deleted
        } else if self.last_kind == Some(EventKind::Diverged) {
            RunState::Diverged
        } else if self.manifest.is_none() {
            RunState::Unknown
        } else if self.locked {
            if self.events_age_s.is_some_and(|a| a > STALLED_AFTER_S) {
                RunState::Stalled
            } else {
                RunState::Running
            }
        } else {
            RunState::Finished
        }
    }

    fn diagnose(&mut self, message: String) {
        if self.diagnostics.len() == DIAGNOSTICS_KEPT {
            self.diagnostics.pop_front();
        }
        self.diagnostics.push_back(message);
    }

    /// Applies one update of the reader.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Manifest(m) => {
                if let Err(e) = &m {
                    self.diagnose(e.clone());
                }
                self.manifest = Some(m);
            }
            Update::Config(text) => self.config = Some(text),
            Update::FirstLook => self.first_look = true,
            Update::Events(read) => {
                self.events_behind_bytes = read.behind_bytes;
                if read.reset {
                    self.series.clear();
                    self.events = 0;
                    self.last_step = None;
                    self.last_val = None;
                    self.diagnose("events.jsonl was replaced: read again from its start".into());
                }
                for c in read.corrupt {
                    self.diagnose(format!(
                        "events.jsonl line {}: skipped, not an event ({})",
                        c.line, c.reason
                    ));
                }
                for event in read.events {
                    self.add_event(&event);
                }
            }
            Update::Steps(steps) => {
                self.decoded.retain(|d| steps.contains(&d.step));
                self.steps = steps;
            }
            Update::Samples(samples) => {
                for e in samples.entries.iter().flat_map(|e| &e.errors) {
                    let message = e.clone();
                    self.diagnose(message);
                }
                self.decoded.retain(|d| d.step != samples.step);
                if self.decoded.len() == DECODED_STEPS_KEPT {
                    self.decoded.pop_front();
                }
                self.decoded.push_back(samples);
            }
            Update::SamplesError { step, message } => {
                // A folder thinned away between listing and reading is not an error.
                if self.steps.contains(&step) {
                    self.diagnose(format!("sample step {step}: {message}"));
                }
            }
            Update::Report(report) => self.report = Some(report),
            Update::Problem(message) => self.diagnose(message),
            Update::Crops(crops) => self.crops.extend(crops),
            Update::Status {
                locked,
                events_age_s,
            } => {
                self.locked = locked;
                self.events_age_s = events_age_s;
            }
            Update::Deleted(deleted) => {
                self.deleted = deleted;
                if deleted {
                    self.diagnose(format!(
                        "{} was deleted: showing what was read",
                        self.path.display()
                    ));
                }
            }
        }
    }

    fn add_event(&mut self, e: &Event) {
        self.events += 1;
        if e.kind == EventKind::Train {
            // Steps going back: the run was restarted from an earlier checkpoint; the points
            // from there on are replaced (TensorBoard purges the same way).
            if self.last_step.is_some_and(|last| e.step <= last) {
                self.restarts += 1;
                for series in self.series.values_mut() {
                    series.purge_from(e.step);
                }
            }
            self.last_step = Some(e.step);
        }
        self.last_kind = Some(e.kind);
        if e.kind == EventKind::Val {
            self.last_val = Some((e.step, e.metrics.clone()));
        }
        let mut put = |key: &MetricKey, value: f64| {
            if value.is_finite() {
                self.series
                    .entry(key.clone())
                    .or_default()
                    .push(e.step, e.wall_s, value);
            }
        };
        for (k, v) in e.losses.iter().chain(&e.metrics) {
            put(k, *v);
        }
        if let Some(lr) = e.lr {
            put(&keys::LR, lr);
        }
        if let Some(ips) = e.images_per_s {
            put(&keys::IMAGES_PER_S, ips);
        }
        for (k, v) in &e.extra {
            // Only an empty name fails to parse: it names nothing to draw.
            if let (Some(v), Ok(k)) = (v.as_f64(), k.parse::<MetricKey>()) {
                put(&k, v);
            }
        }
    }

    /// The newest validation in words: the value that picks the best checkpoint (`val_mean`)
    /// where there is one, and each dataset's main metric (`<dataset>/mIoU` or `/mF1`), in
    /// per cent.
    pub fn last_val_text(&self) -> Option<String> {
        let (step, metrics) = self.last_val.as_ref()?;
        let mut parts: Vec<String> = metrics
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k.kind(),
                    KeyKind::Known(Known::ValMean)
                        | KeyKind::Score {
                            score: Score::MIoU,
                            ..
                        }
                )
            })
            .map(|(k, v)| format!("{k} {:.1}", 100.0 * v))
            .collect();
        if parts.is_empty() {
            parts = metrics
                .iter()
                .take(3)
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect();
        }
        Some(format!("step {step}: {}", parts.join(" · ")))
    }

    /// The surviving sample step nearest to `step` (the later one on a tie).
    pub fn nearest_step(&self, step: u64) -> Option<u64> {
        self.steps
            .iter()
            .copied()
            .min_by_key(|&s| (s.abs_diff(step), u64::MAX - s))
    }

    /// The decoded step, if it is in the cache (marks it used).
    pub fn decoded(&mut self, step: u64) -> Option<Arc<StepSamples>> {
        let at = self.decoded.iter().position(|d| d.step == step)?;
        let d = self.decoded.remove(at)?;
        self.decoded.push_back(d.clone());
        Some(d)
    }

    /// Steps decoded now (for tests and memory checks).
    pub fn decoded_steps(&self) -> Vec<u64> {
        self.decoded.iter().map(|d| d.step).collect()
    }
}
