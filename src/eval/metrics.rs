//! Segmentation metrics from a confusion matrix accumulated over a whole split
//! (the authors' evaluation protocol): per class intersection, union, target and prediction counts, IoU,
//! precision, recall and F1; overall accuracy, mIoU and mF1 with an optional excluded
//! (background) class. Pixels whose ground truth is ignored count in no class: the authors'
//! code, with ignore index 5 and 5 classes, puts them into the last class; here they are
//! dropped before anything is counted. Means skip classes absent from both ground truth and
//! prediction, so they are never NaN.

use burn::tensor::{Int, Tensor};
use serde::Serialize;

/// Counts of (ground truth, prediction) pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfusionMatrix {
    classes: usize,
    /// Row-major `[ground truth][prediction]`.
    counts: Vec<u64>,
}

/// One class's counts and scores (NaN where undefined: no target, no prediction).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub intersection: u64,
    pub union: u64,
    pub target: u64,
    pub prediction: u64,
    pub iou: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Means over the classes present (in ground truth or prediction), minus the excluded one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsSummary {
    pub overall_accuracy: f64,
    pub miou: f64,
    pub mf1: f64,
    pub mean_precision: f64,
    pub mean_recall: f64,
    /// Classes that entered the means.
    pub classes_counted: usize,
}

/// Pixels per read-back: f32 counts stay exact below 2^24.
const CHUNK_PX: usize = 1 << 23;

/// Pixels one matrix product sums over. Its K loop must stay short: lavapipe stops any
/// shader invocation after 65 535 loop iterations, and a 4 M-pixel product silently lost
/// most of its counts there.
const MATMUL_PX: usize = 1 << 16;

impl ConfusionMatrix {
    pub fn new(classes: usize) -> Self {
        Self {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The count of pixels of class `gt` predicted as `pred`.
    pub fn get(&self, gt: usize, pred: usize) -> u64 {
        self.counts[gt * self.classes + pred]
    }

    /// Adds labels on the CPU. A ground-truth value outside `[0, classes)` (the ignore
    /// value, whatever it is) is skipped; a prediction outside it is a programming error.
    ///
    /// # Panics
    /// If the slices differ in length or a prediction is out of range.
    pub fn add(&mut self, gt: &[u8], pred: &[u8]) {
        assert_eq!(
            gt.len(),
            pred.len(),
            "ground truth and prediction differ in size"
        );
        let k = self.classes;
        for (&g, &p) in gt.iter().zip(pred) {
            if usize::from(g) >= k {
                continue;
            }
            assert!(usize::from(p) < k, "prediction {p} outside {k} classes");
            self.counts[usize::from(g) * k + usize::from(p)] += 1;
        }
    }

    /// Adds labels that live on the GPU: the matrix is `one_hot(gt)ᵀ · one_hot(pred)`, summed
    /// over blocks of [`MATMUL_PX`] pixels, so only `K × K` counts come back per
    /// [`CHUNK_PX`] pixels. Ground truth outside `[0, K)` has an all-zero one-hot row and is
    /// never counted.
    ///
    /// # Shapes
    /// gt, pred `[N]` (any integer labels; flatten images first).
    pub fn add_tensors(&mut self, gt: Tensor<1, Int>, pred: Tensor<1, Int>) -> crate::Result<()> {
        let n = gt.dims()[0];
        assert_eq!(
            pred.dims()[0],
            n,
            "ground truth and prediction differ in size"
        );
        let k = self.classes;
        let device = gt.device();
        let classes = Tensor::<1, Int>::arange(0..k as i64, &device).reshape([1, 1, k]);
        let mut start = 0;
        while start < n {
            let len = CHUNK_PX.min(n - start);
            let block = MATMUL_PX.min(len);
            let blocks = len.div_ceil(block);
            // Padding labels are `k`: an all-zero one-hot row, counted nowhere.
            let one_hot = |t: Tensor<1, Int>| {
                let mut t = t.narrow(0, start, len);
                if blocks * block > len {
                    let pad = Tensor::full([blocks * block - len], k as i64, &device);
                    t = Tensor::cat(vec![t, pad], 0);
                }
                t.reshape([blocks, block, 1])
                    .equal(classes.clone().expand([blocks, block, k]))
                    .float()
            };
            let m = one_hot(gt.clone())
                .swap_dims(1, 2)
                .matmul(one_hot(pred.clone()))
                .sum_dim(0);
            let values = m
                .try_into_data()
                .map_err(|e| {
                    crate::Error::gpu_failed(
                        &format!("the confusion matrix of {len} pixels"),
                        e,
                        "The GPU ran out of memory or failed earlier in the evaluation",
                    )
                })?
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| crate::Error::Execution(format!("confusion counts: {e:?}")))?;
            for (c, v) in self.counts.iter_mut().zip(values) {
                *c += v.round() as u64;
            }
            start += len;
        }
        Ok(())
    }

    /// Adds another matrix (e.g. from another GPU or worker).
    pub fn merge(&mut self, other: &Self) {
        assert_eq!(
            self.classes, other.classes,
            "matrices of different class counts"
        );
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    pub fn per_class(&self) -> Vec<ClassMetrics> {
        let k = self.classes;
        (0..k)
            .map(|c| {
                let intersection = self.get(c, c);
                let target: u64 = (0..k).map(|p| self.get(c, p)).sum();
                let prediction: u64 = (0..k).map(|g| self.get(g, c)).sum();
                let union = target + prediction - intersection;
                let ratio = |a: u64, b: u64| {
                    if b == 0 {
                        f64::NAN
                    } else {
                        a as f64 / b as f64
                    }
                };
                let (precision, recall) =
                    (ratio(intersection, prediction), ratio(intersection, target));
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else if precision == 0.0 || recall == 0.0 {
                    0.0
                } else {
                    f64::NAN
                };
                ClassMetrics {
                    intersection,
                    union,
                    target,
                    prediction,
                    iou: ratio(intersection, union),
                    precision,
                    recall,
                    f1,
                }
            })
            .collect()
    }

    /// Means over the classes that appear in ground truth or prediction, leaving out
    /// `exclude` (the background class, for S4P validation).
    pub fn summary(&self, exclude: Option<usize>) -> MetricsSummary {
        let per_class = self.per_class();
        let counted: Vec<&ClassMetrics> = per_class
            .iter()
            .enumerate()
            .filter(|(c, m)| Some(*c) != exclude && m.union > 0)
            .map(|(_, m)| m)
            .collect();
        let mean = |f: &dyn Fn(&ClassMetrics) -> f64| {
            let values: Vec<f64> = counted
                .iter()
                .map(|m| f(m))
                .map(|v| if v.is_nan() { 0.0 } else { v })
                .collect();
            if values.is_empty() {
                0.0
            } else {
                values.iter().sum::<f64>() / values.len() as f64
            }
        };
        let total: u64 = self.counts.iter().sum();
        let correct: u64 = (0..self.classes).map(|c| self.get(c, c)).sum();
        MetricsSummary {
            overall_accuracy: if total == 0 {
                0.0
            } else {
                correct as f64 / total as f64
            },
            miou: mean(&|m| m.iou),
            mf1: mean(&|m| m.f1),
            mean_precision: mean(&|m| m.precision),
            mean_recall: mean(&|m| m.recall),
            classes_counted: counted.len(),
        }
    }
}
