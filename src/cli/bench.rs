//! `s5 bench`: speed measured, not guessed.

use std::path::PathBuf;

use anyhow::{Result, bail};
use s5::bench::{
    BenchConfig, KernelGroup, KernelShapes, StepShapes, bench_kernels, bench_train_step,
    format_table,
};
use s5::device::{self, GpuBackend};
use s5::model::{SegmentorConfig, VitConfig};
use s5::train::TrainConfig;

use super::gpu_args::GpuArgs;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Everything that matters on a new GPU, in one run: kernels against their references,
    /// a FixMatch step of ViT-B at 512 px with its device memory, augmentation throughput,
    /// prediction throughput (f32 and f16). Run this first on a new GPU.
    All(AllArgs),
    /// Each custom kernel against its reference, in one run on the current adapter.
    Kernels(KernelArgs),
    /// Augmentation throughput (images/s) on this CPU.
    Data(DataArgs),
    /// A training step (forward + backward) on one GPU against the same step split over
    /// several (data parallel), in one run.
    Step(StepArgs),
    /// Curation: `score` then `select` with their defaults (what the README reports).
    Curate(StepArgs),
    /// Curation's scoring of a batch against the same model's forward alone, in one run.
    Score(StepArgs),
    /// GPU memory of training steps of ViT-T/S/B at 512 px with and without activation
    /// checkpointing (each in its own process), and what fits 16/24/48/80 GB up to ViT-H.
    Memory(MemoryArgs),
    /// Curation's selection: peak memory and time at growing pool sizes (made-up records, no
    /// model), each size in its own process.
    Select(SelectArgs),
}

#[derive(Debug, clap::Args)]
pub struct AllArgs {
    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
    /// Backbone of the FixMatch step and of prediction.
    #[arg(long, default_value = "vit-b")]
    model: String,
    /// Labeled crops per FixMatch step (as many unlabeled ones). Default: 2, or with
    /// --memory-gib the largest that fits.
    #[arg(long, conflicts_with = "memory_gib")]
    batch: Option<usize>,
    /// The GPU's memory in GiB: the FixMatch step's batch is then chosen to fit it (from
    /// dry-run memory plans of batches 1 to 16, 10 % kept free). An error where the adapter
    /// reports no allocator statistics.
    #[arg(long)]
    memory_gib: Option<f64>,
    /// Internal: print the dry-run memory plan of a FixMatch step of this batch and exit.
    #[arg(long, hide = true)]
    plan_batch: Option<usize>,
    /// Crop side of the FixMatch step and the prediction windows.
    #[arg(long, default_value_t = 512)]
    crop_px: usize,
    /// Use the sizes above even on a software adapter (lavapipe), where by default a small
    /// model at 128 px keeps the run to minutes.
    #[arg(long)]
    full: bool,
}

