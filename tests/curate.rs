//! Curation without a GPU: Eq. 3's quotas (rounding, shortfalls, budgets above the pool),
//! the bounded two-pass selection against a brute-force sort, its independence from how the
//! pool was sharded, and the record files' errors.

use std::path::PathBuf;

use s5::curate::quota::{Quotas, apportion};
use s5::curate::record::{PatchRecord, for_each_record, write_records};
use s5::curate::select::{Filters, select, tiebreak};

use crate::common::Rng;

#[test]
fn quotas_sum_to_the_budget() {
    let mut rng = Rng::fresh("quotas_sum_to_the_budget");
    for _ in 0..500 {
        let m = 1 + rng.below(12);
        let labeled: Vec<u64> = (0..m).map(|_| rng.below(50) as u64).collect();
        if labeled.iter().all(|&n| n == 0) {
            continue;
        }
        let budget = rng.below(10_000) as u64;
        let nominal = apportion(budget, &labeled);
        assert_eq!(nominal.iter().sum::<u64>(), budget, "{labeled:?} {budget}");
        let candidates: Vec<u64> = (0..m).map(|_| rng.below(3000) as u64).collect();
        let q = Quotas::new(budget, &labeled, &candidates);
        assert_eq!(q.nominal, nominal);
        let placeable: u64 = labeled
            .iter()
            .zip(&candidates)
            .filter(|&(&n, _)| n > 0)
            .map(|(_, &c)| c)
            .sum();
        // Everything is placed that can be: clusters without labeled images take nothing.
        assert_eq!(
            q.final_.iter().sum::<u64>(),
            budget.min(placeable),
            "{labeled:?} {candidates:?} {budget}"
        );
        for (f, c) in q.final_.iter().zip(&candidates) {
            assert!(f <= c);
        }
    }
}

#[test]
fn quotas_round_by_largest_remainder() {
    // 10 · 1/3 each: floors 3, 3, 3; the one unit left goes to the lowest index.
    assert_eq!(apportion(10, &[1, 1, 1]), [4, 3, 3]);
    // 7 · (5, 3, 2)/10 = 3.5, 2.1, 1.4: floors 3, 2, 1; the unit goes to the largest
    // remainder (0.5).
    assert_eq!(apportion(7, &[5, 3, 2]), [4, 2, 1]);
    // A cluster without labeled images gets nothing.
    assert_eq!(apportion(8, &[3, 0, 1]), [6, 0, 2]);
    assert_eq!(apportion(5, &[0, 0]), [0, 0]);
}

#[test]
fn a_cluster_short_of_candidates_passes_its_shortfall_on() {
    // Nominal 5, 3, 2. Cluster 0 has 1 candidate: its 4 units go to clusters 1 and 2 in
    // proportion 3 : 2 = 2.4, 1.6: floors 2, 1, and the unit left to the larger remainder.
    let q = Quotas::new(10, &[5, 3, 2], &[1, 10, 10]);
    assert_eq!(q.nominal, [5, 3, 2]);
    assert_eq!(q.final_, [1, 5, 4]);
    // A cluster capped again passes the rest on in the next round: nominal 3, 3, 3; cluster 0
    // has nothing, so 3 go to clusters 1 and 2 (2 and 1, the tie to the lower index), but
    // cluster 1 has room for 1 only; the last unit goes to cluster 2.
    let q = Quotas::new(9, &[1, 1, 1], &[0, 4, 100]);
    assert_eq!(q.final_, [0, 4, 5]);
}

#[test]
fn an_empty_cluster_and_a_budget_above_the_candidates() {
    // Cluster 0 has no candidates at all; cluster 2 has one.
    let q = Quotas::new(6, &[1, 1, 1], &[0, 10, 1]);
    assert_eq!(q.nominal, [2, 2, 2]);
    assert_eq!(q.final_, [0, 5, 1]);
    // More budget than candidates: every candidate is selected.
    let q = Quotas::new(100, &[1, 1], &[3, 4]);
    assert_eq!(q.nominal, [50, 50]);
    assert_eq!(q.final_, [3, 4]);
}

