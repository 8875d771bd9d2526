//! The names under which numbers appear in `events.jsonl`, sample indexes and `demo.json`,
//! defined once for the writers (trainer, recipes, demo) and the readers (viewer, scripts).
//!
//! A [`MetricKey`] is the name as written (so maps keyed by it sort and serialise as the
//! names do, and index with a `&str`); [`MetricKey::kind`] reads it back as what it names:
//! a [`Known`] quantity, a dataset's validation [`Score`], a per-dataset loss, gate or pass
//! count, or a key this version does not know (kept as written).

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The quantities s5 itself writes, in the order a viewer shows them: the method's first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Known {
    /// The optimised loss of a step (`losses`).
    Loss,
    /// FixMatch's supervised cross-entropy (`losses`).
    LS,
    /// FixMatch's unsupervised cross-entropy over confident pixels (`losses`).
    LU,
    /// Share of valid unlabeled pixels with confidence ≥ τ.
    MaskRatio,
    /// Mean pixel entropy of the unlabeled batch (paper Eq. 1).
    MeanEntropy,
    /// Pseudo-label accuracy over confident pixels with ground truth.
    PseudoLabelAccConfident,
    /// Pseudo-label accuracy over all pixels with ground truth.
    PseudoLabelAccAll,
    /// The learning rate of a step (an event's `lr`).
    Lr,
    /// Labeled and unlabeled images per second (an event's `images_per_s`).
    ImagesPerS,
    /// The mean over the validated datasets of each one's chosen metric (a validation's
    /// `metrics`; the best checkpoint is the one where it was highest).
    ValMean,
    /// Global gradient norm before clipping (a step's extra field).
    GradNorm,
    /// Bytes the main GPU's allocator holds after a step (a step's extra field): its
    /// high-water mark, since the allocator keeps every page it took until asked to free them.
    DeviceMemoryBytes,
    /// The loss scale of a mixed-precision step after it (a step's extra field): halved
    /// after a skipped step, doubled after a run of clean ones.
    LossScale,
    /// Steps of a mixed-precision run skipped so far for non-finite gradients (a step's
    /// extra field).
    SkippedSteps,
    /// The confidence threshold τ a sampled mask was made with (a sample entry's stat).
    Tau,
    /// Seconds a step of an MPI job waited, after its backward pass, for the gradients
    /// summed over the ranks (a step's extra field): the communication not hidden.
    SumWaitS,
    /// Recomputed ViT blocks whose gradients a step of an MPI job handed to the sums over
    /// the ranks while its backward pass ran (a step's extra field).
    SumsInBackward,
}

impl Known {
    /// Every known quantity, in display order.
    pub const ALL: [Known; 17] = [
        Known::Loss,
        Known::LS,
        Known::LU,
        Known::MaskRatio,
        Known::MeanEntropy,
        Known::PseudoLabelAccConfident,
        Known::PseudoLabelAccAll,
        Known::Lr,
        Known::ImagesPerS,
        Known::ValMean,
        Known::GradNorm,
        Known::DeviceMemoryBytes,
        Known::LossScale,
        Known::SkippedSteps,
        Known::Tau,
        Known::SumWaitS,
        Known::SumsInBackward,
    ];

    /// The name written in the files.
    pub const fn name(self) -> &'static str {
        match self {
            Known::Loss => "loss",
            Known::LS => "L_s",
            Known::LU => "L_u",
            Known::MaskRatio => "mask_ratio",
            Known::MeanEntropy => "mean_entropy",
            Known::PseudoLabelAccConfident => "pseudo_label_acc_confident",
            Known::PseudoLabelAccAll => "pseudo_label_acc_all",
            Known::Lr => "lr",
            Known::ImagesPerS => "images_per_s",
            Known::ValMean => "val_mean",
            Known::GradNorm => "grad_norm",
            Known::DeviceMemoryBytes => "device_memory_bytes",
            Known::LossScale => "loss_scale",
            Known::SkippedSteps => "skipped_steps",
            Known::Tau => "tau",
            Known::SumWaitS => "sum_wait_s",
            Known::SumsInBackward => "sums_in_backward",
        }
    }

    /// Its key.
    pub const fn key(self) -> MetricKey {
        MetricKey(Cow::Borrowed(self.name()))
    }
}

/// A dataset's validation score (`<dataset>/<score>`); the training config's `metric` names
/// one to choose the best checkpoint by.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub enum Score {
    /// Mean intersection over union.
    #[default]
    MIoU,
    /// Mean F1.
    MF1,
    /// Overall accuracy.
    OA,
}

impl Score {
    /// Every score, in the order validations report them.
    pub const ALL: [Score; 3] = [Score::MIoU, Score::MF1, Score::OA];

