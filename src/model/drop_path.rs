//! Stochastic depth: during training each sample's residual branch is dropped with
//! probability `prob` (and the kept ones scaled by 1 / (1 - prob)).

use burn::module::{Flag, Module, Param};
use burn::tensor::{Distribution, Tensor};

#[derive(Module, Debug)]
pub struct DropPath {
    pub prob: f64,
    /// Cleared by `freeze` like burn's Dropout.
    pub training: Param<Flag>,
}

impl DropPath {
    pub fn new(prob: f64) -> Self {
        Self {
            prob,
            training: Param::from_bool(true),
        }
    }

    /// # Shapes
    /// `[B, ...]` → same.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.prob <= 0.0 || !self.training.is_enabled() || !x.device().is_autodiff() {
            return x;
        }
        let keep = 1.0 - self.prob;
        let mut shape = [1; D];
        shape[0] = x.dims()[0];
        let mask = Tensor::<D>::random(shape, Distribution::Bernoulli(keep), &x.device());
        // In the activations' precision (f16 under mixed precision).
        let mask = super::half::cast_to(mask, x.dtype());
        x * mask / keep
    }
}
