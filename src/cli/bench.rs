//! `s5 bench`: speed measured, not guessed.

use anyhow::Result;
use s5::bench::{BenchConfig, KernelGroup, KernelShapes, bench_kernels, format_table};
use s5::device::{self, GpuBackend};

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Each custom kernel against its reference, in one run on the current adapter.
    Kernels(KernelArgs),
    /// Augmentation throughput (images/s) on this CPU.
    Data(DataArgs),
}

#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Crop side.
    #[arg(long, default_value_t = 512)]
    crop_px: u32,
    /// Images per measurement (on all threads; a quarter of them on one thread).
    #[arg(long, default_value_t = 64)]
    images: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct KernelArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Untimed runs before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Only these kernels (repeatable); all by default.
    #[arg(long = "op", value_enum)]
    ops: Vec<KernelGroup>,
    /// Use tiny shapes (a smoke test of the benchmark itself, not a measurement).
    #[arg(long)]
    tiny: bool,
}

pub fn run(backend: Option<GpuBackend>, cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Kernels(args) => kernels(backend, args),
        BenchCommand::Data(args) => data(args),
    }
}

fn data(args: DataArgs) -> Result<()> {
    let rows = s5::data::throughput::augment_throughput(args.crop_px, args.images.max(1));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<36} {:>8} {:>7} {:>8} {:>10}",
        "pipeline", "crop px", "images", "threads", "images/s"
    );
    for r in rows {
        println!(
            "{:<36} {:>8} {:>7} {:>8} {:>10.1}",
            r.pipeline, r.crop_px, r.images, r.threads, r.images_per_s
        );
    }
    Ok(())
}

fn kernels(backend: Option<GpuBackend>, args: KernelArgs) -> Result<()> {
    let gpu = device::gpu(backend)?;
    let shapes = if args.tiny {
        KernelShapes {
            logits: [2, 5, 33, 31],
            moe_images: 2,
            moe_tokens: 40,
            moe_hidden: 48,
            moe_out: 24,
            moe_expert: 8,
            moe_datasets: 3,
        }
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
    let rows = bench_kernels(&gpu.device, shapes, config, &args.ops)?;
    if args.json {
        let doc = serde_json::json!({ "adapter": gpu.adapter, "rows": rows });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", format_table(&rows));
    }
    Ok(())
}
