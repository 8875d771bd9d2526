//! `s5 train`: supervised training from a RON config into a run directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use s5::device::{self, GpuBackend};
use s5::run::RunDir;
use s5::train::{TrainConfig, TrainOptions, train};

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Training config (RON; see assets/configs/train-synth.ron). Not needed with --resume.
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Run directory (created): config, events, checkpoints and samples go here.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its newest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Override the number of steps (with --resume: extend the run).
    #[arg(long)]
    steps: Option<u64>,
    /// Override the seed.
    #[arg(long)]
    seed: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Crash (abort, no cleanup) after this step: for testing crash recovery.
    #[arg(long, hide = true)]
    abort_after_step: Option<u64>,
}

static STOP: AtomicBool = AtomicBool::new(false);

pub fn run(backend: Option<GpuBackend>, args: TrainArgs) -> Result<()> {
    let mut config = match (&args.config, args.resume) {
        (Some(path), _) => TrainConfig::load(path)?,
        (None, true) => TrainConfig {
            steps: 0,
            ..TrainConfig::default()
        },
        (None, false) => bail!("--config is required to start a run"),
    };
    if let Some(steps) = args.steps {
        config.steps = steps;
    }
    if let Some(seed) = args.seed {
        if args.resume {
            bail!("--seed cannot change a resumed run (it decides the data order)");
        }
        config.seed = seed;
    }
    let gpu = device::gpu(backend)?;
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!(
            "\nCtrl-C: finishing this step and writing a checkpoint (Ctrl-C again to quit now)"
        );
    })
    .context("installing the Ctrl-C handler")?;
    let run = RunDir::new(&args.out);
    eprintln!(
        "training on {} ({}) into {}",
        gpu.adapter.name,
        gpu.adapter.backend,
        run.root().display()
    );
    let outcome = train(
        config,
        &run,
        &gpu.device,
        TrainOptions {
            resume: args.resume,
            stop: Some(&STOP),
            abort_after_step: args.abort_after_step,
            progress: !args.quiet,
        },
    )?;
    for (name, value) in &outcome.val_metrics {
        println!("{name}: {:.2}", 100.0 * value);
    }
    let checkpoint = outcome
        .checkpoint
        .as_ref()
        .map_or("none".to_string(), |c| c.display().to_string());
    if outcome.interrupted {
        println!(
            "stopped after step {}; checkpoint {checkpoint}\ncontinue with: s5 train --resume --out {}",
            outcome.steps_done,
            args.out.display()
        );
    } else {
        println!(
            "done: {} steps; checkpoint {checkpoint}",
            outcome.steps_done
        );
    }
    Ok(())
}
