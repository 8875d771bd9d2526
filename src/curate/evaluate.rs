//! How well a curation separates what the pool really holds, where the truth is known (the
//! synthetic pool's `truth.ron`): per kind of image, its patches in the pool and in the
//! selection, their mean entropy and foreground share, and the AUROC with which entropy
//! tells in-domain patches (lower is more reliable) from that kind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::record::{PatchRecord, for_each_record};
use crate::data::source::TiledSource;
use crate::error::{Error, Result};
use crate::run::RunDir;
use crate::run::curation::Plan;

/// One kind of pool image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindReport {
    pub kind: String,
    pub pool_patches: u64,
    pub selected_patches: u64,
    pub mean_entropy: f64,
    pub mean_foreground: f64,
    /// P(entropy of an in-domain patch < entropy of a patch of this kind), ties counting
    /// half; `None` for the in-domain kind itself.
    pub auroc_vs_in_domain: Option<f64>,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub kinds: Vec<KindReport>,
    /// Share of the pool's patches that are not in-domain (what a random selection
    /// holds on average).
    pub pool_ood_share: f64,
    pub selected_ood_share: f64,
}

/// The AUROC of "a lower score means positive": P(positive < negative), ties half
/// (Mann–Whitney U over the sorted union).
pub fn auroc_lower_is_positive(positives: &[f32], negatives: &[f32]) -> f64 {
    if positives.is_empty() || negatives.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f32, bool)> = positives
        .iter()
        .map(|&s| (s, true))
        .chain(negatives.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the negatives' average ranks (1-based) among all.
    let mut rank_sum_neg = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let average_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum_neg += average_rank * all[i..j].iter().filter(|(_, p)| !p).count() as f64;
        i = j;
    }
    let (np, nn) = (positives.len() as f64, negatives.len() as f64);
    // U of the negatives: pairs where the negative scores higher than the positive.
    (rank_sum_neg - nn * (nn + 1.0) / 2.0) / (np * nn)
}

/// Evaluates the scored `shards` of the plan's `source` against `kind_of` (image → kind;
/// `in_domain` names the in-domain kind) and the `selected` patches (image, x, y).
pub fn evaluate(
    source: &TiledSource,
    shards: &[PathBuf],
    kind_of: &HashMap<PathBuf, String>,
    in_domain: &str,
    selected: &HashSet<(PathBuf, u32, u32)>,
) -> Result<Evaluation> {
    #[derive(Default)]
    struct Acc {
        entropies: Vec<f32>,
        foreground: f64,
        selected: u64,
    }
    let mut by_kind: BTreeMap<String, Acc> = BTreeMap::new();
    for path in shards {
        for_each_record(path, |r: &PatchRecord| {
            let p = *source
                .patches
                .get(r.patch as usize)
                .ok_or_else(|| Error::Spec {
                    path: path.clone(),
                    reason: format!(
                        "names patch {}, but the plan has {}: score this shard again",
                        r.patch,
                        source.patches.len()
                    ),
                })?;
            let image = &source.images[p.image].image;
            let kind = kind_of
                .get(image)
                .cloned()
                .unwrap_or_else(|| "unknown".into());
            let acc = by_kind.entry(kind).or_default();
            acc.entropies.push(r.entropy);
            acc.foreground += f64::from(r.foreground);
            acc.selected += u64::from(selected.contains(&(image.clone(), p.x_px, p.y_px)));
            Ok(())
        })?;
    }
    let empty = Vec::new();
    let in_domain_entropies = by_kind.get(in_domain).map_or(&empty, |a| &a.entropies);
    let kinds: Vec<KindReport> = by_kind
        .iter()
        .map(|(kind, acc)| {
            let n = acc.entropies.len().max(1) as f64;
            KindReport {
                kind: kind.clone(),
                pool_patches: acc.entropies.len() as u64,
                selected_patches: acc.selected,
                mean_entropy: acc.entropies.iter().map(|&e| f64::from(e)).sum::<f64>() / n,
                mean_foreground: acc.foreground / n,
                auroc_vs_in_domain: (kind != in_domain)
                    .then(|| auroc_lower_is_positive(in_domain_entropies, &acc.entropies)),
            }
        })
        .collect();
    let share = |count: &dyn Fn(&KindReport) -> u64| {
        let all: u64 = kinds.iter().map(count).sum();
        let ood: u64 = kinds
            .iter()
            .filter(|k| k.kind != in_domain)
            .map(count)
            .sum();
        ood as f64 / all.max(1) as f64
    };
    Ok(Evaluation {
        pool_ood_share: share(&|k| k.pool_patches),
        selected_ood_share: share(&|k| k.selected_patches),
        kinds,
    })
}

/// The kind `s5 synth` gives the images that are in distribution.
pub const IN_DISTRIBUTION: &str = "InDomain";

/// A pool's truth (`s5 synth`'s RON list of `(image, kind)`, paths relative to its folder)
/// as absolute image path → kind.
pub fn read_truth(path: &Path) -> Result<HashMap<PathBuf, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::reading(path, e, Some("the pool's truth")))?;
    let truth: Vec<crate::data::synth::PoolTruth> =
        ron::from_str(&text).map_err(|e| Error::Spec {
            path: path.to_path_buf(),
            reason: format!("not a list of (image, kind): {e}"),
        })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut kind_of = HashMap::new();
    for t in truth {
        let image = base.join(&t.image);
        let image = std::path::absolute(&image).map_err(|source| Error::Io {
            path: image.clone(),
            source,
        })?;
        kind_of.insert(image, format!("{:?}", t.kind));
    }
    Ok(kind_of)
}

/// The scores and the selection (if made) of the curation run at `out` against the pool's
/// truth at `truth`; every shard of the current plan must be scored.
pub fn evaluate_run(out: &Path, truth: &Path) -> Result<Evaluation> {
    let run = RunDir::new(out);
    let plan = Plan::load(&run)?;
    let shards = super::shards::ShardSet::current(&run)?;
    shards.check_complete(&run, &plan)?;
    let kind_of = read_truth(truth)?;
    let mut selected = HashSet::new();
    let table = run.curation().join("selected.tsv");
    if table.exists() {
        let source = super::selected::read_selected(&table)?;
        for p in &source.patches {
            selected.insert((source.images[p.image].image.clone(), p.x_px, p.y_px));
        }
    }
    let files = shards.record_files(&run);
    evaluate(
        &super::plan::tiled(&plan),
        &files,
        &kind_of,
        IN_DISTRIBUTION,
        &selected,
    )
}
