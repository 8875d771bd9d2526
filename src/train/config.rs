//! What `s5 train` reads: a RON file whose fields all have defaults, resolved (absolute
//! paths, model built from the dataset specs) and written into the run directory as
//! `config.ron`, which is what `--resume` reads back.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::DatasetSpec;
use crate::data::augment::AugmentConfig;
use crate::error::{Error, Result};
use crate::eval::InferMode;
use crate::model::{SegmentorConfig, VitConfig};
use crate::run::RunKind;

mod check;
pub use check::check_vit;

/// One dataset trained on: its spec, optionally another root, the splits used, and the
/// weight of its loss in the sum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatasetEntry {
    pub spec: PathBuf,
    /// Overrides the spec's root.
    pub root: Option<PathBuf>,
    pub train_split: String,
    /// `None`: this dataset is not validated.
    pub val_split: Option<String>,
    pub loss_weight: f64,
    /// The validation metric of this dataset that counts for the best checkpoint (the paper
    /// reports mF1 for Potsdam, mIoU for the others).
    pub metric: ValMetric,
    /// The step from which this dataset's loss counts (the authors' MoE-MDF gates
    /// Vaihingen off until epoch 70 of 100). Before it the dataset's batches are still drawn
    /// (so every stream stays where an ungated run has it) but not trained on.
    pub start_step: u64,
    /// Crops of this dataset per step (`None`: the config's `batch`). Under `Ratios` and
    /// `Temperature` sampling only the sum over datasets counts: it is the step's size.
    pub batch: Option<usize>,
    /// Its training crop (`None`: `augment.crop_px`). Datasets of one crop size share a
    /// backbone pass; each further size costs one more.
    pub crop_px: Option<u32>,
    /// How it is validated (`None`: `val.mode`): whole images, sliding windows, or resized.
    pub val_mode: Option<InferMode>,
}

/// How a step's crops are shared between the datasets of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Sampling {
    /// The authors' MoE-MDF: every step takes one batch from every dataset (its `batch`),
    /// so the smaller datasets repeat more often (zip, oversampling to the largest).
    #[default]
    Zip,
    /// Each of the step's crops comes from dataset d with probability `ratios[d] / Σ ratios`
    /// (one ratio per dataset, in the config's order).
    Ratios(Vec<f64>),
    /// Each crop comes from dataset d with probability ∝ `n_d^(1/T)` (n_d: its training
    /// images): T = 1 samples by size, large T evenly.
    Temperature(f64),
}

/// A dataset's validation metric for choosing the best checkpoint (`MIoU`, `MF1`, `OA`):
/// the score of the run format's keys.
pub use crate::run::Score as ValMetric;

impl Default for DatasetEntry {
    fn default() -> Self {
        Self {
            spec: PathBuf::new(),
            root: None,
            train_split: "train".into(),
            val_split: Some("val".into()),
            loss_weight: 1.0,
            metric: ValMetric::MIoU,
            start_step: 0,
            batch: None,
            crop_px: None,
            val_mode: None,
        }
    }
}

impl DatasetEntry {
    /// The spec with the root override applied.
    pub fn load_spec(&self) -> Result<DatasetSpec> {
        let mut spec = DatasetSpec::load(&self.spec)?;
        if let Some(root) = &self.root {
            spec.root = Some(root.clone());
        }
        Ok(spec)
    }
}

/// The backbone by preset name (`tiny`, `small`, `base`, `large`, `huge`) or in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Backbone {
    Preset(String),
    Custom(VitConfig),
}

/// The model trained: backbone, decoder width, and weights to start from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSetup {
    pub backbone: Backbone,
    /// FFN-MoE with this many expert columns (P) per dataset; `None`: dense FFNs.
    pub moe_expert_dim: Option<usize>,
    pub decoder_channels: usize,
    pub head_dropout: f64,
    pub drop_path: f64,
    /// Weights to start from: an s5 checkpoint (`.bpk`, or a run's checkpoint folder), or a
    /// `.pth` / `.safetensors` from timm, MAE or the authors (see `s5 model import`).
    pub init: Option<PathBuf>,
}

impl Default for ModelSetup {
    fn default() -> Self {
        Self {
            backbone: Backbone::Preset("base".into()),
            moe_expert_dim: None,
            decoder_channels: 256,
            head_dropout: 0.1,
            drop_path: 0.1,
            init: None,
        }
    }
}

