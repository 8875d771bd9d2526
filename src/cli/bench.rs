//! `s5 bench`: speed measured, not guessed.

use anyhow::{Context, Result};
use s5::bench::memory::MemorySetting;
use s5::bench::memory_report::{MemoryEvent, bench_memory};
use s5::bench::select_report::{SelectOptions, bench_select};
use s5::bench::step::step_model;
use s5::bench::{
    AllOptions, BenchConfig, Children, Job, KernelGroup, KernelShapes, MoeStep, bench_all, mib,
};
use s5::data::throughput::{Peer, augment_against};
use s5::device::{self, GpuBackend};

use super::bench_args::{
    AllArgs, AllreduceArgs, BenchCommand, DataArgs, KernelArgs, MemoryArgs, PrecisionArg,
    SelectArgs, StepArgs,
};

pub fn run(backend: Option<GpuBackend>, cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::All(args) => all(backend, args),
        BenchCommand::Kernels(args) => kernels(backend, args),
        BenchCommand::Data(args) => data(args),
        BenchCommand::Step(args) => step(backend, args),
        BenchCommand::Select(args) => select(args),
        BenchCommand::Memory(args) => memory(backend, args),
        BenchCommand::Score(args) => score(backend, args),
        BenchCommand::Allreduce(args) => allreduce(args),
        BenchCommand::Curate(args) => curate(backend, args),
        BenchCommand::Child { job } => {
            let job: Job = serde_json::from_str(&job).context("`s5 bench child` takes a job")?;
            println!("{}", serde_json::to_string(&job.run(backend)?)?);
            Ok(())
        }
    }
}

