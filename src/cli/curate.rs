//! `s5 curate`: the paper's data curation, stage by stage, into a curation run directory.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use s5::curate::kmeans::KMeansConfig;
use s5::curate::plan::{make_plan, shard_from, shard_range, tiled};
use s5::curate::prototypes::build_prototypes;
use s5::curate::record::{VERSION as RECORDS_VERSION, write_records};
use s5::curate::report::{ReportInputs, entropy_range_nats, shard_clusters, write_report};
use s5::curate::sample::{sample_threshold, write_samples};
use s5::curate::score::{ScoreSetup, score_range};
use s5::curate::select::{Filters, Selection};
use s5::data::DatasetSpec;
use s5::device::{self, GpuBackend};
use s5::run::checkpoint::{MODEL_FILE, file_sum};
use s5::run::curation::{Embedding, ModelRef, Plan, Pooling, Prototypes, ShardSummary};
use s5::run::{Manifest, RunDir, RunKind, RunLock};

#[derive(Debug, clap::Subcommand)]
pub enum CurateCommand {
    /// Every stage on this machine: plan, prototypes, score, select. Each stage whose
    /// result is already there (and still fits) is skipped, so a stopped run just goes on.
    Run(RunArgs),
    /// Fix the pool: every image of an unlabeled split and its patch grid, numbered once.
    Plan(PlanArgs),
    /// Embed the labeled images with the seed model and cluster them: the prototypes and
    /// `N_m^l` of the quotas (paper Eq. 3).
    Prototypes(PrototypeArgs),
    /// Score one shard of the plan's patches (entropy, confidence, foreground, nearest
    /// prototype); a finished shard is not scored again.
    Score(ScoreArgs),
    /// Progress of the scoring over all shards.
    Status(StatusArgs),
    /// Select the budget: each cluster's quota filled with its lowest-entropy patches.
    Select(SelectArgs),
    /// Measure the scores and the selection against a pool's known truth (`s5 synth`'s
    /// pool/truth.ron): per kind, patches pooled and selected, mean entropy, AUROC.
    Evaluate(EvaluateArgs),
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

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The seed model: a run directory (its newest checkpoint) or a checkpoint folder.
    #[arg(long)]
    pub(super) model: PathBuf,
    /// The spec of the unlabeled images.
    #[arg(long)]
    pub(super) spec: PathBuf,
    /// Its split to curate.
    #[arg(long, default_value = "unlabeled")]
    pub(super) split: String,
    /// The split of the seed model's dataset whose images make the prototypes.
    #[arg(long, default_value = "train")]
    pub(super) labeled_split: String,
    /// Patch side (stride: the same).
    #[arg(long, default_value_t = 256)]
    pub(super) patch_px: u32,
    /// M, the number of prototypes.
    #[arg(long, default_value_t = 16)]
    pub(super) clusters: usize,
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Patches per forward pass.
    #[arg(long, default_value_t = 8)]
    pub(super) batch: usize,
    /// B_u: patches to select.
    #[arg(long)]
    pub(super) budget: u64,
    /// Keep only patches whose predicted foreground share is at least this (0–1).
    #[arg(long)]
    pub(super) foreground_min: Option<f32>,
    /// The pool's truth, where it is known (`s5 synth`'s pool/truth.ron), for the report.
    #[arg(long)]
    pub(super) truth: Option<PathBuf>,
    /// The curation run directory (created, or continued).
    #[arg(long)]
    pub(super) out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The spec of the unlabeled images.
    #[arg(long)]
    spec: PathBuf,
    /// Its split to curate.
    #[arg(long, default_value = "unlabeled")]
    split: String,
    /// Patch side.
    #[arg(long, default_value_t = 256)]
    patch_px: u32,
    /// Patch stride (default: the patch side, no overlap).
    #[arg(long)]
    stride_px: Option<u32>,
    /// The pool's truth, where it is known (`s5 synth`'s pool/truth.ron): the report then
    /// shows each patch's kind and the out-of-distribution share.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// The curation run directory (created).
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
    /// is scored in the same batch whatever the sharding).
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
pub struct StatusArgs {
    /// The curation run directory.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// The curation run directory (plan, prototypes, scored shards).
    #[arg(long)]
    out: PathBuf,
    /// B_u: patches to select.
    #[arg(long)]
    budget: u64,
    /// Keep only patches whose predicted foreground share is at least this (0–1): keeps out
    /// patches the model calls all background (sea, cloud), whose entropy is near zero.
    #[arg(long)]
    foreground_min: Option<f32>,
    /// Keep only patches with at most this mean entropy.
    #[arg(long)]
    entropy_max: Option<f32>,
    /// Keep only patches at least this similar to their prototype.
    #[arg(long)]
    similarity_min: Option<f32>,
    /// Rank the whole pool by entropy alone (Eq. 2 without Eq. 3's quotas): the baseline
    /// that shows what the quotas add.
    #[arg(long)]
    ignore_clusters: bool,
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
        CurateCommand::Run(args) => run_all(backend, args),
        CurateCommand::Plan(args) => plan(args),
        CurateCommand::Prototypes(args) => prototypes(backend, args),
        CurateCommand::Score(args) => score(backend, args),
        CurateCommand::Status(args) => status(args),
        CurateCommand::Select(args) => select(args),
        CurateCommand::Evaluate(args) => evaluate(args),
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

fn plan(args: PlanArgs) -> Result<()> {
    let stride = args.stride_px.unwrap_or(args.patch_px);
    // Checked before the run folder is made.
    if args.patch_px == 0 || stride == 0 {
        bail!("--patch-px and --stride-px must be at least 1");
    }
    let (run, _lock) = open_curation_run(&args.out)?;
    let mut plan = make_plan(&args.spec, &args.split, args.patch_px, stride)?;
    if let Some(truth) = &args.truth {
        let kinds = read_truth(truth)?;
        for image in &mut plan.images {
            image.kind = kinds.get(&image.path).cloned();
        }
        plan.in_distribution_kind = Some(IN_DISTRIBUTION.into());
        let known = plan.images.iter().filter(|i| i.kind.is_some()).count();
        if known == 0 {
            bail!(
                "{}: names none of the pool's {} images (paths are relative to its folder)",
                truth.display(),
                plan.images.len()
            );
        }
    }
    plan.save(&run)?;
    println!(
        "{} patches of {} px (stride {stride}) from {} images in {}",
        plan.patches,
        plan.patch_px,
        plan.images.len(),
        Plan::path(&run).display()
    );
    for skipped in &plan.skipped {
        eprintln!("skipped {}: {}", skipped.path.display(), skipped.reason);
    }
    Ok(())
}

fn score(backend: Option<GpuBackend>, args: ScoreArgs) -> Result<()> {
    let (index, count) = shard_from(args.shard.as_deref(), args.shards)?;
    // Shards run side by side (one process each, on one machine or many): each holds the
    // lock of its own files, not the run's.
    let run = RunDir::new(&args.out);
    if Manifest::load(&run)?.kind != RunKind::Curate {
        bail!(
            "{}: not a curation run (start it with `s5 curate plan`)",
            args.out.display()
        );
    }
    let (summary_path, _) = ShardSummary::paths(&run, index, count);
    let (_lock, taken_over) = RunLock::acquire_at(&summary_path.with_extension("lock"))?;
    if let Some(holder) = taken_over {
        eprintln!(
            "warning: took over the lock of shard {index}/{count} from {holder}, which no longer runs"
        );
    }
    let plan = Plan::load(&run)?;
    let prototypes = Prototypes::load(&Prototypes::path(&run))?;
    let gpu = device::gpu(backend)?;
    let (model, card, checkpoint) = s5::train::load_model(&args.model, &gpu.device)?;
    let model = super::infer_args::precision(model, args.f16, gpu)?;
    let sha = file_sum(&checkpoint.join(MODEL_FILE))?.sha256;
    if sha != prototypes.model.sha256 {
        bail!(
            "{} (weights {sha}) is not the model the prototypes were made with ({}, weights {}): \
             score with that model, or make the prototypes again",
            checkpoint.display(),
            prototypes.model.checkpoint.display(),
            prototypes.model.sha256
        );
    }
    let range = shard_range(plan.patches, index, count, args.batch as u64);
    let prototypes_sha256 = file_sum(&Prototypes::path(&run))?.sha256;
    if let Some(done) = ShardSummary::load(&run, index, count)?
        && done.model_sha256 == sha
        && done.prototypes_sha256 == prototypes_sha256
        && done.plan_patches == plan.patches
        && done.records_version == RECORDS_VERSION
        && (done.first_patch, done.end_patch) == (range.start, range.end)
    {
        println!(
            "shard {index}/{count} was scored already ({} records)",
            done.records
        );
        return Ok(());
    }
    let dataset = card
        .datasets
        .iter()
        .position(|d| d.name == prototypes.dataset)
        .with_context(|| format!("the model has no dataset `{}`", prototypes.dataset))?;
    let spec = DatasetSpec::load(&plan.spec)?;
    let source = tiled(&plan);
    let setup = ScoreSetup {
        dataset,
        background: card.datasets[dataset].background.map(usize::from),
        batch: args.batch,
        sample_below: sample_threshold(plan.patches),
    };
    eprintln!(
        "scoring shard {index}/{count}: patches {}..{} of {} on {}",
        range.start, range.end, plan.patches, gpu.adapter.name
    );
    let bar = ProgressBar::new(range.end - range.start).with_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} patches ({per_sec}, eta {eta})",
    )?);
    let started = std::time::Instant::now();
    let (scored, unreadable) = score_range(
        &model,
        &spec,
        &source,
        range.clone(),
        &prototypes,
        setup,
        &gpu.device,
        &|n| {
            bar.set_position(n);
            if args.abort_after_patches.is_some_and(|limit| n >= limit) {
                kill_self();
            }
        },
    )?;
    bar.finish_and_clear();
    let records = scored.records;
    let (_, records_path) = ShardSummary::paths(&run, index, count);
    write_records(&records_path, &records)?;
    write_samples(
        &ShardSummary::sample_path(&run, index, count),
        &scored.samples,
    )?;
    let range_nats = entropy_range_nats(card.datasets[dataset].classes.len());
    for file in &unreadable {
        eprintln!("skipped {}: {}", file.path.display(), file.reason);
    }
    let summary = ShardSummary {
        index,
        count,
        first_patch: range.start,
        end_patch: range.end,
        records: records.len() as u64,
        model_sha256: sha,
        plan_patches: plan.patches,
        prototypes_sha256,
        unreadable,
        seconds: started.elapsed().as_secs_f64(),
        records_version: RECORDS_VERSION,
        clusters: shard_clusters(&records, prototypes.centroids.len(), range_nats),
        entropy_range_nats: range_nats,
    };
    summary.save(&run)?;
    println!(
        "shard {index}/{count}: {} records in {:.1} s ({} unreadable images skipped)",
        summary.records,
        summary.seconds,
        summary.unreadable.len()
    );
    // The shard is done whatever happens to the report (the next shard or `select` writes
    // it again).
    match report(&run, None) {
        Ok(report) => println!(
            "report: {} of {} shards in {}",
            report.shards_finished,
            report.shards,
            s5::run::curation::CurationReport::path(&run).display()
        ),
        Err(e) => eprintln!("warning: curation/report.json was not updated: {e:#}"),
    }
    Ok(())
}