/// `n` records over `clusters` clusters; entropies drawn from a few dozen values so that
/// ties are common.
fn records(rng: &mut Rng, n: usize, clusters: usize) -> Vec<PatchRecord> {
    (0..n)
        .map(|i| PatchRecord {
            patch: i as u64,
            content: i as u64,
            entropy: rng.below(40) as f32 * 0.05,
            confidence: 0.5,
            foreground: rng.below(100) as f32 / 100.0,
            similarity: rng.below(100) as f32 / 100.0,
            margin: 0.1,
            cluster: rng.below(clusters) as u32,
        })
        .collect()
}

/// Writes `records` as `shards` contiguous files under `dir`, listed in a shuffled order.
fn shard_files(
    dir: &std::path::Path,
    records: &[PatchRecord],
    shards: usize,
    rng: &mut Rng,
) -> Vec<PathBuf> {
    let per = records.len().div_ceil(shards);
    let mut files: Vec<PathBuf> = records
        .chunks(per)
        .enumerate()
        .map(|(i, chunk)| {
            let path = dir.join(format!("{shards}-{i}.bin"));
            write_records(&path, chunk).unwrap();
            path
        })
        .collect();
    for i in (1..files.len()).rev() {
        files.swap(i, rng.below(i + 1));
    }
    files
}

#[test]
fn the_selection_matches_a_full_sort_and_never_depends_on_the_sharding() {
    let mut rng = Rng::fresh("the_selection_matches_a_full_sort");
    let dir = tempfile::tempdir().unwrap();
    let clusters = 5;
    let mut all = records(&mut rng, 20_011, clusters);
    // Exact duplicates: an eighth of the records take the content of another record of
    // their cluster (scores drawn apart, so which copy is kept is tested too).
    for i in 0..all.len() {
        let j = rng.below(all.len());
        if rng.below(8) == 0 && all[j].cluster == all[i].cluster {
            all[i].content = all[j].content;
        }
    }
    let labeled = [7, 1, 3, 0, 4];
    let filters = Filters {
        foreground_min: Some(0.1),
        similarity_min: Some(0.05),
        ..Filters::default()
    };
    for budget in [0, 1, 3_000, 30_000] {
        let one = select(
            &shard_files(dir.path(), &all, 1, &mut rng),
            &labeled,
            budget,
            &filters,
        )
        .unwrap();
        for shards in [3, 7] {
            let many = select(
                &shard_files(dir.path(), &all, shards, &mut rng),
                &labeled,
                budget,
                &filters,
            )
            .unwrap();
            assert_eq!(
                bytemuck::cast_slice::<_, u8>(&many.selected),
                bytemuck::cast_slice::<_, u8>(&one.selected),
                "{shards} shards, budget {budget}"
            );
            assert_eq!(many.quotas, one.quotas);
        }
        // Brute force: of each group of equal content only the best-ranked candidate stays;
        // every remaining candidate of a cluster sorted by (entropy, tie-break, index).
        let key = |r: &PatchRecord| (r.entropy.to_bits(), tiebreak(r.patch), r.patch);
        let mut best: std::collections::HashMap<u64, PatchRecord> = Default::default();
        for r in all.iter().filter(|r| filters.admit(r)) {
            let slot = best.entry(r.content).or_insert(*r);
            if key(r) < key(slot) {
                *slot = *r;
            }
        }
        let by_cluster: Vec<Vec<PatchRecord>> = (0..clusters)
            .map(|m| {
                let mut c: Vec<PatchRecord> = best
                    .values()
                    .filter(|r| r.cluster as usize == m)
                    .copied()
                    .collect();
                c.sort_by_key(key);
                c
            })
            .collect();
        let unique: Vec<u64> = by_cluster.iter().map(|c| c.len() as u64).collect();
        let quotas = Quotas::new(budget, &labeled, &unique);
        assert_eq!(one.quotas.final_, quotas.final_, "budget {budget}");
        let mut expected = Vec::new();
        for (m, candidates) in by_cluster.into_iter().enumerate() {
            // Groups never near a selection may still be counted once per copy.
            assert!(one.candidates[m] >= unique[m]);
            expected.extend(candidates.into_iter().take(quotas.final_[m] as usize));
        }
        assert_eq!(one.selected, expected, "budget {budget}");
        let contents: std::collections::HashSet<u64> =
            one.selected.iter().map(|r| r.content).collect();
        assert_eq!(contents.len(), one.selected.len(), "no two equal patches");
        assert_eq!(
            one.selected.len() as u64,
            budget.min(
                unique
                    .iter()
                    .zip(&labeled)
                    .filter(|&(_, &n)| n > 0)
                    .map(|(&c, _)| c)
                    .sum()
            )
        );
        if budget >= 3_000 {
            assert!(one.duplicates_dropped > 0, "budget {budget}");
        }
        let filtered = all.iter().filter(|r| !filters.admit(r)).count() as u64;
        assert_eq!(one.filtered_out, filtered);
        assert_eq!(
            one.filtered_out + one.duplicates_dropped + one.candidates.iter().sum::<u64>(),
            all.len() as u64
        );
    }
}

