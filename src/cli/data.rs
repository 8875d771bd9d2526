//! `s5 data check`: is a dataset what its spec says?

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use s5::data::DatasetSpec;
use s5::data::check::check;

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Read every file of every split: counts, class histogram, size and label problems.
    /// Exits non-zero when anything is wrong.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The dataset spec (RON), e.g. assets/datasets/potsdam.ron.
    spec: PathBuf,
    /// The dataset folder, overriding the spec's `root`.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Print JSON instead of a report.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Check(args) => check_cmd(args),
    }
}

/// Loads a spec, applying a `--root` override.
pub fn load_spec(path: &std::path::Path, root: Option<PathBuf>) -> Result<DatasetSpec> {
    let mut spec = DatasetSpec::load(path)?;
    if let Some(root) = root {
        if !root.is_dir() {
            bail!("{}: --root is not a folder", root.display());
        }
        spec.root = Some(root);
    }
    Ok(spec)
}

fn check_cmd(args: CheckArgs) -> Result<()> {
    let spec = load_spec(&args.spec, args.root)?;
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} checked {pos} files ({per_sec})")
                .context("progress template")?,
        )
    };
    let report = check(&spec, &|| bar.inc(1))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    let problems = report.problems();
    if problems > 0 {
        bail!("{}: {problems} problem(s) found", args.spec.display());
    }
    Ok(())
}
