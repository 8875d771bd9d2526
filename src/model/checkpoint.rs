//! s5's own model checkpoints (burn's record format), written atomically: the record goes
//! to a temporary file beside the target, which is then renamed over it, so a crash never
//! leaves a torn checkpoint.

use std::path::Path;

use burn::module::Module;

use crate::error::{Error, Result};

/// Saves every parameter and buffer of `model` to `path`.
pub fn save<M: Module>(model: &M, path: &Path) -> Result<()> {
    let fail = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let tmp = tempfile::Builder::new()
        .prefix(".checkpoint-")
        // burn's writer appends `.bpk` to a path without it: give it one.
        .suffix(".bpk")
        .tempfile_in(dir)
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    model
        .clone()
        .save_file(tmp.path())
        .map_err(|e| fail(format!("cannot write: {e}")))?;
    tmp.persist(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Loads a checkpoint written by [`save`] into a model of the same configuration.
pub fn load<M: Module>(model: M, path: &Path) -> Result<M> {
    if !path.is_file() {
        return Err(Error::MissingFile {
            path: path.to_path_buf(),
            context: Some("checkpoint".into()),
        });
    }
    model.try_load_file(path).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("does not fit this model: {e}"),
    })
}
