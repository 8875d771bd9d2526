//! `curation/report.json`: what a curation shows the world, in one file the viewer reads.
//! `s5 curate score` rewrites it whenever a shard finishes (from the finished shards only,
//! stage [`ReportStage::Scoring`]); `s5 curate select` writes the final one
//! ([`ReportStage::Selected`]). Every writer holds `curation/report.lock` from reading the
//! shards to saving the report, so the last report written is never older than another.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::load_json;
use crate::error::Result;
use crate::fsutil::write_atomic;
use crate::layout::RunDir;

/// The most sampled patches a report's projection holds.
pub const PROJECTION_MAX_POINTS: usize = 20_000;

/// How far the curation has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStage {
    /// Some shards are scored; nothing is selected yet.
    Scoring,
    /// Every shard is scored and the budget selected.
    Selected,
}

/// `curation/report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurationReport {
    pub stage: ReportStage,
    /// Patches of the plan, and those scored in finished shards.
    pub patches_planned: u64,
    pub patches_scored: u64,
    /// Finished shards, of how many.
    pub shards_finished: u32,
    pub shards: u32,
    /// The seed model's weights (SHA-256).
    pub model_sha256: String,
    /// B_u, once selected.
    pub budget: Option<u64>,
    /// Candidates left out by the selection's filters, and duplicates dropped.
    pub filtered_out: u64,
    pub duplicates_dropped: u64,
    pub clusters: Vec<ClusterReport>,
    pub entropy: EntropyHistogram,
    pub projection: Projection,
    /// The kinds of image, where the pool's truth is known (empty otherwise).
    pub kinds: Vec<KindShare>,
    pub thumbnails: Vec<Thumbnail>,
}

/// One prototype's cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterReport {
    /// `N_m^l`: labeled images in the cluster (paper Eq. 3).
    pub labeled: u64,
    /// Scored patches whose nearest prototype this is.
    pub scored: u64,
    /// Mean entropy (nats) and similarity of those.
    pub pool_mean_entropy: f64,
    pub pool_mean_similarity: f64,
    /// Patches that passed the selection's filters (once selected).
    pub candidates: Option<u64>,
    /// Quotas by Eq. 3 before and after shortfalls were passed on (once selected).
    pub quota_nominal: Option<u64>,
    pub quota_final: Option<u64>,
    /// Patches selected, their mean entropy and similarity, and the highest entropy selected
    /// (the cluster's cut).
    pub filled: u64,
    pub selected_mean_entropy: Option<f64>,
    pub selected_mean_similarity: Option<f64>,
    pub entropy_cut: Option<f32>,
    /// The similarity floor a candidate of this cluster had to reach, and how many scored
    /// patches it kept out (once selected with a floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity_floor: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_floor: Option<u64>,
}

/// Entropy histograms of the pool and of the selection, in equal bins over
/// `[0, range_nats]` (values above it counted in the last bin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntropyHistogram {
    pub range_nats: f32,
    pub pool: Vec<u64>,
    /// Empty until selected.
    pub selected: Vec<u64>,
}

/// A 2-D principal-component projection of the embeddings of a deterministic sample of the
/// pool, and of the prototypes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Projection {
    /// Share of the sample's variance along each axis.
    pub explained: [f64; 2],
    pub points: Vec<ProjectedPatch>,
    /// The prototypes, projected along the same axes.
    pub centroids: Vec<[f32; 2]>,
}

/// One sampled patch in the projection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectedPatch {
    /// The patch's index in the plan, and its window in the plan's image `image`.
    pub patch: u64,
    pub image: u32,
    pub x_px: u32,
    pub y_px: u32,
    pub size_px: u32,
    pub xy: [f32; 2],
    pub cluster: u32,
    pub entropy: f32,
    pub similarity: f32,
    pub foreground: f32,
    pub selected: bool,
    /// Index into [`CurationReport::kinds`], where known.
    pub kind: Option<u16>,
}

/// Patches of one kind of image (where the pool's truth is known).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindShare {
    pub kind: String,
    pub in_distribution: bool,
    /// Patches of this kind in the scored pool, and in the selection.
    pub pool: u64,
    pub selected: u64,
}

/// Why a thumbnail is in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThumbnailRole {
    /// Among its cluster's lowest-entropy patches (its first selected ones, once selected).
    Best,
    /// Among its cluster's highest-entropy patches (not selected, once selected).
    Worst,
}

/// A picture of a patch, in `curation/thumbs/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thumbnail {
    pub patch: u64,
    pub cluster: u32,
    pub entropy: f32,
    pub role: ThumbnailRole,
    /// Its path relative to the `curation/` folder.
    pub file: PathBuf,
}

impl CurationReport {
    /// `<run>/curation/report.json`.
    pub fn path(run: &RunDir) -> PathBuf {
        run.curation().join("report.json")
    }

    /// `<run>/curation/report.lock`: held by whoever rebuilds the report.
    pub fn lock_path(run: &RunDir) -> PathBuf {
        run.curation().join("report.lock")
    }

    /// The thumbnail file of a patch, relative to `curation/`.
    pub fn thumbnail_file(patch: u64) -> PathBuf {
        PathBuf::from(format!("thumbs/patch-{patch:09}.png"))
    }

    pub fn save(&self, run: &RunDir) -> Result<()> {
        let text = serde_json::to_string(self).expect("a report serialises");
        write_atomic(&Self::path(run), text.as_bytes())
    }

    pub fn load(run: &RunDir) -> Result<Self> {
        load_json(&Self::path(run), "curation report")
    }

    /// The share of out-of-distribution patches in the pool and in the selection, where
    /// kinds are known.
    pub fn ood_shares(&self) -> Option<(f64, f64)> {
        if self.kinds.is_empty() {
            return None;
        }
        let share = |count: fn(&KindShare) -> u64| {
            let all: u64 = self.kinds.iter().map(count).sum();
            let ood: u64 = self
                .kinds
                .iter()
                .filter(|k| !k.in_distribution)
                .map(count)
                .sum();
            ood as f64 / all.max(1) as f64
        };
        Some((share(|k| k.pool), share(|k| k.selected)))
    }
}
