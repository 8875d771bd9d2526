//! `s5 curate run`: every stage of a curation on this machine, in order. A stage whose
//! result is there is reused only if it was made with every setting it would be made with
//! now; otherwise it is made again (and what depends on it with it), so a stopped run just
//! goes on and a changed setting is never silently ignored.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::run::{
    CurationRun, PlanOptions, Progress, PrototypeOptions, SelectOptions, SelectOutcome,
    SimilarityRule, Sink, Stage, load_missing,
};
use super::shards::{ScoreOptions, ScoreOutcome, score_shard};
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::run::checkpoint::{MODEL_FILE, file_sum, read_card, resolve_checkpoint};
use crate::run::curation::{Plan, Prototypes, SimilarityFloor};

/// Everything `s5 curate run` takes: each stage's options (the score stage's shard is the
/// whole plan).
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// The curation run directory (created, or continued).
    pub out: PathBuf,
    pub plan: PlanOptions,
    pub prototypes: PrototypeOptions,
    pub batch: usize,
    pub f16: bool,
    pub select: SelectOptions,
}

/// What `s5 curate run` made, stage by stage.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub plan: Plan,
    pub prototypes: Prototypes,
    /// The floor, where the selection uses it.
    pub floor: Option<SimilarityFloor>,
    pub score: ScoreOutcome,
    pub select: SelectOutcome,
    /// The stages whose results were there and fitted.
    pub reused: Vec<Stage>,
}

/// Stage 4: the whole plan as one shard (a shard scored with these settings is not scored
/// again). Whether it is scored is known inside: the stage line comes with its first
/// progress, before the bar.
fn score_stage(options: &RunOptions, gpu: &Gpu, progress: Sink) -> Result<ScoreOutcome> {
    let say = |again: bool, detail: String| {
        progress(Progress::Stage {
            stage: Stage::Score,
            reused: !again,
            detail,
        })
    };
    let announced = AtomicBool::new(false);
    let scoring = |p: Progress| {
        if matches!(p, Progress::Scoring { .. }) && !announced.swap(true, Ordering::SeqCst) {
            say(true, String::new());
        }
        progress(p);
    };
    let score = score_shard(
        &options.out,
        &ScoreOptions {
            model: options.prototypes.model.clone(),
            shard: (0, 1),
            batch: options.batch,
            f16: options.f16,
        },
        gpu,
        &scoring,
    )?;
    let records = format!("{} records", score.summary.records);
    if score.already {
        say(false, records);
    } else if !announced.load(Ordering::SeqCst) {
        say(true, records);
    }
    Ok(score)
}

