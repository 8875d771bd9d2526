//! What each stage of the demo runs, and the loop over them.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::preset::Preset;
use crate::curate::all::{RunOptions, run_all};
use crate::curate::floor::DEFAULT_QUANTILE;
use crate::curate::kmeans::KMeansConfig;
use crate::curate::run::{
    PlanOptions, Progress, PrototypeOptions, SelectOptions, SimilarityRule, Stale,
};
use crate::data::synth::FEW_LABELED;
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::run::curation::Embedding;
use crate::run::demo::{
    CurationResult, DataResult, DemoStage, DemoState, DemoTraining, FinishedStage, RunningStage,
    StageResult, TrainResult,
};
use crate::run::{EventKind, MetricKey, RunDir, RunKind, keys};
use crate::train::config::{
    Backbone, DatasetEntry, FinetuneMode, FinetuneSetup, FixMatchSetup, Precision, RecipeSetup,
    SampleSetup, UnlabeledEntry, ValMetric,
};
use crate::train::{Report, Start, TrainConfig, TrainOptions, train};

/// How to run a demo.
pub struct DemoOptions<'a> {
    /// The demo folder (made absolute: what the runs record).
    pub out: PathBuf,
    pub preset: Preset,
    /// Precision and seed of the training stages (default: f32, seed 0, the README's demo).
    pub training: DemoTraining,
    /// The GPUs of the training stages (the first the main one; curation uses it).
    pub gpus: &'a [Gpu],
    /// Set (by Ctrl-C) to checkpoint and stop a training stage after its step.
    pub stop: &'a AtomicBool,
}

/// What a demo tells its caller while it runs.
pub enum DemoEvent<'a> {
    /// A stage begins (`done`: it finished in an earlier session, in this many seconds,
    /// and is skipped).
    Stage { stage: DemoStage, done: Option<f64> },
    /// A training stage starts on these GPUs.
    Training { stage: DemoStage, gpus: &'a [Gpu] },
    /// The training loop's progress.
    Train(Report<'a>),
    /// The curation's progress.
    Curation(Progress),
    /// A stage finished.
    Finished {
        stage: DemoStage,
        seconds: f64,
        result: &'a StageResult,
    },
}

/// How a demo ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DemoEnd {
    /// Every stage is done: the state and `summary.md`'s text.
    Finished { state: DemoState, summary: String },
    /// Stopped in a training stage (its checkpoint is written; a rerun continues).
    Stopped { stage: DemoStage },
}

