//! `s5 train` (supervised) and `s5 pretrain` (S4P: FixMatch with unlabeled images) from a
//! RON config into a run directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use s5::device::{self, GpuBackend};
use s5::run::{RunDir, RunKind};
use s5::train::config::{LossForm, RecipeSetup};
use s5::train::{Report, Start, TrainConfig, TrainOptions, train};

use super::gpu_args::GpuArgs;
use super::train_progress::TrainProgress;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Training config (RON; see assets/configs/train-synth.ron). Not needed with --resume.
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Run directory (created): config, events, checkpoints and samples go here.
    // Required, yet an `Option`: `s5 finetune export` shares this command's arguments and
    // parses without it.
    #[arg(long, required = true)]
    out: Option<PathBuf>,
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
    /// Under MPI, sum the gradients over the ranks only after the whole backward pass, not
    /// block by block while it runs (with `activation_checkpointing: Blocks`): the same
    /// result, more waiting; to measure what the overlap saves.
    #[arg(long)]
    sum_after_backward: bool,
}

#[derive(Debug, clap::Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// How L_s and L_u combine: the authors' code (L_s + λ·L_u) / 2, or the paper's
    /// L_s + λ·L_u (default: the config's, itself defaulting to code).
    #[arg(long, value_enum)]
    loss_form: Option<LossFormArg>,
}

/// `s5 pretrain`: the FixMatch recipe.
pub fn run_pretrain(backend: Option<GpuBackend>, args: PretrainArgs) -> Result<()> {
    run_with(backend, args.train, args.loss_form, RunKind::Pretrain)
}

/// `s5 train`: the supervised recipe.
pub fn run(backend: Option<GpuBackend>, args: TrainArgs) -> Result<()> {
    run_with(backend, args, None, RunKind::Train)
}

/// One rule for both commands: each runs (and resumes) its own recipe only; a config or run
/// of the other recipe is refused with the command to use.
pub(super) fn run_with(
    backend: Option<GpuBackend>,
    args: TrainArgs,
    loss_form: Option<LossFormArg>,
    kind: RunKind,
) -> Result<()> {
    let given = match &args.config {
        Some(path) => {
            let config = TrainConfig::load(path)?;
            let recipe_kind = config.recipe.run_kind();
            if recipe_kind != kind {
                bail!(
                    "{}: its recipe ({}) makes a `{recipe_kind}` run: run it with `{}`{}",
                    path.display(),
                    recipe_name(&config.recipe),
                    recipe_kind.command(),
                    match kind {
                        RunKind::Pretrain =>
                            " (s5 pretrain needs `recipe: FixMatch((unlabeled: (spec: ...), ...))`)",
                        RunKind::Finetune =>
                            " (s5 finetune needs `recipe: Finetune((mode: Sdf(\"<dataset>\") | Mdf | MoeMdf(<P>)))`)",
                        _ => "",
                    }
                );
            }
            Some(config)
        }
        None => None,
    };
    let start = if args.resume {
        for (given, flag) in [
            (args.init.is_some(), "--init cannot change a resumed run"),
            (
                loss_form.is_some(),
                "--loss-form cannot change a resumed run",
            ),
            (
                args.seed.is_some(),
                "--seed cannot change a resumed run (it decides the data order)",
            ),
        ] {
            if given {
                bail!("{flag}");
            }
        }
        Start::Resume {
            steps: args.steps.or(given.as_ref().map(|c| c.steps)),
            check: given,
        }
    } else {
        let mut config = given.context("--config is required to start a run")?;
        if let Some(steps) = args.steps {
            config.steps = steps;
        }
        if let Some(init) = &args.init {
            config.model.init = Some(init.clone());
        }
        if let (Some(form), RecipeSetup::FixMatch(setup)) = (loss_form, &mut config.recipe) {
            setup.loss_form = form.into();
        }
        if let Some(seed) = args.seed {
            config.seed = seed;
        }
        // The flags are config values too: checked before the GPU is set up.
        config.validate()?;
        Start::New(config)
    };
    // One of the ranks of an MPI job (`mpirun`, `srun`), or a job of one.
    let world = s5::distributed::World::join()?;
    let gpus = device::training_gpus(backend, args.gpus.choice())?;
    let out = args.out.clone().context("--out is required")?;
    let outcome = train_in(
        &gpus,
        start,
        &out,
        kind,
        TrainUi {
            quiet: args.quiet,
            abort_after_step: args.abort_after_step,
            sum_after_backward: args.sum_after_backward,
        },
        world,
    )?;
    // Rank 0 says how it went; the other ranks said it with it.
    if !world.is_writer() {
        return Ok(());
    }
    for (name, value) in &outcome.val_metrics {
        println!("{name}: {:.2}", 100.0 * value);
    }
    let checkpoint = outcome
        .checkpoint
        .as_ref()
        .map_or("none".to_string(), |c| c.display().to_string());
    if outcome.interrupted {
        println!(
            "stopped after step {}; checkpoint {checkpoint}\ncontinue with: {} --resume --out {}",
            outcome.steps_done,
            kind.command(),
            out.display()
        );
    } else {
        println!(
            "done: {} steps; checkpoint {checkpoint}",
            outcome.steps_done
        );
    }
    Ok(())
}

