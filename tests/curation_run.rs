//! The curation pipeline through the library, in this process (no `s5` binary): a new plan
//! over scored shards, shards of mixed batches, `run_all` reusing only what fits, the report
//! rebuilt under its lock. The seed model is untrained (its scores need only be scores).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use s5::curate::all::{RunOptions, run_all};
use s5::curate::floor::DEFAULT_QUANTILE;
use s5::curate::kmeans::KMeansConfig;
use s5::curate::plan::shard_range;
use s5::curate::run::{
    CurationRun, PlanOptions, PrototypeOptions, SelectOptions, SimilarityRule, Stage, Stale,
};
use s5::curate::shards::{ScoreOptions, ShardSet, refresh_report, score_shard};
use s5::data::DatasetSpec;
use s5::data::synth::{SynthConfig, generate};
use s5::device::Gpu;
use s5::run::curation::{CurationReport, Embedding, Plan, ShardSummary, SimilarityFloor};
use s5::run::{ModelCard, RunDir, RunLock};

use crate::common::{device, small_segmentor};

/// A small synthetic pool and labeled set, and an untrained seed model's checkpoint folder.
struct Fixture {
    _dir: tempfile::TempDir,
    pool: PathBuf,
    truth: PathBuf,
    model: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = SynthConfig {
            tile_px: 64,
            train_per_domain: 3,
            val_per_domain: 1,
            pool_in_domain: 3,
            pool_ood_per_kind: 1,
            pool_width_px: 192,
            ..SynthConfig::default()
        };
        let synth = generate(&dir.path().join("synth"), &config, &|| {}).unwrap();
        let spec = DatasetSpec::load(&synth.urban_spec).unwrap();
        let cfg = small_segmentor(2, spec.classes.len());
        let model = s5::model::Segmentor::new(&cfg, &device());
        let card = ModelCard {
            segmentor: cfg,
            datasets: vec![s5::train::checkpoint::dataset_card(
                &spec,
                &synth.urban_spec,
            )],
        };
        let folder = dir.path().join("seed");
        s5::train::checkpoint::save_model_folder(&model, &card, &folder).unwrap();
        Fixture {
            pool: synth.pool_spec.clone(),
            truth: synth.pool_spec.parent().unwrap().join("truth.ron"),
            model: folder,
            _dir: dir,
        }
    })
}

fn gpu() -> &'static Gpu {
    device();
    s5::device::gpu(None).unwrap()
}

fn plan_options(patch_px: u32, stale: Stale) -> PlanOptions {
    PlanOptions {
        spec: fixture().pool.clone(),
        split: "unlabeled".into(),
        patch_px,
        stride_px: patch_px,
        truth: None,
        stale,
    }
}

fn prototype_options(level: usize) -> PrototypeOptions {
    PrototypeOptions {
        model: fixture().model.clone(),
        dataset: None,
        split: "train".into(),
        kmeans: KMeansConfig {
            clusters: 2,
            restarts: 1,
            ..KMeansConfig::default()
        },
        embedding: Embedding {
            level,
            ..Embedding::default()
        },
        floor_quantile: DEFAULT_QUANTILE,
        batch: 4,
    }
}

fn score(out: &Path, shard: (u32, u32), batch: usize) -> ShardSummary {
    let options = ScoreOptions {
        model: fixture().model.clone(),
        shard,
        batch,
        f16: false,
    };
    score_shard(out, &options, gpu(), &|_| {}).unwrap().summary
}

fn select_options(budget: u64) -> SelectOptions {
    SelectOptions {
        budget,
        foreground_min: None,
        entropy_max: None,
        similarity: SimilarityRule::Floor,
        ignore_clusters: false,
    }
}

