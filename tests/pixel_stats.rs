//! `pixel_stats` (WGSL) against `pixel_stats_reference` (tensor ops): forward and gradients.

use burn::tensor::{Bool, Int, Tensor, TensorData};
use s5::kernels::{PixelStats, pixel_stats, pixel_stats_reference};

use crate::common::{Rng, assert_close, device, f16_adapter, to_vec};

fn random_mask(rng: &mut Rng, [b, h, w]: [usize; 3], keep: f32) -> Tensor<3, Bool> {
    let values: Vec<bool> = (0..b * h * w).map(|_| rng.uniform() < keep).collect();
    Tensor::from_data(TensorData::new(values, [b, h, w]), &device())
}

fn labels_of(labels: Tensor<3, Int>) -> Vec<i64> {
    labels
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .unwrap()
}

fn assert_same_labels(kernel: Tensor<3, Int>, reference: Tensor<3, Int>) {
    let (a, b) = (labels_of(kernel), labels_of(reference));
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!(differ, 0, "{differ} of {} pseudo-labels differ", a.len());
}

fn check_forward(shape: [usize; 4], masked: bool, background: Option<usize>) {
    let mut rng = Rng::fresh(&format!(
        "pixel_stats forward {shape:?} mask={masked} bg={background:?}"
    ));
    let device = device();
    let [b, _, h, w] = shape;
    let logits = rng.tensor(shape, 2.0, &device);
    let mask = masked.then(|| random_mask(&mut rng, [b, h, w], 0.7));
    let got: PixelStats = pixel_stats(logits.clone(), mask.clone(), background);
    let want = pixel_stats_reference(logits, mask, background);
    assert_same_labels(got.labels, want.labels);
    assert_close("confidence", got.confidence, want.confidence);
    assert_close("entropy", got.entropy, want.entropy);
}

#[test]
fn forward_odd_sizes_match_reference() {
    check_forward([3, 7, 13, 13], false, None);
    check_forward([3, 7, 13, 13], true, Some(0));
    check_forward([2, 5, 37, 41], true, Some(3));
    check_forward([1, 1, 9, 7], false, None);
    // H * W a multiple of 4: the vec4 variant of the shader.
    check_forward([3, 7, 12, 20], false, None);
    check_forward([3, 7, 12, 20], true, Some(2));
}

#[test]
fn forward_many_workgroups_grid_stride() {
    // 90 300 pixels: more than 256 workgroups × 256 invocations, so invocations loop.
    check_forward([1, 3, 300, 301], true, Some(1));
}

#[test]
fn background_exclusion_changes_entropy() {
    let mut rng = Rng::fresh("background exclusion");
    let device = device();
    let logits = rng.tensor([2, 4, 9, 11], 1.0, &device);
    let all = to_vec(pixel_stats(logits.clone(), None, None).entropy);
    let no_bg = to_vec(pixel_stats(logits, None, Some(2)).entropy);
    for (a, n) in all.iter().zip(&no_bg) {
        assert!(
            n < a,
            "leaving a class out must lower the entropy: {n} vs {a}"
        );
    }
}

#[test]
fn confident_pixels_have_zero_entropy_and_full_confidence() {
    let device = device();
    // Class 1 dominates every pixel by 100 logits.
    let mut values = vec![0.0f32; 2 * 3 * 5 * 5];
    for b in 0..2 {
        for p in 0..25 {
            values[b * 75 + 25 + p] = 100.0;
        }
    }
    let logits = Tensor::<4>::from_data(TensorData::new(values, [2, 3, 5, 5]), &device);
    let out = pixel_stats(logits, None, None);
    assert!(
        to_vec(out.confidence)
            .iter()
            .all(|c| (c - 1.0).abs() < 1e-6)
    );
    assert!(to_vec(out.entropy).iter().all(|e| e.abs() < 1e-6));
    let labels = out
        .labels
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .unwrap();
    assert!(labels.iter().all(|&l| l == 1));
}

#[test]
fn empty_mask_gives_zero_entropy_not_nan() {
    let mut rng = Rng::fresh("empty mask");
    let device = device();
    let logits = rng.tensor([2, 6, 7, 9], 1.0, &device);
    let none =
        Tensor::<3, Bool>::from_data(TensorData::new(vec![false; 2 * 7 * 9], [2, 7, 9]), &device);
    let out = pixel_stats(logits.clone(), Some(none.clone()), Some(0));
    let want = pixel_stats_reference(logits, Some(none), Some(0));
    assert_eq!(to_vec(out.entropy), vec![0.0, 0.0]);
    assert_eq!(to_vec(want.entropy), vec![0.0, 0.0]);
}