/// Rewrites `curation/report.json` from the finished shards (and the selection, once made).
fn report(
    run: &RunDir,
    selection: Option<(&Selection, u64)>,
) -> Result<s5::run::curation::CurationReport> {
    let plan = Plan::load(run)?;
    let prototypes = Prototypes::load(&Prototypes::path(run))?;
    let (count, shards) = finished_shards(run)?;
    let spec = DatasetSpec::load(&plan.spec)?;
    let source = tiled(&plan);
    Ok(write_report(&ReportInputs {
        run,
        plan: &plan,
        source: &source,
        spec: &spec,
        prototypes: &prototypes,
        shards: &shards,
        shard_count: count,
        selection,
    })?)
}

/// The kind `s5 synth` gives the images that are in distribution.
const IN_DISTRIBUTION: &str = "InDomain";

/// A pool's truth (`s5 synth`'s RON list of `(image, kind)`, paths relative to its folder)
/// as absolute image path → kind.
fn read_truth(path: &std::path::Path) -> Result<std::collections::HashMap<PathBuf, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the truth", path.display()))?;
    let truth: Vec<s5::data::synth::PoolTruth> = ron::from_str(&text)
        .with_context(|| format!("{}: not a list of (image, kind)", path.display()))?;
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    let mut kind_of = std::collections::HashMap::new();
    for t in truth {
        kind_of.insert(
            std::path::absolute(base.join(&t.image))?,
            format!("{:?}", t.kind),
        );
    }
    Ok(kind_of)
}

