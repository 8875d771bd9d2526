//! The supervised recipe (`s5 train`): every dataset's labeled crops in one backbone pass
//! (tokens routed to their dataset's expert with FFN-MoE), each dataset's decoder on its own
//! crops, loss `Σ_d w_d · CE_d`, each CE averaged over its batch's valid pixels. A dataset
//! gated by its `start_step` has its batch drawn but not forwarded until then: it adds no
//! gradient, and the others' gradients are what they would be without it.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};

use super::{Recipe, StepResult};
use crate::error::Result;
use crate::model::Segmentor;
use crate::run::keys;
use crate::train::batch::{
    Dataset, LabeledBatch, LabeledLoader, labeled_tensors, labeled_valid_px,
};
use crate::train::config::TrainConfig;
use crate::train::loss::{cross_entropy_over, scalar};
use crate::train::parallel::{ShareLoss, shares, step_grads};

/// Cross-entropy on the labeled crops of every dataset.
pub struct Supervised {
    loaders: Vec<LabeledLoader>,
    names: Vec<String>,
    weights: Vec<f64>,
    start_steps: Vec<u64>,
    /// Training images per dataset (for the passes over each split).
    train_images: Vec<usize>,
    /// Steps done (the next step's index).
    step: u64,
    batch: usize,
    crop: usize,
}

impl Supervised {
    pub fn new(config: &TrainConfig, datasets: &[Dataset], start_step: u64) -> Self {
        Self {
            loaders: datasets
                .iter()
                .enumerate()
                .map(|(i, d)| LabeledLoader::new(d, i, config, start_step))
                .collect(),
            names: datasets.iter().map(|d| d.spec.name.clone()).collect(),
            weights: datasets.iter().map(|d| d.weight).collect(),
            start_steps: datasets.iter().map(|d| d.start_step).collect(),
            train_images: datasets.iter().map(|d| d.train.len()).collect(),
            step: start_step,
            batch: config.batch,
            crop: config.augment.crop_px as usize,
        }
    }
}

impl Recipe for Supervised {
    fn splittable_images(&self) -> usize {
        self.batch
    }

    fn images_per_step(&self) -> usize {
        self.batch * self.loaders.len()
    }

    fn step(&mut self, model: &Segmentor, devices: &[Device]) -> Result<StepResult> {
        let drawn = self
            .loaders
            .iter_mut()
            .map(LabeledLoader::next_batch)
            .collect::<Result<Vec<LabeledBatch>>>()?;
        // Datasets past their start step (one always is: the config checks it).
        let active: Vec<usize> = (0..drawn.len())
            .filter(|&d| self.step >= self.start_steps[d])
            .collect();
        self.step += 1;
        // Several datasets: each one's gate, and the passes over its split so far (every
        // dataset draws a batch each step, so the smaller ones are oversampled).
        let mut gates = BTreeMap::new();
        if self.loaders.len() > 1 {
            for d in 0..drawn.len() {
                let name = &self.names[d];
                gates.insert(
                    keys::dataset_gate(name),
                    f64::from(u8::from(active.contains(&d))),
                );
                let seen = self.step as f64 * self.batch as f64;
                gates.insert(
                    keys::dataset_passes(name),
                    seen / self.train_images[d].max(1) as f64,
                );
            }
        }
        let mut drawn: Vec<Option<LabeledBatch>> = drawn.into_iter().map(Some).collect();
        let batches: Vec<LabeledBatch> = active
            .iter()
            .map(|&d| drawn[d].take().expect("each dataset once"))
            .collect();
        let names: Vec<String> = active.iter().map(|&d| self.names[d].clone()).collect();
        let weights: Vec<f64> = active.iter().map(|&d| self.weights[d]).collect();
        let norms: Vec<f64> = batches.iter().map(|b| labeled_valid_px(&b.items)).collect();
        let ranges: Vec<_> = batches
            .iter()
            .map(|b| shares(b.items.len(), devices.len()))
            .collect();
        let out = step_grads(model, devices, |i, replica, device| {
            let share: Vec<&[_]> = batches
                .iter()
                .zip(&ranges)
                .map(|(b, r)| &b.items[r[i].clone()])
                .collect();
            Ok(supervised_share(
                replica, &share, &active, &names, &weights, &norms, self.crop, device,
            ))
        })?;
        let mut losses = out.sums;
        if self.loaders.len() == 1 {
            losses.retain(|name, _| name == keys::LOSS);
        }
        Ok(StepResult {
            grads: out.grads,
            losses,
            stats: gates,
        })
    }
}

/// `Σ_d w_d · CE_d` over one share of every active dataset's batch (one backbone pass for
/// all of them; `ids[k]` is batch k's dataset, its expert and decoder), each CE divided by
/// its whole batch's valid pixels `norms[k]`: sums `loss` and `loss/<dataset>`.
#[allow(clippy::too_many_arguments)]
fn supervised_share(
    model: &Segmentor,
    batches: &[&[crate::data::loader::LabeledItem]],
    ids: &[usize],
    names: &[String],
    weights: &[f64],
    norms: &[f64],
    crop: usize,
    device: &Device,
) -> ShareLoss {
    let parts: Vec<_> = batches
        .iter()
        .map(|items| labeled_tensors(items, crop, device))
        .collect();
    let logits: Vec<Tensor<4>> = if parts.len() == 1 {
        vec![model.forward(parts[0].0.clone(), ids[0])]
    } else {
        let ids: Vec<usize> = batches
            .iter()
            .zip(ids)
            .flat_map(|(items, &d)| std::iter::repeat_n(d, items.len()))
            .collect();
        let images = Tensor::cat(parts.iter().map(|p| p.0.clone()).collect(), 0);
        let per_image = model.forward_mixed(images, &ids);
        let mut offset = 0;
        batches
            .iter()
            .map(|items| {
                let group = Tensor::cat(per_image[offset..offset + items.len()].to_vec(), 0);
                offset += items.len();
                group
            })
            .collect()
    };
    let per_dataset: Vec<Tensor<1>> = parts
        .into_iter()
        .zip(logits)
        .zip(norms)
        .map(|(((_, labels, valid), logits), &n)| cross_entropy_over(logits, labels, valid, n))
        .collect();
    let loss = per_dataset
        .iter()
        .zip(weights)
        .map(|(l, &w)| l.clone() * w)
        .reduce(|a, b| a + b)
        .expect("at least one dataset");
    let mut sums = BTreeMap::from([(keys::LOSS.to_string(), scalar(loss.clone()))]);
    for (name, value) in names.iter().zip(per_dataset) {
        sums.insert(keys::dataset_loss(name), scalar(value));
    }
    ShareLoss {
        loss,
        sums,
        per_image: Vec::new(),
    }
}