/// loss = Σ conf · r1 + Σ entropy · r2 through both paths; compares d loss / d logits. With
/// `half`, the logits are f16 and so is their gradient, which must then match the reference's
/// (whose cast to f32 carries it back) within f16 rounding.
fn check_gradients(
    shape: [usize; 4],
    masked: bool,
    background: Option<usize>,
    empty: bool,
    half: bool,
) {
    let mut rng = Rng::fresh(&format!(
        "pixel_stats grads {shape:?} mask={masked} bg={background:?} f16={half}"
    ));
    let device = device().autodiff();
    let [b, _, h, w] = shape;
    let logits = rng.tensor(shape, 2.0, &device);
    let logits = if half {
        logits.cast(burn::tensor::FloatDType::F16)
    } else {
        logits
    };
    let mask = masked.then(|| random_mask(&mut rng, [b, h, w], if empty { 0.0 } else { 0.6 }));
    let r_conf = rng.tensor([b, h, w], 1.0, &device);
    let r_ent = rng.tensor([b], 1.0, &device);
    let run = |f: fn(Tensor<4>, Option<Tensor<3, Bool>>, Option<usize>) -> PixelStats| {
        let x = logits.clone().detach().require_grad();
        let out = f(x.clone(), mask.clone(), background);
        let loss = (out.confidence * r_conf.clone()).sum() + (out.entropy * r_ent.clone()).sum();
        let grads = loss.backward();
        x.grad(&grads).expect("logits gradient")
    };
    let got = run(pixel_stats);
    let want = run(pixel_stats_reference);
    let got_values = to_vec(got.clone());
    assert!(
        got_values.iter().all(|g| g.is_finite()),
        "gradient has NaN or inf"
    );
    if !half {
        assert_close("d loss / d logits", got, want);
        return;
    }
    assert_eq!(
        got.dtype(),
        burn::tensor::DType::F16,
        "in the logits' precision"
    );
    assert_eq!(want.dtype(), burn::tensor::DType::F16);
    let err = crate::common::rel_err(got, want);
    assert!(
        err < F16_GRAD_TOLERANCE,
        "d loss / d f16 logits: relative error {err:e} >= {F16_GRAD_TOLERANCE:e}"
    );
}

#[test]
fn gradients_match_reference() {
    check_gradients([3, 7, 13, 13], false, None, false, false);
    check_gradients([2, 5, 17, 19], true, Some(0), false, false);
    check_gradients([2, 4, 11, 7], true, Some(3), false, false);
    check_gradients([2, 6, 8, 10], true, Some(5), false, false);
    // More pixels than one reduction chunk (4096), and not a multiple of it.
    check_gradients([2, 3, 97, 101], true, Some(1), false, false);
}

#[test]
fn gradients_with_empty_mask_are_finite() {
    check_gradients([2, 5, 6, 7], true, Some(0), true, false);
    check_gradients([2, 5, 6, 8], true, Some(0), true, false);
}

/// f16 parity bound for gradients: each side is an f32 gradient rounded once to f16 (half an
/// f16 ulp, 2^-11 relative), so twice that, norm-wise.
const F16_GRAD_TOLERANCE: f32 = 2.0 * 4.9e-4;

/// Pixels whose largest logit is unique: where the pseudo-label does not depend on how a tie
/// is broken (f16 rounding makes ties among random logits likely).
fn unique_argmax(logits: &Tensor<4>) -> Vec<bool> {
    let [b, k, h, w] = logits.dims();
    let x = to_vec(logits.clone().cast(burn::tensor::FloatDType::F32));
    crate::common::assert_finite("f16 logits", "the kernel's input", &x);
    let mut unique = Vec::with_capacity(b * h * w);
    for i in 0..b {
        for p in 0..h * w {
            let of = |c: usize| x[(i * k + c) * h * w + p];
            let max = (0..k).map(of).fold(f32::NEG_INFINITY, f32::max);
            unique.push((0..k).filter(|&c| of(c) == max).count() == 1);
        }
    }
    unique
}

/// f16 logits: the kernel reads them as f16 and computes in f32, the reference casts them to
/// f32 first; from the same f16 values both must agree to f32 precision, with f32 outputs.
fn check_forward_f16(shape: [usize; 4], masked: bool, background: Option<usize>) {
    let mut rng = Rng::fresh(&format!(
        "pixel_stats f16 forward {shape:?} mask={masked} bg={background:?}"
    ));
    let device = device();
    let [b, _, h, w] = shape;
    let logits = rng
        .tensor(shape, 2.0, &device)
        .cast(burn::tensor::FloatDType::F16);
    let mask = masked.then(|| random_mask(&mut rng, [b, h, w], 0.7));
    let got = pixel_stats(logits.clone(), mask.clone(), background);
    let want = pixel_stats_reference(logits.clone(), mask, background);
    assert_eq!(got.confidence.dtype(), burn::tensor::DType::F32);
    assert_eq!(got.entropy.dtype(), burn::tensor::DType::F32);
    let unique = unique_argmax(&logits);
    let (a, e) = (labels_of(got.labels), labels_of(want.labels));
    let differ = (0..a.len()).filter(|&i| unique[i] && a[i] != e[i]).count();
    assert_eq!(differ, 0, "{differ} pseudo-labels of unique maxima differ");
    assert_close("confidence (f16 logits)", got.confidence, want.confidence);
    assert_close("entropy (f16 logits)", got.entropy, want.entropy);
}

#[test]
fn f16_logits_forward_matches_reference() {
    if !f16_adapter() {
        return;
    }
    check_forward_f16([3, 7, 13, 13], false, None);
    check_forward_f16([2, 5, 37, 41], true, Some(3));
    // H * W a multiple of 4: the vec4 f16 variant.
    check_forward_f16([3, 7, 12, 20], true, Some(2));
    check_forward_f16([2, 6, 16, 16], false, None);
}

#[test]
fn f16_logits_gradients_match_reference() {
    if !f16_adapter() {
        return;
    }
    check_gradients([3, 7, 13, 13], false, None, false, true);
    check_gradients([2, 5, 17, 19], true, Some(0), false, true);
    check_gradients([2, 6, 8, 10], true, Some(5), false, true);
}