/// The finished shards scored against the run's current prototypes, of one sharding: a
/// complete one if there is one (the finest), else the finest begun; checked to come from one
/// model.
fn finished_shards(run: &RunDir) -> Result<(u32, Vec<ShardSummary>)> {
    // Without prototypes (yet), every shard counts.
    let prototypes = Prototypes::path(run);
    let current = if prototypes.exists() {
        Some(file_sum(&prototypes)?.sha256)
    } else {
        None
    };
    let mut summaries = ShardSummary::load_all(run)?;
    // Shards of an older record format count as not scored (`score` scores them again).
    summaries.retain(|s| s.records_version == RECORDS_VERSION);
    let before = summaries.len();
    summaries.retain(|s| current.as_ref().is_none_or(|c| &s.prototypes_sha256 == c));
    if summaries.is_empty() && before > 0 {
        bail!(
            "every scored shard was scored against other prototypes than curation/prototypes.json \
             now holds: score again (`s5 curate score`)"
        );
    }
    summaries.sort_by_key(|s| (s.count, s.index));
    let complete =
        |count: u32| summaries.iter().filter(|s| s.count == count).count() as u32 == count;
    let counts: Vec<u32> = summaries.iter().map(|s| s.count).collect();
    let count = counts
        .iter()
        .copied()
        .filter(|&c| complete(c))
        .max()
        .or_else(|| counts.iter().copied().max())
        .unwrap_or(0);
    summaries.retain(|s| s.count == count);
    if let Some(first) = summaries.first()
        && let Some(other) = summaries
            .iter()
            .find(|s| s.model_sha256 != first.model_sha256)
    {
        bail!(
            "shards were scored by different models: shard {}/{} by weights {}, shard {}/{} by \
             weights {}; score them all with one model",
            first.index,
            first.count,
            first.model_sha256,
            other.index,
            other.count,
            other.model_sha256
        );
    }
    Ok((count, summaries))
}

