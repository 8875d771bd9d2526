//! The `s5` command line: one file per subcommand, errors printed once by [`main`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use s5::device::GpuBackend;

mod bench;
mod bench_args;
mod curate;
mod curate_args;
mod curate_progress;
mod data;
mod demo;
mod demo_picture;
mod eval;
mod finetune;
mod gpu_args;
mod infer_args;
mod info;
mod model;
mod predict;
mod synth;
mod train;
mod train_progress;

#[derive(Debug, Parser)]
#[command(
    name = "s5",
    version,
    about = "S5 semi-supervised segmentation for remote sensing, on any GPU"
)]
struct Cli {
    /// Graphics API to run on (default: wgpu's choice; also S5_BACKEND).
    #[arg(long, global = true, value_parser = backend_parser())]
    backend: Option<GpuBackend>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole S5 method on synthetic data in one command: data, seed model, curation,
    /// S4P, MoE-MDF and a supervised-only baseline, each a run in one folder, then a summary.
    Demo(demo::DemoArgs),
    /// List the GPU adapters wgpu sees and the one s5 will use.
    Info(info::InfoArgs),
    /// Measure speed and memory (`s5 bench all` first on a new GPU).
    #[command(subcommand)]
    Bench(bench_args::BenchCommand),
    /// Write the synthetic aerial dataset (three domains and an unlabeled pool) with its specs.
    Synth(synth::SynthArgs),
    /// Inspect datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train a segmentation model on labeled datasets (resumable run directory).
    Train(train::TrainArgs),
    /// S4P: FixMatch pre-training on labeled + unlabeled images (a config with
    /// `recipe: FixMatch((...))`).
    Pretrain(train::PretrainArgs),
    /// Score a model on a dataset split, or prediction masks against ground truth
    /// (per-class table and metrics.json).
    Eval(eval::EvalArgs),
    /// Predict images of any size with a trained model (index, colour, confidence PNGs).
    Predict(predict::PredictArgs),
    /// Inspect models.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Curate unlabeled data the paper's way: plan, prototypes, score (sharded), select.
    #[command(subcommand)]
    Curate(curate::CurateCommand),
    /// Fine-tune the paper's way (config `recipe: Finetune((mode: Sdf(..) | Mdf | MoeMdf(P)))`),
    /// or `export` one dataset of an FFN-MoE model as a dense model.
    Finetune(finetune::FinetuneArgs),
}

/// Exit code for "no usable GPU adapter".
const EXIT_NO_ADAPTER: u8 = 2;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(cli.backend, args),
        Command::Info(args) => info::run(cli.backend, args),
        Command::Bench(cmd) => bench::run(cli.backend, cmd),
        Command::Synth(args) => synth::run(args),
        Command::Data(cmd) => data::run(cmd),
        Command::Model(cmd) => model::run(cli.backend, cmd),
        Command::Curate(cmd) => curate::run(cli.backend, cmd),
        Command::Finetune(args) => finetune::run(cli.backend, args),
        Command::Train(args) => train::run(cli.backend, args),
        Command::Pretrain(args) => train::run_pretrain(cli.backend, args),
        Command::Eval(args) => eval::run(cli.backend, args),
        Command::Predict(args) => predict::run(cli.backend, args),
    };
    let shared_error = result.as_ref().err().is_some_and(|err| {
        err.chain()
            .any(|e| matches!(e.downcast_ref::<s5::Error>(), Some(s5::Error::Ranks { .. })))
    });
    let code = match result {
        Ok(()) => 0,
        Err(err) => {
            match s5::distributed::World::joined().filter(|w| w.size() > 1) {
                // What every rank found alike (ranks that differ) rank 0 says alone.
                Some(world) if world.rank() > 0 => {
                    if !shared_error {
                        eprintln!(
                            "error (rank {} of {}): {}",
                            world.rank(),
                            world.size(),
                            message(&err)
                        );
                    }
                }
                _ => eprintln!("error: {}", message(&err)),
            }
            let no_adapter = err.chain().any(|e| {
                matches!(
                    e.downcast_ref::<s5::Error>(),
                    Some(s5::Error::NoAdapter { .. })
                )
            });
            if no_adapter { EXIT_NO_ADAPTER } else { 1 }
        }
    };
    // In an MPI job a rank that fails ends the job: the others would wait for it forever.
    // What every rank found alike rank 0 reports and ends; the others give it time to.
    if let Some(world) = s5::distributed::World::joined() {
        if code != 0 && world.size() > 1 {
            if world.rank() > 0 && shared_error {
                std::thread::sleep(std::time::Duration::from_secs(10));
            }
            world.abort(i32::from(code));
        }
        s5::distributed::World::finish();
    }
    ExitCode::from(code)
}

/// The error and its causes, each said once: a cause whose text the message before it
/// already holds (the library's errors name their source) is not repeated.
fn message(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// `--backend`: the names `s5 --help` lists, parsed by the library.
fn backend_parser() -> impl clap::builder::TypedValueParser<Value = GpuBackend> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["vulkan", "metal", "dx12", "gl"])
        .map(|name: String| GpuBackend::parse(&name).expect("one of the listed names"))
}
