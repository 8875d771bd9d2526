//! A checkpoint folder that explains itself: `model.ron` says how to build the model and
//! which datasets its decoders belong to (names, classes, palettes), so `s5 predict` and
//! `s5 eval` need nothing but the folder.
//!
//! ```text
//! step-<n>/model.bpk       parameters and BatchNorm statistics (burnpack)
//! step-<n>/optimizer.bpk   AdamW moments and step counts
//! step-<n>/model.ron       this card
//! step-<n>/state.ron       step and wall time, for resuming
//! ```
//! A folder is written as `.step-<n>.tmp` and renamed when complete: a folder named
//! `step-<n>` is always whole.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::data::DatasetSpec;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::model::{Segmentor, SegmentorConfig, checkpoint};
use crate::run::RunDir;

/// One decoder's dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetCard {
    pub name: String,
    pub classes: Vec<String>,
    pub palette: Vec<[u8; 3]>,
    pub background: Option<u8>,
    /// The spec it was trained from (for `s5 eval` on its splits).
    pub spec: PathBuf,
}

impl DatasetCard {
    pub fn of(spec: &DatasetSpec, spec_path: &Path) -> Self {
        Self {
            name: spec.name.clone(),
            classes: spec.classes.clone(),
            palette: spec.palette.clone(),
            background: spec.background,
            spec: spec_path.to_path_buf(),
        }
    }
}

/// How to rebuild a checkpoint's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub segmentor: SegmentorConfig,
    /// In decoder order.
    pub datasets: Vec<DatasetCard>,
}

/// Progress at a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps completed.
    pub step: u64,
    /// Training wall time so far.
    pub wall_s: f64,
}

impl ModelCard {
    /// The decoder index of a dataset given by name (case-insensitive) or index; `None`
    /// picks the only one.
    pub fn dataset_index(&self, which: Option<&str>) -> Result<usize> {
        let names = || {
            self.datasets
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match which {
            None if self.datasets.len() == 1 => Ok(0),
            None => Err(Error::Config {
                reason: format!(
                    "this model has {} decoders ({}): pick one with --dataset",
                    self.datasets.len(),
                    names()
                ),
            }),
            Some(w) => w
                .parse::<usize>()
                .ok()
                .filter(|&i| i < self.datasets.len())
                .or_else(|| {
                    self.datasets
                        .iter()
                        .position(|d| d.name.eq_ignore_ascii_case(w))
                })
                .ok_or_else(|| Error::Config {
                    reason: format!("no dataset `{w}` in this model; it has: {}", names()),
                }),
        }
    }
}

/// Writes a complete checkpoint folder for `step` and marks it the run's newest; keeps the
/// `keep` newest older ones.
pub fn save_checkpoint(
    run: &RunDir,
    model: &Segmentor,
    optimizer: &super::Optimizer,
    card: &ModelCard,
    state: TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let dir = run.checkpoint(state.step);
    let tmp = run
        .checkpoints()
        .join(format!(".step-{:08}.tmp", state.step));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    optimizer.save(&tmp.join("optimizer.bpk"))?;
    // BatchNorm running statistics lag one update until synchronised (burn's
    // `RunningState`); taking a validation snapshot synchronises the shared state.
    let _ = model.valid();
    checkpoint::save(model, &tmp.join("model.bpk"))?;
    write_atomic(&tmp.join("model.ron"), ron_text(card).as_bytes())?;
    write_atomic(&tmp.join("state.ron"), ron_text(&state).as_bytes())?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    run.mark_latest_checkpoint(state.step)?;
    prune(run, keep)?;
    Ok(dir)
}

fn ron_text<T: Serialize>(value: &T) -> String {
    ron::ser::to_string_pretty(value, ron::ser::PrettyConfig::default()).expect("serialises")
}

fn read_ron<T: for<'de> Deserialize<'de>>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::reading(path, e, Some(what)))?;
    ron::from_str(&text).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("not a {what}: {e}"),
    })
}

/// Deletes all but the `keep` newest checkpoints older than the newest.
fn prune(run: &RunDir, keep: usize) -> Result<()> {
    let Some((latest, _)) = run.latest_checkpoint()? else {
        return Ok(());
    };
    let mut steps = checkpoint_steps(run)?;
    steps.retain(|&s| s < latest);
    let excess = steps.len().saturating_sub(keep);
    for step in &steps[..excess] {
        let dir = run.checkpoint(*step);
        std::fs::remove_dir_all(&dir).map_err(|source| Error::Io { path: dir, source })?;
    }
    Ok(())
}

/// Steps of the complete checkpoint folders of a run.
pub fn checkpoint_steps(run: &RunDir) -> Result<Vec<u64>> {
    crate::run::layout::step_folders(&run.checkpoints())
}

/// Reads a checkpoint folder's progress.
pub fn load_state(dir: &Path) -> Result<TrainState> {
    read_ron(&dir.join("state.ron"), "checkpoint state")
}

/// The checkpoint folder that `path` names: a checkpoint folder itself, or a run directory
/// (its newest checkpoint).
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf> {
    if path.join("model.ron").is_file() {
        return Ok(path.to_path_buf());
    }
    let run = RunDir::new(path);
    match run.latest_checkpoint()? {
        Some((_, dir)) if dir.join("model.ron").is_file() => Ok(dir),
        Some((_, dir)) => Err(Error::MissingFile {
            path: dir.join("model.ron"),
            context: Some("the run's newest checkpoint is incomplete".into()),
        }),
        None => Err(Error::MissingFile {
            path: path.join("checkpoints/latest"),
            context: Some(
                "expected a checkpoint folder (with model.ron) or a run directory with checkpoints"
                    .into(),
            ),
        }),
    }
}

/// The model of a checkpoint folder or run directory (newest checkpoint), for inference.
pub fn load_model(path: &Path, device: &Device) -> Result<(Segmentor, ModelCard, PathBuf)> {
    let dir = resolve_checkpoint(path)?;
    let card: ModelCard = read_ron(&dir.join("model.ron"), "model card")?;
    let model = checkpoint::load(
        Segmentor::new(&card.segmentor, device),
        &dir.join("model.bpk"),
    )?;
    Ok((model, card, dir))
}
