//! `manifest.json`: what kind of run this is and which format its files follow.

use serde::{Deserialize, Serialize};

use crate::error::{Result, RunError};
use crate::fsutil::write_atomic;
use crate::layout::RunDir;

/// The run-directory format this build writes.
///
/// Compatibility rule: a build that writes version N reads versions N and N − 1 (see
/// [`OLDEST_READABLE_VERSION`]); anything else is refused with an error naming both. Version
/// history:
/// - 1: manifest, config, events, checkpoint folders (`model.bpk`, `optimizer.bpk`,
///   `model.ron`, `state.ron`) with a `latest` pointer, sample folders.
/// - 2: adds the writer's `lock` file and each checkpoint's `checksums.json`. A version-1
///   checkpoint has no checksums and loads unverified; resuming a version-1 run upgrades its
///   manifest to 2.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this build reads: always [`FORMAT_VERSION`] − 1.
pub const OLDEST_READABLE_VERSION: u32 = FORMAT_VERSION - 1;

/// What wrote the run; decided by the training recipe (or the curation command).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Supervised training on labeled datasets (`s5 train`).
    Train,
    /// S4P: FixMatch on labeled and unlabeled images (`s5 pretrain`).
    Pretrain,
    /// MoE-MDF joint fine-tuning on several datasets.
    Finetune,
    /// Data curation (`s5 curate`).
    Curate,
}

impl RunKind {
    /// The `s5` subcommand that writes (and resumes) this kind of run.
    pub fn command(self) -> &'static str {
        match self {
            Self::Train => "s5 train",
            Self::Pretrain => "s5 pretrain",
            Self::Finetune => "s5 finetune",
            Self::Curate => "s5 curate",
        }
    }
}

impl RunKind {
    /// The name written in `manifest.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Pretrain => "pretrain",
            Self::Finetune => "finetune",
            Self::Curate => "curate",
        }
    }
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the name written in the file (`manifest.kind == "train"`).
impl PartialEq<&str> for RunKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub kind: RunKind,
    pub s5_version: String,
    /// Seconds since the Unix epoch.
    pub created_unix_s: u64,
}

impl Manifest {
    /// A new run's manifest, in this build's format.
    pub fn new(kind: RunKind) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            kind,
            s5_version: env!("CARGO_PKG_VERSION").to_string(),
            created_unix_s: crate::lock::now_unix_s(),
        }
    }

    pub fn save(&self, run: &RunDir) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        write_atomic(&run.manifest(), text.as_bytes())
    }

    /// Reads a run's manifest, refusing a format this build does not read.
    pub fn load(run: &RunDir) -> Result<Self> {
        let path = run.manifest();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| RunError::reading(&path, e, "not an s5 run directory"))?;
        // The version first, so a future format is refused as such, not as a parse error.
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let version: Version = serde_json::from_str(&text).map_err(|e| RunError::Format {
            path: path.clone(),
            what: "run manifest",
            reason: e.to_string(),
        })?;
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version.format_version) {
            return Err(RunError::Version {
                path,
                found: version.format_version,
                oldest: OLDEST_READABLE_VERSION,
                newest: FORMAT_VERSION,
            });
        }
        serde_json::from_str(&text).map_err(|e| RunError::Format {
            path,
            what: "run manifest",
            reason: e.to_string(),
        })
    }

    /// This manifest in the current format (a resumed older run is written on in it).
    pub fn upgraded(self) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            ..self
        }
    }
}
