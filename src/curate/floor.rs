//! The similarity floor: a pool patch is a candidate for cluster m only if it is at least
//! as similar to prototype m as most labeled patches of that cluster are.
//!
//! Eq. 3's quotas (paper §3) decide how many patches each cluster gets, not whether a patch
//! resembles the cluster at all: a quota is filled with the lowest-entropy patches nearest
//! to its prototype however far they are (open sea, sensor noise). The floor is calibrated
//! on the labeled images themselves, cut into patches of the plan's size and scored exactly
//! as pool patches are, so it compares like with like: the quantile `q` of the similarities
//! of the labeled patches nearest to prototype m. With the default `q` = 0.05, 95 % of a
//! cluster's labeled patches would pass its floor.

use std::path::Path;

use burn::tensor::Device;

use super::plan::{make_plan, tiled};
use super::record::PatchRecord;
use super::score::{ScoreSetup, score_range};
use crate::check::ConfigError;
use crate::data::DatasetSpec;
use crate::error::Result;
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

/// Each of `clusters` clusters' floor from the scored labeled patches `records` (each
/// record's nearest prototype and its similarity). A cluster no labeled patch is nearest to
/// takes the highest floor of the others; with no labeled patch at all, every floor is 1
/// (nothing passes: calibrate on a split that has images).
pub fn floor_from_records(
    records: &[PatchRecord],
    clusters: usize,
    quantile_q: f64,
    patch_px: u32,
) -> SimilarityFloor {
    let mut similarities: Vec<Vec<f32>> = vec![Vec::new(); clusters];
    for r in records {
        if let Some(s) = similarities.get_mut(r.cluster as usize) {
            s.push(r.similarity);
        }
    }
    let floors: Vec<Option<f32>> = similarities
        .iter()
        .map(|s| quantile(s, quantile_q))
        .collect();
    let highest = floors.iter().flatten().copied().reduce(f32::max).unwrap_or(1.0);
    SimilarityFloor {
        prototypes_sha256: String::new(),
        split: String::new(),
        patch_px,
        quantile: quantile_q,
        per_cluster: floors.iter().map(|f| f.unwrap_or(highest)).collect(),
        labeled_patches: similarities.iter().map(|s| s.len() as u64).collect(),
    }
}

/// Cuts the images of `split` of the spec at `spec_path` into `patch_px` patches (no
/// overlap), scores them against `prototypes` (whose file has SHA-256 `prototypes_sha256`)
/// as the pool is scored, and returns the floors. `done(n, of)` is called after every batch.
#[allow(clippy::too_many_arguments)]
pub fn calibrate_floor(
    model: &Segmentor,
    spec_path: &Path,
    split: &str,
    patch_px: u32,
    quantile_q: f64,
    prototypes: &Prototypes,
    prototypes_sha256: &str,
    setup: ScoreSetup,
    device: &Device,
    done: &dyn Fn(u64, u64),
) -> Result<SimilarityFloor> {
    check_quantile(quantile_q)?;
    let labeled = make_plan(spec_path, split, patch_px, patch_px)?;
    let spec = DatasetSpec::load(spec_path)?;
    let source = tiled(&labeled);
    let setup = ScoreSetup {
        sample_below: 0,
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
    Ok(SimilarityFloor {
        prototypes_sha256: prototypes_sha256.to_string(),
        split: split.to_string(),
        ..floor_from_records(
            &scored.records,
            prototypes.centroids.len(),
            quantile_q,
            patch_px,
        )
    })
}
