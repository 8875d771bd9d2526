//! The block FFN: dense (`fc1 → act → fc2`), or FFN-MoE (shared `fc1 → act`, then the
//! custom `moe_ffn` op writing `[shared(h) | expert_t(h)]` for each token's dataset t).

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::{gelu, relu};
use burn::tensor::{Device, Int, Tensor};

use super::config::{Activation, FfnKind, VitConfig};
use super::half::cast_to;
use super::mixed;
use crate::kernels::{MoeKernel, MoeWeights, moe_ffn};

/// The FFN-MoE output projection: shared expert `[F → D-P]`, one expert `[F → P]` per dataset.
#[derive(Module, Debug)]
pub struct MoeProjection {
    /// `[F, D-P]`
    pub w_shared: Param<Tensor<2>>,
    /// `[D-P]`
    pub b_shared: Param<Tensor<1>>,
    /// `[T, F, P]`
    pub w_expert: Param<Tensor<3>>,
    /// `[T, P]`
    pub b_expert: Param<Tensor<2>>,
}

#[derive(Module, Debug)]
pub struct Ffn {
    pub fc1: Linear,
    /// The dense output projection (dense blocks only).
    pub fc2: Option<Linear>,
    /// The MoE output projection (FFN-MoE blocks only).
    pub moe: Option<MoeProjection>,
    pub relu: bool,
    /// The `moe_ffn` tiling: register tiles (CPU adapters) or workgroup tiles (GPUs), chosen
    /// when the model is built for the adapter it runs on.
    pub register_tiles: bool,
}

impl Ffn {
    pub fn new(cfg: &VitConfig, device: &Device) -> Self {
        let (d, f) = (cfg.dim, cfg.hidden_dim());
        let fc1 = LinearConfig::new(d, f).init(device);
        let (fc2, moe) = match cfg.ffn {
            FfnKind::Dense => (Some(LinearConfig::new(f, d).init(device)), None),
            FfnKind::Moe {
                datasets,
                expert_dim,
            } => {
                assert!(
                    expert_dim > 0 && expert_dim < d,
                    "FFN-MoE needs 0 < P < D (P = {expert_dim}, D = {d})"
                );
                let init = Initializer::KaimingUniform {
                    gain: 1.0 / 3f64.sqrt(),
                    fan_out_only: false,
                };
                let fan = Some(f);
                let w = |shape: [usize; 2], out| init.init_with(shape, fan, Some(out), device);
                let moe = MoeProjection {
                    w_shared: w([f, d - expert_dim], d - expert_dim),
                    b_shared: init.init_with([d - expert_dim], fan, Some(d), device),
                    w_expert: init.init_with(
                        [datasets, f, expert_dim],
                        fan,
                        Some(expert_dim),
                        device,
                    ),
                    b_expert: init.init_with([datasets, expert_dim], fan, Some(expert_dim), device),
                };
                (None, Some(moe))
            }
        };
        Self {
            fc1,
            fc2,
            moe,
            relu: cfg.activation == Activation::Relu,
            register_tiles: crate::device::moe_kernel() == MoeKernel::RegisterTiles,
        }
    }

    /// # Shapes
    /// x `[B, N, D]`, token_ids `[B·N]` (the dataset of each token's sample) → `[B, N, D]`.
    pub fn forward(&self, x: Tensor<3>, token_ids: &Tensor<1, Int>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let h = mixed::linear(&self.fc1, x);
        let h = if self.relu { relu(h) } else { gelu(h) };
        match (&self.fc2, &self.moe) {
            (Some(fc2), _) => mixed::linear(fc2, h),
            (None, Some(moe)) => {
                let f = h.dims()[2];
                let weights = MoeWeights {
                    w_shared: moe.w_shared.val(),
                    b_shared: moe.b_shared.val(),
                    w_expert: moe.w_expert.val(),
                    b_expert: moe.b_expert.val(),
                };
                let kernel = if self.register_tiles {
                    MoeKernel::RegisterTiles
                } else {
                    MoeKernel::WorkgroupTiles
                };
                // The kernel reads f32 or f16 operands of one precision: the activations'.
                let dtype = h.dtype();
                let weights = MoeWeights {
                    w_shared: cast_to(weights.w_shared, dtype),
                    b_shared: cast_to(weights.b_shared, dtype),
                    w_expert: cast_to(weights.w_expert, dtype),
                    b_expert: cast_to(weights.b_expert, dtype),
                };
                let out = moe_ffn(h.reshape([b * n, f]), &weights, token_ids.clone(), kernel);
                out.reshape([b, n, d])
            }
            (None, None) => unreachable!("an FFN has a dense or an MoE projection"),
        }
    }
}
