//! The similarity floor: a pool patch is a candidate for cluster m only if it is at least
//! as similar to prototype m as most labeled patches of that cluster are.
//!
//! Eq. 3's quotas (paper §3) decide how many patches each cluster gets, not whether a patch
//! resembles the cluster at all: a quota is filled with the lowest-entropy patches nearest
//! to its prototype however far they are (open sea, sensor noise). The floor is calibrated
//! on the labeled images themselves, cut into patches of the plan's size and embedded
//! exactly as pool patches are, so it compares like with like.
//!
//! A labeled image helped make its own prototype, so its similarity to it is biased upward
//! (with two images in a cluster, each is half of its centroid). Each labeled patch is
//! therefore compared with its nearest prototype made *without its own image* (the
//! normalised sum of the cluster's other images' embeddings, as spherical K-Means makes
//! centroids): how similar an unseen image of that cluster would be. Cluster m's floor is
//! the quantile `q` of those similarities; with the default `q` = 0.05, 95 % of them pass.
//! A patch whose image is its cluster's only one has no such prototype and does not count.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::plan::{make_plan, tiled};
use super::score::{ScoreSetup, score_range};
use crate::check::ConfigError;
use crate::data::DatasetSpec;
use crate::error::{Error, Result};
use crate::model::Segmentor;
use crate::run::curation::{Prototypes, SimilarityFloor};

/// The quantile of the labeled patches' similarities that makes a cluster's floor.
pub const DEFAULT_QUANTILE: f64 = 0.05;

/// Checks a floor quantile: in `[0, 1)`.
pub fn check_quantile(quantile: f64) -> std::result::Result<(), ConfigError> {
    if (0.0..1.0).contains(&quantile) {
        Ok(())
    } else {
        Err(ConfigError::new(
            "--floor-quantile",
            format!("is {quantile}; it must be at least 0 and below 1 (0.05 is the default)"),
        ))
    }
}

/// The value below which a share `q` of `values` lies (the lower nearest rank: the
/// `⌊q·(n−1)⌋`-th smallest); non-finite values are left out. `None` if no value is left.
pub fn quantile(values: &[f32], q: f64) -> Option<f32> {
    let mut finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return None;
    }
    finite.sort_by(f32::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * (finite.len() - 1) as f64).floor() as usize;
    Some(finite[rank])
}

/// Each cluster's floor from the similarities of its labeled patches (`similarities[m]`): the
/// quantile `quantile_q` of each list. A cluster without any takes the highest floor of the
/// others; with none at all, every floor is 1 (nothing passes: calibrate on a split with
/// images that share clusters).
pub fn floor_from_similarities(
    similarities: &[Vec<f32>],
    quantile_q: f64,
    patch_px: u32,
) -> SimilarityFloor {
    let floors: Vec<Option<f32>> = similarities
        .iter()
        .map(|s| quantile(s, quantile_q))
        .collect();
    let highest = floors
        .iter()
        .flatten()
        .copied()
        .reduce(f32::max)
        .unwrap_or(1.0);
    SimilarityFloor {
        prototypes_sha256: String::new(),
        split: String::new(),
        patch_px,
        quantile: quantile_q,
        per_cluster: floors.iter().map(|f| f.unwrap_or(highest)).collect(),
        labeled_patches: similarities.iter().map(|s| s.len() as u64).collect(),
        leave_one_out: true,
    }
}

