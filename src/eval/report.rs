//! A scored split as people read it (a per-class table) and as programs read it
//! (`metrics.json`).

use std::path::Path;

use super::metrics::ConfusionMatrix;
use crate::data::DatasetSpec;
use crate::error::Result;

/// Percent with two decimals, `-` for an undefined score.
fn pct(v: f64) -> String {
    if v.is_nan() {
        "-".to_string()
    } else {
        format!("{:.2}", 100.0 * v)
    }
}

/// The per-class IoU / F1 / precision / recall table and the means line.
pub fn table(spec: &DatasetSpec, matrix: &ConfusionMatrix, exclude: Option<usize>) -> String {
    let per_class = matrix.per_class();
    let summary = matrix.summary(exclude);
    let mut out = format!(
        "{:<22} {:>8} {:>8} {:>8} {:>8}\n",
        "class", "IoU", "F1", "prec", "recall"
    );
    for (name, m) in spec.classes.iter().zip(&per_class) {
        out += &format!(
            "{name:<22} {:>8} {:>8} {:>8} {:>8}\n",
            pct(m.iou),
            pct(m.f1),
            pct(m.precision),
            pct(m.recall)
        );
    }
    out += &format!(
        "\nmIoU {}  mF1 {}  OA {}  ({} classes in the means{})",
        pct(summary.miou),
        pct(summary.mf1),
        pct(summary.overall_accuracy),
        summary.classes_counted,
        if exclude.is_some() {
            ", background left out"
        } else {
            ""
        }
    );
    out
}

/// Writes `metrics.json` atomically: summary, per-class scores (undefined ones as null),
/// the confusion matrix, and `extra` fields (what was scored, how).
pub fn write_json(
    path: &Path,
    spec: &DatasetSpec,
    matrix: &ConfusionMatrix,
    exclude: Option<usize>,
    extra: serde_json::Value,
) -> Result<()> {
    let doc = serde_json::json!({
        "dataset": spec.name,
        "classes": spec.classes,
        "summary": matrix.summary(exclude),
        "per_class": matrix.per_class(),
        "confusion_matrix": matrix,
        "about": extra,
    });
    let text = serde_json::to_string_pretty(&doc).expect("metrics serialise");
    Ok(crate::fsutil::write_atomic(path, text.as_bytes())?)
}
