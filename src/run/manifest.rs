//! `manifest.json`: what kind of run this is and which format its files follow.

use serde::{Deserialize, Serialize};

use super::layout::RunDir;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// The run-directory format this build writes and reads. Bump on incompatible changes.
pub const RUN_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// `train`, `pretrain`, `finetune`, ...
    pub kind: String,
    pub s5_version: String,
    /// Seconds since the Unix epoch.
    pub created_unix_s: u64,
}

impl Manifest {
    pub fn new(kind: &str) -> Self {
        Self {
            format_version: RUN_FORMAT_VERSION,
            kind: kind.to_string(),
            s5_version: env!("CARGO_PKG_VERSION").to_string(),
            created_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    pub fn save(&self, run: &RunDir) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("manifest serialises");
        write_atomic(&run.manifest(), text.as_bytes())
    }

    /// Reads a run's manifest, refusing a format this build does not know.
    pub fn load(run: &RunDir) -> Result<Self> {
        let path = run.manifest();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::reading(&path, e, Some("not an s5 run directory")))?;
        let manifest: Self = serde_json::from_str(&text).map_err(|e| Error::Spec {
            path: path.clone(),
            reason: format!("bad run manifest: {e}"),
        })?;
        if manifest.format_version != RUN_FORMAT_VERSION {
            return Err(Error::Spec {
                path,
                reason: format!(
                    "run format version {} but this s5 reads version {RUN_FORMAT_VERSION}",
                    manifest.format_version
                ),
            });
        }
        Ok(manifest)
    }
}
