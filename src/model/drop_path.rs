//! Stochastic depth: during training each sample's residual branch is dropped with
//! probability `prob` (and the kept ones scaled by 1 / (1 - prob)).

use burn::module::{Flag, Module, Param};
use burn::tensor::{DType, Device, Distribution, Tensor};

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
        let mask = self.draw(x.dims()[0], x.dtype(), &x.device());
        self.apply(x, mask.as_ref())
    }

    /// The samples kept by one pass (1) and dropped (0), in `dtype`; `None` when nothing is
    /// dropped (not training, no autodiff, or `prob` 0). Drawn apart from [`DropPath::apply`]
    /// so that a block recomputed in the backward pass drops what its forward pass dropped.
    ///
    /// # Shapes
    /// → `[B]`.
    pub fn draw(&self, batch: usize, dtype: DType, device: &Device) -> Option<Tensor<1>> {
        if self.prob <= 0.0 || !self.training.is_enabled() || !device.is_autodiff() {
            return None;
        }
        let mask = Tensor::<1>::random([batch], Distribution::Bernoulli(1.0 - self.prob), device);
        // In the activations' precision (f16 under mixed precision).
        Some(super::half::cast_to(mask, dtype))
    }

    /// `x` with the samples `mask` drops zeroed and the others scaled by 1 / (1 - prob).
    ///
    /// # Shapes
    /// x `[B, ...]`, mask `[B]` → same as x.
    pub fn apply<const D: usize>(&self, x: Tensor<D>, mask: Option<&Tensor<1>>) -> Tensor<D> {
        let Some(mask) = mask else { return x };
        let mut shape = [1; D];
        shape[0] = x.dims()[0];
        x * mask.clone().reshape(shape) / (1.0 - self.prob)
    }
}
