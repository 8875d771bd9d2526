//! Where each file of a run lives.

use std::path::{Path, PathBuf};

use crate::error::{Result, RunError};

/// A run directory: the paths of its files (nothing is read or written here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn manifest(&self) -> PathBuf {
        self.root.join("manifest.json")
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("config.ron")
    }

    pub fn events(&self) -> PathBuf {
        self.root.join("events.jsonl")
    }

    /// The writer's lock file (see [`crate::lock`]).
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The folder of the checkpoint taken after `step` steps.
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints().join(step_name(step))
    }

    /// The best checkpoint so far by the mean validation metric (see
    /// [`crate::checkpoint::BestWriter`]); not a `step-<n>` folder, so never pruned.
    pub fn best_checkpoint(&self) -> PathBuf {
        self.checkpoints().join("best")
    }

    /// The pointer file naming the newest complete checkpoint.
    pub fn latest_pointer(&self) -> PathBuf {
        self.checkpoints().join("latest")
    }

    /// The curation report of a `curate` run (filled by `s5 curate`).
    pub fn curation(&self) -> PathBuf {
        self.root.join("curation")
    }

    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }

    /// The folder of the samples written at `step`.
    pub fn sample_step(&self, step: u64) -> PathBuf {
        self.samples().join(step_name(step))
    }
}

/// `step-<n>`, zero-padded so folders sort by step.
pub fn step_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// The temporary name a step folder is built under before it is renamed into place.
pub fn step_tmp_name(step: u64) -> String {
    format!(".step-{step:08}.tmp")
}

/// The steps of the `step-<n>` folders directly in `dir`, ascending (none if `dir` does not
/// exist). Temporary `.step-<n>.tmp` folders are not listed.
pub fn step_folders(dir: &Path) -> Result<Vec<u64>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(RunError::io(dir)(source)),
    };
    let mut steps: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("step-")?
                .parse::<u64>()
                .ok()
        })
        .collect();
    steps.sort_unstable();
    Ok(steps)
}

/// Replaces the folder `dir` by the complete folder `tmp` (same parent): the one way a step
/// folder appears, so a reader sees it whole or not at all.
pub fn publish_folder(tmp: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(RunError::io(dir))?;
    }
    std::fs::rename(tmp, dir).map_err(RunError::io(dir))
}
