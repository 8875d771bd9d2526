//! `s5 finetune`: the paper's fine-tuning (`recipe: Finetune((mode: Sdf("<dataset>") | Mdf |
//! MoeMdf(<P>)))`, a run of kind `finetune`), and `s5 finetune export`: one dataset of an
//! FFN-MoE model as a dense single-dataset model.

use std::path::PathBuf;

use anyhow::Result;
use s5::device::{self, GpuBackend};
use s5::run::RunKind;

use super::train::{TrainArgs, run_with};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct FinetuneArgs {
    #[command(subcommand)]
    command: Option<FinetuneCommand>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum FinetuneCommand {
    /// Write one dataset of an FFN-MoE model as a dense single-dataset model: fc2 stacks the
    /// shared and the dataset's expert, with that dataset's decoder; same outputs, a single
    /// model's parameters. `s5 predict` and `s5 eval` take it.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The FFN-MoE model: a run directory (its newest checkpoint) or a checkpoint folder
    /// (e.g. `<run>/checkpoints/best`).
    #[arg(long)]
    model: PathBuf,
    /// The dataset to export (its name in the model's card).
    #[arg(long)]
    dataset: String,
    /// A new folder for the exported model.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(backend: Option<GpuBackend>, args: FinetuneArgs) -> Result<()> {
    match args.command {
        Some(FinetuneCommand::Export(args)) => export(backend, args),
        None => run_with(backend, args.train, None, RunKind::Finetune),
    }
}

fn export(backend: Option<GpuBackend>, args: ExportArgs) -> Result<()> {
    let gpu = device::gpu(backend)?;
    let done = s5::train::export::export_dense(&args.model, &args.dataset, &args.out, &gpu.device)?;
    println!(
        "{} of {}: dense model of {:.2} M parameters (the FFN-MoE model: {:.2} M), step {}, in {}",
        args.dataset,
        args.model.display(),
        done.dense_params as f64 / 1e6,
        done.moe_params as f64 / 1e6,
        done.step,
        done.checkpoint.display()
    );
    Ok(())
}
