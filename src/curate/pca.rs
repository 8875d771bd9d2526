//! The two principal axes of a set of vectors, by orthogonal (subspace) iteration on the
//! covariance, never formed: each step multiplies by `Xᵀ X` through `X`, so the cost is
//! `O(N · D)` per step and the memory `O(D)` beyond the data.

use rayon::prelude::*;

/// The mean, the two leading principal axes (unit vectors, each signed so that its largest
/// component is positive) and the share of the total variance along each.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca2 {
    pub mean: Vec<f64>,
    pub axes: [Vec<f64>; 2],
    pub explained: [f64; 2],
}

/// Iteration steps at most; it stops earlier once the axes move less than `1e-10`.
const MAX_STEPS: usize = 300;

impl Pca2 {
    /// # Shapes
    /// - `rows`: N vectors of D values (N ≥ 1, all of one length)
    pub fn fit(rows: &[Vec<f32>]) -> Self {
        let dim = rows.first().map_or(0, Vec::len);
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0f64; dim];
        for row in rows {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += f64::from(v) / n;
            }
        }
        let centred: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .zip(&mean)
                    .map(|(&v, m)| f64::from(v) - m)
                    .collect()
            })
            .collect();
        let total: f64 = centred
            .iter()
            .map(|r| r.iter().map(|v| v * v).sum::<f64>())
            .sum::<f64>()
            / n;
        // A fixed, generic start (no axis is orthogonal to it except by accident).
        let mut axes: [Vec<f64>; 2] = [0, 1].map(|j| {
            (0..dim)
                .map(|d| {
                    1.0 + ((d * 7 + j * 13) % 11) as f64 / 11.0 * if j == 1 { -1.0 } else { 1.0 }
                })
                .collect()
        });
        orthonormalise(&mut axes);
        for _ in 0..MAX_STEPS {
            let mut next = covariance_times(&centred, &axes, n);
            orthonormalise(&mut next);
            let moved: f64 = next
                .iter()
                .zip(&axes)
                .map(|(a, b)| 1.0 - dot(a, b).abs())
                .sum();
            axes = next;
            if moved < 1e-10 {
                break;
            }
        }
        let along = covariance_times(&centred, &axes, n);
        let mut explained = [0, 1].map(|j| dot(&axes[j], &along[j]) / total.max(f64::MIN_POSITIVE));
        if explained[1] > explained[0] {
            axes.swap(0, 1);
            explained.swap(0, 1);
        }
        for axis in &mut axes {
            let largest = axis
                .iter()
                .copied()
                .fold(0f64, |a, v| if v.abs() > a.abs() { v } else { a });
            if largest < 0.0 {
                axis.iter_mut().for_each(|v| *v = -*v);
            }
        }
        Self {
            mean,
            axes,
            explained,
        }
    }

    /// The coordinates of `v` along the two axes.
    pub fn project(&self, v: &[f32]) -> [f32; 2] {
        [0, 1].map(|j| {
            v.iter()
                .zip(&self.mean)
                .zip(&self.axes[j])
                .map(|((&x, m), a)| (f64::from(x) - m) * a)
                .sum::<f64>() as f32
        })
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `(Xᵀ X / n) · axes[j]` for both axes.
fn covariance_times(centred: &[Vec<f64>], axes: &[Vec<f64>; 2], n: f64) -> [Vec<f64>; 2] {
    let dim = axes[0].len();
    let sum = centred
        .par_chunks(1024)
        .map(|chunk| {
            let mut acc = [vec![0f64; dim], vec![0f64; dim]];
            for row in chunk {
                for j in 0..2 {
                    let along = dot(row, &axes[j]);
                    for (a, &x) in acc[j].iter_mut().zip(row) {
                        *a += along * x;
                    }
                }
            }
            acc
        })
        .reduce(
            || [vec![0f64; dim], vec![0f64; dim]],
            |mut a, b| {
                for j in 0..2 {
                    for (x, y) in a[j].iter_mut().zip(&b[j]) {
                        *x += y;
                    }
                }
                a
            },
        );
    sum.map(|v| v.into_iter().map(|x| x / n).collect())
}

/// Gram–Schmidt on two vectors (a zero vector stays zero).
fn orthonormalise(axes: &mut [Vec<f64>; 2]) {
    let norm = |v: &[f64]| dot(v, v).sqrt();
    let n0 = norm(&axes[0]);
    if n0 > 0.0 {
        axes[0].iter_mut().for_each(|v| *v /= n0);
    }
    let along = dot(&axes[0], &axes[1]);
    let first = axes[0].clone();
    for (v, f) in axes[1].iter_mut().zip(&first) {
        *v -= along * f;
    }
    let n1 = norm(&axes[1]);
    if n1 > 0.0 {
        axes[1].iter_mut().for_each(|v| *v /= n1);
    }
}
