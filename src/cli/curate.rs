//! `s5 curate`: the paper's data curation, stage by stage, into a curation run directory.
//! The stages are `s5::curate`'s; this parses their options, draws their progress and
//! prints their outcomes.

use std::path::PathBuf;

use anyhow::Result;
use s5::curate::all::{RunOptions, run_all};
use s5::curate::floor::DEFAULT_QUANTILE;
use s5::curate::kmeans::KMeansConfig;
use s5::curate::plan::shard_from;
use s5::curate::run::{
    CurationRun, PlanOptions, PrototypeOptions, SelectOptions, SelectOutcome, SimilarityRule,
    Stale,
};
use s5::curate::shards::{ScoreOptions, score_shard, status};
use s5::device::{self, GpuBackend};
use s5::run::curation::{CurationReport, Embedding, Pooling, Prototypes, SimilarityFloor};

use super::curate_progress::Bars;

#[derive(Debug, clap::Subcommand)]
pub enum CurateCommand {
    /// Every stage on this machine: plan, prototypes, floor, score, select. A stage whose
    /// result is there and was made with the same settings is reused, so a stopped run goes
    /// on; a stage whose settings changed is made again.
    Run(RunArgs),
    /// Fix the pool: every image of an unlabeled split and its patch grid, numbered once.
    Plan(PlanArgs),
    /// Embed the labeled images with the seed model and cluster them: the prototypes and
    /// `N_m^l` of the quotas (paper Eq. 3); then, if the plan is there, the similarity floor.
    Prototypes(PrototypeArgs),
    /// Calibrate each cluster's similarity floor: the labeled images cut into the plan's
    /// patches and scored as the pool is.
    Floor(FloorArgs),
    /// Score one shard of the plan's patches (entropy, confidence, foreground, nearest
    /// prototype); a finished shard is not scored again.
    Score(ScoreArgs),
    /// Progress of the scoring over all shards.
    Status(OutArg),
    /// Select the budget: each cluster's quota filled with its lowest-entropy patches that
    /// reach its similarity floor.
    Select(SelectArgs),
    /// Measure the scores and the selection against a pool's known truth (`s5 synth`'s
    /// pool/truth.ron): per kind, patches pooled and selected, mean entropy, AUROC.
    Evaluate(EvaluateArgs),
}

#[derive(Debug, clap::Args)]
pub struct OutArg {
    /// The curation run directory.
    #[arg(long)]
    pub(super) out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PoolArgs {
    /// The spec of the unlabeled images.
    #[arg(long)]
    pub(super) spec: PathBuf,
    /// Its split to curate.
    #[arg(long, default_value = "unlabeled")]
    pub(super) split: String,
    /// Patch side.
    #[arg(long, default_value_t = 256)]
    pub(super) patch_px: u32,
    /// Patch stride (default: the patch side, no overlap).
    #[arg(long)]
    pub(super) stride_px: Option<u32>,
    /// The pool's truth, where it is known (`s5 synth`'s pool/truth.ron): the report then
    /// shows each patch's kind and the out-of-distribution share.
    #[arg(long)]
    pub(super) truth: Option<PathBuf>,
    /// Over results of a plan that numbered the patches otherwise (scored shards, floor,
    /// selection), move them to curation/stale-<n>/ instead of refusing the new plan.
    #[arg(long)]
    pub(super) move_stale: bool,
}

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// Which of the seed model's datasets (needed when it has several).
    #[arg(long)]
    pub(super) dataset: Option<String>,
    /// M, the number of prototypes.
    #[arg(long, default_value_t = 16)]
    pub(super) clusters: usize,
    /// K-Means seedings; the one with the best mean similarity is kept.
    #[arg(long, default_value_t = KMeansConfig::default().restarts)]
    pub(super) restarts: usize,
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Which backbone feature map to embed: 0 (shallowest feature block) to 3 (deepest).
    #[arg(long, default_value_t = Embedding::default().level)]
    pub(super) level: usize,
    /// How its positions are pooled.
    #[arg(long, value_enum, default_value_t = PoolingArg::Mean)]
    pub(super) pooling: PoolingArg,
    #[command(flatten)]
    pub(super) floor: QuantileArg,
}

#[derive(Debug, clap::Args)]
pub struct QuantileArg {
    /// Each cluster's similarity floor is this quantile of its labeled patches' similarities
    /// to its prototype (0.05: 95 % of them would pass).
    #[arg(long, default_value_t = DEFAULT_QUANTILE)]
    pub(super) floor_quantile: f64,
}