#[test]
fn record_files_round_trip_and_name_themselves_when_broken() {
    let mut rng = Rng::fresh("record_files_round_trip");
    let dir = tempfile::tempdir().unwrap();
    let all = records(&mut rng, 9_001, 3);
    let path = dir.path().join("shard.bin");
    write_records(&path, &all).unwrap();
    let mut back = Vec::new();
    for_each_record(&path, |r| {
        back.push(*r);
        Ok(())
    })
    .unwrap();
    assert_eq!(back, all);

    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let err = for_each_record(&path, |_| Ok(())).unwrap_err().to_string();
    assert!(
        err.contains("shard.bin") && err.contains("truncated"),
        "{err}"
    );
    std::fs::write(&path, b"not records at all").unwrap();
    let err = for_each_record(&path, |_| Ok(())).unwrap_err().to_string();
    assert!(err.contains("shard.bin") && err.contains("magic"), "{err}");

    // A record of a cluster the prototypes do not have: refused, naming the file.
    let stray = [PatchRecord {
        cluster: 9,
        ..all[0]
    }];
    write_records(&path, &stray).unwrap();
    let err = select(
        std::slice::from_ref(&path),
        &[1, 1, 1],
        1,
        &Filters::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("shard.bin") && err.contains("cluster 9"),
        "{err}"
    );
}

/// `n` unit vectors of `dim` values around `centres` directions (noise `spread`), with the
/// index of each one's centre.
fn clustered(
    rng: &mut Rng,
    n: usize,
    dim: usize,
    centres: usize,
    spread: f32,
) -> (Vec<f32>, Vec<usize>) {
    let directions: Vec<Vec<f32>> = (0..centres)
        .map(|c| {
            (0..dim)
                .map(|d| if d % centres == c { 1.0 } else { 0.0 })
                .collect()
        })
        .collect();
    let mut points = Vec::with_capacity(n * dim);
    let mut truth = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % centres;
        truth.push(c);
        points.extend(
            directions[c]
                .iter()
                .map(|v| v + spread * (rng.uniform() - 0.5)),
        );
    }
    s5::curate::kmeans::normalize_rows(&mut points, dim);
    (points, truth)
}

