//! `s5 demo`: the whole S5 method on synthetic data in one command ([`s5::pipeline`] runs
//! it); this parses the options, draws the stages' progress, handles Ctrl-C and draws
//! `summary.png`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Result;
use s5::device::{self, GpuBackend};
use s5::pipeline::stages::trains;
use s5::pipeline::summary::duration;
use s5::pipeline::{DemoEnd, DemoEvent, DemoOptions, PresetName, run_demo};
use s5::run::demo::{DemoStage, DemoTraining};

use super::bench_args::PrecisionArg;
use super::curate_progress::Bars;
use super::gpu_args::GpuArgs;
use super::train::{STOP, STOPPABLE, install_ctrlc};
use super::train_progress::TrainProgress;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The demo folder: the data, one run per stage, demo.json, summary.md and summary.png.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// How large: `tiny` runs on a CPU with lavapipe in about 10 minutes (two cores); `small` and
    /// `base` (ViT-S and ViT-B at 256 px) are for real GPUs.
    #[arg(long, value_enum, default_value_t = PresetArg::Tiny)]
    preset: PresetArg,
    /// `mixed`: the training stages in mixed precision (f16 activations, f32 master weights,
    /// dynamic loss scaling); needs an adapter with `shader-f16` (`s5 info` says).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    precision: PrecisionArg,
    /// Seed of the training stages (data order, augmentation draws, new weights); the data
    /// and the curation's clusters are the same for every seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    gpus: GpuArgs,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Steps of every training stage instead of the preset's (tests).
    #[arg(long, hide = true)]
    stage_steps: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PresetArg {
    /// A few steps per stage on a few 64 px tiles: for tests.
    #[value(hide = true)]
    Micro,
    Tiny,
    Small,
    Base,
}

impl From<PresetArg> for PresetName {
    fn from(arg: PresetArg) -> Self {
        match arg {
            PresetArg::Micro => PresetName::Micro,
            PresetArg::Tiny => PresetName::Tiny,
            PresetArg::Small => PresetName::Small,
            PresetArg::Base => PresetName::Base,
        }
    }
}

pub fn run(backend: Option<GpuBackend>, args: DemoArgs) -> Result<()> {
    s5::distributed::refuse_ranks("s5 demo")?;
    let mut preset = PresetName::from(args.preset).load()?;
    if let Some(steps) = args.stage_steps {
        (preset.seed_steps, preset.s4p_steps, preset.finetune_steps) = (steps, steps, steps);
    }
    let name = preset.name.clone();
    let training = DemoTraining {
        mixed_precision: args.precision == PrecisionArg::Mixed,
        seed: args.seed,
    };
    install_ctrlc()?;
    let gpus = device::training_gpus(backend, args.gpus.choice())?;
    let started = Instant::now();
    let mut ui = StageUi {
        out: args.out.clone(),
        quiet: args.quiet,
        train: None,
        bars: Bars::new(None),
    };
    let options = DemoOptions {
        out: args.out.clone(),
        preset,
        training,
        gpus: &gpus,
        stop: &STOP,
    };
    let ended = run_demo(&options, &mut |event| ui.show(event));
    STOPPABLE.store(false, Ordering::SeqCst);
    ui.end();
    match ended? {
        DemoEnd::Stopped { stage } => println!(
            "stopped in stage `{}`; run the same command again to continue:\n  s5 demo --out {} \
             --preset {name}{}",
            stage.key(),
            args.out.display(),
            if training.is_default() {
                String::new()
            } else {
                format!(" {}", training.flags())
            },
        ),
        DemoEnd::Finished { summary, .. } => {
            println!("{summary}");
            if let Err(e) = super::demo_picture::write(&std::path::absolute(&args.out)?) {
                eprintln!("warning: summary.png not written: {e:#}");
            }
            eprintln!(
                "(this session: {})",
                duration(started.elapsed().as_secs_f64())
            );
        }
    }
    Ok(())
}

/// How the demo's events are drawn: a line per stage, a training bar, curation bars.
struct StageUi {
    out: PathBuf,
    quiet: bool,
    train: Option<TrainProgress>,
    bars: Bars,
}

impl StageUi {
    fn show(&mut self, event: DemoEvent<'_>) {
        let of = DemoStage::ALL.len();
        match event {
            DemoEvent::Stage { stage, done } => {
                self.end();
                // Ctrl-C checkpoints and stops a training stage; any other it ends at once.
                STOPPABLE.store(trains(stage) && done.is_none(), Ordering::SeqCst);
                match done {
                    Some(seconds) => eprintln!(
                        "[{}/{of}] {}: done ({})",
                        stage.number(),
                        stage.title(),
                        duration(seconds)
                    ),
                    None => eprintln!("[{}/{of}] {}", stage.number(), stage.title()),
                }
            }
            DemoEvent::Training { stage, gpus } => {
                super::train::announce(
                    gpus,
                    &self.out.join(stage.folder()),
                    s5::distributed::World::alone(),
                );
                self.train = Some(TrainProgress::new(!self.quiet));
            }
            DemoEvent::Train(report) => {
                if let Some(progress) = &mut self.train {
                    progress.show(report);
                }
            }
            DemoEvent::Curation(progress) => {
                if !self.quiet {
                    self.bars.show(progress);
                }
            }
            DemoEvent::Finished { .. } => self.end(),
        }
    }

    fn end(&mut self) {
        if let Some(progress) = self.train.take() {
            progress.finish();
        }
        self.bars.finish();
    }
}