impl ModelSetup {
    /// The segmentor for datasets with these class counts.
    pub fn segmentor(&self, classes: Vec<usize>) -> Result<SegmentorConfig> {
        let mut backbone = check::check_model(self).map_err(Error::from)?;
        backbone.drop_path = self.drop_path;
        if let Some(p) = self.moe_expert_dim {
            backbone = backbone.with_moe(classes.len(), p);
        }
        let mut cfg = SegmentorConfig::new(backbone, classes);
        cfg.decoder_channels = self.decoder_channels;
        cfg.head_dropout = self.head_dropout;
        Ok(cfg)
    }
}

/// AdamW with a per-iteration cosine schedule (the authors' S4P runs: lr 5e-5, betas (0.9,
/// 0.999), weight decay 0.01, cosine to 0 per iteration, no warm-up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerSetup {
    pub lr: f64,
    /// The rate the cosine reaches at the last step.
    pub final_lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub betas: (f64, f64),
    pub epsilon: f64,
    /// Layer-wise lr decay (BEiT/MAE style): block i of L gets `lr · decay^(L − i)`, the
    /// patch embedding `decay^(L + 1)`, neck and decoders the full rate. `None`: off.
    pub layer_decay: Option<f64>,
    /// No weight decay on biases, norms, the position table and the cls token.
    pub no_decay_on_norms_and_biases: bool,
    /// Clip the global gradient norm (over every parameter) to this value.
    pub clip_grad_norm: Option<f64>,
}

impl Default for OptimizerSetup {
    fn default() -> Self {
        Self {
            lr: 5e-5,
            final_lr: 0.0,
            warmup_steps: 0,
            weight_decay: 0.01,
            betas: (0.9, 0.999),
            epsilon: 1e-8,
            layer_decay: None,
            no_decay_on_norms_and_biases: true,
            clip_grad_norm: None,
        }
    }
}

/// How and how often the model is validated while it trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValSetup {
    /// Validate every this many steps and at the end; 0: only at the end.
    pub every_steps: u64,
    pub mode: InferMode,
    /// Score only the first images of each validation split (`None`: all).
    pub max_images: Option<usize>,
    /// Leave each spec's background class out of the means (S4P validation does).
    pub exclude_background: bool,
    /// Validation images written under `samples/step-<n>/` per dataset (image, truth,
    /// prediction), for the viewer.
    pub sample_images: usize,
}

impl Default for ValSetup {
    fn default() -> Self {
        Self {
            every_steps: 0,
            mode: InferMode::Whole { flip: false },
            max_images: None,
            exclude_background: false,
            sample_images: 4,
        }
    }
}

/// The unlabeled images of semi-supervised training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnlabeledEntry {
    /// A spec whose `split` lists the unlabeled images (masks, where present, are used only
    /// to measure pseudo-label accuracy).
    pub spec: PathBuf,
    pub root: Option<PathBuf>,
    pub split: String,
    /// Large images are cut into patches of this side (0: whole images).
    pub patch_px: u32,
    /// A patch list written by `s5 curate select` (`curation/selected.tsv`): when given,
    /// its patches are the unlabeled set, instead of `split` cut by `patch_px`.
    pub patches: Option<PathBuf>,
}

impl Default for UnlabeledEntry {
    fn default() -> Self {
        Self {
            spec: PathBuf::new(),
            root: None,
            split: "unlabeled".into(),
            patch_px: 0,
            patches: None,
        }
    }
}

/// How `L_s` and `L_u` combine: the paper writes `L_s + λ·L_u` (§3, "Semi-Supervised
/// Pre-Training"); the authors' training script halves the sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum LossForm {
    /// The authors' code: `(L_s + λ·L_u) / 2`.
    #[default]
    Code,
    /// The paper: `L_s + λ·L_u`.
    Paper,
}

/// Pictures of a fixed set of unlabeled images, written for the viewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SampleSetup {
    /// Every this many steps (0: never).
    pub every_steps: u64,
    /// How many unlabeled images.
    pub images: usize,
    /// Step folders kept; older ones are thinned.
    pub keep: usize,
}