/// Where events go.
pub type Events<'e> = &'e mut (dyn FnMut(DemoEvent<'_>) + Send);

/// Runs (or continues) the demo in `options.out`.
pub fn run_demo(options: &DemoOptions, events: Events) -> Result<DemoEnd> {
    let out = std::path::absolute(&options.out).map_err(|source| Error::Io {
        path: options.out.clone(),
        source,
    })?;
    // Refused before anything is written, as the training stages would refuse it later.
    if options.training.mixed_precision
        && !crate::model::half::supports_f16(&options.gpus[0].device)
    {
        return Err(Error::NoShaderF16 {
            adapter: options.gpus[0].adapter.name.clone(),
            asked: "`s5 demo --precision mixed`".into(),
            instead: "run the demo in f32 (the default)".into(),
        });
    }
    std::fs::create_dir_all(&out).map_err(|source| Error::Io {
        path: out.clone(),
        source,
    })?;
    let mut state = match DemoState::load(&out)? {
        Some(state) if state.preset != options.preset.name => {
            return Err(Error::RunDir {
                path: out,
                reason: format!(
                    "holds a `{}` demo: rerun with --preset {} to continue it, or choose another \
                     --out",
                    state.preset, state.preset
                ),
            });
        }
        Some(state) if state.training != options.training => {
            return Err(Error::RunDir {
                path: out,
                reason: format!(
                    "holds a demo trained with `{}`: rerun with those flags to continue it, or \
                     choose another --out",
                    state.training.flags()
                ),
            });
        }
        Some(state) => state,
        None => DemoState::new(&options.preset.name, options.training),
    };
    state.save(&out)?;
    let demo = Demo {
        preset: &options.preset,
        training: options.training,
        out: out.clone(),
        gpus: options.gpus,
        stop: options.stop,
    };
    for stage in DemoStage::ALL {
        if let Some(done) = state.stages.get(&stage) {
            events(DemoEvent::Stage {
                stage,
                done: Some(done.seconds),
            });
            continue;
        }
        state.running = Some(RunningStage {
            stage,
            since_unix_s: crate::run::lock::now_unix_s(),
            pid: std::process::id(),
        });
        state.save(&out)?;
        events(DemoEvent::Stage { stage, done: None });
        let t0 = Instant::now();
        let ended = demo.stage(stage, events);
        let seconds = t0.elapsed().as_secs_f64() + state.partial_s.remove(&stage).unwrap_or(0.0);
        state.running = None;
        match ended {
            Ok(Some(result)) => {
                state
                    .stages
                    .insert(stage, FinishedStage { seconds, result });
                state.save(&out)?;
                events(DemoEvent::Finished {
                    stage,
                    seconds,
                    result: &state.stages[&stage].result,
                });
            }
            Ok(None) => {
                state.partial_s.insert(stage, seconds);
                state.save(&out)?;
                return Ok(DemoEnd::Stopped { stage });
            }
            Err(e) => {
                state.partial_s.insert(stage, seconds);
                state.save(&out)?;
                return Err(e);
            }
        }
    }
    let summary = super::summary::summary(&options.preset, &state, &options.out);
    crate::fsutil::write_atomic(&out.join("summary.md"), summary.as_bytes())?;
    Ok(DemoEnd::Finished { state, summary })
}

/// One demo folder's setup.
struct Demo<'a> {
    preset: &'a Preset,
    training: DemoTraining,
    /// The folder, absolute.
    out: PathBuf,
    gpus: &'a [Gpu],
    stop: &'a AtomicBool,
}

impl Demo<'_> {
    fn data(&self) -> PathBuf {
        self.out.join(DemoStage::Data.folder())
    }

    fn spec(&self, domain: &str) -> PathBuf {
        self.data().join(domain).join(format!("{domain}.ron"))
    }

    fn run(&self, stage: DemoStage) -> PathBuf {
        self.out.join(stage.folder())
    }

    /// Runs `stage`; `None`: stopped (Ctrl-C) with a checkpoint written.
    fn stage(&self, stage: DemoStage, events: Events) -> Result<Option<StageResult>> {
        match stage {
            DemoStage::Data => self.synth().map(Some),
            DemoStage::Seed => self.train(stage, self.seed_config(), RunKind::Train, events),
            DemoStage::Curation => self.curate(events).map(Some),
            DemoStage::S4p => self.train(stage, self.s4p_config(), RunKind::Pretrain, events),
            DemoStage::MoeMdf => {
                let config = self.finetune_config(Some(self.run(DemoStage::S4p)));
                self.train(stage, config, RunKind::Finetune, events)
            }
            DemoStage::Baseline => {
                let config = self.finetune_config(None);
                self.train(stage, config, RunKind::Finetune, events)
            }
        }
    }

    fn synth(&self) -> Result<StageResult> {
        let cfg = &self.preset.synth;
        crate::data::synth::generate(&self.data(), cfg, &|| {})?;
        Ok(StageResult::Data(DataResult {
            train_tiles_per_domain: cfg.train_per_domain,
            val_tiles_per_domain: cfg.val_per_domain,
            tile_px: cfg.tile_px,
            pool_images: cfg.pool_total(),
        }))
    }

    /// What every training of the demo shares.
    fn base_config(&self, datasets: Vec<DatasetEntry>, steps: u64, lr: f64) -> TrainConfig {
        let p = self.preset;
        let mut c = TrainConfig::default();
        c.datasets = datasets;
        c.model.backbone = Backbone::Custom(p.backbone.clone());
        c.model.decoder_channels = p.decoder_channels;
        c.model.drop_path = 0.05;
        c.steps = steps;
        c.batch = p.batch;
        c.optimizer.lr = lr;
        c.optimizer.warmup_steps = (steps / 20).min(50);
        c.optimizer.clip_grad_norm = Some(5.0);
        c.augment.crop_px = p.crop_px;
        c.augment.scale_range = p.scale_range;
        c.val.every_steps = p.val_every;
        c.val.sample_images = 2;
        c.checkpoint_every = (steps / 4).max(1);
        c.seed = self.training.seed;
        if self.training.mixed_precision {
            c.precision = Precision::Mixed;
        }
        c
    }

    fn urban(&self, train_split: &str) -> DatasetEntry {
        DatasetEntry {
            spec: self.spec("urban"),
            train_split: train_split.into(),
            ..DatasetEntry::default()
        }
    }

    fn seed_config(&self) -> TrainConfig {
        let p = self.preset;
        self.base_config(vec![self.urban(FEW_LABELED)], p.seed_steps, p.lr)
    }

    fn s4p_config(&self) -> TrainConfig {
        let p = self.preset;
        let mut c = self.base_config(vec![self.urban(FEW_LABELED)], p.s4p_steps, p.lr);
        c.model.init = Some(self.run(DemoStage::Seed));
        c.recipe = RecipeSetup::FixMatch(FixMatchSetup {
            unlabeled: UnlabeledEntry {
                spec: self.spec("pool"),
                patches: Some(self.run(DemoStage::Curation).join("curation/selected.tsv")),
                ..UnlabeledEntry::default()
            },
            unlabeled_batch: p.unlabeled_batch,
            samples: SampleSetup {
                every_steps: (p.s4p_steps / 8).max(1),
                images: 4,
                keep: 12,
            },
            ..FixMatchSetup::default()
        });
        c
    }

    /// MoE-MDF over the three domains (urban with its few labels, as everywhere in the
    /// demo), from `init` (`None`: the backbone's initialisation).
    fn finetune_config(&self, init: Option<PathBuf>) -> TrainConfig {
        let p = self.preset;
        let datasets = vec![
            DatasetEntry {
                metric: ValMetric::MF1,
                ..self.urban(FEW_LABELED)
            },
            DatasetEntry {
                spec: self.spec("rural"),
                ..DatasetEntry::default()
            },
            DatasetEntry {
                spec: self.spec("suburb"),
                ..DatasetEntry::default()
            },
        ];
        let mut c = self.base_config(datasets, p.finetune_steps, p.finetune_lr);
        c.model.init = init;
        c.optimizer.weight_decay = 0.05;
        c.optimizer.warmup_steps = 0;
        c.recipe = RecipeSetup::Finetune(FinetuneSetup {
            mode: FinetuneMode::MoeMdf(p.expert_dim),
        });
        c
    }

    /// A training stage: new, or resumed from its newest checkpoint; its last validation
    /// and its last step's pseudo-label numbers are its result. `None`: stopped.
    fn train(
        &self,
        stage: DemoStage,
        config: TrainConfig,
        kind: RunKind,
        events: Events,
    ) -> Result<Option<StageResult>> {
        let dir = self.run(stage);
        let run = RunDir::new(&dir);
        let start = if run.latest_checkpoint()?.is_some() {
            Start::Resume {
                check: None,
                steps: None,
            }
        } else {
            Start::New(config)
        };
        events(DemoEvent::Training {
            stage,
            gpus: self.gpus,
        });
        let mut report = |r: Report<'_>| events(DemoEvent::Train(r));
        let outcome = train(
            start,
            &run,
            &self.gpus[0].device,
            TrainOptions {
                stop: Some(self.stop),
                abort_after_step: None,
                replicas: self.gpus[1..].iter().map(|g| g.device.clone()).collect(),
                kind: Some(kind),
                report: Some(&mut report),
                world: None,
                sum_after_backward: false,
            },
        )?;
        if outcome.interrupted || self.stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let events = crate::run::read_events(&run.events())?;
        let last_train = events.iter().rfind(|e| e.kind == EventKind::Train);
        let extra = |key: MetricKey| last_train.and_then(|e| e.extra_f64(&key));
        Ok(Some(StageResult::Train(TrainResult {
            steps: outcome.steps_done,
            val: events
                .iter()
                .rfind(|e| e.kind == EventKind::Val)
                .map(|e| e.metrics.clone())
                .unwrap_or_default(),
            mask_ratio: extra(keys::MASK_RATIO),
            pseudo_label_acc_confident: extra(keys::PSEUDO_LABEL_ACC_CONFIDENT),
            pseudo_label_acc_all: extra(keys::PSEUDO_LABEL_ACC_ALL),
            skipped_steps: extra(keys::SKIPPED_STEPS).map(|n| n as u64),
        })))
    }

    fn curate(&self, events: Events) -> Result<StageResult> {
        let p = self.preset;
        let dir = self.run(DemoStage::Curation);
        let truth = self.data().join("pool/truth.ron");
        let options = RunOptions {
            out: dir.clone(),
            plan: PlanOptions {
                spec: self.spec("pool"),
                split: "unlabeled".into(),
                patch_px: p.patch_px,
                stride_px: p.patch_px,
                truth: Some(truth.clone()),
                stale: Stale::Refuse,
            },
            // The prototypes cluster the urban training images (features only, no labels:
            // the few labeled tiles alone are too few images for the clusters).
            prototypes: PrototypeOptions {
                model: self.run(DemoStage::Seed),
                dataset: None,
                split: "train".into(),
                kmeans: KMeansConfig {
                    clusters: p.clusters,
                    ..KMeansConfig::default()
                },
                embedding: Embedding::default(),
                floor_quantile: DEFAULT_QUANTILE,
                batch: 8,
            },
            batch: 8,
            f16: false,
            select: SelectOptions {
                budget: p.budget(),
                foreground_min: None,
                entropy_max: None,
                similarity: SimilarityRule::Floor,
                ignore_clusters: false,
            },
        };
        let events = Mutex::new(events);
        let outcome = run_all(&options, &self.gpus[0], &|progress| {
            let mut events = events.lock().unwrap_or_else(|p| p.into_inner());
            (*events)(DemoEvent::Curation(progress));
        })?;
        let evaluation = crate::curate::evaluate::evaluate_run(&dir, &truth)?;
        Ok(StageResult::Curation(CurationResult {
            pool_patches: evaluation.kinds.iter().map(|k| k.pool_patches).sum(),
            selected_patches: evaluation.kinds.iter().map(|k| k.selected_patches).sum(),
            pool_ood_share: evaluation.pool_ood_share,
            selected_ood_share: evaluation.selected_ood_share,
            below_floor: outcome.select.selection.below_floor.iter().sum(),
        }))
    }
}

/// Whether `stage` trains (a Ctrl-C then checkpoints and stops it, where it quits any
/// other stage at once).
pub fn trains(stage: DemoStage) -> bool {
    !matches!(stage, DemoStage::Data | DemoStage::Curation)
}
