//! The scoring shards of a curation run: one shard scored per call (processes score shards
//! side by side, each under the lock of its own files), the shards that count, whether they
//! cover the plan, and the report rebuilt from them.
//!
//! A shard counts when it was scored for the run's current plan (the same patch numbering),
//! against its current prototypes, in the current record format. Of those, one sharding is
//! read: a complete one if there is one (the finest), else the finest begun.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::plan::{shard_range, tiled};
use super::progress::{Progress, Sink};
use super::record::{VERSION as RECORDS_VERSION, write_records};
use super::report::{ReportInputs, entropy_range_nats, shard_clusters, write_report};
use super::sample::{sample_threshold, write_samples};
use super::score::score_range;
use super::seed::SeedModel;
use super::select::Selection;
use crate::data::DatasetSpec;
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::run::checkpoint::file_sum;
use crate::run::curation::{CurationReport, Plan, Prototypes, ShardSummary, SkippedFile};
use crate::run::{LockHolder, Manifest, RunDir, RunKind, RunLock};

/// How long a writer of the report waits for another to finish with it.
const REPORT_PATIENCE: Duration = Duration::from_secs(300);

/// `s5 curate score`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreOptions {
    /// The seed model (the prototypes').
    pub model: PathBuf,
    /// Shard `index` of `count`, 0-based.
    pub shard: (u32, u32),
    /// Patches per forward pass: every shard of a plan must use the same.
    pub batch: usize,
    /// Score with the model in f16 (adapters with `shader-f16`).
    pub f16: bool,
}

/// What [`score_shard`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreOutcome {
    pub summary: ShardSummary,
    /// It was scored before, with these very settings, and was not scored again.
    pub already: bool,
    /// The stale lock taken over, if any.
    pub taken_over: Option<LockHolder>,
    /// The report rebuilt after it, or why it was not (the shard is done either way).
    pub report: std::result::Result<CurationReport, String>,
}

