//! `s5 train` (supervised) and `s5 pretrain` (S4P: FixMatch with unlabeled images) from a
//! RON config into a run directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use s5::device::{self, GpuBackend};
use s5::run::RunDir;
use s5::train::config::LossForm;
use s5::train::{TrainConfig, TrainOptions, train};

use super::gpu_args::GpuArgs;

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
    /// Start from these weights (a run directory, checkpoint folder or .pth/.safetensors),
    /// overriding the config's `model.init`: fine-tuning after `s5 pretrain`.
    #[arg(long)]
    init: Option<PathBuf>,
    #[command(flatten)]
    gpus: GpuArgs,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Crash (abort, no cleanup) after this step: for testing crash recovery.
    #[arg(long, hide = true)]
    abort_after_step: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// How L_s and L_u combine: the authors' code (L_s + λ·L_u) / 2, or the paper's
    /// L_s + λ·L_u (default: the config's, itself defaulting to code).
    #[arg(long, value_enum)]
    loss_form: Option<LossForm>,
}

static STOP: AtomicBool = AtomicBool::new(false);

/// `s5 pretrain`: a config with a `semi` section.
pub fn run_pretrain(backend: Option<GpuBackend>, args: PretrainArgs) -> Result<()> {
    run_with(backend, args.train, args.loss_form, true)
}

pub fn run(backend: Option<GpuBackend>, args: TrainArgs) -> Result<()> {
    run_with(backend, args, None, false)
}

fn run_with(
    backend: Option<GpuBackend>,
    args: TrainArgs,
    loss_form: Option<LossForm>,
    pretrain: bool,
) -> Result<()> {
    let mut config = match (&args.config, args.resume) {
        (Some(path), _) => {
            let config = TrainConfig::load(path)?;
            if pretrain && config.semi.is_none() {
                bail!(
                    "{}: no `semi: Some((unlabeled: (spec: ...), ...))` section: s5 pretrain \
                     needs unlabeled images (use s5 train for supervised runs)",
                    path.display()
                );
            }
            config
        }
        (None, true) => TrainConfig {
            steps: 0,
            ..TrainConfig::default()
        },
        (None, false) => bail!("--config is required to start a run"),
    };
    if let Some(steps) = args.steps {
        config.steps = steps;
    }
    if let Some(init) = &args.init {
        if args.resume {
            bail!("--init cannot change a resumed run");
        }
        config.model.init = Some(init.clone());
    }
    if let Some(form) = loss_form {
        if args.resume {
            bail!("--loss-form cannot change a resumed run");
        }
        if let Some(semi) = &mut config.semi {
            semi.loss_form = form;
        }
    }
    if let Some(seed) = args.seed {
        if args.resume {
            bail!("--seed cannot change a resumed run (it decides the data order)");
        }
        config.seed = seed;
    }
    let gpus = device::training_gpus(backend, args.gpus.choice())?;
    let gpu = &gpus[0];
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
    let more = match gpus.len() {
        1 => String::new(),
        n => format!(" and {} more, data parallel over {n} GPUs", n - 1),
    };
    eprintln!(
        "training on {} ({}){more} into {}",
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
            replicas: gpus[1..].iter().map(|g| g.device.clone()).collect(),
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
            "stopped after step {}; checkpoint {checkpoint}\ncontinue with: s5 {} --resume --out {}",
            outcome.steps_done,
            if pretrain { "pretrain" } else { "train" },
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
