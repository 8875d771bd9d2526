//! Softmax, LayerNorm and training BatchNorm for f16 activations (mixed precision): each
//! computes in f32 and returns its result in the input's precision, and its backward keeps
//! only what it needs in the narrow precision. Composed of tensor ops, they would keep their
//! f32 intermediates for the backward pass instead: the widened attention softmax alone
//! would keep its f32 exponentials and probabilities beside the f16 probabilities, three
//! times f32's memory for what is half of a ViT block's activations.
//!
//! Per op, what the backward keeps:
//! - softmax: its output (f16);
//! - LayerNorm: its input (f16), the mean and reciprocal standard deviation of each row (f32);
//! - BatchNorm: its input (f16), the batch mean and variance of each channel (f32).
//!
//! Each runs in backend ops on every backend (no WGSL); on f32 inputs it computes what the
//! composed ops compute. Training BatchNorm also runs here in f32 when a channel holds more
//! than [`LONG_CHANNEL`] values: its sums over a channel are then chunked. [`softmax_widened_reference`], [`layer_norm_widened_reference`] and
//! [`batch_norm_widened_reference`] are the compositions (cast to f32, burn's op, cast back)
//! that the parity tests compare against, forward and gradients.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, TensorMetadata};
use burn::tensor::{DType, FloatDType, Shape, Tensor};

use super::ops::{BatchNormPrimitive, S5Ops};
use super::totals::{column_totals, row_totals};

/// Softmax over `dim`, computed in f32, in `x`'s precision.
///
/// # Shapes
/// any → same.
pub fn softmax_widened<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    assert!(dim < D, "softmax_widened: dim {dim} of a rank-{D} tensor");
    Tensor::from_dispatch(Dispatch::softmax_widened(x.into_dispatch(), dim))
}

/// [`softmax_widened`] as composed ops.
pub fn softmax_widened_reference<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let dtype = x.dtype();
    burn::tensor::activation::softmax(x.cast(DType::F32), dim).cast(dtype)
}

/// LayerNorm over the last axis with f32 statistics and affine parameters, in `x`'s
/// precision.
///
/// # Shapes
/// x `[..., D]`, gamma and beta `[D]` (f32) → `[..., D]`.
pub fn layer_norm_widened<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    let [d] = gamma.dims();
    assert_eq!(x.dims()[D - 1], d, "layer_norm_widened: gamma must be [D]");
    Tensor::from_dispatch(Dispatch::layer_norm_widened(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    ))
}

/// [`layer_norm_widened`] as composed ops.
pub fn layer_norm_widened_reference<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    let dtype = x.dtype();
    let out = burn::tensor::module::layer_norm(
        x.cast(DType::F32),
        gamma.cast(DType::F32),
        Some(beta.cast(DType::F32)),
        epsilon,
    );
    out.cast(dtype)
}

/// A training BatchNorm's output (in the input's precision) and the batch statistics it
/// used (f32, what the running averages take in).
#[derive(Debug, Clone)]
pub struct BatchNormWidened<const D: usize> {
    /// `[B, C, ...]`.
    pub output: Tensor<D>,
    /// `[C]`: the batch mean of each channel. Not differentiable.
    pub mean: Tensor<1>,
    /// `[C]`: the biased batch variance of each channel. Not differentiable.
    pub variance: Tensor<1>,
}

/// Training BatchNorm (batch statistics) computed in f32, its output in `x`'s precision.
///
/// # Shapes
/// x `[B, C, ...]`, gamma and beta `[C]` (f32) → output `[B, C, ...]`, mean and variance `[C]`.
pub fn batch_norm_widened<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> BatchNormWidened<D> {
    let [c] = gamma.dims();
    assert!(
        D >= 2 && x.dims()[1] == c,
        "batch_norm_widened: gamma must be [C]"
    );
    let out = Dispatch::batch_norm_widened(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    );
    BatchNormWidened {
        output: Tensor::from_dispatch(out.output),
        mean: Tensor::from_dispatch(out.mean),
        variance: Tensor::from_dispatch(out.variance),
    }
}

/// [`batch_norm_widened`] as composed ops.
pub fn batch_norm_widened_reference<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> BatchNormWidened<D> {
    let dtype = x.dtype();
    let out = burn::tensor::module::batch_norm_train(
        x.cast(DType::F32),
        gamma.cast(DType::F32),
        beta.cast(DType::F32),
        epsilon,
    );
    BatchNormWidened {
        output: out.output.cast(dtype),
        mean: out.mean,
        variance: out.variance,
    }
}

