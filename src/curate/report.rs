//! The curation report (`curation/report.json`, types in [`crate::run::curation::report`]):
//! per cluster its labeled count, scored patches, quotas and fill; the entropy histograms of
//! the pool and the selection; a 2-D projection of the projection sample and the
//! prototypes; kinds where the pool's truth is known; thumbnails.
//!
//! Built from the finished shards' summaries (their per-cluster statistics) and projection
//! samples, and the selection once there is one: never from a pass over every record, so
//! each finished shard can refresh it while the others are still scoring.

use std::collections::{HashMap, HashSet};

use super::pca::Pca2;
use super::record::PatchRecord;
use super::sample::{PROJECTION_MAX_POINTS, read_samples};
use super::select::{Selection, tiebreak};
use crate::data::DatasetSpec;
use crate::data::source::TiledSource;
use crate::error::Result;
use crate::run::RunDir;
use crate::run::curation::{
    ClusterReport, CurationReport, ENTROPY_BINS, EXTREMES_KEPT, EntropyHistogram, KindShare, Plan,
    ProjectedPatch, Projection, Prototypes, ReportStage, ScoredPatch, ShardCluster, ShardSummary,
    Thumbnail, ThumbnailRole,
};
use crate::run::fsutil::save_png_atomic;

/// Thumbnails per cluster and role.
pub const THUMBNAILS_PER_CLUSTER: usize = 4;
/// The longest side of a thumbnail.
pub const THUMBNAIL_PX: u32 = 96;

/// The upper edge of the entropy histograms for a model of `classes` classes: the largest
/// entropy Eq. 1 can reach (`ln C`, or `C / e` for C ≤ 2, where the sum over the
/// foreground classes is below one).
pub fn entropy_range_nats(classes: usize) -> f32 {
    let c = classes.max(1) as f32;
    c.ln().max(c / std::f32::consts::E)
}

/// Per cluster, what a shard's `records` hold.
pub fn shard_clusters(
    records: &[PatchRecord],
    clusters: usize,
    range_nats: f32,
) -> Vec<ShardCluster> {
    let mut out: Vec<ShardCluster> = (0..clusters)
        .map(|_| ShardCluster {
            entropy_histogram: vec![0; ENTROPY_BINS],
            ..ShardCluster::default()
        })
        .collect();
    let mut members: Vec<Vec<ScoredPatch>> = vec![Vec::new(); clusters];
    for r in records {
        let Some(c) = out.get_mut(r.cluster as usize) else {
            continue;
        };
        c.records += 1;
        c.entropy_sum += f64::from(r.entropy);
        c.similarity_sum += f64::from(r.similarity);
        c.foreground_sum += f64::from(r.foreground);
        c.entropy_histogram[ShardCluster::bin(r.entropy, range_nats)] += 1;
        members[r.cluster as usize].push(ScoredPatch {
            patch: r.patch,
            entropy: r.entropy,
        });
    }
    for (c, patches) in out.iter_mut().zip(members) {
        (c.lowest, c.highest) = extremes(patches);
    }
    out
}

/// The `EXTREMES_KEPT` lowest (lowest first) and highest (highest first) of `patches`, in
/// an order that does not depend on theirs.
fn extremes(mut patches: Vec<ScoredPatch>) -> (Vec<ScoredPatch>, Vec<ScoredPatch>) {
    let key = |p: &ScoredPatch| (p.entropy.max(0.0).to_bits(), tiebreak(p.patch), p.patch);
    patches.retain(|p| p.entropy.is_finite());
    patches.sort_by_key(key);
    let lowest = patches.iter().take(EXTREMES_KEPT).copied().collect();
    let highest = patches.iter().rev().take(EXTREMES_KEPT).copied().collect();
    (lowest, highest)
}

