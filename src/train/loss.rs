//! Pixel-wise cross-entropy with per-pixel weights: ignored and padded pixels weigh 0, and
//! FixMatch's confidence mask is a weight too (paper §3, "Semi-Supervised Pre-Training").

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use crate::error::{Error, Result};
use crate::reduce::total;

/// `Σ weight · (−log p[label]) / max(normalizer_px, 1)`, the normaliser counted on the CPU:
/// the valid pixels of these logits (a mean over them, PyTorch's `ignore_index` semantics,
/// 0 when none is valid), or of a whole batch of which these logits are one data-parallel
/// share.
///
/// # Shapes
/// logits `[B, K, H, W]`, labels `[B, H, W]` (in `[0, K)` wherever weight > 0; anything in
/// range elsewhere), weight `[B, H, W]` → `[1]`.
pub fn cross_entropy_over(
    logits: Tensor<4>,
    labels: Tensor<3, Int>,
    weight: Tensor<3>,
    normalizer_px: f64,
) -> Tensor<1> {
    let [b, _, h, w] = logits.dims();
    let normalizer = Tensor::from_floats([normalizer_px.max(1.0) as f32], &logits.device());
    let picked = log_softmax(logits, 1)
        .gather(1, labels.reshape([b, 1, h, w]))
        .reshape([b, h, w]);
    // `+ 0.0` turns the -0 of an all-zero weight into 0 in the logs.
    total(picked * weight).neg() / normalizer + 0.0
}

/// What a failed read in a training step advises.
const STEP_ADVICE: &str = "A step may need more GPU memory than the adapter has: lower `batch` \
    (FixMatch: `unlabeled_batch`) or `augment.crop_px`, or set `activation_checkpointing: \
    Blocks` or `precision: Mixed` (`s5 bench memory` projects what fits). The checkpoints \
    written so far are kept";

/// The values of a training step's tensor, read from the GPU as f32; an error that says how
/// to ask for less where the GPU failed.
pub fn read_floats<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_data()
        .map_err(|e| Error::gpu_failed("a training step", e, STEP_ADVICE))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Execution(format!("a training step read non-floats: {e:?}")))
}

/// The value of a one-element tensor (one read from the GPU).
pub fn scalar(t: Tensor<1>) -> Result<f64> {
    let values = read_floats(t)?;
    values
        .first()
        .map(|&v| f64::from(v))
        .ok_or_else(|| Error::Execution("a training step read an empty tensor".into()))
}