/// `x` in f32 and the precision it came in.
fn in_f32<B: Backend>(x: FloatTensor<B>) -> (FloatTensor<B>, FloatDType) {
    let precision: FloatDType = x.dtype().into();
    match precision {
        FloatDType::F32 => (x, precision),
        _ => (B::float_cast(x, FloatDType::F32), precision),
    }
}

/// `x` (f32) in `precision`.
fn back_to<B: Backend>(x: FloatTensor<B>, precision: FloatDType) -> FloatTensor<B> {
    match precision {
        FloatDType::F32 => x,
        _ => B::float_cast(x, precision),
    }
}

/// Softmax forward on any backend.
pub(super) fn softmax_forward<B: Backend>(x: FloatTensor<B>, dim: usize) -> FloatTensor<B> {
    let (x, precision) = in_f32::<B>(x);
    back_to::<B>(B::softmax(x, dim), precision)
}

/// One autodiff node that keeps the output.
pub(super) fn softmax_autodiff<B: Backend + S5Ops, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    dim: usize,
) -> FloatTensor<Autodiff<B, C>> {
    let out = B::softmax_widened(x.primitive().clone(), dim);
    match SoftmaxBackward
        .prepare::<C>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((out.clone(), dim), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// With y the output: dx = y ⊙ (dy − Σ_dim dy ⊙ y), in f32.
#[derive(Debug)]
struct SoftmaxBackward;

impl<B: Backend> Backward<B, 1> for SoftmaxBackward {
    /// (output, dim)
    type State = (FloatTensor<B>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let Some(parent) = parent else { return };
        let (y, dim) = ops.state;
        let (y, precision) = in_f32::<B>(y);
        let (dy, _) = in_f32::<B>(grad);
        let along = B::float_sum_dim(B::float_mul(dy.clone(), y.clone()), dim);
        let dx = B::float_mul(y, B::float_sub(dy, along));
        grads.register::<B>(parent.id, back_to::<B>(dx, precision));
    }
}

/// `[1, .., 1, D]`: a `[D]` vector broadcast over the last axis of a rank-`rank` tensor.
fn last_axis(d: usize, rank: usize) -> Shape {
    let mut dims = vec![1; rank];
    dims[rank - 1] = d;
    Shape::from(dims)
}

/// LayerNorm forward on any backend: the output in the input's precision, the f32 mean and
/// reciprocal standard deviation of each row (`[..., 1]`).
fn layer_norm_parts<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let rank = x.shape().num_dims();
    let d = x.shape()[rank - 1];
    let (x, precision) = in_f32::<B>(x);
    let (gamma, _) = in_f32::<B>(gamma);
    let (beta, _) = in_f32::<B>(beta);
    let mean = B::float_mean_dim(x.clone(), rank - 1);
    let centered = B::float_sub(x, mean.clone());
    let variance = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), rank - 1);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(variance, epsilon.into())));
    let normalized = B::float_mul(centered, rstd.clone());
    let out = B::float_add(
        B::float_mul(normalized, B::float_reshape(gamma, last_axis(d, rank))),
        B::float_reshape(beta, last_axis(d, rank)),
    );
    (back_to::<B>(out, precision), mean, rstd)
}

/// LayerNorm forward on any backend.
pub(super) fn layer_norm_forward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> FloatTensor<B> {
    layer_norm_parts::<B>(x, gamma, beta, epsilon).0
}

/// One autodiff node with three parents (x, gamma, beta) that keeps x, gamma and the row
/// statistics.
pub(super) fn layer_norm_autodiff<B: Backend + S5Ops, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    gamma: FloatTensor<Autodiff<B, C>>,
    beta: FloatTensor<Autodiff<B, C>>,
    epsilon: f64,
) -> FloatTensor<Autodiff<B, C>> {
    let (out, mean, rstd) = layer_norm_parts::<B>(
        x.primitive().clone(),
        gamma.primitive().clone(),
        beta.primitive().clone(),
        epsilon,
    );
    match LayerNormBackward
        .prepare::<C>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = (x.primitive().clone(), gamma.primitive().clone(), mean, rstd);
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// Values per channel above which a training BatchNorm reduces its channels with
/// [`row_totals`] rather than burn's `mean_dim` and `sum_dim`, which loop over a whole
/// channel in few invocations: lavapipe stops an invocation after 65 535 loop iterations
/// and silently drops the rest (measured: burn's batch mean of 2 × 400 × 407 values per
/// channel came out 31 % low). Up to it, burn's op runs unchanged.
pub const LONG_CHANNEL: usize = 16_384;

/// `x` `[B, C, ...]` as `[C, B·...]`.
fn channels_as_rows<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let shape = x.shape();
    let c = shape[1];
    let n = shape.num_elements() / c;
    B::float_reshape(B::float_swap_dims(x, 0, 1), Shape::new([c, n]))
}