/// Everything a report is made from.
pub struct ReportInputs<'a> {
    pub run: &'a RunDir,
    pub plan: &'a Plan,
    pub source: &'a TiledSource,
    pub spec: &'a DatasetSpec,
    pub prototypes: &'a Prototypes,
    /// The finished shards of one sharding, and how many it has.
    pub shards: &'a [ShardSummary],
    pub shard_count: u32,
    /// The selection and its budget, once made.
    pub selection: Option<(&'a Selection, u64)>,
}

/// Builds the report, writes the thumbnails it names that are not there yet, and saves it.
pub fn write_report(inputs: &ReportInputs) -> Result<CurationReport> {
    let ReportInputs {
        run,
        plan,
        source,
        spec,
        prototypes,
        shards,
        shard_count,
        selection,
    } = *inputs;
    let m = prototypes.centroids.len();
    let range_nats = shards
        .iter()
        .map(|s| s.entropy_range_nats)
        .fold(0f32, f32::max);
    // Merge the shards' clusters.
    let mut merged: Vec<ShardCluster> = (0..m)
        .map(|_| ShardCluster {
            entropy_histogram: vec![0; ENTROPY_BINS],
            ..ShardCluster::default()
        })
        .collect();
    for summary in shards {
        for (into, from) in merged.iter_mut().zip(&summary.clusters) {
            into.records += from.records;
            into.entropy_sum += from.entropy_sum;
            into.similarity_sum += from.similarity_sum;
            into.foreground_sum += from.foreground_sum;
            for (a, b) in into
                .entropy_histogram
                .iter_mut()
                .zip(&from.entropy_histogram)
            {
                *a += b;
            }
            into.lowest.extend(&from.lowest);
            into.highest.extend(&from.highest);
        }
    }
    for c in &mut merged {
        let all: Vec<ScoredPatch> = c.lowest.drain(..).chain(c.highest.drain(..)).collect();
        let mut unique = HashSet::new();
        let all = all.into_iter().filter(|p| unique.insert(p.patch)).collect();
        (c.lowest, c.highest) = extremes(all);
    }
    let selected: HashSet<u64> = selection
        .map(|(s, _)| s.selected.iter().map(|r| r.patch).collect())
        .unwrap_or_default();
    let clusters = cluster_rows(prototypes, &merged, selection.map(|(s, _)| s));
    let mut pool = vec![0u64; ENTROPY_BINS];
    for c in &merged {
        for (a, b) in pool.iter_mut().zip(&c.entropy_histogram) {
            *a += b;
        }
    }
    let mut selected_histogram = Vec::new();
    if let Some((s, _)) = selection {
        selected_histogram = vec![0u64; ENTROPY_BINS];
        for r in &s.selected {
            selected_histogram[ShardCluster::bin(r.entropy, range_nats)] += 1;
        }
    }
    let (kinds, kind_index) = kinds(plan, source, shards, selection.map(|(s, _)| s));
    let projection = projection(run, source, prototypes, shards, &selected, &kind_index)?;
    let thumbnails = thumbnails(
        run,
        source,
        spec,
        &merged,
        selection.map(|(s, _)| s),
        &selected,
    );
    let report = CurationReport {
        stage: if selection.is_some() {
            ReportStage::Selected
        } else {
            ReportStage::Scoring
        },
        patches_planned: plan.patches,
        patches_scored: shards.iter().map(|s| s.end_patch - s.first_patch).sum(),
        shards_finished: shards.len() as u32,
        shards: shard_count,
        model_sha256: prototypes.model.sha256.clone(),
        budget: selection.map(|(_, b)| b),
        filtered_out: selection.map_or(0, |(s, _)| s.filtered_out),
        duplicates_dropped: selection.map_or(0, |(s, _)| s.duplicates_dropped),
        clusters,
        entropy: EntropyHistogram {
            range_nats,
            pool,
            selected: selected_histogram,
        },
        projection,
        kinds,
        thumbnails,
    };
    report.save(run)?;
    Ok(report)
}