/// Prints `report` as JSON or as its tables.
fn print<R: serde::Serialize + std::fmt::Display>(report: &R, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

fn step(backend: Option<GpuBackend>, args: StepArgs) -> Result<()> {
    let gpus = device::training_gpus(backend, args.gpus.choice())?;
    let (model, shapes) = step_model(args.config.as_deref(), args.tiny)?;
    let config = BenchConfig {
        warmup: args.warmup,
        reps: args.reps,
    };
    if !args.json {
        let names: Vec<&str> = gpus.iter().map(|g| g.adapter.name.as_str()).collect();
        eprintln!(
            "benchmarking a training step on {} GPU(s): {}; {} warm-up + {} timed runs each",
            gpus.len(),
            names.join(", "),
            config.warmup,
            config.reps
        );
        if gpus.len() == 1 {
            eprintln!("one GPU: both rows run the same step (pass --gpus N where several exist)");
        }
    }
    let moe = MoeStep {
        datasets: args.moe_datasets,
        expert_dim: args.moe_expert_dim,
    };
    let children = Children::of_current_exe(backend)?;
    let report = s5::bench::step_report(&gpus, &children, &model, shapes, config, Some(moe))?;
    print(&report, args.json)
}

fn data(args: DataArgs) -> Result<()> {
    if !args.json {
        eprintln!(
            "augmenting {} crops of {} px from a {} px source on {} thread(s) and on one{}",
            args.images.max(2),
            args.crop_px,
            args.source_px,
            rayon::current_num_threads(),
            if args.peer.is_some() {
                "; the peer script runs between the single-thread rounds"
            } else {
                ""
            }
        );
    }
    let peer = args.peer.map(|p| p.map_or(Peer::Bundled, Peer::Script));
    let bench = augment_against(args.crop_px, args.source_px, args.images, peer.as_ref())?;
    print(&bench, args.json)
}

fn kernels(backend: Option<GpuBackend>, args: KernelArgs) -> Result<()> {
    let gpu = device::gpu(backend)?;
    let shapes = if args.tiny {
        KernelShapes::tiny()
    } else {
        KernelShapes::default()
    };
    let config = BenchConfig {
        warmup: args.warmup,
        reps: args.reps,
    };
    if !args.json {
        eprintln!(
            "benchmarking on {} ({}, {}): {} warm-up + {} timed runs each",
            gpu.adapter.name,
            gpu.adapter.backend,
            gpu.adapter.device_type,
            config.warmup,
            config.reps
        );
    }
    let groups: Vec<KernelGroup> = args.ops.iter().map(|&op| op.into()).collect();
    print(
        &s5::bench::kernel_report(gpu, shapes, config, &groups)?,
        args.json,
    )
}

fn all(backend: Option<GpuBackend>, args: AllArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let gpu = device::gpu(backend)?;
    let options = AllOptions {
        model: args.model,
        batch: args.batch,
        memory_gib: args.memory_gib,
        crop_px: args.crop_px,
        full: args.full,
    };
    if !args.json {
        eprintln!(
            "benchmarking {} ({}, {}){}",
            gpu.adapter.name,
            gpu.adapter.backend,
            gpu.adapter.device_type,
            if s5::bench::all::scaled_down(gpu, &options) {
                ": a software adapter, so a small model at 128 px (--full for the real sizes)"
            } else {
                ""
            }
        );
    }
    let children = Children::of_current_exe(backend)?;
    let report = bench_all(gpu, &options, &children, &mut |event| {
        if !args.json {
            eprintln!("[{:>5.0} s] {event}", started.elapsed().as_secs_f64());
        }
    })?;
    print(&report, args.json)
}

fn memory(backend: Option<GpuBackend>, args: MemoryArgs) -> Result<()> {
    let gpu = device::gpu(backend)?;
    let adapter = gpu.adapter.name.clone();
    let f16 = s5::model::half::supports_f16(&gpu.device);
    if !f16 {
        if args.precisions.contains(&PrecisionArg::Mixed) {
            return Err(s5::error::Error::NoShaderF16 {
                adapter,
                asked: "--precision mixed".into(),
                instead: "measure --precision f32".into(),
            }
            .into());
        }
        if args.precisions.is_empty() {
            eprintln!("{adapter} has no shader-f16: measuring f32 only");
        }
    }
    // Each flag defaults to all it allows (mixed precision only with shader-f16).
    let settings: Vec<MemorySetting> = MemorySetting::ALL
        .into_iter()
        .filter(|s| {
            (args.precisions.is_empty() && (f16 || !s.mixed))
                || args.precisions.iter().any(|p| p.is_mixed() == s.mixed)
        })
        .filter(|s| {
            args.checkpointing.is_empty()
                || args
                    .checkpointing
                    .iter()
                    .any(|c| c.mode() == s.checkpointing)
        })
        .collect();
    let children = Children::of_current_exe(backend)?;
    let report = bench_memory(
        &children,
        &adapter,
        &args.models,
        args.batch,
        args.crop_px,
        &settings,
        &mut |event| match event {
            MemoryEvent::Measuring { index, of, probe } => eprint!(
                "[{}/{of}] {} batch {} at {} px, {}, checkpointing {} ... ",
                index + 1,
                probe.model,
                probe.batch,
                probe.crop_px,
                probe.setting().precision(),
                probe.setting().checkpointing_name(),
            ),
            MemoryEvent::Measured(run) => eprintln!(
                "{:.0} MiB in {:.1} s",
                mib(run.peak_bytes as f64),
                run.seconds
            ),
        },
    )?;
    print(&report, args.json)
}

fn select(args: SelectArgs) -> Result<()> {
    let options = SelectOptions {
        records: args.records,
        budget: args.budget,
        clusters: args.clusters,
        shards: args.shards,
    };
    let report = bench_select(&Children::of_current_exe(None)?, &options)?;
    print(&report, args.json)
}

fn score(backend: Option<GpuBackend>, args: StepArgs) -> Result<()> {
    print(&score_report(backend, &args)?, args.json)
}

fn score_report(backend: Option<GpuBackend>, args: &StepArgs) -> Result<s5::bench::ScoreReport> {
    let gpu = device::gpu(backend)?;
    let (model, shapes) = step_model(args.config.as_deref(), args.tiny)?;
    let config = BenchConfig {
        warmup: args.warmup,
        reps: args.reps,
    };
    if !args.json {
        eprintln!(
            "benchmarking curation scoring on {}; {} warm-up + {} timed runs each",
            gpu.adapter.name, config.warmup, config.reps
        );
    }
    Ok(s5::bench::score_report(gpu, &model, shapes, config)?)
}

/// `s5 bench curate`: scoring, then selection with its defaults; one JSON document of both
/// with `--json`.
fn curate(backend: Option<GpuBackend>, args: StepArgs) -> Result<()> {
    #[derive(serde::Serialize)]
    struct CurateReport {
        score: s5::bench::ScoreReport,
        select: s5::bench::select_report::SelectReport,
    }
    impl std::fmt::Display for CurateReport {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}{}", self.score, self.select)
        }
    }
    let report = CurateReport {
        score: score_report(backend, &args)?,
        select: bench_select(&Children::of_current_exe(None)?, &SelectOptions::default())?,
    };
    print(&report, args.json)
}

/// `s5 bench allreduce`: every rank sums, rank 0 prints.
fn allreduce(args: AllreduceArgs) -> Result<()> {
    use s5::bench::allreduce::{AllReduceOptions, bench_allreduce};
    let world = s5::distributed::World::join()?;
    let sizes = if args.values.is_empty() {
        AllReduceOptions::paper_models()
    } else {
        args.values.iter().map(|&n| (format!("{n}"), n)).collect()
    };
    let report = bench_allreduce(
        world,
        &AllReduceOptions {
            sizes,
            reps: args.reps.max(1),
        },
    );
    if world.is_writer() {
        print(&report, args.json)?;
    }
    anyhow::ensure!(
        report.rows.iter().all(|r| r.exact),
        "a rank's sum differs from the rank-order sum: the reduction is not deterministic here"
    );
    Ok(())
}
