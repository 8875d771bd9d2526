//! The selection as files: `curation/selected.tsv`, one selected patch per line (what
//! `s5 pretrain` reads as its unlabeled set, `recipe: FixMatch((unlabeled: (..., patches:
//! Some("<run>/curation/selected.tsv"))))`), and `curation/selection.json` (the quotas).
//!
//! ```text
//! # image  x_px  y_px  width_px  height_px  entropy  foreground  confidence  cluster  similarity  rank
//! ```
//! Tab-separated; `rank` is the patch's place in its cluster (1 = lowest entropy).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::select::Selection;
use crate::data::SampleRef;
use crate::data::source::{Patch, TiledSource};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::run::RunDir;

const HEADER: &str = "# image\tx_px\ty_px\twidth_px\theight_px\tentropy\tforeground\tconfidence\tcluster\tsimilarity\trank";

/// `curation/selection.json`.
#[derive(Debug, Serialize)]
struct SelectionReport<'a> {
    budget_selected: usize,
    nominal_quotas: &'a [u64],
    final_quotas: &'a [u64],
    candidates: &'a [u64],
    filtered_out: u64,
    /// Per cluster, the similarity floor applied and the patches below it (empty without).
    similarity_floor: &'a [f32],
    below_floor: &'a [u64],
}

/// Writes the selected patches of `source` (the plan's patches) and the quotas; returns the
/// table's path.
pub fn write_selected(
    run: &RunDir,
    source: &TiledSource,
    selection: &Selection,
) -> Result<PathBuf> {
    let mut text = String::from(HEADER);
    text.push('\n');
    let mut rank = 0u64;
    let mut cluster = None;
    for r in &selection.selected {
        rank = if cluster == Some(r.cluster) {
            rank + 1
        } else {
            1
        };
        cluster = Some(r.cluster);
        let p = *source
            .patches
            .get(r.patch as usize)
            .ok_or_else(|| Error::RunDir {
                path: run.curation().join("shards"),
                reason: format!(
                    "a record names patch {}, but the plan has {}: the shards are not of this \
                 plan; score them again",
                    r.patch,
                    source.patches.len()
                ),
            })?;
        let image = &source.images[p.image].image;
        writeln!(
            text,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{rank}",
            image.display(),
            p.x_px,
            p.y_px,
            p.width_px,
            p.height_px,
            r.entropy,
            r.foreground,
            r.confidence,
            r.cluster,
            r.similarity
        )
        .expect("writing to a String");
    }
    let table = run.curation().join("selected.tsv");
    write_atomic(&table, text.as_bytes())?;
    let report = SelectionReport {
        budget_selected: selection.selected.len(),
        nominal_quotas: &selection.quotas.nominal,
        final_quotas: &selection.quotas.final_,
        candidates: &selection.candidates,
        filtered_out: selection.filtered_out,
        similarity_floor: &selection.floor,
        below_floor: &selection.below_floor,
    };
    let json = serde_json::to_string_pretty(&report).expect("a report serialises");
    write_atomic(&run.curation().join("selection.json"), json.as_bytes())?;
    Ok(table)
}

/// The patches a `selected.tsv` lists, as a source of unlabeled patches (images in order of
/// first appearance).
pub fn read_selected(path: &Path) -> Result<TiledSource> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::reading(path, e, Some("selected patches (s5 curate select)")))?;
    let bad = |line: usize, reason: String| Error::Spec {
        path: path.to_path_buf(),
        reason: format!("line {line}: {reason}"),
    };
    let mut images: Vec<SampleRef> = Vec::new();
    let mut index_of = std::collections::HashMap::new();
    let mut patches = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < 5 {
            return Err(bad(n + 1, "expected image, x, y, width and height".into()));
        }
        let number = |i: usize| {
            fields[i]
                .parse::<u32>()
                .map_err(|_| bad(n + 1, format!("`{}` is not a pixel count", fields[i])))
        };
        let image = PathBuf::from(fields[0]);
        let next = images.len();
        let index = *index_of.entry(image.clone()).or_insert(next);
        if index == next {
            images.push(SampleRef { image, mask: None });
        }
        patches.push(Patch {
            image: index,
            x_px: number(1)?,
            y_px: number(2)?,
            width_px: number(3)?,
            height_px: number(4)?,
        });
    }
    if patches.is_empty() {
        return Err(Error::Spec {
            path: path.to_path_buf(),
            reason: "no patches listed".into(),
        });
    }
    Ok(TiledSource {
        images,
        patches,
        stretches: Default::default(),
    })
}
