//! `s5 data check`: reads every file of every split of a dataset and reports counts, the
//! class histogram and every problem (unreadable file, size mismatch, label out of range).

use std::fmt;

use rayon::prelude::*;
use serde::Serialize;

use super::{DatasetSpec, IGNORE, io};
use crate::error::Result;

/// What one split holds.
#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    pub split: String,
    pub images: usize,
    pub labeled: usize,
    /// Pixels per class over the split's masks.
    pub class_pixels: Vec<u64>,
    pub ignored_pixels: u64,
    /// One line per problem, each naming its file.
    pub problems: Vec<String>,
}

/// The whole dataset.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub dataset: String,
    pub classes: Vec<String>,
    pub splits: Vec<SplitReport>,
}

impl CheckReport {
    pub fn problems(&self) -> usize {
        self.splits.iter().map(|s| s.problems.len()).sum()
    }
}

/// Checks every split; `progress` is called once per file read.
pub fn check(spec: &DatasetSpec, progress: &(dyn Fn() + Sync)) -> Result<CheckReport> {
    let k = spec.num_classes();
    let mut splits = Vec::new();
    for split in spec.splits.keys() {
        let samples = match spec.samples(split) {
            Ok(s) => s,
            Err(e) => {
                splits.push(SplitReport {
                    split: split.clone(),
                    images: 0,
                    labeled: 0,
                    class_pixels: vec![0; k],
                    ignored_pixels: 0,
                    problems: vec![e.to_string()],
                });
                continue;
            }
        };
        let results: Vec<(Vec<u64>, u64, Option<String>)> = samples
            .par_iter()
            .map(|sample| {
                let out = match io::read_sample(spec, sample) {
                    Ok(io::Sample {
                        labels: Some(labels),
                        ..
                    }) => {
                        let mut hist = vec![0u64; k];
                        let mut ignored = 0;
                        for &l in labels.as_raw() {
                            if l == IGNORE {
                                ignored += 1;
                            } else {
                                hist[usize::from(l)] += 1;
                            }
                        }
                        (hist, ignored, None)
                    }
                    Ok(_) => (vec![0; k], 0, None),
                    Err(e) => (vec![0; k], 0, Some(e.to_string())),
                };
                progress();
                out
            })
            .collect();
        let mut report = SplitReport {
            split: split.clone(),
            images: samples.len(),
            labeled: samples.iter().filter(|s| s.mask.is_some()).count(),
            class_pixels: vec![0; k],
            ignored_pixels: 0,
            problems: Vec::new(),
        };
        if samples.is_empty() {
            report.problems.push(format!(
                "split `{split}` has no images under {}",
                spec.root().display()
            ));
        }
        for (hist, ignored, problem) in results {
            for (total, n) in report.class_pixels.iter_mut().zip(hist) {
                *total += n;
            }
            report.ignored_pixels += ignored;
            report.problems.extend(problem);
        }
        splits.push(report);
    }
    Ok(CheckReport {
        dataset: spec.name.clone(),
        classes: spec.classes.clone(),
        splits,
    })
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dataset {}", self.dataset)?;
        for s in &self.splits {
            let labeled_px: u64 = s.class_pixels.iter().sum();
            writeln!(
                f,
                "\nsplit {}: {} images, {} labeled, {} labeled px, {} ignored px",
                s.split, s.images, s.labeled, labeled_px, s.ignored_pixels
            )?;
            if labeled_px > 0 {
                for (name, n) in self.classes.iter().zip(&s.class_pixels) {
                    writeln!(
                        f,
                        "  {name:<22} {n:>12}  {:>5.1} %",
                        100.0 * *n as f64 / labeled_px as f64
                    )?;
                }
            }
            for p in &s.problems {
                writeln!(f, "  problem: {p}")?;
            }
        }
        let n = self.problems();
        if n == 0 {
            write!(f, "\nno problems")
        } else {
            write!(f, "\n{n} problem(s)")
        }
    }
}
