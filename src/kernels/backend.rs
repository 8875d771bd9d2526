//! [`S5Ops`] for the two backends s5 runs: `CubeBackend` launches the WGSL kernels,
//! `Autodiff` adds their hand-written backward passes. Beside the launches it calls, apart
//! from the trait (`ops.rs`), so that imports run one way: `backend` → `pixel_stats`,
//! `moe_ffn` → `ops`.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::wgpu::CubeBackend;
use burn::backend::{Autodiff, Backend};

use super::ops::{MoeKernel, PixelStatsPrimitive, S5Ops};

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
}