/// How a training shows itself.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TrainUi {
    /// No progress bar and no validation lines.
    pub quiet: bool,
    /// Crash after this step (tests).
    pub abort_after_step: Option<u64>,
    /// Under MPI, no gradient sums during the backward pass.
    pub sum_after_backward: bool,
}

/// Trains into `out` on `gpus` (the first the main one), with a progress bar and Ctrl-C
/// (first: checkpoint and stop; second: quit).
pub(super) fn train_in(
    gpus: &[device::Gpu],
    start: Start,
    out: &std::path::Path,
    kind: RunKind,
    ui: TrainUi,
    world: &'static s5::distributed::World,
) -> Result<s5::train::TrainOutcome> {
    let gpu = &gpus[0];
    install_ctrlc()?;
    let run = RunDir::new(out);
    // In an MPI job rank 0 shows the progress; the others keep quiet (warnings aside).
    let mut progress = TrainProgress::new(!ui.quiet && world.is_writer());
    // Said once the run is checked and open: a refused run prints its error alone.
    let mut report = |r: Report<'_>| {
        if matches!(r, Report::Begin { .. }) && world.is_writer() {
            announce(gpus, run.root(), world);
        }
        progress.show(r)
    };
    STOPPABLE.store(true, Ordering::SeqCst);
    let result = train(
        start,
        &run,
        &gpu.device,
        TrainOptions {
            stop: Some(&STOP),
            abort_after_step: ui.abort_after_step,
            replicas: gpus[1..].iter().map(|g| g.device.clone()).collect(),
            kind: Some(kind),
            report: Some(&mut report),
            world: Some(world),
            sum_after_backward: ui.sum_after_backward,
        },
    );
    STOPPABLE.store(false, Ordering::SeqCst);
    Ok(progress.end(result)?)
}

/// Says on which GPUs a training runs (those of rank 0, and how many ranks), into which
/// folder.
pub(super) fn announce(
    gpus: &[device::Gpu],
    out: &std::path::Path,
    world: &s5::distributed::World,
) {
    let gpu = &gpus[0];
    let more = match gpus.len() {
        1 => String::new(),
        n => format!(" and {} more, data parallel over {n} GPUs", n - 1),
    };
    let more = match (world.size(), world.library()) {
        (1, _) | (_, None) => more,
        (ranks, Some(library)) => {
            // "Open MPI v4.1.4, package: ..., ident: ...": its name and version.
            let library = library.split(',').next().unwrap_or_default().to_string();
            format!("{more}, rank 0 of {ranks} MPI ranks ({library})")
        }
    };
    eprintln!(
        "training on {} ({}){more} into {}",
        gpu.adapter.name,
        gpu.adapter.backend,
        out.display()
    );
}

/// Set by the first Ctrl-C: a training checkpoints and stops after its step.
pub(super) static STOP: AtomicBool = AtomicBool::new(false);
/// Whether a training is running (which stops cleanly); otherwise Ctrl-C quits at once.
pub(super) static STOPPABLE: AtomicBool = AtomicBool::new(false);

/// The process's Ctrl-C handler (once): during a training the first Ctrl-C asks it to
/// checkpoint and stop, a second quits; outside one, Ctrl-C quits (every stage of s5
/// resumes from what it wrote).
pub(super) fn install_ctrlc() -> Result<()> {
    static INSTALLED: std::sync::OnceLock<std::result::Result<(), String>> =
        std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            ctrlc::set_handler(|| {
                // In an MPI job the launcher signals every rank: rank 0 speaks for them.
                let world = s5::distributed::World::joined();
                let speaks = world.is_none_or(|w| w.is_writer());
                let ranks = world.map_or(1, |w| w.size());
                if !STOPPABLE.load(Ordering::SeqCst) {
                    if speaks {
                        eprintln!("\nCtrl-C: stopped (run the command again to continue)");
                    }
                    std::process::exit(130);
                }
                if STOP.swap(true, Ordering::SeqCst) {
                    if speaks {
                        eprintln!("\nsecond Ctrl-C: exiting without a checkpoint");
                    }
                    std::process::exit(130);
                }
                if ranks > 1 && speaks {
                    eprintln!(
                        "\nstop requested (Ctrl-C or SIGTERM): every rank finishes this step, \
                         then a checkpoint is written"
                    );
                } else if speaks {
                    eprintln!(
                        "\nCtrl-C: finishing this step and writing a checkpoint (Ctrl-C again to quit now)"
                    );
                }
            })
            .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("installing the Ctrl-C handler: {e}"))
}

/// The recipe's name as a config writes it.
fn recipe_name(recipe: &RecipeSetup) -> &'static str {
    match recipe {
        RecipeSetup::Supervised => "Supervised",
        RecipeSetup::FixMatch(_) => "FixMatch",
        RecipeSetup::Finetune(_) => "Finetune",
    }
}

/// `--loss-form`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LossFormArg {
    /// The authors' code: `(L_s + λ·L_u) / 2`.
    Code,
    /// The paper: `L_s + λ·L_u`.
    Paper,
}

impl From<LossFormArg> for LossForm {
    fn from(arg: LossFormArg) -> Self {
        match arg {
            LossFormArg::Code => LossForm::Code,
            LossFormArg::Paper => LossForm::Paper,
        }
    }
}
