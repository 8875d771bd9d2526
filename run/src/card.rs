//! The cards a checkpoint folder carries so it explains itself: `model.ron` says how to
//! build the model and which datasets its decoders belong to (names, classes, palettes), so
//! `s5 predict`, `s5 eval` and the viewer need nothing but the folder; `state.ron` says how
//! far training got.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::architecture::SegmentorConfig;
use crate::imaging::Imaging;

/// One decoder's dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetCard {
    pub name: String,
    pub classes: Vec<String>,
    /// One RGB colour per class.
    pub palette: Vec<[u8; 3]>,
    pub background: Option<u8>,
    /// The spec it was trained from (for `s5 eval` on its splits).
    pub spec: PathBuf,
    /// How the spec's images were read (bands, value range, nodata); `s5 predict` reads its
    /// inputs the same way. Absent in cards of 8-bit RGB datasets.
    #[serde(default, skip_serializing_if = "Imaging::is_default")]
    pub imaging: Imaging,
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
    /// The loss scaler of a mixed-precision run (absent for f32 runs and older checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<LossScaleState>,
}

/// Where a mixed-precision run's dynamic loss scaling stands.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaleState {
    /// The scale the next step multiplies its loss by.
    pub scale: f64,
    /// Clean steps in a row since the scale last changed.
    pub clean_steps: u64,
    /// Steps skipped for non-finite gradients since the run began.
    pub skipped_steps: u64,
}

impl ModelCard {
    /// The decoder index of a dataset given by name (case-insensitive) or index; `None`
    /// picks the only one. The error says which datasets exist.
    pub fn dataset_index(&self, which: Option<&str>) -> Result<usize, String> {
        let names = || {
            self.datasets
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match which {
            None if self.datasets.len() == 1 => Ok(0),
            None => Err(format!(
                "this model has {} decoders ({}): pick one with --dataset",
                self.datasets.len(),
                names()
            )),
            Some(w) => w
                .parse::<usize>()
                .ok()
                .filter(|&i| i < self.datasets.len())
                .or_else(|| {
                    self.datasets
                        .iter()
                        .position(|d| d.name.eq_ignore_ascii_case(w))
                })
                .ok_or_else(|| format!("no dataset `{w}` in this model; it has: {}", names())),
        }
    }
}
