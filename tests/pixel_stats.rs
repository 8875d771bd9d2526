//! `pixel_stats` (WGSL) against `pixel_stats_reference` (tensor ops): forward and gradients.

use burn::tensor::{Bool, Int, Tensor, TensorData};
use s5::kernels::{PixelStats, pixel_stats, pixel_stats_reference};

use crate::common::{Rng, assert_close, device, to_vec};

fn random_mask(rng: &mut Rng, [b, h, w]: [usize; 3], keep: f32) -> Tensor<3, Bool> {
    let values: Vec<bool> = (0..b * h * w).map(|_| rng.uniform() < keep).collect();
    Tensor::from_data(TensorData::new(values, [b, h, w]), &device())
}

fn assert_same_labels(kernel: Tensor<3, Int>, reference: Tensor<3, Int>) {
    let a = kernel
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .unwrap();
    let b = reference
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .unwrap();
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

/// loss = Σ conf · r1 + Σ entropy · r2 through both paths; compares d loss / d logits.
fn check_gradients(shape: [usize; 4], masked: bool, background: Option<usize>, empty: bool) {
    let mut rng = Rng::fresh(&format!(
        "pixel_stats grads {shape:?} mask={masked} bg={background:?}"
    ));
    let device = device().autodiff();
    let [b, _, h, w] = shape;
    let logits = rng.tensor(shape, 2.0, &device);
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
    assert_close("d loss / d logits", got, want);
}

#[test]
fn gradients_match_reference() {
    check_gradients([3, 7, 13, 13], false, None, false);
    check_gradients([2, 5, 17, 19], true, Some(0), false);
    check_gradients([2, 4, 11, 7], true, Some(3), false);
    check_gradients([2, 6, 8, 10], true, Some(5), false);
    // More pixels than one reduction chunk (4096), and not a multiple of it.
    check_gradients([2, 3, 97, 101], true, Some(1), false);
}

#[test]
fn gradients_with_empty_mask_are_finite() {
    check_gradients([2, 5, 6, 7], true, Some(0), true);
    check_gradients([2, 5, 6, 8], true, Some(0), true);
}
