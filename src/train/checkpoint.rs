//! Checkpoint folders of a training run: the burn records (model, optimizer) written into a
//! folder that the run contract ([`crate::run::checkpoint`]) completes with the model card,
//! the training state and checksums, and the model read back from one, verified first.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;

use super::optimizer::Optimizer;
use crate::data::DatasetSpec;
use crate::error::Result;
use crate::model::{Segmentor, checkpoint};
use crate::run::checkpoint::{
    CheckpointWriter, FolderWriter, MODEL_FILE, OPTIMIZER_FILE, read_card, resolve_checkpoint,
    verify,
};
use crate::run::{DatasetCard, ModelCard, RunDir, TrainState};

/// The card of one decoder's dataset.
pub fn dataset_card(spec: &DatasetSpec, spec_path: &Path) -> DatasetCard {
    DatasetCard {
        name: spec.name.clone(),
        classes: spec.classes.clone(),
        palette: spec.palette.clone(),
        background: spec.background,
        spec: spec_path.to_path_buf(),
        imaging: spec.imaging,
    }
}

/// Writes a complete checkpoint folder for `state.step` and marks it the run's newest;
/// keeps the `keep` newest older ones.
pub fn save_checkpoint(
    run: &RunDir,
    model: &Segmentor,
    optimizer: &Optimizer,
    card: &ModelCard,
    state: TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let writer = CheckpointWriter::begin(run, state.step)?;
    optimizer.save(&writer.dir().join(OPTIMIZER_FILE))?;
    save_trained_model(model, writer.dir())?;
    Ok(writer.finish(card, &state, keep)?)
}

/// Writes a model being trained as `dir/model.bpk`, its BatchNorm running statistics
/// synchronised first: they lag one update until then (burn's `RunningState`), and taking a
/// validation snapshot synchronises the shared state.
pub fn save_trained_model(model: &Segmentor, dir: &Path) -> Result<()> {
    let _ = model.valid();
    checkpoint::save(model, &dir.join(MODEL_FILE))
}

/// Writes `model` (imported, not trained: step 0) as the checkpoint folder `out` with its
/// card and checksums, which `--init`, `s5 predict` and `s5 eval` take. `out` must not exist.
pub fn save_model_folder(model: &Segmentor, card: &ModelCard, out: &Path) -> Result<PathBuf> {
    let writer = FolderWriter::begin(out)?;
    checkpoint::save(model, &writer.dir().join(MODEL_FILE))?;
    let state = TrainState {
        step: 0,
        wall_s: 0.0,
        loss_scale: None,
    };
    Ok(writer.finish(card, &state)?)
}

/// The model of a checkpoint folder or run directory (newest checkpoint), for inference.
/// The folder's checksums are verified first: a damaged file is an error naming it.
pub fn load_model(path: &Path, device: &Device) -> Result<(Segmentor, ModelCard, PathBuf)> {
    let dir = resolve_checkpoint(path)?;
    verify(&dir)?;
    let card = read_card(&dir)?;
    let model = checkpoint::load(
        Segmentor::new(&card.segmentor, device),
        &dir.join(MODEL_FILE),
    )?;
    Ok((model, card, dir))
}