fn status(args: StatusArgs) -> Result<()> {
    let run = RunDir::new(&args.out);
    let plan = Plan::load(&run)?;
    let (count, done) = finished_shards(&run)?;
    let scored: u64 = done.iter().map(|s| s.end_patch - s.first_patch).sum();
    let unreadable: usize = done.iter().map(|s| s.unreadable.len()).sum();
    println!(
        "{} of {} patches scored ({:.1} %): {} of {} shards finished, {} unreadable images",
        scored,
        plan.patches,
        100.0 * scored as f64 / plan.patches.max(1) as f64,
        done.len(),
        count,
        unreadable
    );
    Ok(())
}

fn select(args: SelectArgs) -> Result<()> {
    let (run, _lock) = open_curation_run(&args.out)?;
    let plan = Plan::load(&run)?;
    let prototypes = Prototypes::load(&Prototypes::path(&run))?;
    let (count, done) = finished_shards(&run)?;
    if done.len() as u32 != count || count == 0 {
        bail!(
            "{} of {count} shards are scored: score the others first (`s5 curate status --out {}`)",
            done.len(),
            args.out.display()
        );
    }
    if let Some(first) = done.first()
        && first.model_sha256 != prototypes.model.sha256
    {
        bail!(
            "the shards were scored by weights {} but the prototypes come from weights {}",
            first.model_sha256,
            prototypes.model.sha256
        );
    }
    let shards: Vec<PathBuf> = done
        .iter()
        .map(|s| ShardSummary::paths(&run, s.index, s.count).1)
        .collect();
    let filters = Filters {
        foreground_min: args.foreground_min,
        entropy_max: args.entropy_max,
        similarity_min: args.similarity_min,
        ..Filters::default()
    };
    let selection = if args.ignore_clusters {
        s5::curate::select::select_by_entropy_alone(
            &shards,
            prototypes.labeled_per_cluster.len(),
            args.budget,
            &filters,
        )?
    } else {
        s5::curate::select::select(
            &shards,
            &prototypes.labeled_per_cluster,
            args.budget,
            &filters,
        )?
    };
    let source = tiled(&plan);
    let table = s5::curate::selected::write_selected(&run, &source, &selection)?;
    println!(
        "selected {} of {} candidate patches ({} filtered out, {} exact duplicates dropped) into {}",
        selection.selected.len(),
        selection.candidates.iter().sum::<u64>(),
        selection.filtered_out,
        selection.duplicates_dropped,
        table.display()
    );
    report(&run, Some((&selection, args.budget)))?;
    println!(
        "report: {}",
        s5::run::curation::CurationReport::path(&run).display()
    );
    if args.ignore_clusters {
        println!("clusters ignored: the lowest entropies of the whole pool");
        return Ok(());
    }
    println!(
        "{:>8} {:>8} {:>10} {:>8} {:>8}",
        "cluster", "N_l", "candidates", "nominal", "final"
    );
    for m in 0..selection.candidates.len() {
        println!(
            "{m:>8} {:>8} {:>10} {:>8} {:>8}",
            prototypes.labeled_per_cluster[m],
            selection.candidates[m],
            selection.quotas.nominal[m],
            selection.quotas.final_[m]
        );
    }
    Ok(())
}

