//! [`S5Ops`] for the two backends s5 runs: `CubeBackend` launches the WGSL kernels,
//! `Autodiff` adds their hand-written backward passes. Beside the launches it calls, apart
//! from the trait (`ops.rs`), so that imports run one way: `backend` → `pixel_stats`,
//! `moe_ffn`, `widened` → `ops`.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::wgpu::CubeBackend;
use burn::backend::{Autodiff, Backend};

use super::ops::{BatchNormPrimitive, MoeKernel, PixelStatsPrimitive, S5Ops};
use super::widened;

impl S5Ops for CubeBackend {
    fn pixel_stats(
        logits: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        background: Option<u32>,
    ) -> PixelStatsPrimitive<Self> {
        super::pixel_stats::launch(logits, mask, background)
    }

    fn moe_ffn(
        h: FloatTensor<Self>,
        w_shared: FloatTensor<Self>,
        b_shared: FloatTensor<Self>,
        w_expert: FloatTensor<Self>,
        b_expert: FloatTensor<Self>,
        ids: IntTensor<Self>,
        kernel: MoeKernel,
    ) -> FloatTensor<Self> {
        super::moe_ffn::launch(h, w_shared, b_shared, w_expert, b_expert, ids, kernel)
    }

    fn softmax_widened(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        widened::softmax_forward::<Self>(x, dim)
    }

    fn layer_norm_widened(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        widened::layer_norm_forward::<Self>(x, gamma, beta, epsilon)
    }

    fn batch_norm_widened(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> BatchNormPrimitive<Self> {
        widened::batch_norm_forward::<Self>(x, gamma, beta, epsilon)
    }
}

impl<B: Backend + S5Ops, C: CheckpointStrategy> S5Ops for Autodiff<B, C> {
    fn pixel_stats(
        logits: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        background: Option<u32>,
    ) -> PixelStatsPrimitive<Self> {
        super::pixel_stats::autodiff::<B, C>(logits, mask, background)
    }

    fn moe_ffn(
        h: FloatTensor<Self>,
        w_shared: FloatTensor<Self>,
        b_shared: FloatTensor<Self>,
        w_expert: FloatTensor<Self>,
        b_expert: FloatTensor<Self>,
        ids: IntTensor<Self>,
        kernel: MoeKernel,
    ) -> FloatTensor<Self> {
        super::moe_ffn::autodiff::<B, C>(h, w_shared, b_shared, w_expert, b_expert, ids, kernel)
    }

    fn softmax_widened(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        widened::softmax_autodiff::<B, C>(x, dim)
    }

    fn layer_norm_widened(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        widened::layer_norm_autodiff::<B, C>(x, gamma, beta, epsilon)
    }

    fn batch_norm_widened(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> BatchNormPrimitive<Self> {
        widened::batch_norm_autodiff::<B, C>(x, gamma, beta, epsilon)
    }
}