/// Runs every stage into `options.out`.
pub fn run_all(options: &RunOptions, gpu: &Gpu, progress: Sink) -> Result<RunOutcome> {
    options.plan.check()?;
    options.prototypes.check()?;
    options.select.check()?;
    let (run, taken_over) = CurationRun::open(&options.out)?;
    if let Some(holder) = taken_over {
        progress(Progress::Warning(format!(
            "took over the lock of {holder}, which no longer runs"
        )));
    }
    let dir = run.dir().clone();
    let mut reused = Vec::new();
    let stage = |stage: Stage, again: bool, detail: String| {
        progress(Progress::Stage {
            stage,
            reused: !again,
            detail,
        })
    };

    // 1. The plan: its pool and grid; the kinds are refreshed from the truth in place.
    let plan = match load_missing(Plan::load(&dir))? {
        Some(mut plan) if plan_fits(&plan, &options.plan)? => {
            if let Some(truth) = &options.plan.truth {
                let before = plan.clone();
                super::run::apply_truth(&mut plan, truth)?;
                if plan != before {
                    plan.save(&dir)?;
                }
            }
            stage(Stage::Plan, false, format!("{} patches", plan.patches));
            reused.push(Stage::Plan);
            plan
        }
        _ => {
            stage(Stage::Plan, true, String::new());
            run.plan(&options.plan)?.plan
        }
    };

    // 2. The prototypes (with the floor for this plan, when they are made).
    let mut floor = None;
    let prototypes = match load_missing(Prototypes::load(&Prototypes::path(&dir)))? {
        Some(p) if prototypes_fit(&p, &options.prototypes)? => {
            stage(
                Stage::Prototypes,
                false,
                format!("{} clusters", p.centroids.len()),
            );
            reused.push(Stage::Prototypes);
            p
        }
        _ => {
            stage(Stage::Prototypes, true, String::new());
            let (p, made) = run.prototypes(&options.prototypes, gpu, progress)?;
            floor = made;
            p
        }
    };

    // 3. The similarity floor, where the selection uses it.
    if options.select.similarity == SimilarityRule::Floor {
        let prototypes_sha256 = file_sum(&Prototypes::path(&dir))?.sha256;
        let fits = |f: &SimilarityFloor| floor_fits(f, &prototypes_sha256, &plan, options);
        let made_with_prototypes = floor.is_some();
        floor = match floor.or(load_missing(SimilarityFloor::load(&dir))?) {
            Some(f) if fits(&f) && made_with_prototypes => {
                stage(Stage::Floor, true, "made with the prototypes".into());
                Some(f)
            }
            Some(f) if fits(&f) => {
                stage(Stage::Floor, false, format!("{} px patches", f.patch_px));
                reused.push(Stage::Floor);
                Some(f)
            }
            _ => {
                stage(Stage::Floor, true, String::new());
                Some(run.floor(&options.prototypes, gpu, progress)?)
            }
        };
    } else {
        floor = None;
        stage(Stage::Floor, false, "not used by this selection".into());
    }

    // 4. One shard: the whole plan.
    let score = score_stage(options, gpu, progress)?;
    if score.already {
        reused.push(Stage::Score);
    }

    // 5. The selection, always made again (it reads nothing it could get wrong).
    stage(Stage::Select, true, String::new());
    let select = run.select(&options.select)?;
    Ok(RunOutcome {
        plan,
        prototypes,
        floor,
        score,
        select,
        reused,
    })
}

/// Whether floor `f` was calibrated (leave-one-out) against the prototypes whose file has
/// SHA-256 `prototypes_sha256`, for the plan's patch size, with these settings.
fn floor_fits(
    f: &SimilarityFloor,
    prototypes_sha256: &str,
    plan: &Plan,
    options: &RunOptions,
) -> bool {
    f.prototypes_sha256 == prototypes_sha256
        && f.leave_one_out
        && f.patch_px == plan.patch_px
        && f.quantile == options.prototypes.floor_quantile
        && f.split == options.prototypes.split
}

/// Whether `plan` was made for this pool, split and grid.
fn plan_fits(plan: &Plan, options: &PlanOptions) -> Result<bool> {
    let spec = absolute(&options.spec)?;
    Ok(plan.spec == spec
        && plan.split == options.split
        && (plan.patch_px, plan.stride_px) == (options.patch_px, options.stride_px))
}

/// Whether `p` was made by this model's decoder from this split, with these clusters,
/// K-Means settings and embedding.
fn prototypes_fit(p: &Prototypes, options: &PrototypeOptions) -> Result<bool> {
    let checkpoint = resolve_checkpoint(&options.model)?;
    let sha256 = file_sum(&checkpoint.join(MODEL_FILE))?.sha256;
    let card = read_card(&checkpoint)?;
    let dataset = card
        .dataset_index(options.dataset.as_deref())
        .map_err(|reason| Error::Config { reason })?;
    let k = &options.kmeans;
    Ok(p.model.sha256 == sha256
        && p.dataset == card.datasets[dataset].name
        && p.split == options.split
        && p.centroids.len() == k.clusters
        && (p.seed, p.restarts) == (k.seed, k.restarts)
        && p.embedding == options.embedding)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}
