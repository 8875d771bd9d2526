//! `s5 bench select`: curation's selection at growing pool sizes (made-up records, no model),
//! each size in its own process so that its peak resident set is its own.

use std::fmt;

use serde::Serialize;

use super::child::Children;
use super::select::SelectRun;
use crate::error::{Error, Result};

/// What `s5 bench select` measures.
#[derive(Debug, Clone)]
pub struct SelectOptions {
    /// Pool sizes (records).
    pub records: Vec<u64>,
    /// Patches selected from each pool.
    pub budget: u64,
    /// Prototypes (clusters).
    pub clusters: u32,
    /// Record files per pool.
    pub shards: u64,
}

impl Default for SelectOptions {
    /// What the README reports: 1 000, 100 000 and 10 million records, 10 000 selected over 16
    /// clusters, 8 shards.
    fn default() -> Self {
        Self {
            records: vec![1_000, 100_000, 10_000_000],
            budget: 10_000,
            clusters: 16,
            shards: 8,
        }
    }
}

/// Every pool size's run, in the order measured. JSON: the list of runs.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct SelectReport {
    pub runs: Vec<SelectRun>,
}

/// Writes each pool of `options` into a temporary folder and selects from it in a child.
pub fn bench_select(children: &Children, options: &SelectOptions) -> Result<SelectReport> {
    let mut runs = Vec::new();
    for &records in &options.records {
        let dir = tempfile::tempdir().map_err(|source| Error::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        super::write_synthetic_records(dir.path(), records, options.shards, options.clusters, 7)?;
        runs.push(children.select(dir.path(), options.budget, options.clusters)?);
    }
    Ok(SelectReport { runs })
}

impl fmt::Display for SelectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = self.runs.first().map_or(1, |r| r.peak_rss_bytes.max(1)) as f64;
        writeln!(
            f,
            "{:>12} {:>8} {:>9} {:>9} {:>14} {:>10}",
            "records", "budget", "selected", "seconds", "peak RSS MiB", "RSS ratio"
        )?;
        for r in &self.runs {
            writeln!(
                f,
                "{:>12} {:>8} {:>9} {:>9.2} {:>14.1} {:>9.2}x",
                r.records,
                r.budget,
                r.selected,
                r.seconds,
                super::mib(r.peak_rss_bytes as f64),
                r.peak_rss_bytes as f64 / base
            )?;
        }
        Ok(())
    }
}