/// The shape `[1, C, 1, ...]` of a per-channel value broadcast over `x`'s shape.
fn per_channel(shape: &Shape) -> Shape {
    let mut dims = vec![1; shape.num_dims()];
    dims[1] = shape[1];
    Shape::from(dims)
}

/// burn's training BatchNorm (`batch_norm_train`: output, batch mean, biased batch
/// variance), with the per-channel means summed by [`row_totals`] where a channel holds
/// more than [`LONG_CHANNEL`] values.
///
/// # Shapes
/// x `[B, C, ...]`, gamma and beta `[C]` → output `[B, C, ...]`, mean and variance `[C]`.
fn batch_norm_train<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let (c, n) = (shape[1], shape.num_elements() / shape[1]);
    if n <= LONG_CHANNEL {
        let out = B::batch_norm_train(x, gamma, beta, epsilon);
        return (out.output, out.mean, out.variance);
    }
    let row_mean = |rows: FloatTensor<B>| {
        let totals = B::float_reshape(row_totals::<B>(rows), Shape::new([c]));
        B::float_div_scalar(totals, burn::tensor::Scalar::Float(n as f64))
    };
    let mean = row_mean(channels_as_rows::<B>(x.clone()));
    let centered = B::float_sub(
        x.clone(),
        B::float_reshape(mean.clone(), per_channel(&shape)),
    );
    let variance = row_mean(channels_as_rows::<B>(B::float_mul(
        centered.clone(),
        centered,
    )));
    let output = B::batch_norm(x, gamma, beta, mean.clone(), variance.clone(), epsilon);
    (output, mean, variance)
}

/// burn's `batch_norm_train_backward` (gradients of x, gamma and beta), with the
/// per-channel sums and means by [`row_totals`] where a channel holds more than
/// [`LONG_CHANNEL`] values.
fn batch_norm_train_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    epsilon: f64,
    dy: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let n = shape.num_elements() / shape[1];
    if n <= LONG_CHANNEL {
        let back = B::batch_norm_train_backward(x, gamma, mean, variance, epsilon, dy);
        return (back.x_grad, back.gamma_grad, back.beta_grad);
    }
    let broadcast = per_channel(&shape);
    let inv_std = B::float_reshape(
        B::float_recip(B::float_sqrt(B::float_add_scalar(
            variance,
            burn::tensor::Scalar::Float(epsilon),
        ))),
        broadcast.clone(),
    );
    let normalized = B::float_mul(
        B::float_sub(x, B::float_reshape(mean, broadcast.clone())),
        inv_std.clone(),
    );
    let per_channel_sum = |x: FloatTensor<B>| {
        B::float_reshape(
            row_totals::<B>(channels_as_rows::<B>(x)),
            Shape::new([shape[1]]),
        )
    };
    let beta_grad = per_channel_sum(dy.clone());
    let gamma_grad = per_channel_sum(B::float_mul(dy.clone(), normalized.clone()));
    let mean_of = |sums: FloatTensor<B>| {
        B::float_reshape(
            B::float_div_scalar(sums, burn::tensor::Scalar::Float(n as f64)),
            broadcast.clone(),
        )
    };
    let centred_grad = B::float_sub(dy, mean_of(beta_grad.clone()));
    let projected = B::float_mul(normalized, mean_of(gamma_grad.clone()));
    let scale = B::float_mul(B::float_reshape(gamma, broadcast.clone()), inv_std);
    let x_grad = B::float_mul(scale, B::float_sub(centred_grad, projected));
    (x_grad, gamma_grad, beta_grad)
}

/// With x̂ = (x − μ)·r and g = dy ⊙ γ: dγ = Σ_rows dy ⊙ x̂, dβ = Σ_rows dy and
/// dx = r · (g − mean(g) − x̂ · mean(g ⊙ x̂)), the means over each row; all in f32.
#[derive(Debug)]
struct LayerNormBackward;