impl Default for SampleSetup {
    fn default() -> Self {
        Self {
            every_steps: 100,
            images: 4,
            keep: s5_run::samples::DEFAULT_KEEP,
        }
    }
}

/// FixMatch on unlabeled images (S4P): pseudo-labels from an eval-mode forward on the weak
/// views, CutMix of the strong views with a partner batch, confidence threshold τ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FixMatchSetup {
    pub unlabeled: UnlabeledEntry,
    /// Unlabeled crops per step (the partner batch is as large).
    pub unlabeled_batch: usize,
    /// τ: pixels whose pseudo-label confidence is below it do not count in `L_u`.
    pub threshold: f64,
    /// λ, the weight of `L_u`.
    pub lambda: f64,
    pub loss_form: LossForm,
    pub samples: SampleSetup,
}

impl Default for FixMatchSetup {
    fn default() -> Self {
        Self {
            unlabeled: UnlabeledEntry::default(),
            unlabeled_batch: 8,
            threshold: 0.95,
            lambda: 1.0,
            loss_form: LossForm::Code,
            samples: SampleSetup::default(),
        }
    }
}

/// What one training step computes: the config chooses, the run's kind follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum RecipeSetup {
    /// Cross-entropy on every dataset's labeled crops, one backbone pass (`s5 train`).
    #[default]
    Supervised,
    /// FixMatch on one labeled dataset and unlabeled images: S4P (`s5 pretrain`).
    FixMatch(FixMatchSetup),
    /// Supervised fine-tuning in one of the paper's three settings (`s5 finetune`).
    Finetune(FinetuneSetup),
}

/// `recipe: Finetune((mode: ...))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSetup {
    pub mode: FinetuneMode,
}

/// The paper's fine-tuning settings (Table 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FinetuneMode {
    /// Single-dataset fine-tuning: only the named dataset of the config is trained and
    /// validated, with a dense backbone.
    Sdf(String),
    /// Multi-dataset fine-tuning: every dataset of the config, one dense backbone, a decoder
    /// each.
    Mdf,
    /// MDF with FFN-MoE: each block's FFN splits into a shared expert and one expert of this
    /// many output columns (P) per dataset.
    MoeMdf(usize),
}

impl FinetuneMode {
    /// Applies the mode to a config whose datasets have the spec names `names`: keeps the
    /// datasets it trains (their indices are returned) and sets the backbone's FFNs. Applying
    /// it twice changes nothing more, so a resumed run (its config.ron) applies it again.
    pub fn apply(
        &self,
        config: &mut TrainConfig,
        names: &[String],
    ) -> std::result::Result<Vec<usize>, String> {
        let keep: Vec<usize> = match self {
            Self::Sdf(name) => {
                let at = names.iter().position(|n| n == name).ok_or_else(|| {
                    format!(
                        "Sdf(\"{name}\"): the config has no dataset of that name (it has {})",
                        names.join(", ")
                    )
                })?;
                vec![at]
            }
            Self::Mdf | Self::MoeMdf(_) => (0..names.len()).collect(),
        };
        let expert_dim = match self {
            Self::MoeMdf(p) => Some(*p),
            _ => None,
        };
        if config.model.moe_expert_dim.is_some() && config.model.moe_expert_dim != expert_dim {
            return Err(format!(
                "model.moe_expert_dim is {:?} but the fine-tuning mode is {self:?}: set the \
                 experts through the mode only",
                config.model.moe_expert_dim
            ));
        }
        config.model.moe_expert_dim = expert_dim;
        if config.datasets.len() != keep.len() {
            // One dataset left: nothing to share.
            config.sampling = Sampling::Zip;
        }
        config.datasets = keep.iter().map(|&i| config.datasets[i].clone()).collect();
        Ok(keep)
    }
}

impl RecipeSetup {
    /// The kind of run this recipe writes.
    pub fn run_kind(&self) -> RunKind {
        match self {
            Self::Supervised => RunKind::Train,
            Self::FixMatch(_) => RunKind::Pretrain,
            Self::Finetune(_) => RunKind::Finetune,
        }
    }
}

