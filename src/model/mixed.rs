//! Mixed precision, layer by layer: a layer computes in the precision of what flows into it,
//! casting its weights to it. An f32 model fed f16 activations ([`super::Segmentor::mixed_precision`])
//! keeps f32 parameters (the master weights; the casts are differentiable, so gradients reach
//! them in f32) while its matmuls and convolutions run in f16; normalisation and softmax
//! widen to f32 and narrow back. An f16 model (`half::to_f16`) and an f32 model on f32
//! inputs cast nothing.
//!
//! The cast policy, op by op (what AMP's autocast does in PyTorch):
//! - f16: linear layers, convolutions and transposed convolutions, attention's two matmuls,
//!   the FFN-MoE (`moe_ffn` reads f16 and accumulates in f32), GELU/ReLU, pooling, resizing,
//!   dropout and drop path, the residual stream;
//! - f32 inside, f16 out: LayerNorm, BatchNorm (statistics and running averages in f32),
//!   softmax, each one op that keeps only f16 tensors for its backward (`kernels::widened`);
//! - f32: everything after the logits (losses, `pixel_stats`).

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, LayerNorm, Linear};
use burn::tensor::{DType, Tensor};

use crate::kernels::{LONG_CHANNEL, batch_norm_widened, layer_norm_widened, softmax_widened};

/// `layer` on `x` with its weight and bias in `x`'s precision.
///
/// # Shapes
/// `[..., d_input]` → `[..., d_output]`.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let dtype = x.dtype();
    if layer.weight.val().dtype() == dtype {
        return layer.forward(x);
    }
    let mut cast = layer.clone();
    cast.weight = cast.weight.map(|w| w.cast(dtype));
    cast.bias = cast.bias.map(|b| b.map(|t| t.cast(dtype)));
    cast.forward(x)
}

/// `layer` on `x` with its kernel and bias in `x`'s precision.
///
/// # Shapes
/// `[B, C_in, H, W]` → `[B, C_out, H', W']`.
pub fn conv2d(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let dtype = x.dtype();
    if layer.weight.val().dtype() == dtype {
        return layer.forward(x);
    }
    let mut cast = layer.clone();
    cast.weight = cast.weight.map(|w| w.cast(dtype));
    cast.bias = cast.bias.map(|b| b.map(|t| t.cast(dtype)));
    cast.forward(x)
}

/// `layer` on `x` with its kernel and bias in `x`'s precision.
///
/// # Shapes
/// `[B, C_in, H, W]` → `[B, C_out, H', W']`.
pub fn conv_transpose2d(layer: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    let dtype = x.dtype();
    if layer.weight.val().dtype() == dtype {
        return layer.forward(x);
    }
    let mut cast = layer.clone();
    cast.weight = cast.weight.map(|w| w.cast(dtype));
    cast.bias = cast.bias.map(|b| b.map(|t| t.cast(dtype)));
    cast.forward(x)
}

/// The patch embedding (a `patch_px` × `patch_px` convolution of stride `patch_px`) as
/// tokens. For f16 images of an f32 layer it runs as one matmul of the patches, which
/// accumulates in f32 (the direct convolution of cubecl 0.11 accumulates f16 in f16, and
/// each patch is a sum of 3 · 16 · 16 = 768 products); otherwise as the convolution.
///
/// # Shapes
/// images `[B, 3, H, W]` → `[B, (H / patch_px) · (W / patch_px), D]`.
pub fn patch_embed(layer: &Conv2d, images: Tensor<4>, patch_px: usize) -> Tensor<3> {
    let [b, c, h, w] = images.dims();
    let (gh, gw, p) = (h / patch_px, w / patch_px, patch_px);
    if !narrower_than(images.dtype(), layer.weight.val().dtype()) {
        let x = layer.forward(images); // [B, D, gh, gw]
        let d = x.dims()[1];
        return x.reshape([b, d, gh * gw]).swap_dims(1, 2);
    }
    let dtype = images.dtype();
    // [B, C, gh, p, gw, p] → [B, gh, gw, C, p, p]: each row one patch, in the kernel's order.
    let patches = images
        .reshape([b, c, gh, p, gw, p])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([b, gh * gw, c * p * p]);
    let weight = layer.weight.val(); // [D, C, p, p]
    let d = weight.dims()[0];
    let weight = weight
        .reshape([d, c * p * p])
        .transpose()
        .cast(dtype)
        .unsqueeze::<3>();
    let tokens = patches.matmul(weight);
    match &layer.bias {
        Some(bias) => tokens + bias.val().cast(dtype).reshape([1, 1, d]),
        None => tokens,
    }
}

/// Whether `x` is an f16 activation of an f32 layer: mixed precision, where normalisation
/// and softmax compute in f32 and keep only f16 tensors for the backward pass.
fn narrower_than(x: DType, layer: DType) -> bool {
    x == DType::F16 && layer == DType::F32
}

/// `layer` on `x`: as burn computes it, or, for f16 activations of an f32 layer, with f32
/// batch statistics and f32 running averages, the output in f16 ([`batch_norm_widened`]).
/// A training forward over more than [`LONG_CHANNEL`] values per channel takes the widened
/// op in any precision: its statistics are summed in short chunks, where burn's would loop
/// past lavapipe's limit and drop values. The running averages are updated as burn's
/// training forward does (momentum, biased variance).
///
/// # Shapes
/// `[B, C, ...]` → same.
pub fn batch_norm<const D: usize>(layer: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let training = x.device().is_autodiff() && layer.training.is_enabled();
    let dims = x.dims();
    let long = training && D >= 2 && dims.iter().product::<usize>() / dims[1].max(1) > LONG_CHANNEL;
    if !narrower_than(x.dtype(), layer.gamma.val().dtype()) && !long {
        return layer.forward(x);
    }
    if !training {
        let dtype = x.dtype();
        return layer.forward(x.cast(DType::F32)).cast(dtype);
    }
    let out = batch_norm_widened(x, layer.gamma.val(), layer.beta.val(), layer.epsilon);
    let device = out.mean.device();
    let update = |state: &burn::module::RunningState<Tensor<1>>, batch: Tensor<1>| {
        let running = state.value_sync().to_device(&device);
        let next = running.mul_scalar(1.0 - layer.momentum) + batch.mul_scalar(layer.momentum);
        state.update(next.detach());
    };
    update(&layer.running_mean, out.mean.detach());
    update(&layer.running_var, out.variance.detach());
    out.output
}

/// `layer` (epsilon `epsilon`, which burn keeps private) on `x`: as burn computes it, or, for
/// f16 activations of an f32 layer, in f32 with the output in f16 ([`layer_norm_widened`]).
///
/// # Shapes
/// `[..., D]` → same.
pub fn layer_norm<const D: usize>(layer: &LayerNorm, x: Tensor<D>, epsilon: f64) -> Tensor<D> {
    match &layer.beta {
        Some(beta) if narrower_than(x.dtype(), layer.gamma.val().dtype()) => {
            layer_norm_widened(x, layer.gamma.val(), beta.val(), epsilon)
        }
        _ => layer.forward(x),
    }
}

/// Softmax over `dim`: burn's, or, for f16 `x`, computed in f32 with the probabilities in
/// f16 ([`softmax_widened`]).
///
/// # Shapes
/// any → same.
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    if x.dtype() == DType::F16 {
        softmax_widened(x, dim)
    } else {
        burn::tensor::activation::softmax(x, dim)
    }
}
