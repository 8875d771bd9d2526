//! Metrics against hand-computed confusion matrices, on the CPU and on the GPU.

use burn::tensor::{Int, Tensor, TensorData};
use s5::eval::ConfusionMatrix;

use crate::common::{Rng, device};

/// 3 classes; ground truth 3 is the ignore index (= the number of classes).
const GT: [u8; 12] = [0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 3];
const PRED: [u8; 12] = [0, 0, 1, 1, 1, 2, 0, 2, 2, 2, 2, 0];

#[test]
fn hand_computed_matrix_with_ignore_index_equal_to_the_class_count() {
    let mut cpu = ConfusionMatrix::new(3);
    cpu.add(&GT, &PRED);
    // gt 0: pred 0,0,1 | gt 1: pred 1,1,2,0 | gt 2: pred 2,2 | gt 3 (ignored): nothing.
    let want = [[2, 1, 0], [1, 2, 1], [0, 0, 2]];
    for (g, row) in want.iter().enumerate() {
        for (p, &n) in row.iter().enumerate() {
            assert_eq!(cpu.get(g, p), n, "gt {g} pred {p}");
        }
    }
    let m = cpu.per_class();
    // Class 0: I 2, T 3, P 3, U 4. Class 1: I 2, T 4, P 3, U 5. Class 2: I 2, T 2, P 3, U 3.
    assert_eq!(
        (m[0].intersection, m[0].target, m[0].prediction, m[0].union),
        (2, 3, 3, 4)
    );
    assert_eq!(
        (m[1].intersection, m[1].target, m[1].prediction, m[1].union),
        (2, 4, 3, 5)
    );
    assert_eq!(
        (m[2].intersection, m[2].target, m[2].prediction, m[2].union),
        (2, 2, 3, 3)
    );
    let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    close(m[1].iou, 0.4);
    close(m[1].precision, 2.0 / 3.0);
    close(m[1].recall, 0.5);
    close(m[1].f1, 2.0 * (2.0 / 3.0) * 0.5 / (2.0 / 3.0 + 0.5));
    let s = cpu.summary(None);
    close(s.overall_accuracy, 6.0 / 9.0);
    close(s.miou, (0.5 + 0.4 + 2.0 / 3.0) / 3.0);
    let s = cpu.summary(Some(0));
    close(s.miou, (0.4 + 2.0 / 3.0) / 2.0);
    assert_eq!(s.classes_counted, 2);

    // The same on the GPU.
    let device = device();
    let to = |v: &[u8]| {
        Tensor::<1, Int>::from_ints(
            v.iter()
                .map(|&x| i32::from(x))
                .collect::<Vec<_>>()
                .as_slice(),
            &device,
        )
    };
    let mut gpu = ConfusionMatrix::new(3);
    gpu.add_tensors(to(&GT), to(&PRED)).unwrap();
    assert_eq!(gpu, cpu);
}

#[test]
fn empty_classes_leave_the_means_finite() {
    let mut m = ConfusionMatrix::new(5);
    // Classes 3 and 4 never appear; class 2 is predicted but never true.
    m.add(&[0, 0, 1, 1, 255], &[0, 2, 1, 1, 4]);
    let per_class = m.per_class();
    assert!(per_class[3].iou.is_nan() && per_class[4].iou.is_nan());
    assert_eq!(per_class[2].iou, 0.0);
    let s = m.summary(None);
    assert_eq!(s.classes_counted, 3);
    for v in [
        s.miou,
        s.mf1,
        s.mean_precision,
        s.mean_recall,
        s.overall_accuracy,
    ] {
        assert!(v.is_finite(), "{s:?}");
    }
    assert!((s.miou - (0.5 + 1.0 + 0.0) / 3.0).abs() < 1e-12, "{s:?}");
    // Nothing at all: zeros, not NaN.
    let s = ConfusionMatrix::new(4).summary(Some(0));
    assert_eq!(
        (s.miou, s.overall_accuracy, s.classes_counted),
        (0.0, 0.0, 0)
    );
}

/// A tile of 4 M pixels (odd count, ignore labels included) counts the same on the GPU as
/// on the CPU. lavapipe caps a shader invocation at 65 535 loop iterations, and one matrix
/// product over all the pixels lost most of its counts there.
#[test]
fn gpu_counts_of_a_large_tile_match_the_cpu() {
    let device = device();
    let mut rng = Rng::fresh("gpu_counts_of_a_large_tile_match_the_cpu");
    let n = 2048 * 2048 + 3;
    let k = 6;
    // Ground truth in [0, k]: k is the ignore index.
    let gt: Vec<u8> = (0..n).map(|_| rng.below(k + 1) as u8).collect();
    let pred: Vec<u8> = (0..n).map(|_| rng.below(k) as u8).collect();
    let mut cpu = ConfusionMatrix::new(k);
    cpu.add(&gt, &pred);
    let to = |labels: &[u8]| {
        let values: Vec<i32> = labels.iter().map(|&l| i32::from(l)).collect();
        Tensor::<1, Int>::from_data(TensorData::new(values, [n]), &device)
    };
    let mut gpu = ConfusionMatrix::new(k);
    gpu.add_tensors(to(&gt), to(&pred)).unwrap();
    assert_eq!(gpu, cpu);
}
