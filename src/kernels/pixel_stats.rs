//! `pixel_stats`: pseudo-labels, confidence and mean pixel entropy (paper Eq. 1) from
//! segmentation logits in one pass (`shaders/pixel_stats.wgsl`).
//!
//! Three implementations with one contract: the WGSL launch for `CubeBackend`
//! ([`launch`]), its autodiff wrapper with a hand-written backward ([`autodiff`]), and
//! [`pixel_stats_reference`] in plain tensor ops, used by tests, benchmarks and any backend
//! without the extension.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::wgpu::{CubeBackend, CubeTensor, SourceKernel, into_contiguous};
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata};
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, DType, FloatDType, IndexingUpdateOp, Int, Shape, Tensor, TensorData};

use super::ops::{PixelStatsPrimitive, S5Ops};
use super::shader::{
    PIXEL_STATS, PIXEL_STATS_F16, PIXEL_STATS_REDUCE, PIXEL_STATS_VEC4, PIXEL_STATS_VEC4_F16,
    ShaderKernel,
};
use super::totals::row_totals;

/// Workgroups one image is split over when that is enough; each takes a grid-stride share
/// of its pixels.
const MAX_GROUPS_PER_IMAGE: usize = 256;

/// Most loop iterations (pixel units × classes) one invocation may run. lavapipe stops an
/// invocation after 65 535 loop iterations in all, so huge images get more workgroups
/// instead of longer loops.
const LOOP_BUDGET: usize = 16_384;

/// Most workgroups per image: under WebGPU's 65 535 per dispatch dimension, and the reduce
/// pass loops once per workgroup, so it stays under lavapipe's cap too.
const MAX_GROUPS: usize = 32_768;

/// Per-pixel pseudo-labels and confidence, per-image mean entropy.
#[derive(Debug, Clone)]
pub struct PixelStats {
    /// `[B, H, W]`: argmax class of each pixel (the FixMatch pseudo-label).
    pub labels: Tensor<3, Int>,
    /// `[B, H, W]`: softmax probability of that class. Differentiable.
    pub confidence: Tensor<3>,
    /// `[B]`: mean over valid pixels of `-Σ_k p_k log p_k`, the background class's term left
    /// out when one is given (paper Eq. 1). 0 for an image with no valid pixel. Differentiable.
    pub entropy: Tensor<1>,
}

/// Pseudo-labels, confidence and mean entropy of `logits`, on the GPU in one pass.
///
/// `valid` marks the pixels that count towards the entropy mean (padding is invalid); labels
/// and confidence are produced for every pixel. `background`, when given, is the class whose
/// `p log p` term is left out of the entropy (its probability still takes part in the softmax).
///
/// # Shapes
/// logits `[B, K, H, W]`, valid `[B, H, W]` → labels `[B, H, W]`, confidence `[B, H, W]`,
/// entropy `[B]`.
///
/// The logits may be f32 or f16 (on adapters with `shader-f16`): f16 ones are read as such
/// and computed in f32, and confidence and entropy are f32 either way; their gradient comes
/// back in the logits' precision.
///
/// # Panics
/// On a shape mismatch, an empty tensor, logits neither f32 nor f16 or a background index
/// `>= K`: programming errors.
pub fn pixel_stats(
    logits: Tensor<4>,
    valid: Option<Tensor<3, Bool>>,
    background: Option<usize>,
) -> PixelStats {
    let [b, k, h, w] = logits.dims();
    check_args(b, k, h, w, valid.as_ref(), background);
    assert!(
        matches!(logits.dtype(), DType::F32 | DType::F16),
        "pixel_stats: the kernel reads f32 or f16 logits, not {:?}",
        logits.dtype()
    );
    let device = logits.device();
    let mask = match valid {
        Some(valid) => valid.float().into_dispatch(),
        None => Tensor::<1>::ones([1], &device).into_dispatch(),
    };
    let out = Dispatch::pixel_stats(logits.into_dispatch(), mask, background.map(|c| c as u32));
    PixelStats {
        labels: Tensor::from_dispatch(out.labels),
        confidence: Tensor::from_dispatch(out.confidence),
        entropy: Tensor::from_dispatch(out.entropy),
    }
}

