//! What `s5 curate` leaves in a run's `curation/` folder for pre-training, the viewer and
//! later stages. Every file is written atomically.
//!
//! ```text
//! curation/plan.json            the pool, numbered once                       [`Plan`]
//! curation/prototypes.json      the labeled set's clusters                    [`Prototypes`]
//! curation/floor.json           each cluster's similarity floor               [`SimilarityFloor`]
//! curation/shards/shard-<i>-of-<n>.json   a finished shard's summary          [`ShardSummary`]
//! curation/report.json          what the viewer shows, refreshed as shards finish  [`CurationReport`]
//! curation/report.lock          held while the report is rebuilt (shards finish side by side)
//! curation/thumbs/patch-<k>.png thumbnails the report names
//! curation/stale-<n>/           what a new plan made stale, moved aside (`--move-stale`)
//! ```

pub mod report;

pub use report::{
    ClusterReport, CurationReport, EntropyHistogram, KindShare, PROJECTION_MAX_POINTS,
    ProjectedPatch, Projection, ReportStage, Thumbnail, ThumbnailRole,
};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RunError};
use crate::fsutil::write_atomic;
use crate::imaging::Imaging;
use crate::layout::RunDir;

/// How a patch's backbone features become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The mean over the feature map's positions.
    #[default]
    Mean,
    /// The maximum over positions, per channel.
    Max,
}

/// Which backbone output is embedded, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Embedding {
    /// Which of the backbone's four feature maps (0 = the shallowest feature block,
    /// 3 = the deepest).
    pub level: usize,
    pub pooling: Pooling,
}

impl Default for Embedding {
    /// The deepest feature block, mean-pooled: the most semantic of the four outputs.
    fn default() -> Self {
        Self {
            level: 3,
            pooling: Pooling::Mean,
        }
    }
}

/// The seed model a curation stage used: later stages refuse records from another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// The checkpoint folder.
    pub checkpoint: PathBuf,
    /// SHA-256 of its `model.bpk` (lower-case hex).
    pub sha256: String,
}

/// `curation/prototypes.json`: the labeled set's clusters (spherical K-Means over embedded
/// labeled images).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prototypes {
    pub model: ModelRef,
    /// The dataset (decoder) whose labeled images were embedded, and the split.
    pub dataset: String,
    pub split: String,
    pub embedding: Embedding,
    /// M unit vectors of D values.
    pub centroids: Vec<Vec<f32>>,
    /// `N_m^l`: labeled images per cluster (paper Eq. 3).
    pub labeled_per_cluster: Vec<u64>,
    /// Mean cosine similarity of the labeled images to their prototypes.
    pub mean_similarity: f64,
    pub seed: u64,
    pub restarts: usize,
}

/// `curation/floor.json`: how similar a pool patch must be to its nearest prototype to be
/// a candidate: what the labeled images of that cluster reach when cut into patches of the
/// plan's size (so the floor compares like with like: a small model's embedding depends on
/// the input's size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimilarityFloor {
    /// SHA-256 of the `prototypes.json` it was calibrated against (other prototypes make it
    /// stale).
    pub prototypes_sha256: String,
    /// The labeled split cut into patches.
    pub split: String,
    /// The patch side the labeled images were cut into (the plan's).
    pub patch_px: u32,
    /// The quantile of the labeled patches' similarities taken as the floor (0.05: 95 % of
    /// a cluster's labeled patches are at least as similar to its prototype).
    pub quantile: f64,
    /// Per cluster, the floor. A cluster that no labeled patch is nearest to takes the
    /// highest floor of the others (nothing labeled looks like it at this patch size).
    pub per_cluster: Vec<f32>,
    /// Per cluster, the labeled patches whose nearest prototype it is (those whose image
    /// is its cluster's only one left out).
    pub labeled_patches: Vec<u64>,
    /// Each labeled patch was compared with its prototype made without its own image (false
    /// in floors of an earlier s5, which are calibrated again).
    #[serde(default)]
    pub leave_one_out: bool,
}

impl SimilarityFloor {
    /// `<run>/curation/floor.json`.
    pub fn path(run: &RunDir) -> PathBuf {
        run.curation().join("floor.json")
    }

