//! One selection of `s5 bench select`, measured in the process that runs it (a child's, see
//! [`super::select_report`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One pool size's selection: its records, time and the peak memory of its own process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SelectRun {
    pub records: u64,
    pub budget: u64,
    pub selected: u64,
    pub seconds: f64,
    pub peak_rss_bytes: u64,
}

/// Selects `budget` patches from the record files in `dir` in this process (the child's side
/// of [`super::select_report::bench_select`]).
pub fn measure_select(dir: &Path, budget: u64, clusters: u32) -> Result<SelectRun> {
    let labeled: Vec<u64> = (1..=u64::from(clusters)).collect();
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    shards.sort();
    let started = Instant::now();
    let selection = crate::curate::select::select(
        &shards,
        &labeled,
        budget,
        &crate::curate::select::Filters::default(),
    )?;
    Ok(SelectRun {
        records: selection.candidates.iter().sum::<u64>() + selection.filtered_out,
        budget,
        selected: selection.selected.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_bytes: crate::memory::peak_rss_bytes().unwrap_or(0),
    })
}