/// The same contract as [`pixel_stats`] in plain tensor ops (log-softmax, max, sums), f16
/// logits cast to f32 first.
pub fn pixel_stats_reference(
    logits: Tensor<4>,
    valid: Option<Tensor<3, Bool>>,
    background: Option<usize>,
) -> PixelStats {
    let [b, k, h, w] = logits.dims();
    check_args(b, k, h, w, valid.as_ref(), background);
    let device = logits.device();
    let logits = if logits.dtype() == DType::F32 {
        logits
    } else {
        logits.cast(FloatDType::F32)
    };
    let log_p = log_softmax(logits, 1);
    let p = log_p.clone().exp();
    let (confidence, labels) = p.clone().max_dim_with_indices(1);
    let mut p_log_p = p * log_p;
    if let Some(bg) = background {
        let mut keep = vec![1.0f32; k];
        keep[bg] = 0.0;
        p_log_p =
            p_log_p * Tensor::<1>::from_floats(keep.as_slice(), &device).reshape([1, k, 1, 1]);
    }
    let pixel_entropy = p_log_p.sum_dim(1).neg().reshape([b, h, w]);
    let valid = match valid {
        Some(valid) => valid.float(),
        None => Tensor::ones([b, h, w], &device),
    };
    let total = (pixel_entropy * valid.clone())
        .reshape([b, h * w])
        .sum_dim(1);
    let count = valid.reshape([b, h * w]).sum_dim(1).clamp_min(1.0);
    PixelStats {
        labels: labels.reshape([b, h, w]),
        confidence: confidence.reshape([b, h, w]),
        entropy: (total / count).reshape([b]),
    }
}

fn check_args(
    b: usize,
    k: usize,
    h: usize,
    w: usize,
    valid: Option<&Tensor<3, Bool>>,
    background: Option<usize>,
) {
    assert!(
        b * k * h * w > 0,
        "pixel_stats: empty logits [{b}, {k}, {h}, {w}]"
    );
    if let Some(valid) = valid {
        assert_eq!(
            valid.dims(),
            [b, h, w],
            "pixel_stats: mask shape must be [B, H, W]"
        );
    }
    if let Some(bg) = background {
        assert!(
            bg < k,
            "pixel_stats: background class {bg} out of range for {k} classes"
        );
    }
    assert!(
        b * k * h * w <= u32::MAX as usize,
        "pixel_stats: {b}x{k}x{h}x{w} logits exceed the kernel's 32-bit indexing"
    );
}