    pub fn save(&self, run: &RunDir) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a floor serialises");
        write_atomic(&Self::path(run), text.as_bytes())
    }

    pub fn load(run: &RunDir) -> Result<Self> {
        load_json(&Self::path(run), "similarity floor")
    }
}

impl Prototypes {
    /// `<run>/curation/prototypes.json`.
    pub fn path(run: &RunDir) -> PathBuf {
        run.curation().join("prototypes.json")
    }

    pub fn save(&self, run: &RunDir) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("prototypes serialise");
        write_atomic(&Self::path(run), text.as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self> {
        load_json(path, "prototype file")
    }
}

/// An image left out of a curation stage, and why (an unreadable file never ends a stage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: String,
}

/// One image of the pool, with its size (read once, from its header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanImage {
    pub path: PathBuf,
    pub width_px: u32,
    pub height_px: u32,
    /// What the image really is, where the pool's truth is known (`s5 synth`'s
    /// `pool/truth.ron`, given to `s5 curate plan --truth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `curation/plan.json`: the pool fixed once, so every shard and every restart numbers its
/// patches the same way: image by image in this order, each cut into `patch_px` patches
/// every `stride_px` (the last row and column aligned to the image's end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The spec and split of the pool.
    pub spec: PathBuf,
    pub split: String,
    pub patch_px: u32,
    pub stride_px: u32,
    pub images: Vec<PlanImage>,
    /// Images whose header could not be read.
    pub skipped: Vec<SkippedFile>,
    /// Patches in all.
    pub patches: u64,
    /// The kind of image that is in distribution, where kinds are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_distribution_kind: Option<String>,
    /// The spec's `imaging` when the plan was made (bands, value range, nodata): every shard
    /// is scored with it, and scoring refuses a spec changed since (absent: 8-bit RGB as it
    /// is, and plans made before it was noted).
    #[serde(default, skip_serializing_if = "Imaging::is_default")]
    pub imaging: Imaging,
}

impl Plan {
    pub fn path(run: &RunDir) -> PathBuf {
        run.curation().join("plan.json")
    }

    pub fn save(&self, run: &RunDir) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a plan serialises");
        write_atomic(&Self::path(run), text.as_bytes())
    }

    pub fn load(run: &RunDir) -> Result<Self> {
        load_json(&Self::path(run), "curation plan")
    }

    /// SHA-256 (lower-case hex) of what fixes the patches' numbers and pixels: the patch
    /// size and stride, every image's path and size, in order, and the `imaging` they are
    /// read with (where it is not the default, so plans made before it was noted keep their
    /// hash). Records name patches by number, so shards are valid exactly for plans of the
    /// same numbering and imaging (the kinds may change).
    pub fn numbering_sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.patch_px.to_le_bytes());
        hasher.update(self.stride_px.to_le_bytes());
        hasher.update((self.images.len() as u64).to_le_bytes());
        for image in &self.images {
            let path = image.path.to_string_lossy();
            hasher.update((path.len() as u64).to_le_bytes());
            hasher.update(path.as_bytes());
            hasher.update(image.width_px.to_le_bytes());
            hasher.update(image.height_px.to_le_bytes());
        }
        if !self.imaging.is_default() {
            let imaging = serde_json::to_string(&self.imaging).expect("imaging serialises");
            hasher.update(b"imaging");
            hasher.update(imaging.as_bytes());
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// `curation/shards/shard-<i>-of-<n>.json`: a finished shard (its records are the `.bin`
/// beside it). A shard whose summary matches the plan and model is not scored again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardSummary {
    /// Shard `index` of `count` (0-based), covering plan patches `first_patch..end_patch`.
    pub index: u32,
    pub count: u32,
    pub first_patch: u64,
    pub end_patch: u64,
    /// Records written (patches of unreadable images are left out).
    pub records: u64,
    /// The seed model's weights (SHA-256): shards of different models are never mixed.
    pub model_sha256: String,
    /// Patches of the plan in all (a changed plan invalidates the shard).
    pub plan_patches: u64,
    /// [`Plan::numbering_sha256`] of the plan it was scored for (empty: written before
    /// plans were hashed, so never current).
    #[serde(default)]
    pub plan_sha256: String,
    /// Patches per forward pass (it fixes where the shard's range starts and ends; 0:
    /// written before it was noted).
    #[serde(default)]
    pub batch: u64,
    /// Whether the model scored in f16.
    #[serde(default)]
    pub f16: bool,
    /// SHA-256 of the `prototypes.json` its clusters refer to (new prototypes invalidate it).
    pub prototypes_sha256: String,
    pub unreadable: Vec<SkippedFile>,
    pub seconds: f64,
    /// The version of the record file's format (0: written before versions were noted here).
    #[serde(default)]
    pub records_version: u32,
    /// Per cluster: what the shard's records hold (the partial report is merged from these).
    #[serde(default)]
    pub clusters: Vec<ShardCluster>,
    /// The upper edge of [`ShardCluster::entropy_histogram`]'s range `[0, entropy_range_nats]`.
    #[serde(default)]
    pub entropy_range_nats: f32,
}

