//! `s5 curate`: the paper's data curation, stage by stage, into a curation run directory.
//! The stages are `s5::curate`'s; this parses their options, draws their progress and
//! prints their outcomes.

use anyhow::Result;
use s5::curate::all::run_all;
use s5::curate::kmeans::KMeansConfig;
use s5::curate::plan::shard_from;
use s5::curate::run::{CurationRun, PrototypeOptions, SelectOutcome};
use s5::curate::shards::{ScoreOptions, score_shard, status};
use s5::device::{self, GpuBackend};
use s5::run::curation::{CurationReport, Prototypes, SimilarityFloor};

pub use super::curate_args::{
    EvaluateArgs, FloorArgs, OutArg, PlanArgs, PrototypeArgs, RunArgs, ScoreArgs, SelectArgs,
};
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
            eprintln!(
                "embedding `{}` with {} on {}",
                args.split,
                args.model.display(),
                gpu.adapter.name
            );
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
            println!(
                "labeled images per cluster (N_m^l): {:?}",
                prototypes.labeled_per_cluster
            );
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
        eprintln!(
            "warning: {}: took over the lock of {holder}, which no longer runs",
            out.display()
        );
    }
    Ok(run)
}

fn score(backend: Option<GpuBackend>, args: ScoreArgs) -> Result<()> {
    let shard = shard_from(args.shard.as_deref(), args.shards)?;
    let gpu = device::gpu(backend)?;
    eprintln!(
        "scoring shard {}/{} on {}",
        shard.0, shard.1, gpu.adapter.name
    );
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
        eprintln!(
            "warning: took over the lock of shard {}/{} from {holder}",
            shard.0, shard.1
        );
    }
    let s = &outcome.summary;
    if outcome.already {
        println!(
            "shard {}/{} was scored already ({} records)",
            s.index, s.count, s.records
        );
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
