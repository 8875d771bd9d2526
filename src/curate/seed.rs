//! The seed model of a curation: its checkpoint loaded, the decoder chosen, the hash of its
//! weights (what every stage records and checks).

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::score::ScoreSetup;
use crate::data::DatasetSpec;
use crate::error::{Error, Result};
use crate::model::Segmentor;
use crate::run::checkpoint::{MODEL_FILE, file_sum};
use crate::run::curation::{ModelRef, Prototypes};

/// The seed model of a curation, loaded, with the decoder chosen.
pub struct SeedModel {
    pub model: Segmentor,
    pub model_ref: ModelRef,
    pub card: crate::run::ModelCard,
    pub dataset: usize,
    pub spec_path: PathBuf,
}

impl SeedModel {
    /// Loads the checkpoint at `model` (a run or checkpoint folder) and picks `dataset`.
    pub fn load(model: &Path, dataset: Option<&str>, device: &Device) -> Result<Self> {
        let (model, card, checkpoint) = crate::train::load_model(model, device)?;
        let index = card
            .dataset_index(dataset)
            .map_err(|reason| Error::Config { reason })?;
        Ok(Self {
            model,
            model_ref: ModelRef {
                sha256: file_sum(&checkpoint.join(MODEL_FILE))?.sha256,
                checkpoint: std::path::absolute(&checkpoint).map_err(|source| Error::Io {
                    path: checkpoint.clone(),
                    source,
                })?,
            },
            spec_path: card.datasets[index].spec.clone(),
            dataset: index,
            card,
        })
    }

    /// The spec of its dataset.
    pub fn spec(&self) -> Result<DatasetSpec> {
        DatasetSpec::load(&self.spec_path)
    }

    /// How its decoder scores patches.
    pub fn setup(&self, batch: usize) -> ScoreSetup {
        ScoreSetup {
            dataset: self.dataset,
            background: self.card.datasets[self.dataset].background.map(usize::from),
            batch: batch.max(1),
            sample_below: 0,
        }
    }

    /// Refuses a model other than the one `prototypes` were made with.
    pub fn check_made(&self, prototypes: &Prototypes) -> Result<()> {
        if self.model_ref.sha256 == prototypes.model.sha256 {
            return Ok(());
        }
        Err(Error::Checkpoint {
            path: self.model_ref.checkpoint.clone(),
            reason: format!(
                "weights {} are not the model the prototypes were made with ({}, weights {}): \
                 use that model, or make the prototypes again",
                self.model_ref.sha256,
                prototypes.model.checkpoint.display(),
                prototypes.model.sha256
            ),
        })
    }
}
