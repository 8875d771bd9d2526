//! `s5 curate`: the paper's data curation, stage by stage, into a curation run directory.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use s5::curate::kmeans::KMeansConfig;
use s5::curate::prototypes::build_prototypes;
use s5::data::DatasetSpec;
use s5::device::{self, GpuBackend};
use s5::run::checkpoint::{MODEL_FILE, file_sum};
use s5::run::curation::{Embedding, ModelRef, Pooling, Prototypes};
use s5::run::{Manifest, RunDir, RunKind, RunLock};

#[derive(Debug, clap::Subcommand)]
pub enum CurateCommand {
    /// Embed the labeled images with the seed model and cluster them: the prototypes and
    /// `N_m^l` of the quotas (paper Eq. 3).
    Prototypes(PrototypeArgs),
}

#[derive(Debug, clap::Args)]
pub struct PrototypeArgs {
    /// The seed model: a run directory (its newest checkpoint) or a checkpoint folder.
    #[arg(long)]
    model: PathBuf,
    /// Which of the model's datasets (needed when it has several).
    #[arg(long)]
    dataset: Option<String>,
    /// The split of labeled images to embed.
    #[arg(long, default_value = "train")]
    split: String,
    /// The curation run directory (created): prototypes go to curation/prototypes.json.
    #[arg(long)]
    out: PathBuf,
    /// M, the number of prototypes.
    #[arg(long, default_value_t = 16)]
    clusters: usize,
    /// K-Means seedings; the one with the best mean similarity is kept.
    #[arg(long, default_value_t = 4)]
    restarts: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Which backbone feature map to embed: 0 (shallowest feature block) to 3 (deepest).
    #[arg(long, default_value_t = Embedding::default().level)]
    level: usize,
    /// How its positions are pooled.
    #[arg(long, value_enum, default_value_t = PoolingArg::Mean)]
    pooling: PoolingArg,
}

/// `--pooling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PoolingArg {
    Mean,
    Max,
}

pub fn run(backend: Option<GpuBackend>, command: CurateCommand) -> Result<()> {
    match command {
        CurateCommand::Prototypes(args) => prototypes(backend, args),
    }
}

/// Opens (or creates) a curation run: its lock, and a manifest of kind `curate`.
fn open_curation_run(out: &std::path::Path) -> Result<(RunDir, RunLock)> {
    let run = RunDir::new(out);
    let (lock, taken_over) = RunLock::acquire(&run)?;
    if let Some(holder) = taken_over {
        eprintln!(
            "warning: {}: took over the lock of {holder}, which no longer runs",
            run.lock().display()
        );
    }
    if run.manifest().exists() {
        let manifest = Manifest::load(&run)?;
        if manifest.kind != RunKind::Curate {
            bail!(
                "{}: this is a `{}` run, not a curation run: choose another --out",
                out.display(),
                manifest.kind
            );
        }
    } else {
        Manifest::new(RunKind::Curate).save(&run)?;
    }
    Ok((run, lock))
}

fn prototypes(backend: Option<GpuBackend>, args: PrototypeArgs) -> Result<()> {
    let gpu = device::gpu(backend)?;
    let (model, card, checkpoint) = s5::train::load_model(&args.model, &gpu.device)?;
    let dataset = card
        .dataset_index(args.dataset.as_deref())
        .map_err(anyhow::Error::msg)?;
    let spec = DatasetSpec::load(&card.datasets[dataset].spec).with_context(|| {
        format!(
            "the seed model's dataset spec (recorded in {}/model.ron)",
            checkpoint.display()
        )
    })?;
    let images = spec.samples(&args.split)?.len();
    let (run, _lock) = open_curation_run(&args.out)?;
    let model_ref = ModelRef {
        sha256: file_sum(&checkpoint.join(MODEL_FILE))?.sha256,
        checkpoint: std::path::absolute(&checkpoint)
            .with_context(|| format!("{}: cannot make it absolute", checkpoint.display()))?,
    };
    let embedding = Embedding {
        level: args.level,
        pooling: match args.pooling {
            PoolingArg::Mean => Pooling::Mean,
            PoolingArg::Max => Pooling::Max,
        },
    };
    let kmeans = KMeansConfig {
        clusters: args.clusters,
        restarts: args.restarts,
        seed: args.seed,
        ..KMeansConfig::default()
    };
    eprintln!(
        "embedding {images} image(s) of {} `{}` with {} on {}",
        spec.name,
        args.split,
        checkpoint.display(),
        gpu.adapter.name
    );
    let bar = ProgressBar::new(images as u64).with_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} images ({eta})",
    )?);
    let prototypes = build_prototypes(
        &model,
        model_ref,
        dataset,
        &spec,
        &args.split,
        embedding,
        &kmeans,
        &gpu.device,
        &|| bar.inc(1),
    )?;
    bar.finish_and_clear();
    prototypes.save(&run)?;
    println!(
        "{} prototypes of {} labeled images (mean cosine similarity {:.3}) in {}",
        prototypes.centroids.len(),
        images,
        prototypes.mean_similarity,
        Prototypes::path(&run).display()
    );
    println!(
        "labeled images per cluster (N_m^l): {:?}",
        prototypes.labeled_per_cluster
    );
    Ok(())
}
