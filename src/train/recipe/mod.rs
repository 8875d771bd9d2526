//! Recipes: what one training step computes. The loop ([`super::trainer`]) owns everything
//! else (resume, schedule, seeds, devices, clipping, NaN stop, events, checkpoints,
//! validation); a recipe draws its batches, runs forward and backward over the devices'
//! shares and says what to log.
//!
//! | recipe | config | run kind | command |
//! |---|---|---|---|
//! | [`supervised::Supervised`] | `recipe: Supervised` | `train` | `s5 train` |
//! | [`fixmatch::FixMatch`] | `recipe: FixMatch((...))` | `pretrain` | `s5 pretrain` |
//! | [`supervised::Supervised`] | `recipe: Finetune((mode: ...))` | `finetune` | `s5 finetune` |

pub mod fixmatch;
pub mod supervised;

use std::collections::BTreeMap;

use burn::optim::GradientsParams;
use burn::tensor::Device;

use super::batch::Dataset;
use super::config::{RecipeSetup, TrainConfig};
use super::parallel::Replicas;
use crate::error::Result;
use crate::model::Segmentor;
use crate::run::{MetricKey, SampleWriter};

/// One step's result: gradients summed on the main device, and what to log.
pub struct StepResult {
    pub grads: GradientsParams,
    /// `losses` of the step's event; must hold [`crate::run::keys::LOSS`].
    pub losses: BTreeMap<MetricKey, f64>,
    /// Further numbers of the step's event (mask ratio, entropy, ...).
    pub stats: BTreeMap<MetricKey, f64>,
}

/// What a training step computes.
pub trait Recipe {
    /// Images of a step that can be split between devices: no more devices than this help.
    fn splittable_images(&self) -> usize;

    /// Images a step processes, for images/s.
    fn images_per_step(&self) -> usize;

    /// From now on, prepare only this rank's crops of each batch (an MPI job's ranks each
    /// decode their shares), where the recipe can tell them before the step; by default
    /// every rank prepares whole batches.
    fn prepare_shares_only(&mut self, _replicas: Replicas<'_>) {}

    /// Draws the step's batches and computes the gradients of its loss times `loss_scale`
    /// (1 but in mixed precision), split over `replicas` (this process's autodiff devices,
    /// the main one first, and those of the job's other ranks, see [`super::parallel`]).
    /// The losses it reports are not scaled.
    fn step(
        &mut self,
        model: &Segmentor,
        replicas: Replicas<'_>,
        loss_scale: f64,
    ) -> Result<StepResult>;

    /// Adds this recipe's pictures after step `done` to the step's sample folder.
    fn write_samples(
        &self,
        _model: &Segmentor,
        _done: u64,
        _samples: &mut SampleWriter,
        _device: &Device,
    ) -> Result<()> {
        Ok(())
    }

    /// Sample step folders kept (older ones thinned).
    fn samples_keep(&self) -> usize {
        crate::run::samples::DEFAULT_KEEP
    }
}

/// The recipe a config chooses, its streams positioned at `start_step`.
pub fn build(
    config: &TrainConfig,
    datasets: &[Dataset],
    start_step: u64,
) -> Result<Box<dyn Recipe>> {
    Ok(match &config.recipe {
        RecipeSetup::Supervised | RecipeSetup::Finetune(_) => {
            Box::new(supervised::Supervised::new(config, datasets, start_step))
        }
        RecipeSetup::FixMatch(setup) => Box::new(fixmatch::FixMatch::new(
            setup,
            config,
            &datasets[0],
            start_step,
        )?),
    })
}
