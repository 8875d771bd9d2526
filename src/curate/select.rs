//! The curated selection (paper §3, "Pre-training Dataset Curation", Eq. 2–3): each cluster
//! filled with its lowest-entropy patches up to its quota ([`super::quota`]), in memory
//! bounded by the budget and the number of clusters, never by the pool.
//!
//! Two passes over the shards' records:
//! 1. count each cluster's candidates (patches that pass every filter) in a histogram of
//!    their entropies (bins: the top 16 bits of the f32, which order like the values);
//! 2. knowing the quotas, each cluster's threshold bin follows; keep every candidate below
//!    it, and the lowest of the threshold bin in a bounded heap.
//!
//! Within a cluster, patches rank by ascending entropy, ties broken by a hash of the patch's
//! plan index and then the index itself: the result never depends on how the pool was
//! sharded or in which order the shards are read.
//!
//! Exact duplicates (equal [`PatchRecord::content`]) count once: of a group of equal patches
//! only the best-ranked is a candidate. The groups are found where they matter, in the
//! selection: when it holds two equal patches, their content joins a set of known
//! duplicates (bounded by the budget), each known group is reduced to its best-ranked patch
//! in one more pass, and the selection is made again, until it holds no two equal patches.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::quota::Quotas;
use super::record::{PatchRecord, for_each_record};
use crate::error::{Error, Result};

/// Optional bounds a candidate must meet (all inclusive).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub entropy_max: Option<f32>,
    pub entropy_min: Option<f32>,
    pub similarity_min: Option<f32>,
    /// The floor on the foreground share that keeps out patches a model confidently calls all
    /// background (open sea, cloud), whose entropy over the foreground classes is near zero.
    pub foreground_min: Option<f32>,
    /// Per cluster (a record's nearest prototype), the similarity a candidate must reach:
    /// the [`SimilarityFloor`](crate::run::curation::SimilarityFloor) calibrated on the
    /// labeled patches. Empty: no floor.
    pub cluster_floor: Vec<f32>,
}

impl Filters {
    /// Whether a record is a candidate. Records with a non-finite score never are.
    pub fn admit(&self, r: &PatchRecord) -> bool {
        r.entropy.is_finite()
            && r.similarity.is_finite()
            && r.foreground.is_finite()
            && self.entropy_max.is_none_or(|m| r.entropy <= m)
            && self.entropy_min.is_none_or(|m| r.entropy >= m)
            && self.similarity_min.is_none_or(|m| r.similarity >= m)
            && self.foreground_min.is_none_or(|m| r.foreground >= m)
            && self.above_floor(r)
    }

    /// Whether a record reaches its cluster's floor (always, without floors).
    pub fn above_floor(&self, r: &PatchRecord) -> bool {
        self.cluster_floor
            .get(r.cluster as usize)
            .is_none_or(|&floor| r.similarity >= floor)
    }
}

/// A selection: the quotas, the candidates per cluster, and the chosen records in cluster
/// order, each cluster's in rank order.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub quotas: Quotas,
    /// Candidates per cluster (records that passed the filters).
    pub candidates: Vec<u64>,
    /// Records that did not pass the filters.
    pub filtered_out: u64,
    /// Records that passed them but were exact duplicates of a better-ranked one.
    pub duplicates_dropped: u64,
    /// Per cluster (nearest prototype), records below its similarity floor (counted in
    /// `filtered_out` too); empty without floors.
    pub below_floor: Vec<u64>,
    /// The floors applied ([`Filters::cluster_floor`]).
    pub floor: Vec<f32>,
    /// Selected records: cluster 0's by rank, then cluster 1's, ...
    pub selected: Vec<PatchRecord>,
}

/// The deterministic tie-break of a patch: its plan index mixed (SplitMix64 finaliser), so
/// equal entropies do not favour low indices, i.e. one part of the pool.
pub fn tiebreak(patch: u64) -> u64 {
    let mut z = patch.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The histogram bin of an entropy: its f32's top 16 bits (for values ≥ 0 they order as the
/// values do).
fn bin(entropy: f32) -> u16 {
    (entropy.max(0.0).to_bits() >> 16) as u16
}

/// The rank key of a record within its cluster.
fn rank_key(r: &PatchRecord) -> (u32, u64, u64) {
    // Non-negative finite f32 bits order like the values.
    (r.entropy.max(0.0).to_bits(), tiebreak(r.patch), r.patch)
}

/// One heap entry: the record, ordered by its rank key (largest on top).
struct Ranked(PatchRecord);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        rank_key(&self.0) == rank_key(&other.0)
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        rank_key(&self.0).cmp(&rank_key(&other.0))
    }
}

/// Selects `budget` patches from the records in `shards`, given the labeled images per
/// cluster (`labeled[m]` = `N_m^l`; its length is the number of clusters M).
pub fn select(
    shards: &[PathBuf],
    labeled: &[u64],
    budget: u64,
    filters: &Filters,
) -> Result<Selection> {
    select_grouped(shards, labeled, budget, filters, |r| r.cluster as usize)
}

/// The `budget` lowest-entropy candidates of the whole pool, clusters ignored (Eq. 2
/// without Eq. 3): the baseline that shows what the quotas add. `clusters` is M, to check
/// the records against.
pub fn select_by_entropy_alone(
    shards: &[PathBuf],
    clusters: usize,
    budget: u64,
    filters: &Filters,
) -> Result<Selection> {
    let check = vec![1; clusters];
    // Validate the records' clusters like `select` does, then rank them as one group.
    for path in shards {
        for_each_record(path, |r| check_cluster(path, r, check.len()))?;
    }
    select_grouped(shards, &[1], budget, filters, |_| 0)
}

