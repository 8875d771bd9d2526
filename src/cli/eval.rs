//! `s5 eval`: score predictions against ground truth.

use std::path::PathBuf;

use anyhow::Result;
use s5::eval::compare::compare_folders;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Folder of predicted index masks (PNG), named like the ground-truth masks.
    #[arg(long)]
    pred: PathBuf,
    /// Folder of ground-truth masks, in the dataset's encoding.
    #[arg(long)]
    gt: PathBuf,
    /// The dataset spec (classes, encoding, background).
    #[arg(long)]
    spec: PathBuf,
    /// Leave the spec's background class out of the means (S4P validation does).
    #[arg(long)]
    exclude_background: bool,
    /// Where to write the metrics as JSON.
    #[arg(long, default_value = "metrics.json")]
    out: PathBuf,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let spec = s5::data::DatasetSpec::load(&args.spec)?;
    let (matrix, files) = compare_folders(&spec, &args.pred, &args.gt)?;
    let exclude = if args.exclude_background {
        spec.background.map(usize::from)
    } else {
        None
    };
    let per_class = matrix.per_class();
    let summary = matrix.summary(exclude);
    println!(
        "{files} masks of {} ({} classes)\n",
        spec.name,
        spec.num_classes()
    );
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>8}",
        "class", "IoU", "F1", "prec", "recall"
    );
    let pct = |v: f64| {
        if v.is_nan() {
            "-".to_string()
        } else {
            format!("{:.2}", 100.0 * v)
        }
    };
    for (name, m) in spec.classes.iter().zip(&per_class) {
        println!(
            "{name:<22} {:>8} {:>8} {:>8} {:>8}",
            pct(m.iou),
            pct(m.f1),
            pct(m.precision),
            pct(m.recall)
        );
    }
    println!(
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
    // NaN (undefined) per-class scores are written as null.
    let doc = serde_json::json!({
        "dataset": spec.name,
        "files": files,
        "classes": spec.classes,
        "summary": summary,
        "per_class": per_class,
        "confusion_matrix": matrix,
    });
    s5::fsutil::write_atomic(&args.out, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    println!("wrote {}", args.out.display());
    Ok(())
}
