//! Where each file of a run lives.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// A run directory.
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

    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The folder of the checkpoint taken after `step` steps.
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints().join(format!("step-{step:08}"))
    }

    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }

    /// The folder of the samples written at `step`.
    pub fn sample_step(&self, step: u64) -> PathBuf {
        self.samples().join(format!("step-{step:08}"))
    }

    /// Records `step` as the newest complete checkpoint (call after its files are written).
    pub fn mark_latest_checkpoint(&self, step: u64) -> Result<()> {
        write_atomic(
            &self.checkpoints().join("latest"),
            format!("{step}\n").as_bytes(),
        )
    }

    /// The newest complete checkpoint, if any: its step and folder.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, PathBuf)>> {
        let path = self.checkpoints().join("latest");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let step: u64 = text.trim().parse().map_err(|_| Error::Checkpoint {
            path: path.clone(),
            reason: format!("expected a step number, found `{}`", text.trim()),
        })?;
        Ok(Some((step, self.checkpoint(step))))
    }
}

/// The steps of the `step-<n>` folders directly in `dir`, ascending (none if `dir` does not
/// exist). Temporary `.step-<n>.tmp` folders are not listed.
pub fn step_folders(dir: &Path) -> Result<Vec<u64>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
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
