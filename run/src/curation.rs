//! What `s5 curate` leaves in a run's `curation/` folder for pre-training, the viewer and
//! later stages. Written atomically; read with [`Prototypes::load`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RunError};
use crate::fsutil::write_atomic;
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
        let text = std::fs::read_to_string(path)
            .map_err(|e| RunError::reading(path, e, "curation prototypes"))?;
        serde_json::from_str(&text).map_err(|e| RunError::Format {
            path: path.to_path_buf(),
            what: "prototype file",
            reason: e.to_string(),
        })
    }
}
