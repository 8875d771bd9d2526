//! The arguments of `s5 curate`'s subcommands, and the library options they make.

use std::path::PathBuf;

use s5::curate::all::RunOptions;
use s5::curate::floor::DEFAULT_QUANTILE;
use s5::curate::kmeans::KMeansConfig;
use s5::curate::run::{PlanOptions, PrototypeOptions, SelectOptions, SimilarityRule, Stale};
use s5::run::curation::{Embedding, Pooling};

#[derive(Debug, clap::Args)]
pub struct OutArg {
    /// The curation run directory.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PoolArgs {
    /// The spec of the unlabeled images.
    #[arg(long)]
    pub spec: PathBuf,
    /// Its split to curate.
    #[arg(long, default_value = "unlabeled")]
    pub split: String,
    /// Patch side.
    #[arg(long, default_value_t = 256)]
    pub patch_px: u32,
    /// Patch stride (default: the patch side, no overlap).
    #[arg(long)]
    pub stride_px: Option<u32>,
    /// The pool's truth, where it is known (`s5 synth`'s pool/truth.ron): the report then
    /// shows each patch's kind and the out-of-distribution share.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Over results of a plan that numbered the patches otherwise or read them with another
    /// `imaging` (scored shards, floor, selection), move them to curation/stale-<n>/ instead
    /// of refusing the new plan.
    #[arg(long)]
    pub move_stale: bool,
}

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// Which of the seed model's datasets (needed when it has several).
    #[arg(long)]
    pub dataset: Option<String>,
    /// M, the number of prototypes.
    #[arg(long, default_value_t = 16)]
    pub clusters: usize,
    /// K-Means seedings; the one with the best mean similarity is kept.
    #[arg(long, default_value_t = KMeansConfig::default().restarts)]
    pub restarts: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Which backbone feature map to embed: 0 (shallowest feature block) to 3 (deepest).
    #[arg(long, default_value_t = Embedding::default().level)]
    pub level: usize,
    /// How its positions are pooled.
    #[arg(long, value_enum, default_value_t = PoolingArg::Mean)]
    pub pooling: PoolingArg,
    #[command(flatten)]
    pub floor: QuantileArg,
}

#[derive(Debug, clap::Args)]
pub struct QuantileArg {
    /// Each cluster's similarity floor is this quantile of its labeled patches' similarities
    /// to its prototype made without their own image (0.05: 95 % of them would pass).
    #[arg(long, default_value_t = DEFAULT_QUANTILE)]
    pub floor_quantile: f64,
}

#[derive(Debug, clap::Args)]
pub struct ChoiceArgs {
    /// B_u: patches to select.
    #[arg(long)]
    pub budget: u64,
    /// Keep only patches whose predicted foreground share is at least this (0–1): keeps out
    /// patches the model calls all background (sea, cloud), whose entropy is near zero.
    #[arg(long)]
    pub foreground_min: Option<f32>,
    /// Keep only patches with at most this mean entropy.
    #[arg(long)]
    pub entropy_max: Option<f32>,
    /// One similarity bound for every cluster instead of the calibrated floors.
    #[arg(long, conflicts_with = "no_floor")]
    pub similarity_min: Option<f32>,
    /// No similarity bound: the quotas alone (paper Eq. 3), as the authors describe it.
    #[arg(long)]
    pub no_floor: bool,
    /// Rank the whole pool by entropy alone (Eq. 2 without Eq. 3's quotas): the baseline
    /// that shows what the quotas add.
    #[arg(long)]
    pub ignore_clusters: bool,
}