/// Which activations a training step keeps for its backward pass (`activation_checkpointing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum Checkpointing {
    /// All that autodiff keeps.
    #[default]
    Off,
    /// burn's balanced gradient checkpointing: memory-bound ops (elementwise, normalisation,
    /// activations) are recomputed in the backward pass, compute-bound ones (matmuls,
    /// convolutions) keep their outputs.
    Balanced,
    /// Each ViT block keeps only its input and is recomputed whole in the backward pass (the
    /// authors' `with_cp=True`); neck and decoders as `Balanced`. The least memory, one more
    /// backbone forward pass of time.
    Blocks,
}

impl Checkpointing {
    /// Whether burn's balanced strategy runs (outside the recomputed blocks too).
    pub fn balanced(self) -> bool {
        self != Self::Off
    }

    /// Whether each ViT block is recomputed whole.
    pub fn blocks(self) -> bool {
        self == Self::Blocks
    }
}

/// `Off`, `Balanced` or `Blocks`; also the older `false` (`Off`) and `true` (`Balanced`).
impl<'de> Deserialize<'de> for Checkpointing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        enum Mode {
            Off,
            Balanced,
            Blocks,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Spelling {
            Bool(bool),
            Mode(Mode),
        }
        Ok(
            match Spelling::deserialize(d).map_err(|_| {
                serde::de::Error::custom(
                    "activation_checkpointing is `Off`, `Balanced` or `Blocks` (or the older \
                 `false` / `true`)",
                )
            })? {
                Spelling::Bool(false) | Spelling::Mode(Mode::Off) => Self::Off,
                Spelling::Bool(true) | Spelling::Mode(Mode::Balanced) => Self::Balanced,
                Spelling::Mode(Mode::Blocks) => Self::Blocks,
            },
        )
    }
}

/// What a training step computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// f32 parameters and AdamW state (the master weights), f16 activations: matmuls,
    /// convolutions, attention and the FFN-MoE in f16; normalisation statistics, softmax and
    /// the losses in f32 (`model::mixed` has the cast policy); dynamic loss scaling
    /// (`loss_scaling`). Needs an adapter with `shader-f16`.
    Mixed,
}

/// Dynamic loss scaling of mixed-precision runs, as gradient scalers do: the loss is
/// multiplied by the scale before the backward pass, so that small f16 gradients stay out of
/// f16's subnormals, and the gradients are divided by it before the update. A step whose
/// gradients (or loss) are not finite is skipped, weights and AdamW state untouched, and the
/// scale halved; after `growth_interval` clean steps in a row the scale doubles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossScaling {
    /// The first scale: 2^16, as PyTorch's GradScaler.
    pub initial: f64,
    /// Clean steps in a row after which the scale doubles (GradScaler's 2000).
    pub growth_interval: u64,
    /// The smallest scale: a non-finite step at this scale is a divergence, and the run
    /// stops with its last good checkpoint.
    pub min_scale: f64,
}

impl Default for LossScaling {
    fn default() -> Self {
        Self {
            initial: 65_536.0,
            growth_interval: 2000,
            min_scale: 1.0,
        }
    }
}

/// A whole training run: its datasets, model, schedule and the recipe of its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub datasets: Vec<DatasetEntry>,
    pub model: ModelSetup,
    pub steps: u64,
    /// Crops per dataset per step (a dataset's own `batch` overrides it).
    pub batch: usize,
    /// How the datasets share a step (several datasets only).
    pub sampling: Sampling,
    pub optimizer: OptimizerSetup,
    /// Labeled-image augmentation; `crop_px` is the training crop.
    pub augment: AugmentConfig,
    pub val: ValSetup,
    /// Checkpoint every this many steps (and always at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept besides the newest; older ones are deleted.
    pub keep_checkpoints: usize,
    pub seed: u64,
    /// Batches prepared ahead per dataset.
    pub prefetch: usize,
    /// Report unreadable samples once and go on instead of stopping.
    pub skip_bad: bool,
    /// What a step computes: `Supervised` (default) or `FixMatch((...))`.
    pub recipe: RecipeSetup,
    /// Recompute activations in the backward pass instead of keeping them: `Off` (default),
    /// `Balanced` (burn's balanced strategy) or `Blocks` (each ViT block whole, the
    /// authors' `with_cp`); less GPU memory per image, same gradients, more time. A
    /// `--resume` with `--config` may change it.
    pub activation_checkpointing: Checkpointing,
    /// `F32` (default) or `Mixed`. A `--resume` with `--config` may change it.
    pub precision: Precision,
    /// The loss scaler of `precision: Mixed`. A `--resume` with `--config` may change it.
    pub loss_scaling: LossScaling,
    /// Run format 1's spelling of the recipe (`semi: Some((...))` for FixMatch), read so
    /// that older runs resume; folded into `recipe` on load, never written.
    #[serde(default, skip_serializing)]
    semi: Option<FixMatchSetup>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            datasets: Vec::new(),
            model: ModelSetup::default(),
            steps: 1000,
            batch: 8,
            sampling: Sampling::Zip,
            optimizer: OptimizerSetup::default(),
            augment: AugmentConfig::default(),
            val: ValSetup::default(),
            checkpoint_every: 500,
            keep_checkpoints: 2,
            seed: 0,
            prefetch: 2,
            skip_bad: false,
            recipe: RecipeSetup::Supervised,
            activation_checkpointing: Checkpointing::Off,
            precision: Precision::F32,
            loss_scaling: LossScaling::default(),
            semi: None,
        }
    }
}