fn cluster_rows(
    prototypes: &Prototypes,
    merged: &[ShardCluster],
    selection: Option<&Selection>,
) -> Vec<ClusterReport> {
    merged
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let n = c.records.max(1) as f64;
            let chosen: Vec<&PatchRecord> = selection
                .map(|s| {
                    s.selected
                        .iter()
                        .filter(|r| r.cluster as usize == k)
                        .collect()
                })
                .unwrap_or_default();
            let mean = |f: fn(&PatchRecord) -> f32| {
                (!chosen.is_empty()).then(|| {
                    chosen.iter().map(|r| f64::from(f(r))).sum::<f64>() / chosen.len() as f64
                })
            };
            ClusterReport {
                labeled: prototypes.labeled_per_cluster.get(k).copied().unwrap_or(0),
                scored: c.records,
                pool_mean_entropy: c.entropy_sum / n,
                pool_mean_similarity: c.similarity_sum / n,
                candidates: selection.and_then(|s| s.candidates.get(k).copied()),
                quota_nominal: selection.and_then(|s| s.quotas.nominal.get(k).copied()),
                quota_final: selection.and_then(|s| s.quotas.final_.get(k).copied()),
                filled: chosen.len() as u64,
                selected_mean_entropy: mean(|r| r.entropy),
                selected_mean_similarity: mean(|r| r.similarity),
                entropy_cut: chosen.iter().map(|r| r.entropy).reduce(f32::max),
                similarity_floor: selection.and_then(|s| s.floor.get(k).copied()),
                below_floor: selection.and_then(|s| s.below_floor.get(k).copied()),
            }
        })
        .collect()
}

/// Per kind (where the plan knows the kinds): patches scored and selected; and each
/// plan image's kind index.
fn kinds(
    plan: &Plan,
    source: &TiledSource,
    shards: &[ShardSummary],
    selection: Option<&Selection>,
) -> (Vec<KindShare>, Vec<Option<u16>>) {
    let mut names: Vec<String> = Vec::new();
    let kind_index: Vec<Option<u16>> = plan
        .images
        .iter()
        .map(|i| {
            i.kind.as_ref().map(|k| {
                let at = names.iter().position(|n| n == k).unwrap_or_else(|| {
                    names.push(k.clone());
                    names.len() - 1
                });
                at as u16
            })
        })
        .collect();
    if names.is_empty() {
        return (Vec::new(), kind_index);
    }
    let mut shares: Vec<KindShare> = names
        .iter()
        .map(|k| KindShare {
            kind: k.clone(),
            in_distribution: plan.in_distribution_kind.as_ref() == Some(k),
            pool: 0,
            selected: 0,
        })
        .collect();
    for summary in shards {
        // Patches of an image the shard could not read have no record: one lookup per
        // image, not per patch.
        let unreadable: HashSet<&std::path::Path> = summary
            .unreadable
            .iter()
            .map(|u| u.path.as_path())
            .collect();
        let mut last: Option<(usize, bool)> = None;
        for p in summary.first_patch..summary.end_patch {
            let image = source.patches[p as usize].image;
            let readable = match last {
                Some((i, readable)) if i == image => readable,
                _ => !unreadable.contains(source.images[image].image.as_path()),
            };
            last = Some((image, readable));
            if let Some(k) = kind_index[image]
                && readable
            {
                shares[k as usize].pool += 1;
            }
        }
    }
    for r in selection.map_or(&[][..], |s| &s.selected) {
        if let Some(k) = kind_index[source.patches[r.patch as usize].image] {
            shares[k as usize].selected += 1;
        }
    }
    (shares, kind_index)
}