/// Scores one shard of the curation run at `out` (plan and prototypes made), unless it was
/// scored already with the same plan, prototypes, model, batch and precision.
pub fn score_shard(
    out: &Path,
    options: &ScoreOptions,
    gpu: &Gpu,
    progress: Sink,
) -> Result<ScoreOutcome> {
    let (index, count) = options.shard;
    let run = RunDir::new(out);
    if Manifest::load(&run)?.kind != RunKind::Curate {
        return Err(Error::RunDir {
            path: out.to_path_buf(),
            reason: "not a curation run (start it with `s5 curate plan`)".into(),
        });
    }
    let (summary_path, records_path) = ShardSummary::paths(&run, index, count);
    let (_lock, taken_over) = RunLock::acquire_at(&summary_path.with_extension("lock"))?;
    let plan = Plan::load(&run)?;
    let spec = DatasetSpec::load(&plan.spec)?;
    if spec.imaging != plan.imaging {
        return Err(Error::Spec {
            path: plan.spec.clone(),
            reason: format!(
                "its `imaging` is now {:?}, but the curation plan in {} was made with {:?}: \
                 shards scored with the two would be mixed. Restore the spec's `imaging`, or \
                 make the plan again (`s5 curate plan ... --move-stale`) and score every shard",
                spec.imaging,
                out.display(),
                plan.imaging
            ),
        });
    }
    let prototypes = Prototypes::load(&Prototypes::path(&run))?;
    let seed = SeedModel::load(&options.model, Some(&prototypes.dataset), &gpu.device)?;
    seed.check_made(&prototypes)?;
    let batch = options.batch.max(1) as u64;
    let range = shard_range(plan.patches, index, count, batch);
    let prototypes_sha256 = file_sum(&Prototypes::path(&run))?.sha256;
    let plan_sha256 = plan.numbering_sha256();
    if let Some(done) = ShardSummary::load(&run, index, count)?
        && done.model_sha256 == seed.model_ref.sha256
        && done.prototypes_sha256 == prototypes_sha256
        && done.plan_sha256 == plan_sha256
        && done.records_version == RECORDS_VERSION
        && (done.batch, done.f16) == (batch, options.f16)
        && (done.first_patch, done.end_patch) == (range.start, range.end)
    {
        return Ok(ScoreOutcome {
            summary: done,
            already: true,
            taken_over,
            report: CurationReport::load(&run).map_err(|e| e.to_string()),
        });
    }
    let source = tiled(&plan);
    let setup = super::score::ScoreSetup {
        sample_below: sample_threshold(plan.patches),
        ..seed.setup(options.batch)
    };
    // The seed's own model, moved (a clone would share its BatchNorm statistics).
    let model =
        crate::model::half::precision(seed.model, options.f16, &gpu.device, &gpu.adapter.name)?;
    let started = Instant::now();
    let total = range.end - range.start;
    let (scored, unreadable) = score_range(
        &model,
        &spec,
        &source,
        range.clone(),
        &prototypes,
        setup,
        &gpu.device,
        &|done| progress(Progress::Scoring { done, total }),
    )?;
    write_records(&records_path, &scored.records)?;
    write_samples(
        &ShardSummary::sample_path(&run, index, count),
        &scored.samples,
    )?;
    let range_nats = entropy_range_nats(seed.card.datasets[seed.dataset].classes.len());
    for file in &unreadable {
        progress(Progress::Warning(format!(
            "skipped {}: {}",
            file.path.display(),
            file.reason
        )));
    }
    let summary = ShardSummary {
        index,
        count,
        first_patch: range.start,
        end_patch: range.end,
        records: scored.records.len() as u64,
        model_sha256: seed.model_ref.sha256.clone(),
        plan_patches: plan.patches,
        plan_sha256,
        batch,
        f16: options.f16,
        prototypes_sha256,
        unreadable,
        seconds: started.elapsed().as_secs_f64(),
        records_version: RECORDS_VERSION,
        clusters: shard_clusters(&scored.records, prototypes.centroids.len(), range_nats),
        entropy_range_nats: range_nats,
    };
    summary.save(&run)?;
    // The shard is done whatever happens to the report (the next shard or `select` writes
    // it again).
    let report = refresh_report(&run, None).map_err(|e| e.to_string());
    Ok(ScoreOutcome {
        summary,
        already: false,
        taken_over,
        report,
    })
}

/// The shards that count, of one sharding.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSet {
    /// Shards in the sharding (0 when none is scored).
    pub count: u32,
    /// Its finished shards, by index.
    pub shards: Vec<ShardSummary>,
    /// Finished shards left out: of an older record format, another plan or other
    /// prototypes.
    pub stale: usize,
}

