//! Dynamic loss scaling for mixed-precision training, as PyTorch's `GradScaler` does it: the
//! loss is multiplied by the scale before the backward pass, so that the f16 gradients of
//! small losses stay above f16's subnormals (6e-5); the f32 gradients are divided by it
//! before the update. A step whose loss or gradients are not finite is skipped (weights and
//! AdamW state untouched) and the scale halved; `growth_interval` clean steps in a row
//! double it. A non-finite step at `min_scale` is a divergence, not an overflow.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use super::config::LossScaling;
use crate::error::Result;
use crate::model::Segmentor;
use crate::run::LossScaleState;

/// What a step's check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaledStep {
    /// Finite loss and gradients (now unscaled): update.
    Clean,
    /// An overflow: skip the update; the scale was halved.
    Skipped,
    /// Not finite at the smallest scale: the run diverged.
    Diverged,
}

/// A mixed-precision run's loss scaler.
#[derive(Debug, Clone, PartialEq)]
pub struct LossScaler {
    setup: LossScaling,
    state: LossScaleState,
}

impl LossScaler {
    /// A fresh scaler at `setup.initial`, or one continuing `saved` (a resumed run).
    pub fn new(setup: &LossScaling, saved: Option<LossScaleState>) -> Self {
        Self {
            setup: setup.clone(),
            state: saved.unwrap_or(LossScaleState {
                scale: setup.initial,
                clean_steps: 0,
                skipped_steps: 0,
            }),
        }
    }

    /// The scale this step's loss is multiplied by.
    pub fn scale(&self) -> f64 {
        self.state.scale
    }

    /// What a checkpoint keeps.
    pub fn state(&self) -> LossScaleState {
        self.state
    }

    /// Checks a step whose loss was `loss` and whose gradients `grads` were computed from
    /// the scaled loss: divides the gradients by the scale and moves the scale as the
    /// step's outcome says. One value comes back from the GPU.
    pub fn check(
        &mut self,
        loss: f64,
        model: &Segmentor,
        grads: &mut GradientsParams,
    ) -> Result<ScaledStep> {
        let finite = loss.is_finite() && unscale(model, grads, 1.0 / self.state.scale)?;
        if finite {
            self.state.clean_steps += 1;
            if self.state.clean_steps >= self.setup.growth_interval {
                self.state.scale *= 2.0;
                self.state.clean_steps = 0;
            }
            return Ok(ScaledStep::Clean);
        }
        if self.state.scale <= self.setup.min_scale {
            return Ok(ScaledStep::Diverged);
        }
        self.state.scale = (self.state.scale / 2.0).max(self.setup.min_scale);
        self.state.clean_steps = 0;
        self.state.skipped_steps += 1;
        Ok(ScaledStep::Skipped)
    }
}

/// Multiplies every gradient by `factor`; returns whether they were all finite (one sum of
/// squares over all of them, in a fixed reduction order, read back).
fn unscale(model: &Segmentor, grads: &mut GradientsParams, factor: f64) -> Result<bool> {
    struct Unscale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
        parts: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for Unscale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let g = g.mul_scalar(self.factor);
                self.parts
                    .push(crate::reduce::total(g.clone().powi_scalar(2)));
                self.grads.register::<D>(param.id, g);
            }
        }
    }
    let mut visit = Unscale {
        grads,
        factor,
        parts: Vec::new(),
    };
    model.visit(&mut visit);
    if visit.parts.is_empty() {
        return Ok(true);
    }
    Ok(super::loss::scalar(crate::reduce::total(Tensor::cat(visit.parts, 0)))?.is_finite())
}
