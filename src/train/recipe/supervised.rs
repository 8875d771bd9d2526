//! The supervised recipe (`s5 train`): every dataset's labeled crops in one backbone pass
//! (tokens routed to their dataset's expert with FFN-MoE), each dataset's decoder on its own
//! crops, loss `Σ_d w_d · CE_d`, each CE averaged over its batch's valid pixels. How many
//! crops each dataset gives a step is the [`Sampler`]'s; datasets of different crop sizes
//! take one backbone pass per size. A dataset gated by its `start_step` has its crops drawn
//! but not forwarded until then: it adds no gradient, and the others' gradients are what
//! they would be without it.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};

use super::{Recipe, StepResult};
use crate::data::loader::LabeledItem;
use crate::error::Result;
use crate::model::Segmentor;
use crate::run::keys::{self, MetricKey};
use crate::train::batch::{Dataset, LabeledLoader, labeled_tensors, labeled_valid_px};
use crate::train::config::TrainConfig;
use crate::train::loss::{cross_entropy_over, scalar};
use crate::train::parallel::{RankSums, Replicas, ShareLoss, step_grads};
use crate::train::sampling::{RankCrops, Sampler};

/// Cross-entropy on the labeled crops of every dataset.
pub struct Supervised {
    loaders: Vec<LabeledLoader>,
    sampler: Sampler,
    names: Vec<String>,
    weights: Vec<f64>,
    start_steps: Vec<u64>,
    crops: Vec<usize>,
    /// Training images per dataset (for the passes over each split).
    train_images: Vec<usize>,
    /// Crops each dataset has handed out so far.
    consumed: Vec<u64>,
    /// Steps done (the next step's index).
    step: u64,
}

impl Supervised {
    pub fn new(config: &TrainConfig, datasets: &[Dataset], start_step: u64) -> Self {
        let sampler = Sampler::for_datasets(&config.sampling, datasets, config.seed);
        let consumed = sampler.consumed(start_step);
        Self {
            loaders: datasets
                .iter()
                .zip(&consumed)
                .enumerate()
                .map(|(i, (d, &c))| LabeledLoader::new(d, i, config, c))
                .collect(),
            sampler,
            names: datasets.iter().map(|d| d.spec.name.clone()).collect(),
            weights: datasets.iter().map(|d| d.weight).collect(),
            start_steps: datasets.iter().map(|d| d.start_step).collect(),
            crops: datasets.iter().map(|d| d.crop_px as usize).collect(),
            train_images: datasets.iter().map(|d| d.train.len()).collect(),
            consumed,
            step: start_step,
        }
    }
}

impl Recipe for Supervised {
    fn splittable_images(&self) -> usize {
        self.sampler.step_size()
    }

    fn images_per_step(&self) -> usize {
        self.sampler.step_size()
    }

    fn prepare_shares_only(&mut self, replicas: Replicas<'_>) {
        if replicas.world.size() <= 1 {
            return;
        }
        for (d, loader) in self.loaders.iter().enumerate() {
            let mut crops = RankCrops::new(
                &self.sampler,
                d,
                &self.start_steps,
                replicas.rank_slots(),
                self.step,
                self.consumed[d],
            );
            loader.decode_only(Box::new(move |position, _| crops.keeps(position)));
        }
    }