impl ChoiceArgs {
    pub fn options(&self) -> SelectOptions {
        SelectOptions {
            budget: self.budget,
            foreground_min: self.foreground_min,
            entropy_max: self.entropy_max,
            similarity: match (self.similarity_min, self.no_floor) {
                (Some(min), _) => SimilarityRule::AtLeast(min),
                (None, true) => SimilarityRule::Off,
                (None, false) => SimilarityRule::Floor,
            },
            ignore_clusters: self.ignore_clusters,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The seed model: a run directory (its newest checkpoint) or a checkpoint folder.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub pool: PoolArgs,
    /// The split of the seed model's dataset whose images make the prototypes.
    #[arg(long, default_value = "train")]
    pub labeled_split: String,
    #[command(flatten)]
    pub embed: EmbedArgs,
    /// Patches per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Score with the model in f16 (adapters with `shader-f16`).
    #[arg(long)]
    pub f16: bool,
    #[command(flatten)]
    pub choice: ChoiceArgs,
    /// The curation run directory (created, or continued).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub pool: PoolArgs,
    /// The curation run directory (created).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PrototypeArgs {
    /// The seed model: a run directory (its newest checkpoint) or a checkpoint folder.
    #[arg(long)]
    pub model: PathBuf,
    /// The split of labeled images to embed.
    #[arg(long, default_value = "train")]
    pub split: String,
    #[command(flatten)]
    pub embed: EmbedArgs,
    /// Patches per forward pass (for the floor).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// The curation run directory (created): prototypes go to curation/prototypes.json.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct FloorArgs {
    /// The seed model the prototypes were made with.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub floor: QuantileArg,
    /// Patches per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// The curation run directory (with its plan and prototypes).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// The seed model (the one the prototypes were made with).
    #[arg(long)]
    pub model: PathBuf,
    /// The curation run directory (with its plan and prototypes).
    #[arg(long)]
    pub out: PathBuf,
    /// Which shard: INDEX/COUNT, 0-based. Without it: a Slurm array task, a Kubernetes
    /// Indexed Job (with --shards), an MPI rank (mpirun, mpiexec, srun), or the whole plan.
    #[arg(long)]
    pub shard: Option<String>,
    /// Shards in all, for a Kubernetes Indexed Job (its completions).
    #[arg(long)]
    pub shards: Option<u32>,
    /// Patches per forward pass (shards of one plan must use the same, so that every patch
    /// is scored in the same batch whatever the sharding; `select` refuses a mix).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Score with the model in f16 (adapters with `shader-f16`); give every shard of a plan
    /// the same choice.
    #[arg(long)]
    pub f16: bool,
    /// Die by SIGKILL (no cleanup) once this many patches are scored: for testing restarts.
    #[arg(long, hide = true)]
    pub abort_after_patches: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// The curation run directory (plan, prototypes, floor, scored shards).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub choice: ChoiceArgs,
}

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// The curation run directory (scored, and selected if a selection is to be measured).
    #[arg(long)]
    pub out: PathBuf,
    /// The pool's truth: a RON list of `(image: "<path relative to this file's folder>",
    /// kind: <Kind>)`, as `s5 synth` writes it.
    #[arg(long)]
    pub truth: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--pooling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolingArg {
    Mean,
    Max,
}

impl PoolArgs {
    pub fn options(&self) -> PlanOptions {
        PlanOptions {
            spec: self.spec.clone(),
            split: self.split.clone(),
            patch_px: self.patch_px,
            stride_px: self.stride_px.unwrap_or(self.patch_px),
            truth: self.truth.clone(),
            stale: if self.move_stale {
                Stale::MoveAside
            } else {
                Stale::Refuse
            },
        }
    }
}

impl EmbedArgs {
    pub fn options(&self, model: &std::path::Path, split: &str, batch: usize) -> PrototypeOptions {
        PrototypeOptions {
            model: model.to_path_buf(),
            dataset: self.dataset.clone(),
            split: split.to_string(),
            kmeans: KMeansConfig {
                clusters: self.clusters,
                restarts: self.restarts,
                seed: self.seed,
                ..KMeansConfig::default()
            },
            embedding: Embedding {
                level: self.level,
                pooling: match self.pooling {
                    PoolingArg::Mean => Pooling::Mean,
                    PoolingArg::Max => Pooling::Max,
                },
            },
            floor_quantile: self.floor.floor_quantile,
            batch,
        }
    }
}

impl RunArgs {
    pub fn options(&self) -> RunOptions {
        RunOptions {
            out: self.out.clone(),
            plan: self.pool.options(),
            prototypes: self
                .embed
                .options(&self.model, &self.labeled_split, self.batch),
            batch: self.batch,
            f16: self.f16,
            select: self.choice.options(),
        }
    }
}
