//! `s5 finetune export`: one dataset of an FFN-MoE model as a dense single-dataset model
//! (see [`crate::model::experts::dense_for_dataset`]), written as a run directory holding one
//! checkpoint (kind `finetune`, no events) that `s5 predict` and `s5 eval` take.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::checkpoint::load_model;
use crate::error::{Error, Result};
use crate::model::checkpoint;
use crate::model::experts::dense_for_dataset;
use crate::run::checkpoint::{CheckpointWriter, MODEL_FILE, read_state};
use crate::run::{Manifest, ModelCard, RunDir, RunKind, RunLock};

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The checkpoint folder written.
    pub checkpoint: PathBuf,
    /// Trained parameters of the FFN-MoE model and of the export.
    pub moe_params: usize,
    pub dense_params: usize,
    /// The training step of the source checkpoint.
    pub step: u64,
}

/// Exports dataset `dataset` (its name) of the FFN-MoE model at `model` (a run or checkpoint
/// folder) to the new run directory `out`.
pub fn export_dense(model: &Path, dataset: &str, out: &Path, device: &Device) -> Result<Exported> {
    let run = RunDir::new(out);
    let refuse = || Error::Config {
        reason: format!(
            "{} holds a run already: export into a new folder",
            out.display()
        ),
    };
    if run.manifest().exists() {
        return Err(refuse());
    }
    let (moe, card, dir) = load_model(model, device)?;
    // Written under the run's lock, as every run is; a second export into the same folder
    // waits for nothing and is refused.
    let (_lock, _) = RunLock::acquire(&run)?;
    if run.manifest().exists() {
        return Err(refuse());
    }
    let index = card
        .dataset_index(Some(dataset))
        .map_err(|reason| Error::Config { reason })?;
    let (dense, dense_cfg) = dense_for_dataset(&moe, &card.segmentor, index, device)?;
    let state = read_state(&dir)?;
    Manifest::new(RunKind::Finetune).save(&run)?;
    let writer = CheckpointWriter::begin(&run, state.step)?;
    checkpoint::save(&dense, &writer.dir().join(MODEL_FILE))?;
    let dense_card = ModelCard {
        segmentor: dense_cfg,
        datasets: vec![card.datasets[index].clone()],
    };
    let checkpoint = writer.finish(&dense_card, &state, 0)?;
    Ok(Exported {
        checkpoint,
        moe_params: moe.num_trainable_params(),
        dense_params: dense.num_trainable_params(),
        step: state.step,
    })
}