#[derive(Debug, clap::Args)]
pub struct ChoiceArgs {
    /// B_u: patches to select.
    #[arg(long)]
    pub(super) budget: u64,
    /// Keep only patches whose predicted foreground share is at least this (0–1): keeps out
    /// patches the model calls all background (sea, cloud), whose entropy is near zero.
    #[arg(long)]
    pub(super) foreground_min: Option<f32>,
    /// Keep only patches with at most this mean entropy.
    #[arg(long)]
    pub(super) entropy_max: Option<f32>,
    /// One similarity bound for every cluster instead of the calibrated floors.
    #[arg(long, conflicts_with = "no_floor")]
    pub(super) similarity_min: Option<f32>,
    /// No similarity bound: the quotas alone (paper Eq. 3), as the authors describe it.
    #[arg(long)]
    pub(super) no_floor: bool,
    /// Rank the whole pool by entropy alone (Eq. 2 without Eq. 3's quotas): the baseline
    /// that shows what the quotas add.
    #[arg(long)]
    pub(super) ignore_clusters: bool,
}

impl ChoiceArgs {
    pub(super) fn options(&self) -> SelectOptions {
        SelectOptions {
            budget: self.budget,
            foreground_min: self.foreground_min,
            entropy_max: self.entropy_max,
            similarity: match (self.similarity_min, self.no_floor) {
                (Some(min), _) => SimilarityRule::AtLeast(min),
                (None, true) => SimilarityRule::Off,
                (None, false) => SimilarityRule::Floor,
            },
            ignore_clusters: self.ignore_clusters,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The seed model: a run directory (its newest checkpoint) or a checkpoint folder.
    #[arg(long)]
    pub(super) model: PathBuf,
    #[command(flatten)]
    pub(super) pool: PoolArgs,
    /// The split of the seed model's dataset whose images make the prototypes.
    #[arg(long, default_value = "train")]
    pub(super) labeled_split: String,
    #[command(flatten)]
    pub(super) embed: EmbedArgs,
    /// Patches per forward pass.
    #[arg(long, default_value_t = 8)]
    pub(super) batch: usize,
    /// Score with the model in f16 (adapters with `shader-f16`).
    #[arg(long)]
    pub(super) f16: bool,
    #[command(flatten)]
    pub(super) choice: ChoiceArgs,
    /// The curation run directory (created, or continued).
    #[arg(long)]
    pub(super) out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pool: PoolArgs,
    /// The curation run directory (created).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PrototypeArgs {
    /// The seed model: a run directory (its newest checkpoint) or a checkpoint folder.
    #[arg(long)]
    model: PathBuf,
    /// The split of labeled images to embed.
    #[arg(long, default_value = "train")]
    split: String,
    #[command(flatten)]
    embed: EmbedArgs,
    /// Patches per forward pass (for the floor).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// The curation run directory (created): prototypes go to curation/prototypes.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct FloorArgs {
    /// The seed model the prototypes were made with.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    floor: QuantileArg,
    /// Patches per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// The curation run directory (with its plan and prototypes).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// The seed model (the one the prototypes were made with).
    #[arg(long)]
    model: PathBuf,
    /// The curation run directory (with its plan and prototypes).
    #[arg(long)]
    out: PathBuf,
    /// Which shard: INDEX/COUNT, 0-based. Without it: a Slurm array task, a Kubernetes
    /// Indexed Job (with --shards), or the whole plan.
    #[arg(long)]
    shard: Option<String>,
    /// Shards in all, for a Kubernetes Indexed Job (its completions).
    #[arg(long)]
    shards: Option<u32>,
    /// Patches per forward pass (shards of one plan must use the same, so that every patch
    /// is scored in the same batch whatever the sharding; `select` refuses a mix).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Score with the model in f16 (adapters with `shader-f16`); give every shard of a plan
    /// the same choice.
    #[arg(long)]
    f16: bool,
    /// Die by SIGKILL (no cleanup) once this many patches are scored: for testing restarts.
    #[arg(long, hide = true)]
    abort_after_patches: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// The curation run directory (plan, prototypes, floor, scored shards).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    choice: ChoiceArgs,
}

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// The curation run directory (scored, and selected if a selection is to be measured).
    #[arg(long)]
    out: PathBuf,
    /// The pool's truth: a RON list of `(image: "<path relative to this file's folder>",
    /// kind: <Kind>)`, as `s5 synth` writes it.
    #[arg(long)]
    truth: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `--pooling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolingArg {
    Mean,
    Max,
}

impl PoolArgs {
    pub(super) fn options(&self) -> PlanOptions {
        PlanOptions {
            spec: self.spec.clone(),
            split: self.split.clone(),
            patch_px: self.patch_px,
            stride_px: self.stride_px.unwrap_or(self.patch_px),
            truth: self.truth.clone(),
            stale: if self.move_stale {
                Stale::MoveAside
            } else {
                Stale::Refuse
            },
        }
    }
}

impl EmbedArgs {
    pub(super) fn options(&self, model: &std::path::Path, split: &str, batch: usize) -> PrototypeOptions {
        PrototypeOptions {
            model: model.to_path_buf(),
            dataset: self.dataset.clone(),
            split: split.to_string(),
            kmeans: KMeansConfig {
                clusters: self.clusters,
                restarts: self.restarts,
                seed: self.seed,
                ..KMeansConfig::default()
            },
            embedding: Embedding {
                level: self.level,
                pooling: match self.pooling {
                    PoolingArg::Mean => Pooling::Mean,
                    PoolingArg::Max => Pooling::Max,
                },
            },
            floor_quantile: self.floor.floor_quantile,
            batch,
        }
    }
}

impl RunArgs {
    pub(super) fn options(&self) -> RunOptions {
        RunOptions {
            out: self.out.clone(),
            plan: self.pool.options(),
            prototypes: self.embed.options(&self.model, &self.labeled_split, self.batch),
            batch: self.batch,
            f16: self.f16,
            select: self.choice.options(),
        }
    }
}

pub fn run(backend: Option<GpuBackend>, command: CurateCommand) -> Result<()> {
    match command {
        CurateCommand::Run(args) => {
            let options = args.options();
            options.plan.check()?;
            options.prototypes.check()?;
            options.select.check()?;
            let bars = Bars::new(None);
            let outcome = run_all(&options, device::gpu(backend)?, &|p| bars.show(p))?;
            bars.finish();
            print_selection(&outcome.select, args.choice.ignore_clusters);
        }
        CurateCommand::Plan(args) => {
            let options = args.pool.options();
            options.check()?;
            let run = open(&args.out)?;
            let outcome = run.plan(&options)?;
            let plan = &outcome.plan;
            if let Some(folder) = &outcome.moved_aside {
                eprintln!("moved the old plan's results to {}", folder.display());
            }
            println!(
                "{} patches of {} px (stride {}) from {} images in {}",
                plan.patches,
                plan.patch_px,
                plan.stride_px,
                plan.images.len(),
                s5::run::curation::Plan::path(run.dir()).display()
            );
            for skipped in &plan.skipped {
                eprintln!("skipped {}: {}", skipped.path.display(), skipped.reason);
            }
        }
        CurateCommand::Prototypes(args) => {
            let options = args.embed.options(&args.model, &args.split, args.batch);
            options.check()?;
            let gpu = device::gpu(backend)?;
            let run = open(&args.out)?;
            eprintln!("embedding `{}` with {} on {}", args.split, args.model.display(), gpu.adapter.name);
            let bars = Bars::new(None);
            let (prototypes, floor) = run.prototypes(&options, gpu, &|p| bars.show(p))?;
            bars.finish();
            println!(
                "{} prototypes of {} labeled images (mean cosine similarity {:.3}) in {}",
                prototypes.centroids.len(),
                prototypes.labeled_per_cluster.iter().sum::<u64>(),
                prototypes.mean_similarity,
                Prototypes::path(run.dir()).display()
            );
            println!("labeled images per cluster (N_m^l): {:?}", prototypes.labeled_per_cluster);
            match floor {
                Some(floor) => print_floor(&floor),
                None => println!(
                    "no plan yet: make it (`s5 curate plan`), then the floor (`s5 curate floor`)"
                ),
            }
        }
        CurateCommand::Floor(args) => {
            let gpu = device::gpu(backend)?;
            let run = open(&args.out)?;
            let bars = Bars::new(None);
            let prototypes = Prototypes::load(&Prototypes::path(run.dir()))?;
            let options = PrototypeOptions {
                model: args.model.clone(),
                dataset: Some(prototypes.dataset.clone()),
                split: prototypes.split.clone(),
                kmeans: KMeansConfig::default(),
                embedding: prototypes.embedding,
                floor_quantile: args.floor.floor_quantile,
                batch: args.batch,
            };
            let floor = run.floor(&options, gpu, &|p| bars.show(p))?;
            bars.finish();
            print_floor(&floor);
        }
        CurateCommand::Score(args) => score(backend, args)?,
        CurateCommand::Status(args) => {
            let status = status(&args.out)?;
            println!(
                "{} of {} patches scored ({:.1} %): {} of {} shards finished, {} unreadable \
                 images{}",
                status.scored,
                status.patches,
                100.0 * status.scored as f64 / status.patches.max(1) as f64,
                status.shards.shards.len(),
                status.shards.count,
                status.unreadable.len(),
                match status.shards.stale {
                    0 => String::new(),
                    n => format!(" ({n} shard(s) of another plan or other prototypes ignored)"),
                }
            );
        }
        CurateCommand::Select(args) => {
            let options = args.choice.options();
            options.check()?;
            let run = open(&args.out)?;
            let outcome = run.select(&options)?;
            print_selection(&outcome, args.choice.ignore_clusters);
        }
        CurateCommand::Evaluate(args) => {
            let report = s5::curate::evaluate::evaluate_run(&args.out, &args.truth)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                super::curate_progress::print_evaluation(&report);
            }
        }
    }
    Ok(())
}

/// Opens the curation run at `out`, warning of a stale lock taken over.
fn open(out: &std::path::Path) -> Result<CurationRun> {
    let (run, taken_over) = CurationRun::open(out)?;
    if let Some(holder) = taken_over {
        eprintln!("warning: {}: took over the lock of {holder}, which no longer runs", out.display());
    }
    Ok(run)
}

fn score(backend: Option<GpuBackend>, args: ScoreArgs) -> Result<()> {
    let shard = shard_from(args.shard.as_deref(), args.shards)?;
    let gpu = device::gpu(backend)?;
    eprintln!("scoring shard {}/{} on {}", shard.0, shard.1, gpu.adapter.name);
    let bars = Bars::new(args.abort_after_patches);
    let options = ScoreOptions {
        model: args.model,
        shard,
        batch: args.batch,
        f16: args.f16,
    };
    let outcome = score_shard(&args.out, &options, gpu, &|p| bars.show(p))?;
    bars.finish();
    if let Some(holder) = &outcome.taken_over {
        eprintln!("warning: took over the lock of shard {}/{} from {holder}", shard.0, shard.1);
    }
    let s = &outcome.summary;
    if outcome.already {
        println!("shard {}/{} was scored already ({} records)", s.index, s.count, s.records);
        return Ok(());
    }
    println!(
        "shard {}/{}: {} records in {:.1} s ({} unreadable images skipped)",
        s.index,
        s.count,
        s.records,
        s.seconds,
        s.unreadable.len()
    );
    match &outcome.report {
        Ok(report) => println!(
            "report: {} of {} shards in {}",
            report.shards_finished,
            report.shards,
            CurationReport::path(&s5::run::RunDir::new(&args.out)).display()
        ),
        Err(e) => eprintln!("warning: curation/report.json was not updated: {e}"),
    }
    Ok(())
}

fn print_floor(floor: &SimilarityFloor) {
    println!(
        "similarity floor per cluster ({} quantile of {} px labeled patches): {}",
        floor.quantile,
        floor.patch_px,
        floor
            .per_cluster
            .iter()
            .zip(&floor.labeled_patches)
            .map(|(f, n)| format!("{f:.3} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn print_selection(outcome: &SelectOutcome, ignore_clusters: bool) {
    let s = &outcome.selection;
    println!(
        "selected {} of {} candidate patches ({} filtered out, {} below a similarity floor, {} \
         exact duplicates dropped) into {}",
        s.selected.len(),
        s.candidates.iter().sum::<u64>(),
        s.filtered_out,
        s.below_floor.iter().sum::<u64>(),
        s.duplicates_dropped,
        outcome.table.display()
    );
    if ignore_clusters {
        println!("clusters ignored: the lowest entropies of the whole pool");
        return;
    }
    println!(
        "{:>8} {:>8} {:>7} {:>12} {:>10} {:>8} {:>8}",
        "cluster", "N_l", "floor", "below floor", "candidates", "nominal", "final"
    );
    for m in 0..s.candidates.len() {
        println!(
            "{m:>8} {:>8} {:>7} {:>12} {:>10} {:>8} {:>8}",
            outcome.labeled[m],
            s.floor.get(m).map_or("-".into(), |f| format!("{f:.3}")),
            s.below_floor.get(m).map_or("-".into(), |n| n.to_string()),
            s.candidates[m],
            s.quotas.nominal[m],
            s.quotas.final_[m]
        );
    }
}
