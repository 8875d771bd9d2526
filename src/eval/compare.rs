//! Scoring a folder of prediction masks against ground truth, without a model
//! (`s5 eval --pred DIR --gt DIR --spec SPEC`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::metrics::ConfusionMatrix;
use crate::data::DatasetSpec;
use crate::data::io::{read_labels, read_prediction};
use crate::data::source::images_in_folder;
use crate::error::{Error, Result};

/// The confusion matrix of every prediction (index PNG named like its ground-truth mask,
/// any extension) against the ground truth read in the spec's encoding. Every prediction
/// needs its ground truth, every ground truth its prediction; sizes must agree.
pub fn compare_folders(
    spec: &DatasetSpec,
    pred_dir: &Path,
    gt_dir: &Path,
) -> Result<(ConfusionMatrix, usize)> {
    let by_stem = |dir: &Path| -> Result<BTreeMap<String, PathBuf>> {
        Ok(images_in_folder(dir)?
            .into_iter()
            .filter_map(|p| {
                let rel = p.strip_prefix(dir).ok()?.with_extension("");
                Some((rel.to_string_lossy().into_owned(), p))
            })
            .collect())
    };
    let preds = by_stem(pred_dir)?;
    let gts = by_stem(gt_dir)?;
    if let Some((stem, path)) = preds.iter().find(|(s, _)| !gts.contains_key(*s)) {
        return Err(Error::MissingFile {
            path: gt_dir.join(stem),
            context: Some(format!(
                "ground truth for the prediction {}",
                path.display()
            )),
        });
    }
    if let Some((stem, path)) = gts.iter().find(|(s, _)| !preds.contains_key(*s)) {
        return Err(Error::MissingFile {
            path: pred_dir.join(format!("{stem}.png")),
            context: Some(format!(
                "prediction for the ground truth {}",
                path.display()
            )),
        });
    }
    let k = spec.num_classes();
    let matrices: Vec<ConfusionMatrix> = preds
        .par_iter()
        .map(|(stem, pred_path)| {
            let gt_path = &gts[stem];
            let gt = read_labels(gt_path, spec)?;
            let pred = read_prediction(pred_path, k)?;
            if pred.dimensions() != gt.dimensions() {
                return Err(Error::MaskSize {
                    path: pred_path.clone(),
                    image: gt_path.clone(),
                    mask_w: pred.width(),
                    mask_h: pred.height(),
                    image_w: gt.width(),
                    image_h: gt.height(),
                });
            }
            let mut m = ConfusionMatrix::new(k);
            m.add(gt.as_raw(), pred.as_raw());
            Ok(m)
        })
        .collect::<Result<_>>()?;
    let mut total = ConfusionMatrix::new(k);
    for m in &matrices {
        total.merge(m);
    }
    Ok((total, matrices.len()))
}