#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    /// Backbones measured at `--batch` (the projection always measures ViT-B at depth 12
    /// and 6, batch 1 and 2).
    #[arg(long = "model", default_values_t = ["vit-t".to_string(), "vit-s".to_string(), "vit-b".to_string()])]
    models: Vec<String>,
    /// Images per step of the measured rows.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Crop side.
    #[arg(long, default_value_t = 512)]
    crop_px: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Internal: measure this probe (JSON) once and print JSON.
    #[arg(long, hide = true)]
    measure: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// Pool sizes (records); repeat the flag for several.
    #[arg(long = "records", default_values_t = [1_000u64, 100_000, 10_000_000])]
    records: Vec<u64>,
    /// Patches to select from each pool.
    #[arg(long, default_value_t = 10_000)]
    budget: u64,
    /// Prototypes (clusters).
    #[arg(long, default_value_t = 16)]
    clusters: u32,
    /// Shard files per pool.
    #[arg(long, default_value_t = 8)]
    shards: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Internal: select from the record files in this folder once and print JSON.
    #[arg(long, hide = true)]
    measure: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct StepArgs {
    /// Take the model, batch and crop from this training config (RON); default: the model
    /// of assets/configs/train-synth.ron, batch 8 of 128 px.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The GPUs of the data-parallel row.
    #[command(flatten)]
    gpus: GpuArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Untimed runs before measuring.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// A tiny model and batch (a smoke test of the benchmark itself, not a measurement).
    #[arg(long)]
    tiny: bool,
    /// `bench step` also times an MoE-MDF step over this many datasets against the same
    /// step with a dense backbone (0: not).
    #[arg(long, default_value_t = 4)]
    moe_datasets: usize,
    /// P of that MoE-MDF step (default: a quarter of the width, as the paper's 256 of 1024).
    #[arg(long)]
    moe_expert_dim: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Crop side.
    #[arg(long, default_value_t = 512)]
    crop_px: u32,
    /// Side of the square source image (uniform noise, as the peer script uses).
    #[arg(long, default_value_t = 512)]
    source_px: u32,
    /// Images per measurement.
    #[arg(long, default_value_t = 64)]
    images: usize,
    /// Also run the authors' augmentation recipe in PIL + numpy between the single-thread
    /// measurements and report s5's rate against it: the script s5 ships
    /// (assets/peers/augment_pil.py; needs `pip install numpy pillow`), or another Python
    /// script that prints `<n> images/s`.
    #[arg(long, value_name = "SCRIPT", num_args = 0..=1)]
    peer: Option<Option<PathBuf>>,
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
    ops: Vec<KernelGroupArg>,
    /// Use tiny shapes (a smoke test of the benchmark itself, not a measurement).
    #[arg(long)]
    tiny: bool,
}

pub fn run(backend: Option<GpuBackend>, cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::All(args) => all(backend, args),
        BenchCommand::Kernels(args) => kernels(backend, args),
        BenchCommand::Data(args) => data(args),
        BenchCommand::Step(args) => step(backend, args),
        BenchCommand::Select(args) => select(args),
        BenchCommand::Memory(args) => memory(backend, args),
        BenchCommand::Score(args) => score(backend, args),
        BenchCommand::Curate(args) => {
            let json = args.json;
            score(backend, args)?;
            select(SelectArgs {
                records: vec![1_000, 100_000, 10_000_000],
                budget: 10_000,
                clusters: 16,
                shards: 8,
                json,
                measure: None,
            })
        }
    }
}

fn step(backend: Option<GpuBackend>, args: StepArgs) -> Result<()> {
    let gpus = device::training_gpus(backend, args.gpus.choice())?;
    let (model, shapes) = model_and_shapes(&args)?;
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
    let devices: Vec<_> = gpus.iter().map(|g| g.device.clone()).collect();
    let (mut rows, memory) = bench_train_step(&devices, &model, shapes, config)?;
    if args.moe_datasets > 0 {
        if model.backbone.ffn != s5::model::FfnKind::Dense {
            bail!("--moe-datasets compares FFN-MoE with a dense backbone: give a dense model");
        }
        let p = args
            .moe_expert_dim
            .unwrap_or((model.backbone.dim / 4).max(4) / 4 * 4);
        if p == 0 || p >= model.backbone.dim {
            bail!(
                "--moe-expert-dim must be between 1 and the width {} (exclusive)",
                model.backbone.dim
            );
        }
        rows.extend(s5::bench::bench_moe_step(
            &devices[0],
            &model,
            args.moe_datasets,
            p,
            shapes,
            config,
        )?);
    }
    if args.json {
        let adapters: Vec<_> = gpus.iter().map(|g| &g.adapter).collect();
        let doc =
            serde_json::json!({ "adapters": adapters, "rows": rows, "device_memory": memory });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", format_table(&rows));
        match memory {
            Some(m) => println!(
                "device memory after the one-GPU step: {:.0} MiB reserved (its peak), {:.0} MiB in use",
                mib(m.reserved_bytes as f64),
                mib(m.in_use_bytes as f64)
            ),
            None => println!("device memory: this backend reports none"),
        }
    }
    Ok(())
}