/// The scores and selection of the curation run in `out` against the pool's truth.
pub(super) fn evaluation(
    out: &std::path::Path,
    truth: &std::path::Path,
) -> Result<s5::curate::evaluate::Evaluation> {
    let run = RunDir::new(out);
    let plan = Plan::load(&run)?;
    let (count, done) = finished_shards(&run)?;
    if done.len() as u32 != count || count == 0 {
        bail!(
            "{} of {count} shards are scored: score them all first",
            done.len()
        );
    }
    let kind_of = read_truth(truth)?;
    let mut selected = std::collections::HashSet::new();
    let table = run.curation().join("selected.tsv");
    if table.exists() {
        let source = s5::curate::selected::read_selected(&table)?;
        for p in &source.patches {
            selected.insert((source.images[p.image].image.clone(), p.x_px, p.y_px));
        }
    }
    let shards: Vec<PathBuf> = done
        .iter()
        .map(|s| ShardSummary::paths(&run, s.index, s.count).1)
        .collect();
    Ok(s5::curate::evaluate::evaluate(
        &tiled(&plan),
        &shards,
        &kind_of,
        IN_DISTRIBUTION,
        &selected,
    )?)
}

/// `s5 curate evaluate`.
fn evaluate(args: EvaluateArgs) -> Result<()> {
    let report = evaluation(&args.out, &args.truth)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{:<12} {:>8} {:>9} {:>13} {:>11} {:>15}",
        "kind", "pool", "selected", "mean entropy", "foreground", "AUROC vs in"
    );
    for k in &report.kinds {
        println!(
            "{:<12} {:>8} {:>9} {:>13.3} {:>11.2} {:>15}",
            k.kind,
            k.pool_patches,
            k.selected_patches,
            k.mean_entropy,
            k.mean_foreground,
            k.auroc_vs_in_domain
                .map_or("-".to_string(), |a| format!("{a:.3}"))
        );
    }
    println!(
        "out-of-distribution share: pool (= a random selection's, on average) {:.1} %, selection {:.1} %",
        100.0 * report.pool_ood_share,
        100.0 * report.selected_ood_share
    );
    Ok(())
}