/// The leave-one-out similarities: for each labeled patch (its embedding, the index of its
/// image, its nearest prototype `cluster`), the cosine with its cluster's prototype made
/// without the patch's image, grouped by cluster. `images` holds each labeled image's
/// embedding (`dim` values, unit length) and `assigned` its cluster.
///
/// # Shapes
/// `images`: `[N, dim]` row-major; `patches`: `(embedding [dim], image, cluster)`.
pub fn leave_one_out(
    images: &[f32],
    dim: usize,
    assigned: &[u32],
    clusters: usize,
    patches: &[(Vec<f32>, usize, u32)],
) -> Vec<Vec<f32>> {
    let mut sums = vec![vec![0f64; dim]; clusters];
    for (row, &m) in images.chunks(dim.max(1)).zip(assigned) {
        for (s, &v) in sums[m as usize].iter_mut().zip(row) {
            *s += f64::from(v);
        }
    }
    let mut out = vec![Vec::new(); clusters];
    for (embedding, image, cluster) in patches {
        let m = *cluster as usize;
        if m >= clusters {
            continue;
        }
        let own = (assigned.get(*image) == Some(cluster))
            .then(|| &images[image * dim..(image + 1) * dim]);
        let prototype: Vec<f64> = sums[m]
            .iter()
            .enumerate()
            .map(|(d, &s)| s - own.map_or(0.0, |row| f64::from(row[d])))
            .collect();
        let norm = prototype.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm < 1e-6 {
            continue; // its image is the cluster's only one
        }
        let dot: f64 = prototype
            .iter()
            .zip(embedding)
            .map(|(p, &e)| p * f64::from(e))
            .sum();
        out[m].push((dot / norm) as f32);
    }
    out
}

/// Cuts the images of `split` of the spec at `spec_path` into `patch_px` patches (no
/// overlap), embeds them as the pool is scored, and returns the floors against `prototypes`
/// (whose file has SHA-256 `prototypes_sha256`). `images` are the whole images' embeddings,
/// in the split's order, as the prototypes were made from them
/// ([`super::prototypes::embed_images`]). `done(n, of)` is called after every batch.
///
/// # Shapes
/// `images`: `[N, D]` row-major, N the split's images, D the prototypes' dimension.
#[allow(clippy::too_many_arguments)]
pub fn calibrate_floor(
    model: &Segmentor,
    spec_path: &Path,
    split: &str,
    patch_px: u32,
    quantile_q: f64,
    prototypes: &Prototypes,
    prototypes_sha256: &str,
    images: &[f32],
    setup: ScoreSetup,
    device: &Device,
    done: &dyn Fn(u64, u64),
) -> Result<SimilarityFloor> {
    check_quantile(quantile_q)?;
    let spec = DatasetSpec::load(spec_path)?;
    let samples = spec.samples(split)?;
    let dim = prototypes.centroids.first().map_or(0, Vec::len);
    if images.len() != samples.len() * dim {
        return Err(Error::Config {
            reason: format!(
                "{} embedded values for {} images of {dim} dimensions: embed `{split}` again",
                images.len(),
                samples.len()
            ),
        });
    }
    let assigned: Vec<u32> = images
        .chunks(dim.max(1))
        .map(|row| nearest(row, &prototypes.centroids))
        .collect();
    // The patches, as the pool's are scored (their embeddings kept).
    let labeled = make_plan(spec_path, split, patch_px, patch_px)?;
    let source = tiled(&labeled);
    let index_of: HashMap<PathBuf, usize> = samples
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((std::path::absolute(&s.image).ok()?, i)))
        .collect();
    let setup = ScoreSetup {
        sample_below: u64::MAX,
        ..setup
    };
    let (scored, _) = score_range(
        model,
        &spec,
        &source,
        0..labeled.patches,
        prototypes,
        setup,
        device,
        &|n| done(n, labeled.patches),
    )?;
    let patches: Vec<(Vec<f32>, usize, u32)> = scored
        .samples
        .into_iter()
        .filter_map(|(record, embedding)| {
            let patch = source.patches.get(record.patch as usize)?;
            let image = index_of.get(&source.images[patch.image].image)?;
            Some((embedding, *image, record.cluster))
        })
        .collect();
    let similarities = leave_one_out(images, dim, &assigned, prototypes.centroids.len(), &patches);
    Ok(SimilarityFloor {
        prototypes_sha256: prototypes_sha256.to_string(),
        split: split.to_string(),
        ..floor_from_similarities(&similarities, quantile_q, patch_px)
    })
}

/// The most similar of `centroids` to `row` (ties to the lower index).
fn nearest(row: &[f32], centroids: &[Vec<f32>]) -> u32 {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (m, c) in centroids.iter().enumerate() {
        let s: f32 = c.iter().zip(row).map(|(a, b)| a * b).sum();
        if s > best.1 {
            best = (m as u32, s);
        }
    }
    best.0
}
