//! `<demo>/demo.json`: what `s5 demo` has done in its folder — the preset, every finished
//! stage with its time and typed result, and the stage running now — so a rerun skips what
//! is done and the viewer shows where the demo is. Written atomically after every change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RunError};
use crate::fsutil::write_atomic;
use crate::keys::MetricKey;

/// The format of `demo.json`: 2 gave each stage a typed result and named the running stage
/// (1 held untyped numbers: such a file is refused, naming the way out).
pub const DEMO_FORMAT: u32 = 2;

/// A stage of the demo, in order; each but the first is a run in its own folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DemoStage {
    /// `data/`: `s5 synth`.
    Data,
    /// `1-seed/`: a supervised seed model on the few labeled urban tiles.
    Seed,
    /// `2-curation/`: the pool curated with the seed model.
    Curation,
    /// `3-s4p/`: S4P on the labeled tiles and the curated patches.
    S4p,
    /// `4-moe-mdf/`: MoE-MDF over three domains from the S4P model.
    MoeMdf,
    /// `5-baseline/`: the same fine-tuning without pre-training.
    Baseline,
}

impl DemoStage {
    pub const ALL: [DemoStage; 6] = [
        DemoStage::Data,
        DemoStage::Seed,
        DemoStage::Curation,
        DemoStage::S4p,
        DemoStage::MoeMdf,
        DemoStage::Baseline,
    ];

    /// The folder it writes, in the demo folder.
    pub fn folder(self) -> &'static str {
        match self {
            DemoStage::Data => "data",
            DemoStage::Seed => "1-seed",
            DemoStage::Curation => "2-curation",
            DemoStage::S4p => "3-s4p",
            DemoStage::MoeMdf => "4-moe-mdf",
            DemoStage::Baseline => "5-baseline",
        }
    }

    /// Its name in `demo.json` and in messages (`s4p`, `moe-mdf`).
    pub fn key(self) -> &'static str {
        match self {
            DemoStage::Data => "data",
            DemoStage::Seed => "seed",
            DemoStage::Curation => "curation",
            DemoStage::S4p => "s4p",
            DemoStage::MoeMdf => "moe-mdf",
            DemoStage::Baseline => "baseline",
        }
    }

    /// What it is, with the command that does it alone.
    pub fn title(self) -> &'static str {
        match self {
            DemoStage::Data => "data (s5 synth)",
            DemoStage::Seed => "1 seed model (s5 train)",
            DemoStage::Curation => "2 curation (s5 curate)",
            DemoStage::S4p => "3 S4P (s5 pretrain)",
            DemoStage::MoeMdf => "4 MoE-MDF from S4P (s5 finetune)",
            DemoStage::Baseline => "5 baseline: MoE-MDF, no pre-training",
        }
    }

    /// 1-based position.
    pub fn number(self) -> usize {
        DemoStage::ALL.iter().position(|&s| s == self).unwrap_or(0) + 1
    }

    /// The stage whose run is in `folder` (a demo folder's subfolder name).
    pub fn of_folder(folder: &str) -> Option<Self> {
        DemoStage::ALL.into_iter().find(|s| s.folder() == folder)
    }
}

/// How a demo's training stages train, beside their preset (`s5 demo --precision mixed
/// --seed 1`). The default, f32 and seed 0, is what `demo.json` leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoTraining {
    /// Mixed precision (f16 activations, f32 master weights, dynamic loss scaling) instead of
    /// f32.
    pub mixed_precision: bool,
    /// The training stages' seed: data order, augmentation draws, new weights. The data and
    /// the curation's clustering are the same for every seed.
    pub seed: u64,
}

impl DemoTraining {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The flags that select it (`--precision f32 --seed 0`).
    pub fn flags(&self) -> String {
        let precision = if self.mixed_precision { "mixed" } else { "f32" };
        format!("--precision {precision} --seed {}", self.seed)
    }

    /// What a title adds to the preset's name: nothing for the default, else
    /// `, mixed precision, seed 1`.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        if self.mixed_precision {
            text.push_str(", mixed precision");
        }
        if self.seed != 0 {
            text.push_str(&format!(", seed {}", self.seed));
        }
        text
    }
}