/// The authors' augmentation recipe in PIL + numpy, written for s5 (`--peer` without a
/// script runs it).
const PEER_SCRIPT: &str = include_str!("../../assets/peers/augment_pil.py");

fn data(args: DataArgs) -> Result<()> {
    use anyhow::Context;
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
    // The bundled peer goes to a temporary file, so an installed binary has it too.
    let bundled = match &args.peer {
        Some(None) => {
            let file = tempfile::Builder::new()
                .prefix("s5-augment-peer-")
                .suffix(".py")
                .tempfile()
                .context("writing the bundled peer script")?;
            std::fs::write(file.path(), PEER_SCRIPT).context("writing the bundled peer script")?;
            Some(file)
        }
        _ => None,
    };
    let peer = match (&args.peer, &bundled) {
        (Some(Some(script)), _) => Some(script.clone()),
        (_, Some(file)) => Some(file.path().to_path_buf()),
        _ => None,
    };
    let mut bench = s5::data::throughput::augment_throughput(
        args.crop_px,
        args.source_px,
        args.images,
        peer.as_deref(),
    )?;
    // The bundled script is named as s5 ships it, not by its temporary copy.
    if bundled.is_some()
        && let Some(peer) = &mut bench.peer
    {
        peer.script = "assets/peers/augment_pil.py, bundled".into();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&bench)?);
        return Ok(());
    }
    print!("{}", format_data(&bench));
    Ok(())
}

/// The tables of `s5 bench data`.
fn format_data(bench: &s5::data::throughput::DataBench) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:>8} {:>7} {:>8} {:>10}",
        "pipeline", "crop px", "images", "threads", "images/s"
    );
    for r in &bench.rows {
        let _ = writeln!(
            out,
            "{:<40} {:>8} {:>7} {:>8} {:>10.1}",
            r.pipeline, r.crop_px, r.images, r.threads, r.images_per_s
        );
    }
    let _ = writeln!(
        out,
        "\n{:<40} {:>12} {:>7}",
        "stage (one thread)", "ms/image", "share"
    );
    for s in &bench.stages {
        let _ = writeln!(
            out,
            "{:<40} {:>12.2} {:>6.1}%",
            s.stage,
            s.ms_per_image,
            s.share * 100.0
        );
    }
    let _ = writeln!(
        out,
        "\none thread: s5 is {:.2}x the reference implementation",
        bench.reference_ratio
    );
    if let Some(peer) = &bench.peer {
        let _ = writeln!(
            out,
            "one thread: s5 is {:.2}x the peer ({}: {:.1} images/s, one process)",
            peer.s5_ratio, peer.script, peer.images_per_s
        );
    }
    out
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
    let groups: Vec<KernelGroup> = args.ops.iter().map(|&op| op.into()).collect();
    let rows = bench_kernels(&gpu.device, shapes, config, &groups)?;
    if args.json {
        let doc = serde_json::json!({ "adapter": gpu.adapter, "rows": rows });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", format_table(&rows));
    }
    Ok(())
}

/// `--op`: a kernel group to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum KernelGroupArg {
    PixelStats,
    MoeFfn,
}

impl From<KernelGroupArg> for KernelGroup {
    fn from(arg: KernelGroupArg) -> Self {
        match arg {
            KernelGroupArg::PixelStats => KernelGroup::PixelStats,
            KernelGroupArg::MoeFfn => KernelGroup::MoeFfn,
        }
    }
}