/// A record's cluster must be one of the `clusters` prototypes.
fn check_cluster(path: &Path, r: &PatchRecord, clusters: usize) -> Result<()> {
    if (r.cluster as usize) < clusters {
        Ok(())
    } else {
        Err(Error::Spec {
            path: path.to_path_buf(),
            reason: format!(
                "patch {} is in cluster {}, but there are {clusters} prototypes: were these \
                 records scored with other prototypes?",
                r.patch, r.cluster
            ),
        })
    }
}

/// The selection with records grouped by `group_of` (the quota groups), exact duplicates
/// counted once.
fn select_grouped(
    shards: &[PathBuf],
    labeled: &[u64],
    budget: u64,
    filters: &Filters,
    group_of: impl Fn(&PatchRecord) -> usize,
) -> Result<Selection> {
    // Known duplicate contents, each with its best-ranked admitted patch.
    let mut duplicates: HashMap<u64, u64> = HashMap::new();
    loop {
        let selection = select_once(shards, labeled, budget, filters, &duplicates, &group_of)?;
        let mut seen: HashMap<u64, u32> = HashMap::with_capacity(selection.selected.len());
        for r in &selection.selected {
            *seen.entry(r.content).or_default() += 1;
        }
        let new: Vec<u64> = seen
            .into_iter()
            .filter(|&(content, n)| n > 1 && !duplicates.contains_key(&content))
            .map(|(content, _)| content)
            .collect();
        if new.is_empty() {
            return Ok(selection);
        }
        // The best-ranked admitted patch of every known group.
        let groups: HashSet<u64> = duplicates.keys().chain(&new).copied().collect();
        let mut found: HashMap<u64, PatchRecord> = HashMap::with_capacity(groups.len());
        for path in shards {
            for_each_record(path, |r| {
                if groups.contains(&r.content) && filters.admit(r) {
                    let slot = found.entry(r.content).or_insert(*r);
                    if rank_key(r) < rank_key(slot) {
                        *slot = *r;
                    }
                }
                Ok(())
            })?;
        }
        duplicates = found.into_iter().map(|(c, r)| (c, r.patch)).collect();
    }
}

/// One selection, in which a record whose content is in `duplicates` is a candidate only if
/// it is that group's best-ranked patch.
fn select_once(
    shards: &[PathBuf],
    labeled: &[u64],
    budget: u64,
    filters: &Filters,
    duplicates: &HashMap<u64, u64>,
    group_of: &impl Fn(&PatchRecord) -> usize,
) -> Result<Selection> {
    let clusters = labeled.len();
    let unique = |r: &PatchRecord| duplicates.get(&r.content).is_none_or(|&p| p == r.patch);
    // Pass 1: candidates per cluster, by entropy bin.
    let mut histograms: Vec<BTreeMap<u16, u64>> = vec![BTreeMap::new(); clusters];
    let (mut filtered_out, mut duplicates_dropped) = (0u64, 0u64);
    let mut below_floor = vec![0u64; filters.cluster_floor.len()];
    for path in shards {
        for_each_record(path, |r| {
            let m = group_of(r);
            if m >= clusters {
                check_cluster(path, r, clusters)?;
            }
            if !filters.above_floor(r) {
                below_floor[r.cluster as usize] += 1;
            }
            if !filters.admit(r) {
                filtered_out += 1;
            } else if !unique(r) {
                duplicates_dropped += 1;
            } else {
                *histograms[m].entry(bin(r.entropy)).or_default() += 1;
            }
            Ok(())
        })?;
    }
    let candidates: Vec<u64> = histograms.iter().map(|h| h.values().sum()).collect();
    let quotas = Quotas::new(budget, labeled, &candidates);
    // Each cluster's threshold bin and how many of it to take.
    let thresholds: Vec<Option<(u16, usize)>> = histograms
        .iter()
        .zip(&quotas.final_)
        .map(|(histogram, &quota)| {
            let mut below = 0u64;
            for (&b, &count) in histogram {
                if below + count >= quota {
                    return (quota > 0).then_some((b, (quota - below) as usize));
                }
                below += count;
            }
            None
        })
        .collect();
    // Pass 2: everything below the threshold bin, the lowest of the threshold bin.
    let mut kept: Vec<Vec<PatchRecord>> = vec![Vec::new(); clusters];
    let mut boundary: Vec<BinaryHeap<Ranked>> = (0..clusters).map(|_| BinaryHeap::new()).collect();
    for path in shards {
        for_each_record(path, |r| {
            let m = group_of(r);
            let Some((threshold, room)) = thresholds[m] else {
                return Ok(());
            };
            if !filters.admit(r) || !unique(r) {
                return Ok(());
            }
            let b = bin(r.entropy);
            if b < threshold {
                kept[m].push(*r);
            } else if b == threshold {
                let heap = &mut boundary[m];
                heap.push(Ranked(*r));
                if heap.len() > room {
                    heap.pop();
                }
            }
            Ok(())
        })?;
    }
    let mut selected = Vec::with_capacity(quotas.final_.iter().sum::<u64>() as usize);
    for (mut records, heap) in kept.into_iter().zip(boundary) {
        records.extend(heap.into_iter().map(|Ranked(r)| r));
        records.sort_by_key(rank_key);
        selected.extend(records);
    }
    Ok(Selection {
        quotas,
        candidates,
        filtered_out,
        duplicates_dropped,
        below_floor,
        floor: filters.cluster_floor.clone(),
        selected,
    })
}