impl TrainConfig {
    /// Reads a config file; every error names the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::reading(path, e, Some("training config")))?;
        // `crop_px: 96` as well as `crop_px: Some(96)` for optional fields.
        let options = ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let mut cfg: Self = options.from_str(&text).map_err(|e| Error::ConfigFile {
            path: path.to_path_buf(),
            reason: format!("not a training config: {e}"),
        })?;
        if let Some(semi) = cfg.semi.take() {
            if cfg.recipe != RecipeSetup::Supervised {
                return Err(Error::ConfigFile {
                    path: path.to_path_buf(),
                    reason: "both `recipe` and the older `semi` are given: keep `recipe`".into(),
                });
            }
            cfg.recipe = RecipeSetup::FixMatch(semi);
        }
        cfg.validate().map_err(|error| Error::InvalidConfig {
            path: Some(path.to_path_buf()),
            error,
        })?;
        Ok(cfg)
    }

    /// The top-level sections in which `other` differs from this config, `steps`,
    /// `activation_checkpointing`, `precision` and `loss_scaling` aside (what `--resume`
    /// refuses to change). Every field is
    /// named, so a new one cannot escape the check unnoticed.
    pub fn sections_differing_from(&self, other: &Self) -> Vec<&'static str> {
        let mut differ = Vec::new();
        // One list: the destructuring names every field (a new one fails to compile until it
        // is listed) and the same names are compared.
        macro_rules! compare {
            (ignoring $($skip:ident),*; $($field:ident),*) => {
                let Self { $($skip: _,)* $($field,)* } = self;
                $(if *$field != other.$field {
                    differ.push(stringify!($field));
                })*
            };
        }
        compare!(
            ignoring steps, activation_checkpointing, precision, loss_scaling;
            datasets, model, batch, sampling, optimizer, augment, val, checkpoint_every,
            keep_checkpoints, seed, prefetch, skip_bad, recipe, semi
        );
        differ
    }

    /// A config from RON text (what [`TrainConfig::to_ron`] writes), unchecked.
    pub fn parse_ron(text: &str) -> std::result::Result<Self, String> {
        ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
            .from_str(text)
            .map_err(|e| e.to_string())
    }

    /// The config as RON (what `config.ron` holds).
    pub fn to_ron(&self) -> String {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
            .expect("configs serialise")
    }

    /// Absolute dataset and init paths, so the run directory's copy works from anywhere.
    pub fn resolved(mut self) -> Result<Self> {
        let absolute = |p: &Path| -> Result<PathBuf> {
            std::path::absolute(p).map_err(|source| Error::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        for d in &mut self.datasets {
            d.spec = absolute(&d.spec)?;
            if let Some(root) = &d.root {
                d.root = Some(absolute(root)?);
            }
        }
        if let RecipeSetup::FixMatch(semi) = &mut self.recipe {
            semi.unlabeled.spec = absolute(&semi.unlabeled.spec)?;
            if let Some(root) = &semi.unlabeled.root {
                semi.unlabeled.root = Some(absolute(root)?);
            }
            if let Some(patches) = &semi.unlabeled.patches {
                semi.unlabeled.patches = Some(absolute(patches)?);
            }
        }
        if let Some(init) = &self.model.init {
            self.model.init = Some(absolute(init)?);
        }
        Ok(self)
    }
}
