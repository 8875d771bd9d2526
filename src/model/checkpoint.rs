//! s5's own checkpoints (burn's burnpack records): the model alone, or the model with its
//! optimizer state for resuming. Every file is written atomically: the record goes to a
//! temporary file beside the target, which is then renamed over it, so a crash never leaves
//! a torn checkpoint.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;

use crate::error::{Error, Result};

/// Saves every parameter and buffer of `model` to `path`.
pub fn save<M: Module>(model: &M, path: &Path) -> Result<()> {
    write_atomic_with(path, |tmp| {
        model.clone().save_file(tmp).map_err(|e| e.to_string())
    })
}

/// Writes a burnpack file atomically through `write(temporary path)`.
fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<(), String>,
) -> Result<()> {
    // burn's writer appends `.bpk` to a path without it: give the temporary file one.
    crate::fsutil::write_atomic_via(path, ".bpk", |tmp| {
        write(tmp).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("cannot write: {e}"),
        })
    })
}

/// Loads a checkpoint written by [`save`] into a model of the same configuration.
pub fn load<M: Module>(model: M, path: &Path) -> Result<M> {
    if !path.is_file() {
        return Err(Error::MissingFile {
            path: path.to_path_buf(),
            context: Some("checkpoint".into()),
        });
    }
    let bad = |e: burn::store::RecordError| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("does not fit this model: {e}"),
    };
    let record = burn::store::ModuleRecord::from_bytes(read_whole(path)?).map_err(bad)?;
    model.try_load_record(record).map_err(bad)
}

/// The whole file in memory. burn's own file loading leaves each tensor's bytes in the file,
/// read when the GPU first takes them; a checkpoint pruned or replaced before then would
/// make the device thread panic. Read at once, the weights no longer depend on the file.
fn read_whole(path: &Path) -> Result<burn::tensor::Bytes> {
    let bytes = std::fs::read(path).map_err(|e| Error::reading(path, e, Some("checkpoint")))?;
    Ok(burn::tensor::Bytes::from_bytes_vec(bytes))
}

/// The files of a training checkpoint folder.
pub fn training_files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("model.bpk"), dir.join("optimizer.bpk"))
}

/// Saves the model and the optimizer state (moments, step counts) into `dir`. The optimizer
/// file is written first and the model last, so a model file always has its optimizer.
pub fn save_training<M: Module>(model: &M, optimizer: &ModuleOptimizer, dir: &Path) -> Result<()> {
    let (model_path, optim_path) = training_files(dir);
    write_atomic_with(&optim_path, |tmp| {
        optimizer.save(tmp).map_err(|e| e.to_string())
    })?;
    save(model, &model_path)
}

/// Loads what [`save_training`] wrote into a fresh model and optimizer of the same setup.
pub fn load_training<M: Module>(
    model: M,
    optimizer: ModuleOptimizer,
    dir: &Path,
) -> Result<(M, ModuleOptimizer)> {
    let (model_path, optim_path) = training_files(dir);
    let model = load(model, &model_path)?;
    if !optim_path.is_file() {
        return Err(Error::MissingFile {
            path: optim_path,
            context: Some("optimizer state of a training checkpoint".into()),
        });
    }
    let optimizer = optimizer
        .from_bytes(read_whole(&optim_path)?)
        .map_err(|e| Error::Checkpoint {
            path: optim_path.clone(),
            reason: format!("optimizer state does not fit: {e}"),
        })?;
    Ok((model, optimizer))
}
