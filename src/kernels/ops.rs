//! The backend extension that carries s5's custom ops: the trait and its types, and nothing
//! else (a leaf: it imports no sibling module).
//!
//! One trait, [`S5Ops`], implemented for burn's `CubeBackend` (WGSL launches) and for
//! `Autodiff<B, C>` (hand-written backward passes) in `backend.rs`, and generated for
//! `Fusion<B>` by the macro. Callers never use this trait directly: they call
//! [`super::pixel_stats`] and [`super::moe_ffn`], which take and return ordinary `Tensor`s.

use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, ExtensionType, backend_extension};
use burn::tensor::{DType, Shape};

/// Which tiling `moe_ffn` uses when F, C-P and P are multiples of 4 (other widths always run
/// the general `moe_ffn.wgsl`). Every choice computes the same result; the caller picks one
/// for the adapter it runs on ([`MoeKernel::for_adapter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MoeKernel {
    /// `moe_ffn_vec4.wgsl`: h and weight tiles staged in workgroup memory, as GPUs want.
    WorkgroupTiles,
    /// `moe_ffn_vec4_regs.wgsl`: no workgroup memory or barriers, each invocation keeps a
    /// 16 × 12 output block in registers and reads through the caches, as CPUs want.
    RegisterTiles,
}

impl MoeKernel {
    /// Register tiles on a CPU adapter (lavapipe, WARP, llvmpipe), workgroup tiles elsewhere.
    pub fn for_adapter(cpu_adapter: bool) -> Self {
        if cpu_adapter {
            Self::RegisterTiles
        } else {
            Self::WorkgroupTiles
        }
    }
}

/// The raw outputs of `pixel_stats` on one backend.
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct PixelStatsPrimitive<B: Backend> {
    /// `[B, H, W]` i32: argmax class.
    pub labels: IntTensor<B>,
    /// `[B, H, W]`: softmax probability of the argmax class.
    pub confidence: FloatTensor<B>,
    /// `[B]`: mean pixel entropy over valid pixels (0 for an image without any).
    pub entropy: FloatTensor<B>,
}

fn pixel_stats_meta(
    logits: &TensorSpec,
    _mask: &TensorSpec,
    _background: &Option<u32>,
) -> PixelStatsPrimitiveMetadata {
    let [b, _, h, w] = logits.shape.dims::<4>();
    PixelStatsPrimitiveMetadata {
        labels: TensorSpec::new(Shape::new([b, h, w]), DType::I32),
        // f32 whatever the logits (f16 ones are read and computed in f32).
        confidence: TensorSpec::new(Shape::new([b, h, w]), DType::F32),
        entropy: TensorSpec::new(Shape::new([b]), DType::F32),
    }
}

/// The raw outputs of a widened training BatchNorm on one backend.
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct BatchNormPrimitive<B: Backend> {
    /// `[B, C, ...]`, in the input's precision.
    pub output: FloatTensor<B>,
    /// `[C]` f32: the batch mean of each channel.
    pub mean: FloatTensor<B>,
    /// `[C]` f32: the biased batch variance of each channel.
    pub variance: FloatTensor<B>,
}

fn batch_norm_meta(
    x: &TensorSpec,
    gamma: &TensorSpec,
    _beta: &TensorSpec,
    _epsilon: &f64,
) -> BatchNormPrimitiveMetadata {
    BatchNormPrimitiveMetadata {
        output: x.clone(),
        // f32 whatever the input (statistics are computed in f32).
        mean: TensorSpec::new(gamma.shape.clone(), DType::F32),
        variance: TensorSpec::new(gamma.shape.clone(), DType::F32),
    }
}

fn moe_ffn_shape(h: &Shape, w_shared: &Shape, w_expert: &Shape) -> Shape {
    Shape::new([h[0], w_shared[1] + w_expert[2]])
}

/// s5's custom ops. See [`super::pixel_stats`], [`super::moe_ffn`] and `widened.rs` for their
/// contracts.
#[backend_extension(Cube, Fusion, Autodiff)]
pub trait S5Ops: Backend {
    /// # Shapes
    /// logits `[B, K, H, W]`, mask `[B, H, W]` (1 = valid) or `[1]` meaning "all valid".
    #[fusion(meta = pixel_stats_meta)]
    fn pixel_stats(
        logits: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        background: Option<u32>,
    ) -> PixelStatsPrimitive<Self>;

    /// # Shapes
    /// h `[N, F]`, w_shared `[F, C-P]`, b_shared `[C-P]`, w_expert `[T, F, P]`,
    /// b_expert `[T, P]`, ids `[N]` → `[N, C]`.
    #[fusion(dtype = h, shape = moe_ffn_shape(h, w_shared, w_expert))]
    fn moe_ffn(
        h: FloatTensor<Self>,
        w_shared: FloatTensor<Self>,
        b_shared: FloatTensor<Self>,
        w_expert: FloatTensor<Self>,
        b_expert: FloatTensor<Self>,
        ids: IntTensor<Self>,
        kernel: MoeKernel,
    ) -> FloatTensor<Self>;

    /// Softmax over `dim` in f32, the result in `x`'s precision (`widened.rs`).
    #[fusion(dtype = x, shape = x)]
    fn softmax_widened(x: FloatTensor<Self>, dim: usize) -> FloatTensor<Self>;

    /// # Shapes
    /// x `[..., D]`, gamma and beta `[D]` → `[..., D]`.
    #[fusion(dtype = x, shape = x)]
    fn layer_norm_widened(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;

    /// # Shapes
    /// x `[B, C, ...]`, gamma and beta `[C]` → output `[B, C, ...]`, mean and variance `[C]`.
    #[fusion(meta = batch_norm_meta)]
    fn batch_norm_widened(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> BatchNormPrimitive<Self>;
}