#[test]
fn spherical_kmeans_finds_the_clusters_and_repeats_itself() {
    use s5::curate::kmeans::{KMeansConfig, spherical_kmeans};
    let mut rng = Rng::fresh("spherical_kmeans");
    let device = crate::common::device();
    let (points, truth) = clustered(&mut rng, 301, 9, 3, 0.4);
    let config = KMeansConfig {
        clusters: 3,
        restarts: 3,
        seed: 11,
        ..KMeansConfig::default()
    };
    let a = spherical_kmeans(&points, 9, &config, &device).unwrap();
    // The partition is the truth's, up to the clusters' names.
    let mut name = [None; 3];
    for (&assigned, &t) in a.assignments.iter().zip(&truth) {
        let slot = name[t].get_or_insert(assigned);
        assert_eq!(*slot, assigned, "points of one true cluster split");
    }
    assert_eq!(a.counts.iter().sum::<u64>(), 301);
    assert!(a.mean_similarity > 0.9, "{}", a.mean_similarity);
    for centroid in &a.centroids {
        let norm: f32 = centroid.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    // Seeded: the same prototypes again.
    assert_eq!(spherical_kmeans(&points, 9, &config, &device).unwrap(), a);
    // More clusters than true groups: one splits, none stays empty.
    let four = spherical_kmeans(
        &points,
        9,
        &KMeansConfig {
            clusters: 4,
            ..config
        },
        &device,
    )
    .unwrap();
    assert!(four.counts.iter().all(|&c| c > 0), "{:?}", four.counts);
    // More clusters than points: a clear error.
    let err = spherical_kmeans(&points[..18], 9, &config, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 clusters for 2 points"), "{err}");
}

#[test]
fn auroc_counts_pairs_and_half_ties() {
    use s5::curate::evaluate::auroc_lower_is_positive as auroc;
    // Every positive below every negative: 1; above: 0.
    assert_eq!(auroc(&[0.1, 0.2], &[0.5, 0.9]), 1.0);
    assert_eq!(auroc(&[0.5, 0.9], &[0.1, 0.2]), 0.0);
    // Pairs (p, n): (0.1, 0.3) yes, (0.1, 0.2) yes, (0.4, 0.3) no, (0.4, 0.2) no → 2 / 4.
    assert_eq!(auroc(&[0.1, 0.4], &[0.3, 0.2]), 0.5);
    // One tie of three pairs counts half: (0.2, 0.2) half, (0.2, 0.5) yes, (0.2, 0.1) no.
    assert!((auroc(&[0.2], &[0.2, 0.5, 0.1]) - 0.5).abs() < 1e-12);
    assert_eq!(auroc(&[0.3], &[0.3]), 0.5);
}

/// Without the quotas (Eq. 2 alone): the lowest entropies of the whole pool, whatever their
/// cluster.
#[test]
fn entropy_alone_takes_the_lowest_of_the_whole_pool() {
    use s5::curate::select::select_by_entropy_alone;
    let mut rng = Rng::fresh("entropy_alone");
    let dir = tempfile::tempdir().unwrap();
    let all = records(&mut rng, 5_003, 4);
    let shards = shard_files(dir.path(), &all, 3, &mut rng);
    let got = select_by_entropy_alone(&shards, 4, 700, &Filters::default()).unwrap();
    let mut expected = all.clone();
    expected.sort_by_key(|r| (r.entropy.to_bits(), tiebreak(r.patch), r.patch));
    expected.truncate(700);
    assert_eq!(got.selected, expected);
    // Records of a cluster the prototypes do not have are still refused.
    assert!(select_by_entropy_alone(&shards, 3, 700, &Filters::default()).is_err());
}

#[test]
fn pca_finds_the_two_widest_directions() {
    use s5::curate::pca::Pca2;
    let mut rng = Rng::fresh("pca");
    let dim = 9;
    // Two orthonormal directions, spreads 3 and 1, small noise elsewhere, an offset.
    let mut u = vec![0f64; dim];
    let mut v = vec![0f64; dim];
    for d in 0..dim {
        u[d] = (d as f64 + 1.0).sin();
        v[d] = (d as f64 * 2.0 + 0.5).cos();
    }
    let norm = |x: &mut Vec<f64>| {
        let n = x.iter().map(|a| a * a).sum::<f64>().sqrt();
        x.iter_mut().for_each(|a| *a /= n);
    };
    norm(&mut u);
    let along: f64 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
    v.iter_mut().zip(&u).for_each(|(b, a)| *b -= along * a);
    norm(&mut v);
    let uniform = |rng: &mut Rng| rng.below(2001) as f64 / 1000.0 - 1.0;
    let rows: Vec<Vec<f32>> = (0..2_001)
        .map(|_| {
            let (a, b) = (3.0 * uniform(&mut rng), uniform(&mut rng));
            (0..dim)
                .map(|d| (5.0 + a * u[d] + b * v[d] + 0.01 * uniform(&mut rng)) as f32)
                .collect()
        })
        .collect();
    let pca = Pca2::fit(&rows);
    let cos = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>().abs();
    assert!(cos(&pca.axes[0], &u) > 0.999, "{:?}", pca.axes[0]);
    assert!(cos(&pca.axes[1], &v) > 0.999, "{:?}", pca.axes[1]);
    // Variances 3²/3 and 1/3 of a uniform spread: shares 0.9 and 0.1 of nearly all.
    assert!((pca.explained[0] - 0.9).abs() < 0.03, "{:?}", pca.explained);
    assert!((pca.explained[1] - 0.1).abs() < 0.03, "{:?}", pca.explained);
    assert_eq!(Pca2::fit(&rows), pca, "deterministic");
    let p = pca.project(&rows[0]);
    assert!(p.iter().all(|c| c.is_finite() && c.abs() < 4.0), "{p:?}");
}

/// The floor's quantile is the lower nearest rank of the finite values; each cluster's floor
/// comes from the labeled patches nearest to it, and one without any takes the highest.
#[test]
fn the_similarity_floor_is_a_low_quantile_of_each_clusters_labeled_patches() {
    use s5::curate::floor::{check_quantile, floor_from_similarities, quantile};
    let values = [0.9, f32::NAN, 0.1, 0.5, 0.7, f32::INFINITY, 0.3];
    // Finite and sorted: 0.1 0.3 0.5 0.7 0.9.
    assert_eq!(quantile(&values, 0.0), Some(0.1));
    assert_eq!(quantile(&values, 0.24), Some(0.1));
    assert_eq!(quantile(&values, 0.25), Some(0.3));
    assert_eq!(quantile(&values, 0.99), Some(0.7));
    assert_eq!(quantile(&values, 1.0), Some(0.9));
    assert_eq!(quantile(&[f32::NAN], 0.5), None);
    assert!(check_quantile(0.05).is_ok() && check_quantile(0.0).is_ok());
    for bad in [1.0, -0.1, f64::NAN] {
        let err = check_quantile(bad).unwrap_err().to_string();
        assert!(err.contains("--floor-quantile"), "{err}");
    }
    let mut rng = Rng::fresh("floor");
    let labeled = records(&mut rng, 401, 3);
    let mut similarities = vec![Vec::new(); 4];
    for r in &labeled {
        similarities[r.cluster as usize].push(r.similarity);
    }
    let floor = floor_from_similarities(&similarities, 0.1, 64);
    for (m, mine) in similarities.iter().enumerate().take(3) {
        let below = mine.iter().filter(|&&s| s < floor.per_cluster[m]).count();
        assert_eq!(floor.labeled_patches[m], mine.len() as u64);
        // At most a tenth strictly below, and the floor is one of them.
        assert!(
            below as f64 <= 0.1 * mine.len() as f64,
            "{below} of {}",
            mine.len()
        );
        assert!(mine.contains(&floor.per_cluster[m]));
    }
    assert_eq!(floor.labeled_patches[3], 0);
    crate::common::assert_finite("floors", "the computed", &floor.per_cluster);
    let highest = floor.per_cluster[..3]
        .iter()
        .copied()
        .fold(f32::MIN, f32::max);
    assert_eq!(floor.per_cluster[3], highest);
}

/// Each labeled patch meets its cluster's prototype made without its own image: with two
/// images in a cluster, that is the other one; an image alone in its cluster does not count.
#[test]
fn the_floor_compares_each_labeled_patch_with_a_prototype_made_without_its_image() {
    use s5::curate::floor::leave_one_out;
    let unit = |v: [f32; 3]| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.map(|x| x / n)
    };
    let (a, b, c) = (
        unit([1.0, 0.2, 0.0]),
        unit([0.8, 0.6, 0.0]),
        unit([0.0, 0.0, 1.0]),
    );
    let images: Vec<f32> = [a, b, c].concat();
    let assigned = [0, 0, 1];
    // Each image's own patch, and a patch of image 2 nearest to cluster 0.
    let d = unit([0.6, 0.0, 0.8]);
    let patches = vec![
        (a.to_vec(), 0, 0),
        (b.to_vec(), 1, 0),
        (c.to_vec(), 2, 1),
        (d.to_vec(), 2, 0),
    ];
    let sims = leave_one_out(&images, 3, &assigned, 2, &patches);
    let cos = |x: [f32; 3], y: [f32; 3]| x.iter().zip(&y).map(|(p, q)| p * q).sum::<f32>();
    // Cluster 0: a against b, b against a, and d (not of cluster 0's images) against a + b.
    let ab = unit([a[0] + b[0], a[1] + b[1], a[2] + b[2]]);
    let want = [cos(a, b), cos(b, a), cos(d, ab)];
    assert_eq!(sims[0].len(), 3);
    for (got, want) in sims[0].iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
    assert!(sims[1].is_empty(), "image 2 is alone in cluster 1");
}

/// With floors, a record below its cluster's floor is never a candidate, is counted under
/// its cluster, and the rest is the plain selection of those above.
#[test]
fn a_floor_keeps_out_what_is_below_it_and_counts_it() {
    let mut rng = Rng::fresh("floor_select");
    let dir = tempfile::tempdir().unwrap();
    let all = records(&mut rng, 3_001, 3);
    let floors = vec![0.2, 0.5, 0.9];
    let filters = Filters {
        cluster_floor: floors.clone(),
        ..Filters::default()
    };
    let shards = shard_files(dir.path(), &all, 2, &mut rng);
    let got = select(&shards, &[2, 1, 1], 600, &filters).unwrap();
    let above: Vec<PatchRecord> = all
        .iter()
        .filter(|r| r.similarity >= floors[r.cluster as usize])
        .copied()
        .collect();
    for m in 0..3u32 {
        let below = all
            .iter()
            .filter(|r| r.cluster == m && r.similarity < floors[m as usize])
            .count() as u64;
        assert_eq!(got.below_floor[m as usize], below, "cluster {m}");
        assert!(below > 0, "the test must keep something out");
    }
    assert!(
        got.selected
            .iter()
            .all(|r| r.similarity >= floors[r.cluster as usize])
    );
    assert_eq!(got.floor, floors);
    std::fs::create_dir_all(dir.path().join("above")).unwrap();
    let only_above = shard_files(&dir.path().join("above"), &above, 1, &mut rng);
    let plain = select(&only_above, &[2, 1, 1], 600, &Filters::default()).unwrap();
    assert_eq!(got.selected, plain.selected);
    assert_eq!(got.quotas, plain.quotas);
}

#[test]
fn the_shard_comes_from_the_flag_a_job_array_or_an_mpi_rank() {
    use s5::curate::plan::shard_from_env;
    let with = |vars: &[(&str, &str)]| {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    let ompi = [("OMPI_COMM_WORLD_RANK", "3"), ("OMPI_COMM_WORLD_SIZE", "8")];
    assert_eq!(shard_from_env(None, None, &with(&ompi)).unwrap(), (3, 8));
    let pmi = [("PMI_RANK", "1"), ("PMI_SIZE", "2")];
    assert_eq!(shard_from_env(None, None, &with(&pmi)).unwrap(), (1, 2));
    assert_eq!(shard_from_env(None, Some(2), &with(&pmi)).unwrap(), (1, 2));
    // The flag and a job array come first; nothing set is the whole plan.
    assert_eq!(
        shard_from_env(Some("0/4"), None, &with(&ompi)).unwrap(),
        (0, 4)
    );
    let array = [
        ("SLURM_ARRAY_TASK_ID", "5"),
        ("SLURM_ARRAY_TASK_COUNT", "6"),
        ("PMI_RANK", "0"),
        ("PMI_SIZE", "1"),
    ];
    assert_eq!(shard_from_env(None, None, &with(&array)).unwrap(), (5, 6));
    assert_eq!(shard_from_env(None, None, &with(&[])).unwrap(), (0, 1));
    // What does not fit is named.
    let err = shard_from_env(None, Some(4), &with(&ompi))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--shards 4") && err.contains("8 ranks"),
        "{err}"
    );
    let err = shard_from_env(None, None, &with(&[("PMI_RANK", "1")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("PMI_SIZE is not"), "{err}");
    let bad_rank = [("OMPI_COMM_WORLD_RANK", "x"), ("OMPI_COMM_WORLD_SIZE", "2")];
    let err = shard_from_env(None, None, &with(&bad_rank))
        .unwrap_err()
        .to_string();
    assert!(err.contains("OMPI_COMM_WORLD_RANK = `x`"), "{err}");
    let beyond = [("OMPI_COMM_WORLD_RANK", "2"), ("OMPI_COMM_WORLD_SIZE", "2")];
    let err = shard_from_env(None, None, &with(&beyond))
        .unwrap_err()
        .to_string();
    assert!(err.contains("shard 2 of 2 does not exist"), "{err}");
}
