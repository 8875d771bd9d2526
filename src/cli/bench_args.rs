//! The arguments of `s5 bench`.

use std::path::PathBuf;

use s5::bench::KernelGroup;
use s5::bench::select_report::SelectOptions;

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
    /// several (data parallel), in one run; then a FixMatch step in f32 and in mixed
    /// precision, each with its device memory.
    Step(StepArgs),
    /// Curation: `score` then `select` with their defaults (what the README reports).
    Curate(StepArgs),
    /// Curation's scoring of a batch against the same model's forward alone, in one run.
    Score(StepArgs),
    /// GPU memory of training steps of ViT-T/S/B at 512 px in f32 and mixed precision, without
    /// activation checkpointing, balanced and per block (each in its own process), and what
    /// fits 16/24/48/80 GB up to ViT-H.
    Memory(MemoryArgs),
    /// Curation's selection: peak memory and time at growing pool sizes (made-up records, no
    /// model), each size in its own process.
    Select(SelectArgs),
    /// The sum over MPI ranks that training across processes runs every step, on buffers the
    /// size of ViT-B/L/H gradients, each rank's result checked bit for bit: run it under
    /// `mpirun -n N` (an s5 built with `--features mpi`); alone it is a job of one.
    Allreduce(AllreduceArgs),
    /// Internal: run one measurement (JSON, see `s5::bench::Job`) in this process and print
    /// its answer as JSON; what the benchmarks above start in child processes.
    #[command(hide = true)]
    Child {
        /// The job, as JSON.
        job: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct AllArgs {
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Backbone of the FixMatch step and of prediction.
    #[arg(long, default_value = "vit-b")]
    pub model: String,
    /// Labeled crops per FixMatch step (as many unlabeled ones). Default: 2, or with
    /// --memory-gib the largest that fits.
    #[arg(long, conflicts_with = "memory_gib")]
    pub batch: Option<usize>,
    /// The GPU's memory in GiB: the FixMatch step's batch is then chosen to fit it (from
    /// dry-run memory plans of batches 1 to 16, 10 % kept free). An error where the adapter
    /// reports no allocator statistics.
    #[arg(long)]
    pub memory_gib: Option<f64>,
    /// Crop side of the FixMatch step and the prediction windows.
    #[arg(long, default_value_t = 512)]
    pub crop_px: usize,
    /// Use the sizes above even on a software adapter (lavapipe), where by default a small
    /// model at 128 px keeps the run to minutes.
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    /// Backbones measured at `--batch` (the projection always measures ViT-B at depth 12
    /// and 6, batch 1 and 2).
    #[arg(long = "model", default_values_t = ["vit-t".to_string(), "vit-s".to_string(), "vit-b".to_string()])]
    pub models: Vec<String>,
    /// Images per step of the measured rows.
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Crop side.
    #[arg(long, default_value_t = 512)]
    pub crop_px: usize,
    /// Precisions measured (repeat the flag for several; default both, mixed only where the
    /// adapter has `shader-f16`).
    #[arg(long = "precision", value_enum)]
    pub precisions: Vec<PrecisionArg>,
    /// Checkpointing modes measured (repeat the flag for several; default all three).
    #[arg(long = "checkpointing", value_enum)]
    pub checkpointing: Vec<CheckpointingArg>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    F32,
    Mixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckpointingArg {
    /// Keep what autodiff keeps.
    No,
    /// burn's balanced checkpointing.
    Balanced,
    /// Each ViT block recomputed (balanced elsewhere).
    Blocks,
}

impl PrecisionArg {
    pub fn is_mixed(self) -> bool {
        self == Self::Mixed
    }
}

impl CheckpointingArg {
    /// The training config's mode of the same name.
    pub fn mode(self) -> s5::train::config::Checkpointing {
        use s5::train::config::Checkpointing;
        match self {
            Self::No => Checkpointing::Off,
            Self::Balanced => Checkpointing::Balanced,
            Self::Blocks => Checkpointing::Blocks,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// Pool sizes (records); repeat the flag for several.
    #[arg(long = "records", default_values_t = SelectOptions::default().records)]
    pub records: Vec<u64>,
    /// Patches to select from each pool.
    #[arg(long, default_value_t = SelectOptions::default().budget)]
    pub budget: u64,
    /// Prototypes (clusters).
    #[arg(long, default_value_t = SelectOptions::default().clusters)]
    pub clusters: u32,
    /// Shard files per pool.
    #[arg(long, default_value_t = SelectOptions::default().shards)]
    pub shards: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StepArgs {
    /// Take the model, batch and crop from this training config (RON); default: the model
    /// of assets/configs/train-synth.ron, batch 8 of 128 px.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The GPUs of the data-parallel row.
    #[command(flatten)]
    pub gpus: GpuArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Untimed runs before measuring.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// A tiny model and batch (a smoke test of the benchmark itself, not a measurement).
    #[arg(long)]
    pub tiny: bool,
    /// `bench step` also times an MoE-MDF step over this many datasets against the same
    /// step with a dense backbone (0: not).
    #[arg(long, default_value_t = 4)]
    pub moe_datasets: usize,
    /// P of that MoE-MDF step (default: a quarter of the width, as the paper's 256 of 1024).
    #[arg(long)]
    pub moe_expert_dim: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Crop side.
    #[arg(long, default_value_t = 512)]
    pub crop_px: u32,
    /// Side of the square source image (uniform noise, as the peer script uses).
    #[arg(long, default_value_t = 512)]
    pub source_px: u32,
    /// Images per measurement.
    #[arg(long, default_value_t = 64)]
    pub images: usize,
    /// Also run the authors' augmentation recipe in PIL + numpy between the single-thread
    /// measurements and report s5's rate against it: the script s5 ships
    /// (assets/peers/augment_pil.py; needs `pip install numpy pillow`), or another Python
    /// script that prints `<n> images/s`.
    #[arg(long, value_name = "SCRIPT", num_args = 0..=1)]
    pub peer: Option<Option<PathBuf>>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct KernelArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Untimed runs before measuring.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 7)]
    pub reps: usize,
    /// Only these kernels (repeatable); all by default.
    #[arg(long = "op", value_enum)]
    pub ops: Vec<KernelGroupArg>,
    /// Use tiny shapes (a smoke test of the benchmark itself, not a measurement).
    #[arg(long)]
    pub tiny: bool,
}

/// `--op`: a kernel group to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelGroupArg {
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

#[derive(Debug, clap::Args)]
pub struct AllreduceArgs {
    /// Buffers of these many f32 values (comma-separated) instead of the gradients of ViT-B,
    /// ViT-L and ViT-H with UperNet.
    #[arg(long, value_delimiter = ',')]
    pub values: Vec<usize>,
    /// Timed sums per buffer (after one untimed one).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}