fn all(backend: Option<GpuBackend>, args: AllArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let gpu = device::gpu(backend)?;
    let software = gpu.adapter.device_type == format!("{:?}", wgpu::DeviceType::Cpu);
    let scaled_down = software && !args.full;
    let say = |what: &str| {
        if !args.json {
            eprintln!("[{:>5.0} s] {what}", started.elapsed().as_secs_f64());
        }
    };
    if !args.json {
        eprintln!(
            "benchmarking {} ({}, {}){}",
            gpu.adapter.name,
            gpu.adapter.backend,
            gpu.adapter.device_type,
            if scaled_down {
                ": a software adapter, so a small model at 128 px (--full for the real sizes)"
            } else {
                ""
            }
        );
    }
    let full_model = || s5::bench::memory::segmentor(&args.model, args.crop_px);
    if let Some(batch) = args.plan_batch {
        let shapes = StepShapes {
            batch,
            crop_px: args.crop_px,
        };
        let bytes = s5::bench::fixmatch::plan_fixmatch_memory(&gpu.device, &full_model()?, shapes)?;
        println!(
            "{}",
            serde_json::json!({ "batch": batch, "reserved_bytes": bytes })
        );
        return Ok(());
    }
    if scaled_down && args.memory_gib.is_some() && !args.json {
        eprintln!("--memory-gib chooses the batch of the full sizes: add --full to use it here");
    }
    let mut batch_choice = serde_json::Value::Null;
    let (model, shapes, predict_px, window_px) = if scaled_down {
        let (model, shapes) = bench_model(false);
        let shapes = StepShapes {
            batch: args.batch.unwrap_or(2),
            ..shapes
        };
        (model, shapes, 256u32, shapes.crop_px as u32)
    } else {
        let batch = match (args.batch, args.memory_gib) {
            (Some(batch), _) => batch,
            (None, None) => 2,
            (None, Some(gib)) => {
                let planned = plan_batches(backend, &args, &say)?;
                let bytes = (gib * f64::from(1u32 << 30)) as u64;
                let chosen = s5::bench::fixmatch::choose_batch(&planned, bytes)?;
                batch_choice = serde_json::json!({
                    "memory_gib": gib,
                    "planned": planned,
                    "chosen": chosen,
                });
                chosen
            }
        };
        let shapes = StepShapes {
            batch,
            crop_px: args.crop_px,
        };
        (full_model()?, shapes, 2048, args.crop_px as u32)
    };
    say("a FixMatch step (first, so that its device memory is its own)");
    let step = s5::bench::fixmatch::bench_fixmatch_step(
        &gpu.device,
        &model,
        shapes,
        BenchConfig { warmup: 1, reps: 3 },
    )?;
    say("kernels against their references");
    let config = BenchConfig { warmup: 2, reps: 5 };
    let kernel_shapes = if scaled_down {
        KernelShapes {
            logits: [2, 6, 128, 128],
            moe_images: 2,
            moe_tokens: 256,
            moe_hidden: 384,
            moe_out: 96,
            moe_expert: 24,
            moe_datasets: 4,
        }
    } else {
        KernelShapes::default()
    };
    let kernel_rows = bench_kernels(&gpu.device, kernel_shapes, config, &[])?;
    say("prediction");
    let predict = s5::bench::predict::bench_predict(&gpu.device, &model, predict_px, window_px)?;
    say("augmentation on the CPU");
    let data = s5::data::throughput::augment_throughput(512, 512, 32, None)?;
    let doc = serde_json::json!({
        "adapter": gpu.adapter,
        "scaled_down": scaled_down,
        "batch_choice": batch_choice,
        "kernels": kernel_rows,
        "fixmatch_step": step,
        "predict": predict,
        "data": data,
        "seconds": started.elapsed().as_secs_f64(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    print!("{}", format_table(&kernel_rows));
    println!(
        "\nFixMatch step, ViT {}x{} at {} px, {} labeled + {} unlabeled: {:.0} ms ({:.2} images/s){}",
        step.dim,
        step.depth,
        step.crop_px,
        step.batch,
        step.batch,
        step.median_ms,
        step.images_per_s,
        step.device_memory.map_or(String::new(), |m| format!(
            ", {:.0} MiB of device memory",
            mib(m.reserved_bytes as f64)
        ))
    );
    for p in &predict {
        println!(
            "predict ({}), {} px scene in {} px windows: {:.3} Mpx/s",
            p.precision, p.image_px, p.window_px, p.mpx_per_s
        );
    }
    println!();
    print!("{}", format_data(&data));
    println!("\nall in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs this `s5` binary as a child (on `backend`) with `args` and parses the JSON it prints;
/// `what` names the measurement in errors. Measurements that must not share a process (peak
/// memory, dry runs) go through here.
fn measure_in_child<T: serde::de::DeserializeOwned>(
    backend: Option<GpuBackend>,
    args: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>,
    what: &str,
) -> Result<T> {
    use anyhow::Context;
    let me = std::env::current_exe().context("locating the s5 binary")?;
    let mut cmd = std::process::Command::new(me);
    if let Some(b) = backend {
        cmd.args(["--backend", b.name()]);
    }
    let out = cmd
        .args(args)
        .output()
        .with_context(|| format!("running {what}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout).with_context(|| format!("reading {what}"))
}

/// Dry-run memory plans of FixMatch steps of growing batch, each in its own process (a dry
/// run holds for the whole process), until one exceeds `--memory-gib`.
fn plan_batches(
    backend: Option<GpuBackend>,
    args: &AllArgs,
    say: &dyn Fn(&str),
) -> Result<Vec<(usize, Option<u64>)>> {
    let limit = args.memory_gib.unwrap_or(f64::INFINITY) * f64::from(1u32 << 30);
    let mut planned = Vec::new();
    for batch in [1usize, 2, 3, 4, 6, 8, 12, 16] {
        say(&format!(
            "planning the memory of a FixMatch step of batch {batch}"
        ));
        let (crop, batch_arg) = (args.crop_px.to_string(), batch.to_string());
        let plan: serde_json::Value = measure_in_child(
            backend,
            [
                "bench",
                "all",
                "--full",
                "--model",
                &args.model,
                "--crop-px",
                &crop,
                "--plan-batch",
                &batch_arg,
            ],
            &format!("the memory plan of batch {batch}"),
        )?;
        let bytes = plan["reserved_bytes"].as_u64();
        planned.push((batch, bytes));
        // Without statistics there is nothing to plan by: choose_batch says so.
        if bytes.is_none_or(|b| b as f64 > 0.9 * limit) {
            break;
        }
    }
    Ok(planned)
}

/// GPU sizes of the memory table, in GiB.
const GPU_GIB: [u64; 4] = [16, 24, 48, 80];

fn memory(backend: Option<GpuBackend>, args: MemoryArgs) -> Result<()> {
    use anyhow::Context;
    use s5::bench::memory::{MemoryFit, MemoryProbe, StepMemory, measure_step, probes, segmentor};
    if let Some(probe) = &args.measure {
        let probe: MemoryProbe = serde_json::from_str(probe).context("--measure takes a probe")?;
        let gpu = device::gpu(backend)?;
        let run = measure_step(&gpu.device, &probe)?;
        println!("{}", serde_json::to_string(&run)?);
        return Ok(());
    }
    let gpu_name = device::gpu(backend)?.adapter.name.clone();
    let todo = probes(&args.models, args.batch, args.crop_px);
    let mut runs: Vec<StepMemory> = Vec::new();
    for (i, probe) in todo.iter().enumerate() {
        eprint!(
            "[{}/{}] {} batch {} at {} px{} ... ",
            i + 1,
            todo.len(),
            probe.model,
            probe.batch,
            probe.crop_px,
            if probe.checkpointing {
                ", checkpointed"
            } else {
                ""
            }
        );
        let probe_json = serde_json::to_string(probe)?;
        let run: StepMemory = measure_in_child(
            backend,
            ["bench", "memory", "--measure", &probe_json],
            &format!("the measurement of {} batch {}", probe.model, probe.batch),
        )?;
        eprintln!(
            "{:.0} MiB in {:.1} s",
            mib(run.peak_bytes as f64),
            run.seconds
        );
        runs.push(run);
    }
    let fits: Vec<MemoryFit> = [false, true]
        .into_iter()
        .filter_map(|c| MemoryFit::from_runs(&runs, c))
        .collect();
    let presets = ["vit-t", "vit-s", "vit-b", "vit-l", "vit-h"];
    let rows: Vec<serde_json::Value> = fits
        .iter()
        .flat_map(|fit| {
            presets.iter().map(move |name| {
                let cfg = segmentor(name, args.crop_px).expect("presets exist");
                serde_json::json!({
                    "model": name,
                    "checkpointing": fit.checkpointing,
                    "fixed_bytes": fit.fixed_bytes(&cfg),
                    "per_image_bytes": fit.per_image_bytes(&cfg.backbone),
                    "max_batch": GPU_GIB.map(|g| (g, fit.max_batch(&cfg, (g << 30) as f64))),
                })
            })
        })
        .collect();
    if args.json {
        let doc = serde_json::json!({
            "adapter": gpu_name,
            "crop_px": args.crop_px,
            "measured": runs,
            "fits": fits,
            "projection": rows,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "{gpu_name}: training steps (forward, backward, AdamW) at {} px, the allocator's plan \
         from a dry run (every allocation made, no kernel run); peak = after the second step",
        args.crop_px
    );
    println!(
        "{:<10} {:>6} {:>7} {:>9} {:>14} {:>10} {:>13}",
        "model", "ckpt", "batch", "params M", "1st step MiB", "peak MiB", "projected MiB"
    );
    for r in &runs {
        let cfg = r.probe.segmentor()?;
        let projected = fits
            .iter()
            .find(|f| f.checkpointing == r.probe.checkpointing)
            .map_or(f64::NAN, |f| mib(f.peak_bytes(&cfg, r.probe.batch)));
        println!(
            "{:<10} {:>6} {:>7} {:>9.1} {:>14.0} {:>10.0} {:>13.0}",
            r.probe.model,
            if r.probe.checkpointing { "yes" } else { "no" },
            r.probe.batch,
            r.params as f64 / 1e6,
            mib(r.first_step_bytes as f64),
            mib(r.peak_bytes as f64),
            projected
        );
    }
    println!(
        "\nlargest batch (images with gradients per GPU) that fits at {} px, from the memory \
         model fitted to ViT-B at depth 12 and 6 (exact for ViT-B; the column \"projected\" \
         above shows its error on the others; ViT-L/H projected)",
        args.crop_px
    );
    print!(
        "{:<10} {:>6} {:>10} {:>13}",
        "model", "ckpt", "fixed GiB", "GiB / image"
    );
    for g in GPU_GIB {
        print!(" {:>7}", format!("{g} GB"));
    }
    println!();
    for row in &rows {
        print!(
            "{:<10} {:>6} {:>10.2} {:>13.3}",
            row["model"].as_str().unwrap_or_default(),
            if row["checkpointing"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            row["fixed_bytes"].as_f64().unwrap_or(0.0) / f64::from(1u32 << 30),
            row["per_image_bytes"].as_f64().unwrap_or(0.0) / f64::from(1u32 << 30),
        );
        for fit in row["max_batch"].as_array().into_iter().flatten() {
            print!(" {:>7}", fit[1].as_u64().unwrap_or(0));
        }
        println!();
    }
    println!(
        "(the paper's S4P step keeps activations of 24 images per GPU: 12 labeled + 12 strong \
         views; GB here are GiB)"
    );
    Ok(())
}

fn mib(bytes: f64) -> f64 {
    bytes / f64::from(1u32 << 20)
}

/// One pool size's selection: its records, time and the peak memory of its own process.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SelectRun {
    records: u64,
    budget: u64,
    selected: u64,
    seconds: f64,
    peak_rss_bytes: u64,
}

fn select(args: SelectArgs) -> Result<()> {
    use anyhow::Context;
    let labeled: Vec<u64> = (1..=u64::from(args.clusters)).collect();
    if let Some(dir) = &args.measure {
        let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot list the record files", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "bin"))
            .collect();
        shards.sort();
        let started = std::time::Instant::now();
        let selection = s5::curate::select::select(
            &shards,
            &labeled,
            args.budget,
            &s5::curate::select::Filters::default(),
        )?;
        let run = SelectRun {
            records: selection.candidates.iter().sum::<u64>() + selection.filtered_out,
            budget: args.budget,
            selected: selection.selected.len() as u64,
            seconds: started.elapsed().as_secs_f64(),
            peak_rss_bytes: s5::memory::peak_rss_bytes().unwrap_or(0),
        };
        println!("{}", serde_json::to_string(&run)?);
        return Ok(());
    }
    let mut runs = Vec::new();
    for &records in &args.records {
        let dir = tempfile::tempdir().context("a temporary folder for the records")?;
        s5::bench::write_synthetic_records(dir.path(), records, args.shards, args.clusters, 7)?;
        let (budget, clusters) = (args.budget.to_string(), args.clusters.to_string());
        let run: SelectRun = measure_in_child(
            None,
            [
                "bench".as_ref(),
                "select".as_ref(),
                "--measure".as_ref(),
                dir.path().as_os_str(),
                "--budget".as_ref(),
                budget.as_ref(),
                "--clusters".as_ref(),
                clusters.as_ref(),
            ],
            &format!("the selection of {records} records"),
        )?;
        runs.push(run);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(());
    }
    let base = runs.first().map_or(1, |r| r.peak_rss_bytes.max(1)) as f64;
    println!(
        "{:>12} {:>8} {:>9} {:>9} {:>14} {:>10}",
        "records", "budget", "selected", "seconds", "peak RSS MiB", "RSS ratio"
    );
    for r in &runs {
        println!(
            "{:>12} {:>8} {:>9} {:>9.2} {:>14.1} {:>9.2}x",
            r.records,
            r.budget,
            r.selected,
            r.seconds,
            r.peak_rss_bytes as f64 / f64::from(1u32 << 20),
            r.peak_rss_bytes as f64 / base
        );
    }
    Ok(())
}

/// The model and batch of `s5 bench step` / `score`: a training config's, or the model of
/// assets/configs/train-synth.ron with batch 8 of 128 px (`--tiny`: a smoke-test size).
fn model_and_shapes(args: &StepArgs) -> Result<(SegmentorConfig, StepShapes)> {
    Ok(match &args.config {
        Some(path) => {
            let config = TrainConfig::load(path)?;
            let classes = config
                .datasets
                .iter()
                .map(|d| d.load_spec().map(|s| s.num_classes()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let classes = if classes.is_empty() { vec![6] } else { classes };
            let shapes = StepShapes {
                batch: config.batch,
                crop_px: config.augment.crop_px as usize,
            };
            (config.model.segmentor(classes)?, shapes)
        }
        None => bench_model(args.tiny),
    })
}

/// The model of assets/configs/train-synth.ron with batch 8 of 128 px (`tiny`: a smoke-test
/// size).
fn bench_model(tiny: bool) -> (SegmentorConfig, StepShapes) {
    let mut backbone = VitConfig::vit_tiny();
    let (dim, depth, heads, batch, crop_px, decoder) = if tiny {
        (32, 1, 2, 2, 32, 8)
    } else {
        (96, 4, 3, 8, 128, 32)
    };
    backbone.dim = dim;
    backbone.depth = depth;
    backbone.heads = heads;
    backbone.pos_grid_px = crop_px;
    backbone.feature_blocks = [0, 1, 2, 3].map(|i: usize| i.min(depth - 1));
    let mut model = SegmentorConfig::new(backbone, vec![6]);
    model.decoder_channels = decoder;
    (model, StepShapes { batch, crop_px })
}

fn score(backend: Option<GpuBackend>, args: StepArgs) -> Result<()> {
    let gpu = device::gpu(backend)?;
    let (model, shapes) = model_and_shapes(&args)?;
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
    let rows = s5::bench::bench_score(&gpu.device, &model, shapes, 16, config)?;
    if args.json {
        let doc = serde_json::json!({ "adapters": [&gpu.adapter], "rows": rows });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", format_table(&rows));
    }
    Ok(())
}