/// The WGSL launch: the pass over the logits, then the per-image reduction of its partials.
pub(super) fn launch(
    logits: CubeTensor,
    mask: CubeTensor,
    background: Option<u32>,
) -> PixelStatsPrimitive<CubeBackend> {
    let logits = into_contiguous(logits);
    let mask = into_contiguous(mask);
    let [b, k, h, w] = logits.shape().dims::<4>();
    let has_mask = mask.shape().num_dims() == 3;
    let pixels = h * w;
    let (shader, lanes) = match (logits.dtype, pixels % 4 == 0) {
        (DType::F32, true) => (PIXEL_STATS_VEC4, 4),
        (DType::F32, false) => (PIXEL_STATS, 1),
        (DType::F16, true) => (PIXEL_STATS_VEC4_F16, 4),
        (DType::F16, false) => (PIXEL_STATS_F16, 1),
        (dtype, _) => panic!("pixel_stats: f32 or f16 logits, not {dtype:?}"),
    };
    let wg = shader.workgroup_size as usize;
    let units = pixels / lanes;
    // One unit per invocation up to MAX_GROUPS_PER_IMAGE workgroups (measured fastest on
    // lavapipe: longer grid-stride loops were ~3x slower there), grid-stride beyond.
    let groups = units
        .div_ceil(wg)
        .clamp(1, MAX_GROUPS_PER_IMAGE)
        .max((units * k).div_ceil(wg * LOOP_BUDGET))
        .min(MAX_GROUPS);
    let client = logits.client.clone();
    let device = logits.device.clone();

    let params = [
        k as u32,
        units as u32,
        groups as u32,
        has_mask as u32,
        background.unwrap_or(u32::MAX),
    ];
    let params = client.create_from_slice(bytemuck::cast_slice(&params));
    let f32_size = std::mem::size_of::<f32>();
    let labels = client.empty(b * pixels * f32_size);
    let confidence = client.empty(b * pixels * f32_size);
    let slots = groups * wg;
    let partials = client.empty(b * slots * 2 * f32_size);
    client.launch(
        Box::new(SourceKernel::new(
            ShaderKernel(shader),
            CubeDim::new_1d(shader.workgroup_size),
        )),
        CubeCount::Static(groups as u32, b as u32, 1),
        KernelArguments::new().with_buffers(vec![
            logits.handle.clone().binding(),
            // Without a mask the shader never reads binding 1; the confidence buffer, f32 and
            // one value per pixel like a mask, stands in for it (the `[1]` sentinel is too
            // small to bind as vec4s).
            if has_mask {
                mask.handle.clone()
            } else {
                confidence.clone()
            }
            .binding(),
            params.binding(),
            labels.clone().binding(),
            confidence.clone().binding(),
            partials.clone().binding(),
        ]),
    );

    let reduce_params = client.create_from_slice(bytemuck::cast_slice(&[slots as u32]));
    let entropy = client.empty(b * f32_size);
    client.launch(
        Box::new(SourceKernel::new(
            ShaderKernel(PIXEL_STATS_REDUCE),
            CubeDim::new_1d(PIXEL_STATS_REDUCE.workgroup_size),
        )),
        CubeCount::Static(b as u32, 1, 1),
        KernelArguments::new().with_buffers(vec![
            partials.binding(),
            reduce_params.binding(),
            entropy.clone().binding(),
        ]),
    );

    let new = |handle, shape: Shape, dtype| {
        CubeTensor::new_contiguous(client.clone(), device.clone(), shape, handle, dtype)
    };
    PixelStatsPrimitive {
        labels: new(labels, Shape::new([b, h, w]), DType::I32),
        confidence: new(confidence, Shape::new([b, h, w]), DType::F32),
        entropy: new(entropy, Shape::new([b]), DType::F32),
    }
}

/// Forward on the inner backend, then one autodiff node per differentiable output
/// (confidence and entropy), both parented to the logits.
pub(super) fn autodiff<B: Backend + S5Ops, C: CheckpointStrategy>(
    logits: FloatTensor<Autodiff<B, C>>,
    mask: FloatTensor<Autodiff<B, C>>,
    background: Option<u32>,
) -> PixelStatsPrimitive<Autodiff<B, C>> {
    let x = logits.primitive().clone();
    let mask = mask.into_primitive();
    let out = B::pixel_stats(x.clone(), mask.clone(), background);

    let confidence = match ConfidenceBackward
        .prepare::<C>([logits.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = (x.clone(), out.labels.clone(), out.confidence.clone());
            prep.finish(state, out.confidence)
        }
        OpsKind::UnTracked(prep) => prep.finish(out.confidence),
    };
    let entropy = match EntropyBackward
        .prepare::<C>([logits.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x, mask, background), out.entropy),
        OpsKind::UnTracked(prep) => prep.finish(out.entropy),
    };
    PixelStatsPrimitive {
        labels: out.labels,
        confidence,
        entropy,
    }
}

/// `x` in f32 (f16 logits cast up: the backward passes compute in f32, as the forward does),
/// and the precision its gradient goes back in.
fn in_f32<B: Backend>(x: FloatTensor<B>) -> (FloatTensor<B>, FloatDType) {
    let precision: FloatDType = x.dtype().into();
    match precision {
        FloatDType::F32 => (x, precision),
        _ => (B::float_cast(x, FloatDType::F32), precision),
    }
}

