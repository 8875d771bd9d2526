//! The typed options of each curation stage, checked before anything is written, and what
//! each stage returns.

use std::path::PathBuf;

use super::kmeans::KMeansConfig;
use super::select::Selection;
use crate::check::{at_least_one, ensure, non_negative, probability, within};
use crate::error::Result;
use crate::run::curation::{CurationReport, Embedding, Plan};

/// What to do with results a new plan makes stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stale {
    /// Refuse the new plan, naming the way out.
    #[default]
    Refuse,
    /// Move them into `curation/stale-<n>/` first.
    MoveAside,
}

/// `s5 curate plan`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// The spec and split of the unlabeled images.
    pub spec: PathBuf,
    pub split: String,
    pub patch_px: u32,
    pub stride_px: u32,
    /// The pool's truth (`s5 synth`'s `pool/truth.ron`), where it is known.
    pub truth: Option<PathBuf>,
    pub stale: Stale,
}

impl PlanOptions {
    /// Checks the sizes (before anything is written).
    pub fn check(&self) -> Result<()> {
        at_least_one("--patch-px", self.patch_px)?;
        at_least_one("--stride-px", self.stride_px)?;
        Ok(())
    }
}

/// What [`CurationRun::plan`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOutcome {
    pub plan: Plan,
    /// The patches are numbered as before (scored shards stay valid).
    pub same_numbering: bool,
    /// Where stale results were moved.
    pub moved_aside: Option<PathBuf>,
}

/// `s5 curate prototypes` (and the similarity floor after it).
#[derive(Debug, Clone, PartialEq)]
pub struct PrototypeOptions {
    /// The seed model: a run directory (its newest checkpoint) or a checkpoint folder.
    pub model: PathBuf,
    /// Which of its datasets (needed when it has several).
    pub dataset: Option<String>,
    /// The labeled split to embed.
    pub split: String,
    pub kmeans: KMeansConfig,
    pub embedding: Embedding,
    /// The quantile of the labeled patches' similarities that makes each floor.
    pub floor_quantile: f64,
    /// Patches per forward pass for the floor.
    pub batch: usize,
}

impl PrototypeOptions {
    /// Checks every setting (before anything is written).
    pub fn check(&self) -> Result<()> {
        at_least_one("--clusters", self.kmeans.clusters as u64)?;
        at_least_one("--restarts", self.kmeans.restarts as u64)?;
        at_least_one("--batch", self.batch as u64)?;
        ensure(self.embedding.level <= 3, "--level", || {
            format!(
                "is {}: embedding level {} does not exist, the backbone has four feature maps, \
                 0 to 3",
                self.embedding.level, self.embedding.level
            )
        })?;
        super::floor::check_quantile(self.floor_quantile)?;
        Ok(())
    }
}

/// Which similarity bound a selection applies.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum SimilarityRule {
    /// Each cluster's calibrated floor (`curation/floor.json`).
    #[default]
    Floor,
    /// One bound for every cluster.
    AtLeast(f32),
    /// None: the quotas alone (the paper's Eq. 3).
    Off,
}

/// `s5 curate select`.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectOptions {
    /// B_u: patches to select.
    pub budget: u64,
    pub foreground_min: Option<f32>,
    pub entropy_max: Option<f32>,
    pub similarity: SimilarityRule,
    /// Rank the whole pool by entropy alone (Eq. 2 without Eq. 3).
    pub ignore_clusters: bool,
}

impl SelectOptions {
    /// Checks the bounds (before anything is written).
    pub fn check(&self) -> Result<()> {
        if let Some(f) = self.foreground_min {
            probability("--foreground-min", f.into())?;
        }
        if let Some(e) = self.entropy_max {
            non_negative("--entropy-max", e.into())?;
        }
        if let SimilarityRule::AtLeast(s) = self.similarity {
            within("--similarity-min", s.into(), -1.0, 1.0)?;
        }
        Ok(())
    }
}

/// What [`CurationRun::select`] made.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectOutcome {
    pub selection: Selection,
    /// `N_m^l` of the prototypes.
    pub labeled: Vec<u64>,
    /// `curation/selected.tsv`.
    pub table: PathBuf,
    pub report: CurationReport,
}