    /// Its suffix in the key (`<dataset>/<suffix>`).
    pub const fn suffix(self) -> &'static str {
        match self {
            Score::MIoU => "mIoU",
            Score::MF1 => "mF1",
            Score::OA => "OA",
        }
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

/// Prefix of a dataset's loss key (`loss/<dataset>`).
const LOSS_PREFIX: &str = "loss/";
/// Prefix of a dataset's gate key (`gate/<dataset>`).
const GATE_PREFIX: &str = "gate/";
/// Prefix of a dataset's passes key (`passes/<dataset>`).
const PASSES_PREFIX: &str = "passes/";

/// The name of a number in a run's files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricKey(Cow<'static, str>);

/// What a [`MetricKey`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind<'a> {
    Known(Known),
    /// A dataset's validation score.
    Score {
        dataset: &'a str,
        score: Score,
    },
    /// A dataset's share of the loss in a multi-dataset run.
    DatasetLoss(&'a str),
    /// Whether a dataset's loss counted at a step (1) or its `start_step` gated it (0).
    DatasetGate(&'a str),
    /// Passes over a dataset's training split so far (steps × batch / images).
    DatasetPasses(&'a str),
    /// A key this version does not know (a newer writer's, a custom recipe's).
    Other,
}

impl MetricKey {
    /// `<dataset>/<score>`: a dataset's validation score.
    pub fn score(dataset: &str, score: Score) -> Self {
        Self(Cow::Owned(format!("{dataset}/{}", score.suffix())))
    }

    /// `loss/<dataset>`: the per-dataset loss of multi-dataset runs.
    pub fn dataset_loss(dataset: &str) -> Self {
        Self(Cow::Owned(format!("{LOSS_PREFIX}{dataset}")))
    }

    /// `gate/<dataset>`: whether a dataset's loss counted at a step.
    pub fn dataset_gate(dataset: &str) -> Self {
        Self(Cow::Owned(format!("{GATE_PREFIX}{dataset}")))
    }

    /// `passes/<dataset>`: passes over a dataset's training split so far.
    pub fn dataset_passes(dataset: &str) -> Self {
        Self(Cow::Owned(format!("{PASSES_PREFIX}{dataset}")))
    }

    /// The name written in the files.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the key names.
    pub fn kind(&self) -> KeyKind<'_> {
        let name = self.as_str();
        if let Some(known) = Known::ALL.into_iter().find(|k| k.name() == name) {
            return KeyKind::Known(known);
        }
        let dataset = |prefix: &str| name.strip_prefix(prefix).filter(|d| !d.is_empty());
        if let Some(d) = dataset(LOSS_PREFIX) {
            return KeyKind::DatasetLoss(d);
        }
        if let Some(d) = dataset(GATE_PREFIX) {
            return KeyKind::DatasetGate(d);
        }
        if let Some(d) = dataset(PASSES_PREFIX) {
            return KeyKind::DatasetPasses(d);
        }
        if let Some((dataset, suffix)) = name.rsplit_once('/')
            && let Some(score) = Score::ALL.into_iter().find(|s| s.suffix() == suffix)
            && !dataset.is_empty()
        {
            return KeyKind::Score { dataset, score };
        }
        KeyKind::Other
    }

    /// Where a viewer shows the key: known quantities in [`Known`]'s order, then each
    /// dataset's scores, then per-dataset losses, gates and passes, then the rest; by name
    /// within each.
    pub fn display_rank(&self) -> (usize, Option<Score>, &str) {
        match self.kind() {
            KeyKind::Known(k) => (k as usize, None, ""),
            KeyKind::Score { dataset, score } => (Known::ALL.len(), Some(score), dataset),
            KeyKind::DatasetLoss(d) => (Known::ALL.len() + 1, None, d),
            KeyKind::DatasetGate(d) => (Known::ALL.len() + 2, None, d),
            KeyKind::DatasetPasses(d) => (Known::ALL.len() + 3, None, d),
            KeyKind::Other => (Known::ALL.len() + 4, None, self.as_str()),
        }
    }
}

pub const LOSS: MetricKey = Known::Loss.key();
pub const L_S: MetricKey = Known::LS.key();
pub const L_U: MetricKey = Known::LU.key();
pub const MASK_RATIO: MetricKey = Known::MaskRatio.key();
pub const MEAN_ENTROPY: MetricKey = Known::MeanEntropy.key();
pub const PSEUDO_LABEL_ACC_CONFIDENT: MetricKey = Known::PseudoLabelAccConfident.key();
pub const PSEUDO_LABEL_ACC_ALL: MetricKey = Known::PseudoLabelAccAll.key();
pub const LR: MetricKey = Known::Lr.key();
pub const IMAGES_PER_S: MetricKey = Known::ImagesPerS.key();
pub const VAL_MEAN: MetricKey = Known::ValMean.key();
pub const GRAD_NORM: MetricKey = Known::GradNorm.key();
pub const DEVICE_MEMORY_BYTES: MetricKey = Known::DeviceMemoryBytes.key();
pub const LOSS_SCALE: MetricKey = Known::LossScale.key();
pub const SKIPPED_STEPS: MetricKey = Known::SkippedSteps.key();
pub const TAU: MetricKey = Known::Tau.key();
pub const SUM_WAIT_S: MetricKey = Known::SumWaitS.key();
pub const SUMS_IN_BACKWARD: MetricKey = Known::SumsInBackward.key();

impl From<Known> for MetricKey {
    fn from(known: Known) -> Self {
        known.key()
    }
}

impl fmt::Display for MetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The empty name, which names nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a metric name cannot be empty")]
pub struct EmptyMetricKey;

impl FromStr for MetricKey {
    type Err = EmptyMetricKey;

    /// Any non-empty name: a known one comes back as its constant, any other is kept as
    /// written ([`KeyKind::Other`] unless it has a per-dataset form).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name.is_empty() {
            return Err(EmptyMetricKey);
        }
        Ok(match Known::ALL.into_iter().find(|k| k.name() == name) {
            Some(known) => known.key(),
            None => Self(Cow::Owned(name.to_string())),
        })
    }
}

impl Borrow<str> for MetricKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for MetricKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Reading is lenient: a key is kept as written, whatever it is, so that a reader never
/// drops a number a newer or other writer recorded.
impl<'de> Deserialize<'de> for MetricKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(name.parse().unwrap_or(Self(Cow::Owned(name))))
    }
}