/// A gradient computed in f32 in `precision` (no cast, so no op, for f32 logits).
fn back_to<B: Backend>(dx: FloatTensor<B>, precision: FloatDType) -> FloatTensor<B> {
    match precision {
        FloatDType::F32 => dx,
        _ => B::float_cast(dx, precision),
    }
}

/// `log_softmax` over the class axis of `[B, K, H, W]` logits, in backend ops.
fn log_softmax_classes<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let max = B::float_max_dim(x.clone(), 1);
    let shifted = B::float_sub(x, max);
    let log_sum = B::float_log(B::float_sum_dim(B::float_exp(shifted.clone()), 1));
    B::float_sub(shifted, log_sum)
}

/// d conf / d x_k = conf · (1[k = argmax] − p_k).
#[derive(Debug)]
struct ConfidenceBackward;

impl<B: Backend> Backward<B, 1> for ConfidenceBackward {
    /// (logits `[B, K, H, W]`, labels `[B, H, W]`, confidence `[B, H, W]`)
    type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let Some(parent) = parent else { return };
        let (x, labels, confidence) = ops.state;
        let [b, _, h, w] = x.shape().dims::<4>();
        let (x, precision) = in_f32::<B>(x);
        let p = B::float_exp(log_softmax_classes::<B>(x));
        // g · conf, as [B, 1, H, W].
        let gc = B::float_reshape(B::float_mul(grad, confidence), Shape::new([b, 1, h, w]));
        let minus_gc_p = B::float_mul(B::float_neg(gc.clone()), p);
        let index = B::int_reshape(labels, Shape::new([b, 1, h, w]));
        let dx = B::float_scatter(1, minus_gc_p, index, gc, IndexingUpdateOp::Add);
        grads.register::<B>(parent.id, back_to::<B>(dx, precision));
    }
}

/// With S the scored classes (all but background), q_j = p_j (log p_j + 1) 1[j ∈ S] and
/// A = Σ_k q_k: d H / d x_j = p_j A − q_j. The image mean scales by valid / n_valid.
#[derive(Debug)]
struct EntropyBackward;

impl<B: Backend> Backward<B, 1> for EntropyBackward {
    /// (logits `[B, K, H, W]`, mask `[B, H, W]` or `[1]`, background class)
    type State = (FloatTensor<B>, FloatTensor<B>, Option<u32>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let Some(parent) = parent else { return };
        let (x, mask, background) = ops.state;
        let [b, k, h, w] = x.shape().dims::<4>();
        let device = x.device();
        let (x, precision) = in_f32::<B>(x);
        let dtype = x.dtype();

        let log_p = log_softmax_classes::<B>(x);
        let p = B::float_exp(log_p.clone());
        let mut q = B::float_mul(p.clone(), B::float_add_scalar(log_p, 1.0.into()));
        if let Some(bg) = background {
            let mut keep = vec![1.0f32; k];
            keep[bg as usize] = 0.0;
            let keep = B::float_from_data(
                TensorData::new(keep, [1, k, 1, 1]).convert_dtype(dtype),
                &device,
            );
            q = B::float_mul(q, keep);
        }
        let a = B::float_sum_dim(q.clone(), 1);
        let d_pixel = B::float_sub(B::float_mul(p, a), q);

        // Per-pixel weight g_b · valid / n_valid(b), as [B, 1, H, W].
        let valid = if mask.shape().num_dims() == 3 {
            mask
        } else {
            B::float_ones(Shape::new([b, h, w]), &device, dtype.into())
        };
        let count = row_totals::<B>(B::float_reshape(valid.clone(), Shape::new([b, h * w])));
        let count = B::float_clamp_min(count, 1.0.into());
        let scale = B::float_div(B::float_reshape(grad, Shape::new([b, 1])), count);
        let weight = B::float_mul(B::float_reshape(valid, Shape::new([b, h * w])), scale);
        let weight = B::float_reshape(weight, Shape::new([b, 1, h, w]));
        let dx = B::float_mul(d_pixel, weight);
        grads.register::<B>(parent.id, back_to::<B>(dx, precision));
    }
}
