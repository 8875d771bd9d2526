//! `s5 eval`: score a model on a dataset split, or prediction masks against ground truth.

use std::path::PathBuf;

use anyhow::{Result, bail};
use s5::device::{self, GpuBackend};
use s5::eval::compare::compare_folders;
use s5::eval::{evaluate_split, report};

use super::infer_args::InferArgs;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// A run directory (its newest checkpoint) or a checkpoint folder to evaluate.
    #[arg(long, conflicts_with = "pred")]
    model: Option<PathBuf>,
    /// With --model: which decoder, by dataset name or index.
    #[arg(long)]
    dataset: Option<String>,
    /// With --model: the split to score.
    #[arg(long, default_value = "val")]
    split: String,
    /// With --model: another root for the dataset (default: the spec's).
    #[arg(long)]
    root: Option<PathBuf>,
    #[command(flatten)]
    infer: InferArgs,
    /// Folder of predicted index masks (PNG), named like the ground-truth masks.
    #[arg(long, requires = "gt")]
    pred: Option<PathBuf>,
    /// Folder of ground-truth masks, in the dataset's encoding.
    #[arg(long, requires = "pred")]
    gt: Option<PathBuf>,
    /// The dataset spec (classes, encoding, background); with --model, default: the one the
    /// model was trained with.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Leave the spec's background class out of the means (S4P validation does).
    #[arg(long)]
    exclude_background: bool,
    /// Where to write the metrics as JSON.
    #[arg(long, default_value = "metrics.json")]
    out: PathBuf,
}

pub fn run(backend: Option<GpuBackend>, args: EvalArgs) -> Result<()> {
    match (&args.model, &args.pred, &args.gt) {
        (Some(_), _, _) => with_model(backend, &args),
        (None, Some(pred), Some(gt)) => folders(&args, pred, gt),
        _ => bail!("give --model RUN_OR_CHECKPOINT, or --pred DIR --gt DIR --spec SPEC"),
    }
}

fn exclude(args: &EvalArgs, spec: &s5::data::DatasetSpec) -> Option<usize> {
    if args.exclude_background {
        spec.background.map(usize::from)
    } else {
        None
    }
}

fn folders(args: &EvalArgs, pred: &PathBuf, gt: &PathBuf) -> Result<()> {
    let Some(spec_path) = &args.spec else {
        bail!("--pred/--gt need --spec SPEC (the dataset's classes and label encoding)");
    };
    let spec = s5::data::DatasetSpec::load(spec_path)?;
    let (matrix, files) = compare_folders(&spec, pred, gt)?;
    let heading = format!(
        "{files} masks of {} ({} classes)",
        spec.name,
        spec.num_classes()
    );
    let about = serde_json::json!({ "predictions": pred, "ground_truth": gt, "files": files });
    report_and_write(args, &spec, &matrix, &heading, about)
}

fn with_model(backend: Option<GpuBackend>, args: &EvalArgs) -> Result<()> {
    let mode = args.infer.mode()?;
    let gpu = device::gpu(backend)?;
    let model_path = args.model.as_ref().expect("checked by the caller");
    let (model, card, checkpoint) = s5::train::load_model(model_path, &gpu.device)?;
    let dataset = card
        .dataset_index(args.dataset.as_deref())
        .map_err(anyhow::Error::msg)?;
    let spec_path = args
        .spec
        .clone()
        .unwrap_or(card.datasets[dataset].spec.clone());
    let mut spec = s5::data::DatasetSpec::load(&spec_path)?;
    if let Some(root) = &args.root {
        spec.root = Some(root.clone());
    }
    if spec.num_classes() != model.decoders[dataset].classes() {
        bail!(
            "{}: {} classes, but decoder {dataset} of the model predicts {}",
            spec_path.display(),
            spec.num_classes(),
            model.decoders[dataset].classes()
        );
    }
    let samples = spec.samples(&args.split)?;
    if samples.is_empty() {
        bail!(
            "{}: split `{}` has no images",
            spec_path.display(),
            args.split
        );
    }
    let bar = indicatif::ProgressBar::new(samples.len() as u64);
    let matrix = evaluate_split(
        &model,
        dataset,
        &spec,
        &samples,
        mode,
        args.infer.window_batch,
        &gpu.device,
        |_| {
            bar.inc(1);
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    let heading = format!(
        "{} images of {} split `{}` with {} ({mode})",
        samples.len(),
        spec.name,
        args.split,
        checkpoint.display()
    );
    let about = serde_json::json!({
        "checkpoint": checkpoint,
        "split": args.split,
        "images": samples.len(),
        "mode": format!("{mode:?}"),
    });
    report_and_write(args, &spec, &matrix, &heading, about)
}

/// Prints the heading and per-class table, writes `metrics.json`.
fn report_and_write(
    args: &EvalArgs,
    spec: &s5::data::DatasetSpec,
    matrix: &s5::eval::ConfusionMatrix,
    heading: &str,
    about: serde_json::Value,
) -> Result<()> {
    let exclude = exclude(args, spec);
    println!("{heading}\n");
    println!("{}", report::table(spec, matrix, exclude));
    report::write_json(&args.out, spec, matrix, exclude, about)?;
    println!("wrote {}", args.out.display());
    Ok(())
}
