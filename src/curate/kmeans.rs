//! Spherical K-Means over L2-normalised features (the paper's prototypes of the labeled set,
//! §3, "Pre-training Dataset Curation"): similarity is the cosine, each centroid the
//! normalised mean of its members.
//!
//! The similarities (`X · Cᵀ`, the N × K × D part) run on the GPU as burn matrix products;
//! assignments and centroid sums run on the CPU in a fixed order, so a seed gives the same
//! prototypes on every run. k-means++ seeding (by `1 − cos`), several restarts (the best mean
//! similarity wins), a tolerance on the mean similarity, and an emptied cluster re-seeded
//! with the point least similar to its own centroid.

use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// How to cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansConfig {
    /// M, the number of prototypes.
    pub clusters: usize,
    /// Independent seedings; the best mean similarity is kept.
    pub restarts: usize,
    pub max_iters: usize,
    /// Stop when the mean similarity improves by less than this.
    pub tolerance: f64,
    pub seed: u64,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        Self {
            clusters: 16,
            restarts: 4,
            max_iters: 100,
            tolerance: 1e-6,
            seed: 0,
        }
    }
}

/// The prototypes and how the clustered points fall into them.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// M unit vectors of D values.
    pub centroids: Vec<Vec<f32>>,
    /// The cluster of each point.
    pub assignments: Vec<u32>,
    /// Points per cluster (`N_m^l` for the labeled set).
    pub counts: Vec<u64>,
    /// Mean cosine similarity of the points to their centroids.
    pub mean_similarity: f64,
    /// Iterations of the winning restart.
    pub iterations: usize,
}

/// Rows scaled to unit length (a zero row stays zero).
pub fn normalize_rows(rows: &mut [f32], dim: usize) {
    for row in rows.chunks_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
}

/// Clusters `points` (N rows of `dim` values, each of unit length).
pub fn spherical_kmeans(
    points: &[f32],
    dim: usize,
    config: &KMeansConfig,
    device: &Device,
) -> Result<KMeans> {
    let n = points.len() / dim.max(1);
    if dim == 0 || n == 0 || config.clusters == 0 || config.clusters > n {
        return Err(Error::Config {
            reason: format!(
                "k-means needs 1 ≤ clusters ≤ points: {} clusters for {n} points of {dim} values",
                config.clusters
            ),
        });
    }
    let x = Tensor::<2>::from_data(TensorData::new(points.to_vec(), [n, dim]), device);
    let mut best: Option<KMeans> = None;
    for restart in 0..config.restarts.max(1) {
        let mut rng =
            ChaCha8Rng::seed_from_u64(config.seed ^ (restart as u64).wrapping_mul(0x9e37_79b9));
        let run = lloyd(&x, points, dim, config, &mut rng, device)?;
        if best
            .as_ref()
            .is_none_or(|b| run.mean_similarity > b.mean_similarity)
        {
            best = Some(run);
        }
    }
    Ok(best.expect("at least one restart"))
}

/// `X · Cᵀ` on the GPU, back as N rows of K similarities.
fn similarities(
    x: &Tensor<2>,
    centroids: &[Vec<f32>],
    dim: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let k = centroids.len();
    let n = x.dims()[0];
    let flat: Vec<f32> = centroids.iter().flatten().copied().collect();
    let c = Tensor::<2>::from_data(TensorData::new(flat, [k, dim]), device);
    let what = format!("the similarities of {n} points to {k} centroids");
    x.clone()
        .matmul(c.transpose())
        .try_into_data()
        .map_err(|e| {
            Error::gpu_failed(
                &what,
                e,
                "The points and their similarities may need more GPU memory than the adapter \
                 has: cluster fewer labeled images or fewer clusters",
            )
        })?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Execution(format!("{what}: not floats: {e:?}")))
}

/// k-means++ seeding by `1 − cos`, then Lloyd iterations.
fn lloyd(
    x: &Tensor<2>,
    points: &[f32],
    dim: usize,
    config: &KMeansConfig,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<KMeans> {
    let n = points.len() / dim;
    let k = config.clusters;
    let row = |i: usize| points[i * dim..(i + 1) * dim].to_vec();
    let mut centroids = vec![row(rng.random_range(0..n))];
    let mut nearest: Vec<f32> = similarities(x, &centroids, dim, device)?;
    while centroids.len() < k {
        let weights: Vec<f64> = nearest
            .iter()
            .map(|&s| f64::from((1.0 - s).max(0.0)).powi(2))
            .collect();
        let total: f64 = weights.iter().sum();
        let pick = if total > 0.0 {
            let mut target = rng.random_range(0.0..total);
            weights
                .iter()
                .position(|&w| {
                    target -= w;
                    target < 0.0
                })
                .unwrap_or(n - 1)
        } else {
            rng.random_range(0..n) // every point sits on a centroid already
        };
        centroids.push(row(pick));
        let fresh = similarities(x, &centroids[centroids.len() - 1..], dim, device)?;
        for (s, f) in nearest.iter_mut().zip(fresh) {
            *s = s.max(f);
        }
    }
    let mut previous = f64::NEG_INFINITY;
    let mut iterations = 0;
    let (mut assignments, mut best_sim) = (vec![0u32; n], vec![0f32; n]);
    loop {
        let sims = similarities(x, &centroids, dim, device)?;
        for (i, row) in sims.chunks(k).enumerate() {
            // The most similar centroid; ties to the lower index.
            let (m, s) =
                row.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |(bm, bs), (m, &s)| {
                        if s > bs { (m, s) } else { (bm, bs) }
                    });
            assignments[i] = m as u32;
            best_sim[i] = s;
        }
        let mean = best_sim.iter().map(|&s| f64::from(s)).sum::<f64>() / n as f64;
        iterations += 1;
        if mean - previous < config.tolerance || iterations >= config.max_iters {
            let mut counts = vec![0u64; k];
            assignments.iter().for_each(|&a| counts[a as usize] += 1);
            return Ok(KMeans {
                centroids,
                assignments,
                counts,
                mean_similarity: mean,
                iterations,
            });
        }
        previous = mean;
        // New centroids: the normalised sums of their members.
        let mut sums = vec![0f32; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &a) in assignments.iter().enumerate() {
            let a = a as usize;
            counts[a] += 1;
            for (s, v) in sums[a * dim..(a + 1) * dim]
                .iter_mut()
                .zip(&points[i * dim..(i + 1) * dim])
            {
                *s += v;
            }
        }
        normalize_rows(&mut sums, dim);
        for (m, centroid) in centroids.iter_mut().enumerate() {
            if counts[m] > 0 {
                *centroid = sums[m * dim..(m + 1) * dim].to_vec();
            }
        }
        // An emptied cluster takes the point least similar to its own centroid (which then
        // leaves a cluster that keeps others), so every prototype has members.
        let empty: Vec<usize> = (0..k).filter(|&m| counts[m] == 0).collect();
        for m in empty {
            let far = (0..n)
                .filter(|&i| counts[assignments[i] as usize] > 1)
                .min_by(|&a, &b| best_sim[a].total_cmp(&best_sim[b]).then(a.cmp(&b)));
            if let Some(i) = far {
                counts[assignments[i] as usize] -= 1;
                counts[m] = 1;
                assignments[i] = m as u32;
                best_sim[i] = 1.0;
                centroids[m] = row(i);
            }
        }
    }
}