/// What the data stage made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataResult {
    pub train_tiles_per_domain: usize,
    pub val_tiles_per_domain: usize,
    pub tile_px: u32,
    pub pool_images: usize,
}

/// What a training stage ended with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainResult {
    /// Steps trained in all.
    pub steps: u64,
    /// The last validation's metrics (`<dataset>/mIoU`, `val_mean`, ...).
    pub val: BTreeMap<MetricKey, f64>,
    /// The last step's τ-mask share and pseudo-label accuracies (FixMatch only; the
    /// confident accuracy only where some pixel passed τ).
    pub mask_ratio: Option<f64>,
    pub pseudo_label_acc_confident: Option<f64>,
    pub pseudo_label_acc_all: Option<f64>,
    /// Steps skipped for non-finite gradients (mixed precision only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_steps: Option<u64>,
}

impl TrainResult {
    /// A validation metric of the last validation, NaN where it is missing.
    pub fn val_or_nan(&self, key: &MetricKey) -> f64 {
        self.val.get(key.as_str()).copied().unwrap_or(f64::NAN)
    }
}

/// What the curation stage selected, measured against the pool's truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurationResult {
    pub pool_patches: u64,
    pub selected_patches: u64,
    pub pool_ood_share: f64,
    pub selected_ood_share: f64,
    /// Patches the similarity floors kept out of the selection's candidates.
    pub below_floor: u64,
}

/// A stage's typed result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageResult {
    Data(DataResult),
    Train(TrainResult),
    Curation(CurationResult),
}

/// A finished stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishedStage {
    /// Seconds it took, its interrupted sessions included.
    pub seconds: f64,
    pub result: StageResult,
}

/// The stage running now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningStage {
    pub stage: DemoStage,
    /// Unix time it started at (this session).
    pub since_unix_s: u64,
    /// The process that runs it.
    pub pid: u32,
}

/// `demo.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoState {
    pub format: u32,
    pub preset: String,
    /// Precision and seed of the training stages (absent: f32, seed 0).
    #[serde(default, skip_serializing_if = "DemoTraining::is_default")]
    pub training: DemoTraining,
    pub stages: BTreeMap<DemoStage, FinishedStage>,
    /// Seconds spent in stages not finished yet (earlier, interrupted sessions).
    #[serde(default)]
    pub partial_s: BTreeMap<DemoStage, f64>,
    #[serde(default)]
    pub running: Option<RunningStage>,
}

impl DemoState {
    /// A demo of `preset`, trained as `training`, with nothing done.
    pub fn new(preset: &str, training: DemoTraining) -> Self {
        Self {
            format: DEMO_FORMAT,
            preset: preset.to_string(),
            training,
            stages: BTreeMap::new(),
            partial_s: BTreeMap::new(),
            running: None,
        }
    }

    /// `<demo>/demo.json`.
    pub fn path(demo: &Path) -> PathBuf {
        demo.join("demo.json")
    }

    /// The demo folder's state; `None` where there is none.
    pub fn load(demo: &Path) -> Result<Option<Self>> {
        let path = Self::path(demo);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RunError::reading(&path, e, "demo state")),
        };
        #[derive(Deserialize)]
        struct Format {
            #[serde(default)]
            format: u32,
        }
        let bad = |reason: String| RunError::Format {
            path: path.clone(),
            what: "demo state",
            reason,
        };
        let format = serde_json::from_str::<Format>(&text)
            .map_err(|e| bad(e.to_string()))?
            .format;
        if format != DEMO_FORMAT {
            return Err(bad(format!(
                "format {format}, but this s5 reads format {DEMO_FORMAT}: delete the file and \
                 run the demo again (its finished runs are reused, so the stages are quick)"
            )));
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| bad(e.to_string()))
    }

    pub fn save(&self, demo: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a demo state serialises");
        write_atomic(&Self::path(demo), text.as_bytes())
    }

    /// The result of `stage`, if it finished.
    pub fn result(&self, stage: DemoStage) -> Option<&StageResult> {
        self.stages.get(&stage).map(|f| &f.result)
    }

    /// The training result of `stage`, if it finished.
    pub fn trained(&self, stage: DemoStage) -> Option<&TrainResult> {
        match self.result(stage) {
            Some(StageResult::Train(t)) => Some(t),
            _ => None,
        }
    }
}