#[test]
fn a_new_plan_over_scored_shards_is_refused_or_moves_them_aside() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("curation");
    let (run, _) = CurationRun::open(&out).unwrap();
    let old = run.plan(&plan_options(64, Stale::Refuse)).unwrap().plan;
    let (_, floor) = run
        .prototypes(&prototype_options(3), gpu(), &|_| {})
        .unwrap();
    assert_eq!(floor.expect("the plan was there").patch_px, 64);
    score(&out, (0, 1), 4);
    run.select(&select_options(3)).unwrap();

    // A finer grid numbers the patches anew: refused, nothing changed, the way out named.
    let err = run
        .plan(&plan_options(32, Stale::Refuse))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--move-stale") && err.contains("new --out"),
        "{err}"
    );
    assert_eq!(Plan::load(run.dir()).unwrap(), old);
    assert_eq!(ShardSet::current(run.dir()).unwrap().shards.len(), 1);
    // The same grid again keeps the shards.
    let same = run.plan(&plan_options(64, Stale::Refuse)).unwrap();
    assert!(same.same_numbering && same.moved_aside.is_none());
    assert_eq!(ShardSet::current(run.dir()).unwrap().shards.len(), 1);

    // Moved aside: the shards, floor, selection and report go to curation/stale-1/.
    let moved = run.plan(&plan_options(32, Stale::MoveAside)).unwrap();
    let folder = moved.moved_aside.expect("stale results were there");
    assert_eq!(folder, run.dir().curation().join("stale-1"));
    for name in ["shards", "floor.json", "selected.tsv", "report.json"] {
        assert!(folder.join(name).exists(), "{name} moved");
        assert!(!run.dir().curation().join(name).exists(), "{name} gone");
    }
    assert!(moved.plan.patches > old.patches);
    let none = ShardSet::current(run.dir()).unwrap();
    assert_eq!((none.count, none.shards.len()), (0, 0));
    let err = run.select(&select_options(3)).unwrap_err().to_string();
    assert!(
        err.contains("no shard is scored") && err.contains("s5 curate score"),
        "{err}"
    );
    // Scored again for the new plan; the floor is missing until it is calibrated again.
    score(&out, (0, 1), 4);
    let err = run.select(&select_options(3)).unwrap_err().to_string();
    assert!(
        err.contains("s5 curate floor") && err.contains("--no-floor"),
        "{err}"
    );
    let floor = run.floor(&prototype_options(3), gpu(), &|_| {}).unwrap();
    assert_eq!(floor.patch_px, 32);
    let selected = run.select(&select_options(3)).unwrap();
    assert!(
        selected
            .selection
            .selected
            .iter()
            .all(|r| r.patch < moved.plan.patches)
    );
}

#[test]
fn shards_of_mixed_batches_leave_a_gap_that_select_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("curation");
    let (run, _) = CurationRun::open(&out).unwrap();
    let plan = run.plan(&plan_options(32, Stale::Refuse)).unwrap().plan;
    run.prototypes(&prototype_options(3), gpu(), &|_| {})
        .unwrap();
    let (first, second) = (
        shard_range(plan.patches, 0, 2, 8),
        shard_range(plan.patches, 1, 2, 5),
    );
    assert_ne!(
        first.end, second.start,
        "the batches must shard differently"
    );
    score(&out, (0, 2), 8);
    score(&out, (1, 2), 5);
    let err = run.select(&select_options(4)).unwrap_err().to_string();
    let (lo, hi) = (first.end.min(second.start), first.end.max(second.start));
    let what = if first.end < second.start {
        "are in no shard"
    } else {
        "are in two shards"
    };
    assert!(
        err.contains(&format!("patches {lo}..{hi} of the plan {what}")),
        "{err}"
    );
    assert!(
        err.contains("--batch 8") && err.contains("--batch 5"),
        "{err}"
    );
    // One batch for both: complete.
    score(&out, (1, 2), 8);
    run.select(&select_options(4)).unwrap();
}