    fn step(
        &mut self,
        model: &Segmentor,
        replicas: Replicas<'_>,
        loss_scale: f64,
    ) -> Result<StepResult> {
        let counts = self.sampler.counts(self.step);
        let mut drawn = Vec::with_capacity(counts.len());
        for (loader, &n) in self.loaders.iter_mut().zip(&counts) {
            drawn.push(loader.take(n)?);
        }
        for (c, &n) in self.consumed.iter_mut().zip(&counts) {
            *c += n as u64;
        }
        // Datasets past their start step with crops in this step (gated datasets' crops are
        // drawn all the same, so every stream stays where an ungated run has it).
        let active: Vec<usize> = (0..drawn.len())
            .filter(|&d| self.step >= self.start_steps[d] && counts[d] > 0)
            .collect();
        self.step += 1;
        // Several datasets: each one's gate, and the passes over its split so far.
        let mut stats = BTreeMap::new();
        if self.loaders.len() > 1 {
            for d in 0..drawn.len() {
                let name = &self.names[d];
                let open = self.step > self.start_steps[d];
                stats.insert(MetricKey::dataset_gate(name), f64::from(u8::from(open)));
                stats.insert(
                    MetricKey::dataset_passes(name),
                    self.consumed[d] as f64 / self.train_images[d].max(1) as f64,
                );
            }
        }
        let mut parts: Vec<Part> = active
            .iter()
            .map(|&d| {
                let items = std::mem::take(&mut drawn[d].items);
                Part {
                    norm: 0.0,
                    items,
                    dataset: d,
                    name: self.names[d].clone(),
                    weight: self.weights[d],
                    crop: self.crops[d],
                }
            })
            .collect();
        if parts.is_empty() {
            // Every crop of the step went to gated datasets (possible under `Ratios` and
            // `Temperature` sampling): nothing is trained on, no parameter moves.
            return Ok(StepResult {
                grads: burn::optim::GradientsParams::new(),
                losses: BTreeMap::from([(keys::LOSS, 0.0)]),
                stats,
            });
        }
        // The step's crops in dataset order, split between the devices.
        let total: usize = parts.iter().map(|p| p.items.len()).sum();
        let ranges = replicas.shares(total);
        // Each part's valid pixels: this rank counts its own crops (the only ones its
        // loaders decode under MPI), the ranks add their counts up.
        let mine = replicas.span(total);
        let mut offset = 0;
        let mut norms: Vec<f64> = parts
            .iter()
            .map(|part| {
                let (start, end) = (offset, offset + part.items.len());
                offset = end;
                let (lo, hi) = (start.max(mine.start), end.min(mine.end));
                if lo < hi {
                    labeled_valid_px(&part.items[lo - start..hi - start])
                } else {
                    0.0
                }
            })
            .collect();
        replicas.world.sum_f64(&mut norms);
        for (part, norm) in parts.iter_mut().zip(norms) {
            part.norm = norm;
        }
        // Fewer crops than devices (gated datasets' crops are not forwarded): fewer devices.
        let out = step_grads(
            model,
            replicas,
            ranges.len(),
            loss_scale,
            |i, replica, device| supervised_share(replica, &parts, ranges[i].clone(), device),
        )?;
        // The step's loss, and with several datasets each active one's part of it.
        let sum = |key: &MetricKey| out.sums.get(key.as_str()).copied();
        let mut losses = BTreeMap::from([(keys::LOSS, sum(&keys::LOSS).unwrap_or(f64::NAN))]);
        if self.loaders.len() > 1 {
            for part in &parts {
                let key = MetricKey::dataset_loss(&part.name);
                if let Some(value) = sum(&key) {
                    losses.insert(key, value);
                }
            }
        }
        stats.extend(out.rank_sums.into_iter().flat_map(RankSums::stats));
        Ok(StepResult {
            grads: out.grads,
            losses,
            stats,
        })
    }
}

/// One dataset's crops in a step.
struct Part {
    items: Vec<LabeledItem>,
    /// Its index in the run (expert and decoder).
    dataset: usize,
    name: String,
    weight: f64,
    crop: usize,
    /// Its valid labeled pixels in the whole step (the CE's denominator).
    norm: f64,
}

/// `Σ_d w_d · CE_d` over the crops `range` of the step (counted over the parts in order):
/// one backbone pass per crop size (tokens routed to their dataset's expert), each
/// dataset's decoder on its own crops, each CE divided by its whole step's valid pixels.
/// Sums `loss` and `loss/<dataset>`.
fn supervised_share(
    model: &Segmentor,
    parts: &[Part],
    range: std::ops::Range<usize>,
    device: &Device,
) -> Result<ShareLoss> {
    // Each part's slice inside `range`.
    let mut offset = 0;
    let mut slices: Vec<(&Part, &[LabeledItem])> = Vec::new();
    for part in parts {
        let (lo, hi) = (offset, offset + part.items.len());
        offset = hi;
        let (a, b) = (range.start.max(lo), range.end.min(hi));
        if a < b {
            slices.push((part, &part.items[a - lo..b - lo]));
        }
    }
    // One backbone pass per crop size.
    let mut crops: Vec<usize> = slices.iter().map(|(p, _)| p.crop).collect();
    crops.sort_unstable();
    crops.dedup();
    let mut terms: Vec<(&Part, Tensor<1>)> = Vec::new();
    for crop in crops {
        let group: Vec<&(&Part, &[LabeledItem])> =
            slices.iter().filter(|(p, _)| p.crop == crop).collect();
        let tensors: Vec<_> = group
            .iter()
            .map(|(_, items)| labeled_tensors(items, crop, device))
            .collect();
        let logits: Vec<Tensor<4>> = if group.len() == 1 {
            vec![model.forward(tensors[0].0.clone(), group[0].0.dataset)]
        } else {
            let ids: Vec<usize> = group
                .iter()
                .flat_map(|(p, items)| std::iter::repeat_n(p.dataset, items.len()))
                .collect();
            let images = Tensor::cat(tensors.iter().map(|t| t.0.clone()).collect(), 0);
            let per_image = model.forward_mixed(images, &ids);
            let mut at = 0;
            group
                .iter()
                .map(|(_, items)| {
                    let logits = Tensor::cat(per_image[at..at + items.len()].to_vec(), 0);
                    at += items.len();
                    logits
                })
                .collect()
        };
        for (((part, _), (_, labels, valid)), logits) in group.iter().zip(tensors).zip(logits) {
            terms.push((part, cross_entropy_over(logits, labels, valid, part.norm)));
        }
    }
    let loss = terms
        .iter()
        .map(|(p, l)| l.clone() * p.weight)
        .reduce(|a, b| a + b)
        .expect("every share has crops");
    let mut sums = BTreeMap::from([(keys::LOSS.to_string(), scalar(loss.clone())?)]);
    for (part, value) in terms {
        sums.insert(
            MetricKey::dataset_loss(&part.name).to_string(),
            scalar(value)?,
        );
    }
    Ok(ShareLoss {
        loss,
        sums,
        per_image: Vec::new(),
    })
}