/// Ends this process as a killed cluster node's would end: SIGKILL, nothing cleaned up
/// (`abort` where there are no signals).
fn kill_self() -> ! {
    #[cfg(unix)]
    // SAFETY: sends a signal to this very process; nothing is read or written.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}

/// `s5 curate run`: the stages in order, each skipped when its result is there and fits.
pub(super) fn run_all(backend: Option<GpuBackend>, args: RunArgs) -> Result<()> {
    let run = RunDir::new(&args.out);
    let spec = std::path::absolute(&args.spec)?;
    match Plan::load(&run) {
        Ok(plan) => {
            let same = (
                plan.spec.as_path(),
                plan.split.as_str(),
                plan.patch_px,
                plan.stride_px,
            ) == (
                spec.as_path(),
                args.split.as_str(),
                args.patch_px,
                args.patch_px,
            );
            if !same {
                bail!(
                    "{}: its plan was made for {} `{}` with {} px patches every {} px; curate \
                     another pool or patch size into another --out",
                    args.out.display(),
                    plan.spec.display(),
                    plan.split,
                    plan.patch_px,
                    plan.stride_px
                );
            }
            eprintln!("[1/4] plan: there ({} patches)", plan.patches);
        }
        Err(s5::run::RunError::Missing { .. }) => {
            eprintln!("[1/4] plan");
            plan(PlanArgs {
                spec: args.spec.clone(),
                split: args.split.clone(),
                patch_px: args.patch_px,
                stride_px: None,
                truth: args.truth.clone(),
                out: args.out.clone(),
            })?;
        }
        Err(e) => return Err(e.into()),
    }
    let fits = |p: &Prototypes| -> Result<bool> {
        let checkpoint = s5::run::checkpoint::resolve_checkpoint(&args.model)?;
        Ok(
            p.model.sha256 == file_sum(&checkpoint.join(MODEL_FILE))?.sha256
                && p.centroids.len() == args.clusters
                && p.seed == args.seed
                && p.split == args.labeled_split,
        )
    };
    match Prototypes::load(&Prototypes::path(&run)) {
        Ok(p) if fits(&p)? => eprintln!("[2/4] prototypes: there ({} clusters)", args.clusters),
        _ => {
            eprintln!("[2/4] prototypes");
            prototypes(
                backend,
                PrototypeArgs {
                    model: args.model.clone(),
                    dataset: None,
                    split: args.labeled_split.clone(),
                    out: args.out.clone(),
                    clusters: args.clusters,
                    restarts: KMeansConfig::default().restarts,
                    seed: args.seed,
                    level: Embedding::default().level,
                    pooling: PoolingArg::Mean,
                },
            )?;
        }
    }
    eprintln!("[3/4] score");
    score(
        backend,
        ScoreArgs {
            model: args.model.clone(),
            out: args.out.clone(),
            shard: Some("0/1".into()),
            shards: None,
            batch: args.batch,
            f16: false,
            abort_after_patches: None,
        },
    )?;
    eprintln!("[4/4] select");
    select(SelectArgs {
        out: args.out,
        budget: args.budget,
        foreground_min: args.foreground_min,
        entropy_max: None,
        similarity_min: None,
        ignore_clusters: false,
    })
}