#[test]
fn curate_run_reuses_only_the_stages_made_with_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("curation");
    let options = |level: usize, truth: Option<PathBuf>| RunOptions {
        out: out.clone(),
        plan: PlanOptions {
            truth,
            ..plan_options(64, Stale::Refuse)
        },
        prototypes: prototype_options(level),
        batch: 4,
        f16: false,
        select: select_options(4),
    };
    let first = run_all(&options(3, None), gpu(), &|_| {}).unwrap();
    assert!(first.reused.is_empty(), "{:?}", first.reused);
    assert!(first.plan.in_distribution_kind.is_none());
    // The truth added: the plan's kinds are filled in place; its numbering and every stage
    // after it stay.
    let truth = Some(fixture().truth.clone());
    let again = run_all(&options(3, truth.clone()), gpu(), &|_| {}).unwrap();
    assert_eq!(
        again.reused,
        [Stage::Plan, Stage::Prototypes, Stage::Floor, Stage::Score]
    );
    assert!(again.plan.in_distribution_kind.is_some());
    assert!(again.plan.images.iter().all(|i| i.kind.is_some()));
    assert!(
        again.select.report.kinds.len() > 1,
        "the report knows the kinds"
    );
    // Another feature level: embedded again, so calibrated and scored again.
    let stages = std::sync::Mutex::new(Vec::new());
    // Where the first scoring progress came, among the stage lines: after "score".
    let first_scoring = std::sync::Mutex::new(None);
    let other = run_all(&options(2, truth), gpu(), &|p| match p {
        s5::curate::run::Progress::Stage { stage, reused, .. } => {
            stages.lock().unwrap().push((stage, reused));
        }
        s5::curate::run::Progress::Scoring { .. } => {
            let mut first = first_scoring.lock().unwrap();
            if first.is_none() {
                *first = Some(stages.lock().unwrap().len());
            }
        }
        _ => {}
    })
    .unwrap();
    assert_eq!(
        first_scoring.into_inner().unwrap(),
        Some(4),
        "the score stage is announced before its progress"
    );
    assert_eq!(other.reused, [Stage::Plan]);
    assert_eq!(other.prototypes.embedding.level, 2);
    assert_eq!(
        stages.into_inner().unwrap(),
        [
            (Stage::Plan, true),
            (Stage::Prototypes, false),
            (Stage::Floor, false),
            (Stage::Score, false),
            (Stage::Select, false),
        ],
        "the floor came with the prototypes, made for this plan"
    );
    let floor = SimilarityFloor::load(&RunDir::new(&out)).unwrap();
    let sha = s5::run::checkpoint::file_sum(&RunDir::new(&out).curation().join("prototypes.json"))
        .unwrap()
        .sha256;
    assert_eq!(floor.prototypes_sha256, sha);
    assert_eq!(other.score.summary.prototypes_sha256, sha);
}

#[test]
fn the_report_is_rebuilt_from_the_shards_there_when_its_lock_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("curation");
    let (run, _) = CurationRun::open(&out).unwrap();
    run.plan(&plan_options(64, Stale::Refuse)).unwrap();
    run.prototypes(&prototype_options(3), gpu(), &|_| {})
        .unwrap();
    score(&out, (0, 2), 4);
    score(&out, (1, 2), 4);
    let rundir = RunDir::new(&out);
    let (summary, _) = ShardSummary::paths(&rundir, 1, 2);
    let aside = dir.path().join("shard-1.json");
    // A writer that starts while shard 1 is not there yet and another writer holds the lock:
    // it waits, and reads the shards once it holds the lock, so it sees shard 1.
    std::fs::rename(&summary, &aside).unwrap();
    let lock = RunLock::acquire_at(&CurationReport::lock_path(&rundir)).unwrap();
    let writer = {
        let rundir = rundir.clone();
        std::thread::spawn(move || refresh_report(&rundir, None))
    };
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(!writer.is_finished(), "it waits for the lock");
    std::fs::rename(&aside, &summary).unwrap();
    drop(lock);
    let report = writer.join().unwrap().unwrap();
    assert_eq!((report.shards_finished, report.shards), (2, 2));
    let saved = CurationReport::load(&rundir).unwrap();
    assert_eq!(
        (saved.shards_finished, saved.patches_scored),
        (2, report.patches_planned)
    );
}