impl ShardSet {
    /// The shards of `run` scored for its current plan and prototypes (every shard of the
    /// current plan while there are no prototypes yet), checked to come from one model.
    pub fn current(run: &RunDir) -> Result<Self> {
        let plan_sha256 = Plan::load(run)?.numbering_sha256();
        let prototypes = Prototypes::path(run);
        let prototypes_sha256 = if prototypes.exists() {
            Some(file_sum(&prototypes)?.sha256)
        } else {
            None
        };
        let mut summaries = ShardSummary::load_all(run)?;
        let before = summaries.len();
        summaries.retain(|s| {
            s.records_version == RECORDS_VERSION
                && s.plan_sha256 == plan_sha256
                && prototypes_sha256
                    .as_ref()
                    .is_none_or(|c| &s.prototypes_sha256 == c)
        });
        let stale = before - summaries.len();
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
            return Err(Error::RunDir {
                path: run.curation().join("shards"),
                reason: format!(
                    "shards were scored by different models: shard {}/{} by weights {}, shard \
                     {}/{} by weights {}; score them all with one model",
                    first.index,
                    first.count,
                    first.model_sha256,
                    other.index,
                    other.count,
                    other.model_sha256
                ),
            });
        }
        Ok(Self {
            count,
            shards: summaries,
            stale,
        })
    }

    /// The record files of its shards, by index.
    pub fn record_files(&self, run: &RunDir) -> Vec<PathBuf> {
        self.shards
            .iter()
            .map(|s| ShardSummary::paths(run, s.index, s.count).1)
            .collect()
    }

    /// Patches the finished shards scored.
    pub fn patches_scored(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.end_patch - s.first_patch)
            .sum()
    }

    /// Whether every shard is finished and together they cover `0..plan.patches` exactly,
    /// each patch once; otherwise names what is missing or scored twice.
    pub fn check_complete(&self, run: &RunDir, plan: &Plan) -> Result<()> {
        let bad = |reason: String| Error::RunDir {
            path: run.curation().join("shards"),
            reason,
        };
        if self.count == 0 {
            return Err(bad(format!(
                "no shard is scored for the current plan and prototypes{}: score the plan \
                 (`s5 curate score`)",
                match self.stale {
                    0 => String::new(),
                    n => format!(" ({n} of another plan or other prototypes are ignored)"),
                }
            )));
        }
        if self.shards.len() as u32 != self.count {
            return Err(bad(format!(
                "{} of {} shards are scored for the current plan and prototypes: score the \
                 others first (`s5 curate status` lists them)",
                self.shards.len(),
                self.count
            )));
        }
        let mut by_start: Vec<&ShardSummary> = self.shards.iter().collect();
        by_start.sort_by_key(|s| (s.first_patch, s.index));
        let mut end = 0u64;
        let mut previous: Option<&ShardSummary> = None;
        for s in by_start {
            if s.first_patch != end {
                let (what, range) = if s.first_patch > end {
                    ("are in no shard", end..s.first_patch)
                } else {
                    ("are in two shards", s.first_patch..end)
                };
                return Err(bad(format!(
                    "patches {}..{} of the plan {what}: {} ends at patch {end} and shard {}/{} \
                     (scored with --batch {}) starts at {}. Shards of one plan must be scored \
                     with the same --batch: score them again with one",
                    range.start,
                    range.end,
                    previous.map_or("the plan's start is patch 0".to_string(), |p| format!(
                        "shard {}/{} (scored with --batch {})",
                        p.index, p.count, p.batch
                    )),
                    s.index,
                    s.count,
                    s.batch,
                    s.first_patch
                )));
            }
            end = s.end_patch;
            previous = Some(s);
        }
        if end != plan.patches {
            return Err(bad(format!(
                "the shards end at patch {end}, the plan at {}: score every shard with one \
                 --batch",
                plan.patches
            )));
        }
        Ok(())
    }
}

/// `s5 curate status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub patches: u64,
    pub scored: u64,
    pub shards: ShardSet,
    /// Unreadable images in the finished shards.
    pub unreadable: Vec<SkippedFile>,
}

/// How far the scoring of the curation run at `out` has come.
pub fn status(out: &Path) -> Result<Status> {
    let run = RunDir::new(out);
    let plan = Plan::load(&run)?;
    let shards = ShardSet::current(&run)?;
    Ok(Status {
        patches: plan.patches,
        scored: shards.patches_scored(),
        unreadable: shards
            .shards
            .iter()
            .flat_map(|s| s.unreadable.iter().cloned())
            .collect(),
        shards,
    })
}

/// Rebuilds `curation/report.json` from the shards that count (and the selection, once
/// made), holding `curation/report.lock` from reading the shards to saving the report: the
/// report last written is never older than one written before it.
pub fn refresh_report(
    run: &RunDir,
    selection: Option<(&Selection, u64)>,
) -> Result<CurationReport> {
    let (_lock, _) = RunLock::acquire_waiting(&CurationReport::lock_path(run), REPORT_PATIENCE)?;
    let plan = Plan::load(run)?;
    let prototypes = Prototypes::load(&Prototypes::path(run))?;
    let shards = ShardSet::current(run)?;
    let spec = DatasetSpec::load(&plan.spec)?;
    let source = tiled(&plan);
    write_report(&ReportInputs {
        run,
        plan: &plan,
        source: &source,
        spec: &spec,
        prototypes: &prototypes,
        shards: &shards.shards,
        shard_count: shards.count,
        selection,
    })
}