/// The projection of the finished shards' samples (at most [`PROJECTION_MAX_POINTS`], the
/// lowest tie-break hashes) and of the prototypes.
fn projection(
    run: &RunDir,
    source: &TiledSource,
    prototypes: &Prototypes,
    shards: &[ShardSummary],
    selected: &HashSet<u64>,
    kind_index: &[Option<u16>],
) -> Result<Projection> {
    let mut samples = Vec::new();
    for s in shards {
        let path = ShardSummary::sample_path(run, s.index, s.count);
        if path.exists() {
            samples.extend(read_samples(&path)?);
        }
    }
    samples.sort_by_key(|(r, _)| (tiebreak(r.patch), r.patch));
    samples.truncate(PROJECTION_MAX_POINTS);
    samples.sort_by_key(|(r, _)| r.patch);
    if samples.is_empty() {
        return Ok(Projection::default());
    }
    let vectors: Vec<Vec<f32>> = samples.iter().map(|(_, e)| e.clone()).collect();
    let pca = Pca2::fit(&vectors);
    let points = samples
        .iter()
        .map(|(r, e)| {
            let p = source.patches[r.patch as usize];
            ProjectedPatch {
                patch: r.patch,
                image: p.image as u32,
                x_px: p.x_px,
                y_px: p.y_px,
                size_px: p.width_px.max(p.height_px),
                xy: pca.project(e),
                cluster: r.cluster,
                entropy: r.entropy,
                similarity: r.similarity,
                foreground: r.foreground,
                selected: selected.contains(&r.patch),
                kind: kind_index[p.image],
            }
        })
        .collect();
    Ok(Projection {
        explained: pca.explained,
        points,
        centroids: prototypes
            .centroids
            .iter()
            .map(|c| pca.project(c))
            .collect(),
    })
}

/// Per cluster, the best patches (the selected ones, or the lowest-entropy scored ones
/// before a selection) and the worst (highest-entropy, not selected); their PNGs written
/// when missing. A patch whose image cannot be read gets no thumbnail.
fn thumbnails(
    run: &RunDir,
    source: &TiledSource,
    spec: &DatasetSpec,
    merged: &[ShardCluster],
    selection: Option<&Selection>,
    selected: &HashSet<u64>,
) -> Vec<Thumbnail> {
    let mut wanted: Vec<(u32, ScoredPatch, ThumbnailRole)> = Vec::new();
    let mut best_of: HashMap<u32, Vec<ScoredPatch>> = HashMap::new();
    if let Some(s) = selection {
        for r in &s.selected {
            let list = best_of.entry(r.cluster).or_default();
            if list.len() < THUMBNAILS_PER_CLUSTER {
                list.push(ScoredPatch {
                    patch: r.patch,
                    entropy: r.entropy,
                });
            }
        }
    }
    for (k, c) in merged.iter().enumerate() {
        let k = k as u32;
        let best = match selection {
            Some(_) => best_of.remove(&k).unwrap_or_default(),
            None => c
                .lowest
                .iter()
                .take(THUMBNAILS_PER_CLUSTER)
                .copied()
                .collect(),
        };
        wanted.extend(best.into_iter().map(|p| (k, p, ThumbnailRole::Best)));
        let worst = c
            .highest
            .iter()
            .filter(|p| !selected.contains(&p.patch))
            .take(THUMBNAILS_PER_CLUSTER);
        wanted.extend(worst.map(|&p| (k, p, ThumbnailRole::Worst)));
    }
    let folder = run.curation();
    wanted
        .into_iter()
        .filter_map(|(cluster, p, role)| {
            let file = CurationReport::thumbnail_file(p.patch);
            let path = folder.join(&file);
            if !path.exists() {
                let image = source.load(spec, p.patch as usize).ok()?.image;
                let (w, h) = image.dimensions();
                let scale = (THUMBNAIL_PX as f32 / w.max(h) as f32).min(1.0);
                let small = image::imageops::resize(
                    &image,
                    ((w as f32 * scale).round() as u32).max(1),
                    ((h as f32 * scale).round() as u32).max(1),
                    image::imageops::FilterType::Triangle,
                );
                save_png_atomic(&path, &small).ok()?;
            }
            Some(Thumbnail {
                patch: p.patch,
                cluster,
                entropy: p.entropy,
                role,
                file,
            })
        })
        .collect()
}