impl<B: Backend> Backward<B, 3> for LayerNormBackward {
    /// (x `[..., D]`, gamma `[D]`, mean `[..., 1]`, rstd `[..., 1]`)
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, gamma, mean, rstd) = ops.state;
        let shape = x.shape();
        let rank = shape.num_dims();
        let d = shape[rank - 1];
        let rows = shape.num_elements() / d;
        let gamma_precision: FloatDType = gamma.dtype().into();
        let (x, precision) = in_f32::<B>(x);
        let (gamma, _) = in_f32::<B>(gamma);
        let (dy, _) = in_f32::<B>(grad);
        let normalized = B::float_mul(B::float_sub(x, mean), rstd.clone());
        if let Some(node) = node_gamma {
            let flat = B::float_reshape(
                B::float_mul(dy.clone(), normalized.clone()),
                Shape::new([rows, d]),
            );
            grads.register::<B>(
                node.id,
                back_to::<B>(column_totals::<B>(flat), gamma_precision),
            );
        }
        if let Some(node) = node_beta {
            let flat = B::float_reshape(dy.clone(), Shape::new([rows, d]));
            grads.register::<B>(
                node.id,
                back_to::<B>(column_totals::<B>(flat), gamma_precision),
            );
        }
        if let Some(node) = node_x {
            let g = B::float_mul(dy, B::float_reshape(gamma, last_axis(d, rank)));
            let mean_g = B::float_mean_dim(g.clone(), rank - 1);
            let mean_gx = B::float_mean_dim(B::float_mul(g.clone(), normalized.clone()), rank - 1);
            let dx = B::float_mul(
                rstd,
                B::float_sub(B::float_sub(g, mean_g), B::float_mul(normalized, mean_gx)),
            );
            grads.register::<B>(node.id, back_to::<B>(dx, precision));
        }
    }
}

/// Training BatchNorm forward on any backend.
pub(super) fn batch_norm_forward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> BatchNormPrimitive<B> {
    let (x, precision) = in_f32::<B>(x);
    let (gamma, _) = in_f32::<B>(gamma);
    let (beta, _) = in_f32::<B>(beta);
    let (output, mean, variance) = batch_norm_train::<B>(x, gamma, beta, epsilon);
    BatchNormPrimitive {
        output: back_to::<B>(output, precision),
        mean,
        variance,
    }
}

/// One autodiff node for the output with three parents (x, gamma, beta) that keeps x, gamma
/// and the batch statistics; the statistics themselves are returned untracked.
pub(super) fn batch_norm_autodiff<B: Backend + S5Ops, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    gamma: FloatTensor<Autodiff<B, C>>,
    beta: FloatTensor<Autodiff<B, C>>,
    epsilon: f64,
) -> BatchNormPrimitive<Autodiff<B, C>> {
    let out = B::batch_norm_widened(
        x.primitive().clone(),
        gamma.primitive().clone(),
        beta.primitive().clone(),
        epsilon,
    );
    let output = match BatchNormBackward
        .prepare::<C>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = (
                x.primitive().clone(),
                gamma.primitive().clone(),
                out.mean.clone(),
                out.variance.clone(),
                epsilon,
            );
            prep.finish(state, out.output)
        }
        OpsKind::UnTracked(prep) => prep.finish(out.output),
    };
    BatchNormPrimitive {
        output,
        mean: <Autodiff<B, C> as AutodiffBackend>::from_inner(out.mean),
        variance: <Autodiff<B, C> as AutodiffBackend>::from_inner(out.variance),
    }
}

/// burn's training-BatchNorm backward on the f32 input, the gradients back in the
/// precisions of x and gamma.
#[derive(Debug)]
struct BatchNormBackward;

impl<B: Backend> Backward<B, 3> for BatchNormBackward {
    /// (x `[B, C, ...]`, gamma `[C]`, mean `[C]`, variance `[C]`, epsilon)
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        f64,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, gamma, mean, variance, epsilon) = ops.state;
        let gamma_precision: FloatDType = gamma.dtype().into();
        let (x, precision) = in_f32::<B>(x);
        let (gamma, _) = in_f32::<B>(gamma);
        let (dy, _) = in_f32::<B>(grad);
        let (x_grad, gamma_grad, beta_grad) =
            batch_norm_train_backward::<B>(x, gamma, mean, variance, epsilon, dy);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, back_to::<B>(x_grad, precision));
        }
        if let Some(node) = node_gamma {
            grads.register::<B>(node.id, back_to::<B>(gamma_grad, gamma_precision));
        }
        if let Some(node) = node_beta {
            grads.register::<B>(node.id, back_to::<B>(beta_grad, gamma_precision));
        }
    }
}
