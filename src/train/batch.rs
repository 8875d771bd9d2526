//! What one step draws: named batches, the loaders that draw them, and labeled crops as
//! tensors.

use std::sync::Arc;

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::TrainConfig;
use crate::data::loader::{
    Keep, LabeledItem, LoaderConfig, Prefetcher, UnlabeledItem, labeled_stream,
};
use crate::data::{DatasetSpec, IGNORE, SampleRef};
use crate::error::{Error, Result};

/// One dataset's labeled crops for a step.
#[derive(Debug, Clone)]
pub struct LabeledBatch {
    pub items: Vec<LabeledItem>,
}

/// One step's unlabeled crops and their CutMix partners (pair i: `items[i]`, `partner[i]`).
#[derive(Debug, Clone)]
pub struct UnlabeledBatch {
    pub items: Vec<UnlabeledItem>,
    pub partner: Vec<UnlabeledItem>,
}

/// One dataset of the run, loaded.
pub struct Dataset {
    pub spec: Arc<DatasetSpec>,
    pub train: Arc<Vec<SampleRef>>,
    pub val: Vec<SampleRef>,
    pub weight: f64,
    /// The step from which its loss counts.
    pub start_step: u64,
    /// Crops per step (under `Zip` sampling) and per chunk its loader prepares.
    pub batch: usize,
    /// Its training crop side.
    pub crop_px: u32,
    /// How it is validated.
    pub val_mode: crate::eval::InferMode,
}

/// The datasets a config names, with their training and validation samples.
pub fn load_datasets(config: &TrainConfig) -> Result<Vec<Dataset>> {
    config
        .datasets
        .iter()
        .map(|entry| {
            let spec = entry.load_spec()?;
            let train = spec.samples(&entry.train_split)?;
            if train.is_empty() {
                return Err(Error::Spec {
                    path: entry.spec.clone(),
                    reason: format!("split `{}` has no images", entry.train_split),
                });
            }
            if let Some(missing) = train.iter().find(|s| s.mask.is_none()) {
                return Err(Error::MissingFile {
                    path: missing.image.clone(),
                    context: Some(format!(
                        "a mask for this image: split `{}` is used for supervised training",
                        entry.train_split
                    )),
                });
            }
            let val = match &entry.val_split {
                Some(split) => spec.samples(split)?,
                None => Vec::new(),
            };
            Ok(Dataset {
                spec: Arc::new(spec),
                train: Arc::new(train),
                val,
                weight: entry.loss_weight,
                start_step: entry.start_step,
                batch: entry.batch.unwrap_or(config.batch),
                crop_px: entry.crop_px.unwrap_or(config.augment.crop_px),
                val_mode: entry.val_mode.unwrap_or(config.val.mode),
            })
        })
        .collect()
}

/// A labeled stream for one dataset of a run: crops in stream order, prepared in chunks of
/// the dataset's `batch` and handed out in any number per step.
pub struct LabeledLoader {
    stream: Prefetcher<LabeledItem>,
    /// Prepared crops not handed out yet.
    ready: std::collections::VecDeque<LabeledItem>,
    /// Crops of the first chunk a resumed run had already taken.
    skip: usize,
    name: String,
    keep: Keep,
}

impl LabeledLoader {
    /// The stream of dataset `index` (its seed is the run's seed plus `index`), positioned
    /// after its first `consumed` crops: a resumed run continues with the crops an
    /// uninterrupted one would take.
    pub fn new(dataset: &Dataset, index: usize, config: &TrainConfig, consumed: u64) -> Self {
        let chunk = dataset.batch.max(1) as u64;
        let augment = crate::data::augment::AugmentConfig {
            crop_px: dataset.crop_px,
            ..config.augment.clone()
        };
        let keep = Keep::default();
        let stream = labeled_stream(
            dataset.spec.clone(),
            dataset.train.clone(),
            augment,
            LoaderConfig {
                batch: chunk as usize,
                prefetch: config.prefetch,
                seed: config.seed.wrapping_add(index as u64),
                skip_bad: config.skip_bad,
                start_step: consumed / chunk,
                epoch_len: dataset.train.len(),
            },
            keep.clone(),
        );
        Self {
            stream,
            ready: std::collections::VecDeque::new(),
            skip: (consumed % chunk) as usize,
            name: dataset.spec.name.clone(),
            keep,
        }
    }

    /// From now on, decode only the crops `rule` keeps (by stream position, and index within
    /// the chunk of the dataset's `batch`); the others are empty placeholders, for a caller
    /// that reads only the kept ones (a rank's shares of its steps).
    pub fn decode_only(&self, rule: crate::data::loader::KeepRule) {
        self.keep.set_rule(rule);
    }

    /// The next `n` crops.
    pub fn take(&mut self, n: usize) -> Result<LabeledBatch> {
        while self.ready.len() < n + self.skip {
            let chunk = self.stream.next().ok_or_else(|| Error::LoaderStopped {
                what: format!("dataset {}", self.name),
            })??;
            self.ready.extend(chunk.items);
        }
        self.ready.drain(..self.skip);
        self.skip = 0;
        Ok(LabeledBatch {
            items: self.ready.drain(..n).collect(),
        })
    }
}

/// Labeled crops as tensors.
///
/// # Shapes
/// `B` items of side S → images `[B, 3, S, S]`, labels `[B, S, S]` (0 where not valid),
/// valid `[B, S, S]` (1 for a labeled, non-ignored, non-padding pixel).
pub fn labeled_tensors(
    items: &[LabeledItem],
    crop: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<3, Int>, Tensor<3>) {
    let b = items.len();
    let mut images = Vec::with_capacity(b * 3 * crop * crop);
    let mut labels = Vec::with_capacity(b * crop * crop);
    let mut valid = Vec::with_capacity(b * crop * crop);
    for item in items {
        images.extend_from_slice(&item.image);
        for (&l, &v) in item.labels.iter().zip(&item.valid) {
            let ok = counts(l, v);
            labels.push(if ok { i32::from(l) } else { 0 });
            valid.push(if ok { 1.0f32 } else { 0.0 });
        }
    }
    (
        Tensor::from_data(TensorData::new(images, [b, 3, crop, crop]), device),
        Tensor::from_data(TensorData::new(labels, [b, crop, crop]), device),
        Tensor::from_data(TensorData::new(valid, [b, crop, crop]), device),
    )
}

/// Whether a pixel with this label and padding flag counts in the supervised loss: labeled,
/// not ignored, not padding.
fn counts(label: u8, valid: u8) -> bool {
    valid != 0 && label != IGNORE
}

/// Valid labeled pixels of a batch (see [`counts`]): the denominator of its cross-entropy.
pub fn labeled_valid_px(items: &[LabeledItem]) -> f64 {
    items
        .iter()
        .map(|item| {
            item.labels
                .iter()
                .zip(&item.valid)
                .filter(|&(&l, &v)| counts(l, v))
                .count()
        })
        .sum::<usize>() as f64
}