/// One cluster's records in one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ShardCluster {
    /// Records whose nearest prototype this is.
    pub records: u64,
    pub entropy_sum: f64,
    pub similarity_sum: f64,
    pub foreground_sum: f64,
    /// Counts in [`ENTROPY_BINS`] equal bins over `[0, entropy_range_nats]` (values above it
    /// count in the last).
    pub entropy_histogram: Vec<u64>,
    /// The lowest-entropy records (at most [`EXTREMES_KEPT`]), lowest first.
    pub lowest: Vec<ScoredPatch>,
    /// The highest-entropy records (at most [`EXTREMES_KEPT`]), highest first.
    pub highest: Vec<ScoredPatch>,
}

/// A patch and its entropy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoredPatch {
    pub patch: u64,
    pub entropy: f32,
}

/// Bins of the entropy histograms.
pub const ENTROPY_BINS: usize = 64;
/// Lowest and highest records kept per cluster and shard (the thumbnails come from them).
pub const EXTREMES_KEPT: usize = 8;

impl ShardCluster {
    /// The bin of `entropy` in `ENTROPY_BINS` bins over `[0, range]`.
    pub fn bin(entropy: f32, range: f32) -> usize {
        if range.is_nan() || range <= 0.0 || !entropy.is_finite() {
            return 0;
        }
        ((entropy.max(0.0) / range * ENTROPY_BINS as f32) as usize).min(ENTROPY_BINS - 1)
    }
}

impl ShardSummary {
    /// The summary and record files of shard `index` of `count`.
    pub fn paths(run: &RunDir, index: u32, count: u32) -> (PathBuf, PathBuf) {
        let dir = run.curation().join("shards");
        let stem = format!("shard-{index:05}-of-{count:05}");
        (
            dir.join(format!("{stem}.json")),
            dir.join(format!("{stem}.bin")),
        )
    }

    /// The file of the shard's sampled embeddings (for the report's projection).
    pub fn sample_path(run: &RunDir, index: u32, count: u32) -> PathBuf {
        Self::paths(run, index, count)
            .0
            .with_extension("sample.bin")
    }

    pub fn save(&self, run: &RunDir) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a summary serialises");
        write_atomic(&Self::paths(run, self.index, self.count).0, text.as_bytes())
    }

    /// Every finished shard's summary, of any sharding, in no particular order.
    pub fn load_all(run: &RunDir) -> Result<Vec<Self>> {
        let dir = run.curation().join("shards");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(RunError::io(&dir)(source)),
        };
        let mut summaries = Vec::new();
        for entry in entries {
            let path = entry.map_err(RunError::io(&dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                summaries.push(load_json(&path, "shard summary")?);
            }
        }
        Ok(summaries)
    }

    /// The finished shard `index` of `count`, if its summary is there.
    pub fn load(run: &RunDir, index: u32, count: u32) -> Result<Option<Self>> {
        let path = Self::paths(run, index, count).0;
        if !path.exists() {
            return Ok(None);
        }
        load_json(&path, "shard summary").map(Some)
    }
}

pub(crate) fn load_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
    what: &'static str,
) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| RunError::reading(path, e, what))?;
    serde_json::from_str(&text).map_err(|e| RunError::Format {
        path: path.to_path_buf(),
        what,
        reason: e.to_string(),
    })
}
