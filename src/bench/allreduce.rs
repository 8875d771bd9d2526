//! `s5 bench allreduce`: the sum over MPI ranks that data parallelism across processes runs
//! once per step ([`crate::distributed`]), timed on buffers the size of the paper's models'
//! gradients, with every rank's result checked against the rank-order sum it must equal.
//! Run it under the launcher (`mpirun -n 2 s5 bench allreduce`); alone it is a job of one.

use std::fmt;
use std::time::Instant;

use serde::Serialize;

use crate::distributed::{World, sum_in_rank_order};
use crate::model::{SegmentorConfig, count_params};

/// What to time.
#[derive(Debug, Clone)]
pub struct AllReduceOptions {
    /// `(name, f32 values)` of each buffer.
    pub sizes: Vec<(String, usize)>,
    /// Timed sums per buffer (after one untimed one).
    pub reps: usize,
}

impl AllReduceOptions {
    /// The gradients of ViT-B, ViT-L and ViT-H with UperNet (Table 1's single-dataset models).
    pub fn paper_models() -> Vec<(String, usize)> {
        [
            ("ViT-B", SegmentorConfig::vit_b()),
            ("ViT-L", SegmentorConfig::vit_l()),
            ("ViT-H", SegmentorConfig::vit_h()),
        ]
        .into_iter()
        .map(|(name, cfg)| (name.to_string(), count_params(&cfg).total()))
        .collect()
    }
}

/// One buffer's timing.
#[derive(Debug, Clone, Serialize)]
pub struct AllReduceRow {
    pub name: String,
    pub values: usize,
    pub bytes: usize,
    pub median_s: f64,
    pub min_s: f64,
    /// The buffer's bytes over the median time.
    pub algorithm_gb_per_s: f64,
    /// What each rank sent and received per second: 2 (n − 1) / n of the buffer over the
    /// median time (NCCL's "bus bandwidth").
    pub bus_gb_per_s: f64,
    /// Every rank's sum equals, bit for bit, the rank-order sum computed here alone.
    pub exact: bool,
}

/// `s5 bench allreduce`'s report.
#[derive(Debug, Clone, Serialize)]
pub struct AllReduceReport {
    pub ranks: usize,
    /// The MPI library (`None`: a job of one).
    pub library: Option<String>,
    pub rows: Vec<AllReduceRow>,
}

/// Rank `rank`'s value `i` of the benchmark's buffers: every rank can compute every rank's.
fn value(rank: usize, i: usize) -> f32 {
    let h = (i as u64 ^ ((rank as u64) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    (h % 2001) as f32 * 1e-3 - 1.0
}

/// Times the sum of each buffer over the ranks of `world`; every rank must call it.
pub fn bench_allreduce(world: &World, options: &AllReduceOptions) -> AllReduceReport {
    let (rank, n) = (world.rank(), world.size());
    let rows = options
        .sizes
        .iter()
        .map(|(name, values)| {
            // This rank's buffer, made anew for every sum (two buffers of ViT-H's 663 M
            // values are what a rank holds at most).
            let mine = || -> Vec<f32> { (0..*values).map(|i| value(rank, i)).collect() };
            let mut summed = mine();
            world.sum_f32(&mut summed);
            let mut times = Vec::with_capacity(options.reps);
            for _ in 0..options.reps {
                let mut buffer = mine();
                let t0 = Instant::now();
                world.sum_f32(&mut buffer);
                times.push(t0.elapsed().as_secs_f64());
            }
            // The rank-order sum, computed here for a bounded slice at a time.
            let mut exact = true;
            for start in (0..*values).step_by(1 << 20) {
                let end = (start + (1 << 20)).min(*values);
                let parts: Vec<f32> = (0..n)
                    .flat_map(|r| (start..end).map(move |i| value(r, i)))
                    .collect();
                let want = sum_in_rank_order(&parts, end - start);
                exact &= want
                    .iter()
                    .zip(&summed[start..end])
                    .all(|(a, b)| a.to_bits() == b.to_bits());
            }
            // Every rank's verdict counts.
            let verdicts = world.all_gather_bytes(&[u8::from(exact)]);
            times.sort_by(f64::total_cmp);
            let median_s = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
            let bytes = values * 4;
            let gb = |b: f64| b / median_s / 1e9;
            AllReduceRow {
                name: name.clone(),
                values: *values,
                bytes,
                median_s,
                min_s: times.first().copied().unwrap_or(f64::NAN),
                algorithm_gb_per_s: gb(bytes as f64),
                bus_gb_per_s: gb(bytes as f64 * 2.0 * (n - 1) as f64 / n as f64),
                exact: verdicts.iter().all(|v| v == &[1]),
            }
        })
        .collect();
    AllReduceReport {
        ranks: n,
        library: world.library(),
        rows,
    }
}

impl fmt::Display for AllReduceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sum over {} rank{} ({}), in rank order",
            self.ranks,
            if self.ranks == 1 { "" } else { "s" },
            self.library.as_deref().unwrap_or("one process, no MPI")
        )?;
        writeln!(
            f,
            "{:<8} {:>12} {:>10} {:>10} {:>10} {:>12} {:>11} {:>6}",
            "buffer", "values", "MiB", "median s", "min s", "algo GB/s", "bus GB/s", "exact"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<8} {:>12} {:>10.1} {:>10.4} {:>10.4} {:>12.2} {:>11.2} {:>6}",
                r.name,
                r.values,
                super::mib(r.bytes as f64),
                r.median_s,
                r.min_s,
                r.algorithm_gb_per_s,
                r.bus_gb_per_s,
                if r.exact { "yes" } else { "NO" }
            )?;
        }
        Ok(())
    }
}
