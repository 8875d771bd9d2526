//! s5's custom GPU ops: the only module that names cubecl / burn-wgpu internals.
//!
//! Each op has one public function taking and returning `Tensor`s, a WGSL launch for
//! `CubeBackend`, a backward for `Autodiff`, and a `*_reference` twin in plain tensor ops
//! that the parity tests and `s5 bench` compare against. Beside them, `recompute` is an
//! autodiff node without a kernel: a block recomputed in the backward pass (its reference is
//! the block itself, and the test compares the gradients of both).

mod backend;
mod moe_ffn;
mod ops;
mod pixel_stats;
mod recompute;
pub mod shader;
mod totals;
mod widened;

pub use moe_ffn::{MoeWeights, moe_ffn, moe_ffn_reference};
pub use ops::{BatchNormPrimitive, MoeKernel, PixelStatsPrimitive, S5Ops};
pub use pixel_stats::{PixelStats, pixel_stats, pixel_stats_reference};
pub use recompute::{MAX_BLOCK_PARAMS, Recompute, recompute};
pub use widened::{
    BatchNormWidened, LONG_CHANNEL, batch_norm_widened, batch_norm_widened_reference,
    layer_norm_widened, layer_norm_widened_reference, softmax_widened, softmax_widened_reference,
};
