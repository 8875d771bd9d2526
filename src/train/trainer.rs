//! The one training loop of `s5 train` and `s5 pretrain`, whatever the recipe
//! ([`super::recipe`]) computes in a step: resume from the newest intact checkpoint, the
//! schedule, the per-step seeds, the data-parallel devices, the gradient clip and AdamW, the
//! NaN stop that keeps the last good checkpoint, events, checkpoints that resume exactly
//! (model, optimizer, schedule, step, data order and dropout draws), validation, sample
//! pictures, a clean stop on request, and one writer per run directory. It draws nothing:
//! progress goes to the caller's [`Report`] callback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::Device;

use super::batch::{Dataset, load_datasets};
use super::checkpoint::{dataset_card, save_checkpoint};
use super::config::{Checkpointing, Precision, TrainConfig};
use super::loss_scale::{LossScaler, ScaledStep};
use super::optimizer::Optimizer;
use super::parallel::Replicas;
use super::rank_start::{self, Identity};
use super::recipe::{self, Recipe, StepResult};
use super::schedule::CosineSchedule;
use super::validate::validate;
use crate::distributed::World;
use crate::error::{Error, Result};
use crate::model::{Segmentor, checkpoint, import};
use crate::run::checkpoint::{
    MODEL_FILE, OPTIMIZER_FILE, ResumePoint, newest_intact, read_card, read_state,
    resolve_checkpoint,
};
use crate::run::{
    Event, EventKind, EventLog, Manifest, MetricKey, ModelCard, RunDir, RunKind, RunLock,
    SampleWriter, TrainState, keys,
};

/// How a run starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// A new run from this config, in a folder without checkpoints.
    New(TrainConfig),
    /// Continue the run from its newest intact checkpoint, as its own `config.ron` says.
    Resume {
        /// A config the caller gave again: refused if it differs from the run's in anything
        /// but `steps`.
        check: Option<TrainConfig>,
        /// Extend the run to this many steps.
        steps: Option<u64>,
    },
}

/// Progress, for whoever shows it (the CLI draws a bar).
#[derive(Debug)]
pub enum Report<'a> {
    /// The loop starts at `first_step` of `total_steps`.
    Begin { first_step: u64, total_steps: u64 },
    /// A step was taken and logged.
    Step(&'a Event),
    /// A validation finished.
    Validated {
        step: u64,
        metrics: &'a BTreeMap<MetricKey, f64>,
        seconds: f64,
    },
    /// Something the user should know that does not stop the run.
    Warning(String),
}

/// How a run is driven (beyond its config).
#[derive(Default)]
pub struct TrainOptions<'a> {
    /// Set (e.g. by Ctrl-C) to checkpoint and stop after the current step.
    pub stop: Option<&'a AtomicBool>,
    /// Crash on purpose (`abort()`, no cleanup) after this step: for crash-recovery tests.
    pub abort_after_step: Option<u64>,
    /// Further GPUs (their plain devices) for data parallelism: each step's batch is split
    /// between the main device and these ([`super::parallel`]). Empty: one GPU.
    pub replicas: Vec<Device>,
    /// The kind of run the caller writes (`s5 train`: `Train`, `s5 pretrain`: `Pretrain`):
    /// a config or a resumed run of another kind is refused, naming the command to use.
    /// `None`: whatever the config's recipe says.
    pub kind: Option<RunKind>,
    /// Receives progress; `None`: silent.
    pub report: Option<&'a mut dyn FnMut(Report<'_>)>,
    /// The MPI job this process is one rank of ([`crate::distributed::World::join`]): every
    /// step's batch is split over all ranks' devices and rank 0 alone writes the run
    /// directory. `None`: a job of one.
    pub world: Option<&'static World>,
    /// In an MPI job, sum the gradients over the ranks after the whole backward pass only
    /// (the same sums; for measuring): by default each recomputed ViT block's gradients are
    /// summed while the backward pass goes on ([`super::overlap`]). If any rank asks for it,
    /// every rank does.
    pub sum_after_backward: bool,
}

impl TrainOptions<'_> {
    fn world(&self) -> &'static World {
        match self.world {
            Some(world) => world,
            None => World::alone(),
        }
    }

    fn report(&mut self, report: Report<'_>) {
        if let Some(f) = self.report.as_mut() {
            f(report);
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// Steps completed (including those of earlier sessions).
    pub steps_done: u64,
    /// Stopped by request before the configured number of steps.
    pub interrupted: bool,
    /// The newest checkpoint folder.
    pub checkpoint: Option<PathBuf>,
    /// The last validation's metrics (`<dataset>/mIoU`, ...).
    pub val_metrics: BTreeMap<MetricKey, f64>,
}

/// Mixed into the seed that initialises a model trained over several devices.
const INIT_SEED: u64 = 0x6a09_e667_f3bc_c908;

/// Mixed into the seed of data-parallel device k > 0, so its dropout draws differ.
const REPLICA_SEED: u64 = 0x5851_f42d_4c95_7f2d;

/// The training twin of `device`: autodiff, with burn's balanced gradient checkpointing
/// (activations of memory-bound ops recomputed in the backward pass) when `checkpointing`
/// asks for it (`Balanced`, and `Blocks` outside the recomputed blocks).
pub fn autodiff_device(device: &Device, checkpointing: Checkpointing) -> Device {
    let train = device.clone().autodiff();
    if checkpointing.balanced() {
        train.gradient_checkpointing()
    } else {
        train
    }
}

/// The seed of the device RNG (dropout, drop path) for a step: a resumed run draws the same
/// masks as an uninterrupted one.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Trains into `run` as `start` says. Holds the run's lock throughout.
pub fn train(
    start: Start,
    run: &RunDir,
    device: &Device,
    mut options: TrainOptions<'_>,
) -> Result<TrainOutcome> {
    let world = options.world();
    // A new run is checked whole, its data included, before its folder is touched; in an
    // MPI job every rank's run equals rank 0's, checked before too.
    let (start, prepared) = match start {
        Start::New(config) => {
            check_precision(&config, device)?;
            let (config, prepared) = preflight(config, &options)?;
            if world.size() > 1 {
                let data = Identity::data(&config, &prepared.1, &prepared.0)?;
                Identity::new(&config, data).agree(world)?;
            }
            (Start::New(config), Some(prepared))
        }
        Start::Resume { check, steps } => {
            Identity::resume(check.as_ref(), steps).agree(world)?;
            (Start::Resume { check, steps }, None)
        }
    };
    // Rank 0 alone holds the lock and reads and writes the run directory.
    let _lock = if world.is_writer() {
        let (lock, taken_over) = RunLock::acquire(run)?;
        if let Some(holder) = taken_over {
            options.report(Report::Warning(format!(
                "{}: took over the lock of {holder}, which no longer runs",
                run.lock().display()
            )));
        }
        Some(lock)
    } else {
        None
    };
    let opened = if world.is_writer() {
        Some(open(start, run, &mut options)?)
    } else {
        None
    };
    let opened = share_opened(world, opened)?;
    let mut session = Session::new(opened, prepared, run, device, &mut options)?;
    session.run(&mut options)
}

/// Rank 0's opened run on every rank: its config (the others neither read nor write the run
/// directory; its step follows, [`rank_start::share_state`], and its weights before the
/// first step, [`Session::start_replicas`]).
fn share_opened(world: &World, opened: Option<Opened>) -> Result<Opened> {
    if world.size() <= 1 {
        return Ok(opened.expect("a job of one opens its run"));
    }
    let text = opened
        .as_ref()
        .map(|o| o.config.to_ron())
        .unwrap_or_default();
    let text = world.broadcast_bytes(text.as_bytes());
    if let Some(opened) = opened {
        return Ok(opened);
    }
    let config = TrainConfig::parse_ron(&String::from_utf8_lossy(&text)).map_err(|reason| {
        Error::Execution(format!("rank 0's config did not arrive whole: {reason}"))
    })?;
    Ok(Opened {
        config,
        resume: None,
    })
}

/// Refuses `precision: Mixed` on an adapter without `shader-f16`, naming both.
fn check_precision(config: &TrainConfig, device: &Device) -> Result<()> {
    if config.precision == Precision::Mixed && !crate::model::half::supports_f16(device) {
        return Err(Error::NoShaderF16 {
            adapter: crate::device::adapter_name(),
            asked: "`precision: Mixed`".into(),
            instead: "train with `precision: F32` (the default)".into(),
        });
    }
    Ok(())
}

/// What a run trains: its datasets (the fine-tuning mode applied) and its model card.
type Prepared = (Vec<Dataset>, ModelCard);

/// A new run's config resolved and checked: every field, the recipe's kind against the
/// caller's, and what needs the data (the specs and their splits, the fine-tuning mode's
/// datasets, the model for their class counts, the weights to start from). Writes nothing;
/// returns the config with the fine-tuning mode applied and what it trains.
fn preflight(config: TrainConfig, options: &TrainOptions<'_>) -> Result<(TrainConfig, Prepared)> {
    let mut config = config.resolved()?;
    config.validate()?;
    let kind = config.recipe.run_kind();
    if let Some(wanted) = options.kind.filter(|&w| w != kind) {
        return Err(Error::Config {
            reason: format!(
                "the config's recipe makes a `{kind}` run, which `{}` does not write: run it \
                 with `{}`",
                wanted.command(),
                kind.command()
            ),
        });
    }
    let prepared = prepare(&mut config)?;
    if let Some(init) = &config.model.init {
        if !init.exists() {
            return Err(Error::MissingFile {
                path: init.clone(),
                context: Some("`model.init`: the weights to start from".into()),
            });
        }
        // A checkpoint folder (or run) to start from is verified before the run exists.
        if init.is_dir() {
            crate::run::checkpoint::verify(&resolve_checkpoint(init)?)?;
        }
    }
    Ok((config, prepared))
}

/// The datasets a run trains (the fine-tuning mode applied to `config`) and its model card.
fn prepare(config: &mut TrainConfig) -> Result<Prepared> {
    let mut datasets = load_datasets(config)?;
    if let crate::train::config::RecipeSetup::Finetune(setup) = config.recipe.clone() {
        let names: Vec<String> = datasets.iter().map(|d| d.spec.name.clone()).collect();
        let keep = setup
            .mode
            .apply(config, &names)
            .map_err(|reason| Error::Config { reason })?;
        let mut all: Vec<Option<Dataset>> = datasets.into_iter().map(Some).collect();
        datasets = keep.iter().filter_map(|&i| all[i].take()).collect();
    }
    let card = ModelCard {
        segmentor: config
            .model
            .segmentor(datasets.iter().map(|d| d.spec.num_classes()).collect())?,
        datasets: datasets
            .iter()
            .zip(&config.datasets)
            .map(|(d, entry)| dataset_card(&d.spec, &entry.spec))
            .collect(),
    };
    Ok((datasets, card))
}

/// A run's config, checked, and where it resumes from.
struct Opened {
    config: TrainConfig,
    resume: Option<ResumePoint>,
}

/// Checks that `start` fits the run directory and the caller's kind; writes the manifest of
/// a new run (or upgrades a resumed older one).
fn open(start: Start, run: &RunDir, options: &mut TrainOptions<'_>) -> Result<Opened> {
    let refuse = |reason: String| Error::RunDir {
        path: run.root().to_path_buf(),
        reason,
    };
    match start {
        Start::New(config) => {
            if run.latest_checkpoint()?.is_some() {
                return Err(refuse(
                    "this run directory already has checkpoints: pass --resume to continue it, \
                     or choose another output folder"
                        .into(),
                ));
            }
            Manifest::new(config.recipe.run_kind()).save(run)?;
            Ok(Opened {
                config,
                resume: None,
            })
        }
        Start::Resume { check, steps } => {
            let point = newest_intact(run)?.ok_or_else(|| {
                refuse(
                    "nothing to resume: the run has no checkpoint yet (start it without --resume)"
                        .into(),
                )
            })?;
            for skipped in &point.skipped {
                options.report(Report::Warning(format!(
                    "{skipped}; resuming from the intact checkpoint of step {}",
                    point.step
                )));
            }
            let manifest = Manifest::load(run)?;
            if let Some(wanted) = options.kind.filter(|&w| w != manifest.kind) {
                return Err(refuse(format!(
                    "this is a `{}` run, which `{}` does not continue: use `{} --resume --out {}`",
                    manifest.kind,
                    wanted.command(),
                    manifest.kind.command(),
                    run.root().display()
                )));
            }
            let mut config = TrainConfig::load(&run.config())?;
            if config.recipe.run_kind() != manifest.kind {
                return Err(refuse(format!(
                    "config.ron's recipe makes a `{}` run but manifest.json says `{}`: the run \
                     directory was edited by hand",
                    config.recipe.run_kind(),
                    manifest.kind
                )));
            }
            if let Some(given) = check {
                let given = given.resolved()?;
                let differ = config.sections_differing_from(&given);
                if !differ.is_empty() {
                    return Err(refuse(format!(
                        "--resume continues the run as its config.ron says; the given config \
                         differs in: {}. Start a new run for another setup",
                        differ.join(", ")
                    )));
                }
                // How a step computes, not what: a resumed session may switch checkpointing
                // and precision.
                config.activation_checkpointing = given.activation_checkpointing;
                config.precision = given.precision;
                config.loss_scaling = given.loss_scaling;
            }
            // A resumed run may be extended.
            config.steps = config.steps.max(steps.unwrap_or(0));
            config.validate()?;
            manifest.upgraded().save(run)?;
            Ok(Opened {
                config,
                resume: Some(point),
            })
        }
    }
}

/// Everything a running loop holds.
struct Session<'r> {
    run: &'r RunDir,
    config: TrainConfig,
    datasets: Vec<Dataset>,
    card: ModelCard,
    /// Out only while AdamW updates it (the update takes it by value).
    model: Option<Segmentor>,
    optimizer: Optimizer,
    recipe: Box<dyn Recipe>,
    /// Rank 0's; the other ranks of an MPI job write nothing.
    events: Option<EventLog>,
    schedule: CosineSchedule,
    /// Autodiff devices, the main one first.
    devices: Vec<Device>,
    /// The MPI job (a job of one outside MPI).
    world: &'static World,
    /// This rank's first device among every rank's, and the devices over every rank.
    first_slot: usize,
    slots: usize,
    /// Whether the gradient sums over the ranks overlap the backward pass (agreed by all).
    overlap: bool,
    /// The main plain device (validation, samples).
    device: Device,
    start_step: u64,
    wall_offset_s: f64,
    started: Instant,
    last_checkpoint: Option<u64>,
    /// The best checkpoint's score so far (`checkpoints/best`).
    best: Option<crate::run::checkpoint::BestScore>,
    /// The loss scaler of a mixed-precision run.
    scaler: Option<LossScaler>,
    outcome: TrainOutcome,
}

impl<'r> Session<'r> {
    fn new(
        opened: Opened,
        prepared: Option<Prepared>,
        run: &'r RunDir,
        device: &Device,
        options: &mut TrainOptions<'_>,
    ) -> Result<Self> {
        let Opened { mut config, resume } = opened;
        let world = options.world();
        let writer = world.is_writer();
        // A new run was prepared by its preflight; a resumed one from its config.ron.
        let (datasets, card) = match prepared {
            Some(prepared) => prepared,
            None => {
                let prepared = prepare(&mut config)?;
                // The ranks of a resumed job hold the same data (a new one checked it).
                if world.size() > 1 {
                    let data = Identity::data(&config, &prepared.1, &prepared.0)?;
                    Identity::new(&config, data).agree(world)?;
                }
                prepared
            }
        };
        check_precision(&config, device)?;
        let mixed = config.precision == Precision::Mixed;
        let train_device = autodiff_device(device, config.activation_checkpointing);
        // Other ranks take rank 0's weights before the first step.
        let init = config.model.init.as_ref().filter(|_| writer);
        let (model, state) = starting_model(&card, resume.as_ref(), init, &train_device)?;
        let model = with_step_settings(model, &config);
        let mut optimizer = Optimizer::new(&config.optimizer, &model);
        if let Some(point) = &resume {
            optimizer = optimizer.load(&point.dir.join(OPTIMIZER_FILE))?;
        }
        // Every rank of an MPI job starts at rank 0's step (its weights follow before the
        // first step, `start_replicas`).
        let state = rank_start::share_state(world, state)?;
        let (start_step, wall_offset_s, saved_scale) = (state.step, state.wall_s, state.loss_scale);
        // A run switched to mixed precision on resume starts a fresh scaler.
        let scaler = mixed.then(|| LossScaler::new(&config.loss_scaling, saved_scale));
        let events = if writer {
            crate::fsutil::write_atomic(&run.config(), config.to_ron().as_bytes())?;
            Some(EventLog::open(&run.events())?)
        } else {
            None
        };
        let schedule = CosineSchedule {
            base_lr: config.optimizer.lr,
            final_lr: config.optimizer.final_lr,
            warmup_steps: config.optimizer.warmup_steps,
            total_steps: config.steps,
        };
        let recipe = recipe::build(&config, &datasets, start_step)?;
        let (devices, first_slot, slots) = replica_devices(
            train_device,
            options,
            config.activation_checkpointing,
            recipe.splittable_images(),
        )?;
        let overlap = !world.any(options.sum_after_backward);
        let mut recipe = recipe;
        recipe.prepare_shares_only(Replicas {
            devices: &devices,
            world,
            first_slot,
            slots,
            overlap,
        });
        let last_checkpoint = resume
            .as_ref()
            .map(|p| p.step)
            .or((start_step > 0).then_some(start_step));
        Ok(Self {
            run,
            outcome: TrainOutcome {
                steps_done: start_step,
                interrupted: false,
                checkpoint: resume.map(|p| p.dir),
                val_metrics: BTreeMap::new(),
            },
            config,
            datasets,
            card,
            model: Some(model),
            optimizer,
            recipe,
            events,
            schedule,
            devices,
            world,
            first_slot,
            slots,
            overlap,
            device: device.clone(),
            start_step,
            wall_offset_s,
            started: Instant::now(),
            last_checkpoint,
            best: if writer {
                crate::run::checkpoint::read_best(run)?
            } else {
                None
            },
            scaler,
        })
    }

    fn model(&self) -> &Segmentor {
        self.model
            .as_ref()
            .expect("the model is back after every update")
    }

    /// Training time so far, including earlier sessions of a resumed run.
    fn wall(&self) -> f64 {
        self.wall_offset_s + self.started.elapsed().as_secs_f64()
    }

    fn run(&mut self, options: &mut TrainOptions<'_>) -> Result<TrainOutcome> {
        options.report(Report::Begin {
            first_step: self.start_step,
            total_steps: self.config.steps,
        });
        for step in self.start_step..self.config.steps {
            // Every rank stops after the same step, when any was asked to.
            let asked = options.stop.is_some_and(|s| s.load(Ordering::SeqCst));
            if self.world.any(asked) {
                self.outcome.interrupted = true;
                break;
            }
            self.step(step, options)?;
            if options.abort_after_step == Some(step + 1) {
                // A crash, not a shutdown: nothing after this line runs.
                std::process::abort();
            }
        }
        if self.outcome.interrupted {
            let done = self.outcome.steps_done;
            if self.last_checkpoint != Some(done) {
                self.checkpoint(done)?;
            }
            self.log(&Event::new(done, self.wall(), EventKind::Stop))?;
        }
        Ok(self.outcome.clone())
    }

    /// One step: the recipe's gradients, the NaN stop, the update, its event, and what is
    /// due after it (checkpoint, validation, samples).
    fn step(&mut self, step: u64, options: &mut TrainOptions<'_>) -> Result<()> {
        let t0 = Instant::now();
        if step == self.start_step {
            self.start_replicas(step)?;
        }
        for (k, d) in self.devices.iter().enumerate() {
            // Rank 0's device 0 draws what a one-GPU run draws; the others by their place
            // among every rank's devices (burn's generator is one per process, so a process
            // with several devices draws from the last seed set: see `super::parallel`).
            let slot = (self.first_slot + k) as u64;
            let seed = self.config.seed ^ slot.wrapping_mul(REPLICA_SEED);
            d.seed(step_seed(seed, step));
        }
        let loss_scale = self.scaler.as_ref().map_or(1.0, LossScaler::scale);
        let StepResult {
            mut grads,
            mut losses,
            stats,
        } = {
            let model = self
                .model
                .as_ref()
                .expect("the model is back after every update");
            let replicas = Replicas {
                devices: &self.devices,
                world: self.world,
                first_slot: self.first_slot,
                slots: self.slots,
                overlap: self.overlap,
            };
            self.recipe.step(model, replicas, loss_scale)?
        };
        let loss = losses.get(&keys::LOSS).copied().unwrap_or(f64::NAN);
        let lr = self.schedule.lr(step);
        let outcome = match &mut self.scaler {
            // f32: any non-finite loss is a divergence.
            None if loss.is_finite() => ScaledStep::Clean,
            None => ScaledStep::Diverged,
            Some(scaler) => scaler.check(
                loss,
                self.model
                    .as_ref()
                    .expect("the model is back after every update"),
                &mut grads,
            )?,
        };
        let grad_norm = match outcome {
            ScaledStep::Diverged => return Err(self.diverged(step, loss, lr)),
            // An overflow: weights and AdamW state stay as they are, the step counts.
            ScaledStep::Skipped => {
                losses.retain(|_, v| v.is_finite());
                None
            }
            ScaledStep::Clean => {
                let model = self
                    .model
                    .take()
                    .expect("the model is back after every update");
                // In an MPI job rank 0 updates and the others take its weights: every rank
                // then holds the same bits, whatever kernels its process picks for AdamW.
                let (updated, grad_norm) = if self.world.is_writer() {
                    self.optimizer.step(lr, model, grads)?
                } else {
                    drop(grads);
                    (model, None)
                };
                let updated = super::ranks::broadcast_weights(self.world, updated)?;
                self.model = Some(with_step_settings(updated, &self.config));
                grad_norm
            }
        };
        let done = step + 1;
        self.outcome.steps_done = done;

        let images = self.recipe.images_per_step() as f64;
        let mut extra: BTreeMap<String, serde_json::Value> = stats
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
        if let Some(norm) = grad_norm {
            extra.insert(keys::GRAD_NORM.to_string(), serde_json::json!(norm));
        }
        if let Some(scaler) = &self.scaler {
            let state = scaler.state();
            extra.insert(keys::LOSS_SCALE.to_string(), serde_json::json!(state.scale));
            extra.insert(
                keys::SKIPPED_STEPS.to_string(),
                serde_json::json!(state.skipped_steps),
            );
        }
        if let Some(memory) = crate::memory::device_memory(&self.devices[0]) {
            extra.insert(
                keys::DEVICE_MEMORY_BYTES.to_string(),
                serde_json::json!(memory.reserved_bytes),
            );
        }
        let event = Event {
            losses,
            lr: Some(lr),
            images_per_s: Some(images / t0.elapsed().as_secs_f64().max(1e-9)),
            extra,
            ..Event::new(done, self.wall(), EventKind::Train)
        };
        self.log(&event)?;
        options.report(Report::Step(&event));
        self.after_step(done, options)
    }

    /// Before a session's first step over several devices (this process's or the job's):
    /// rank 0 initialises the parameters burn has not initialised yet (it does so lazily, at
    /// first use), from its own generator seeded for this, so that a run over N devices starts
    /// from the same weights however they are spread over processes; then every rank takes
    /// rank 0's weights. A one-device run initialises lazily, as always.
    fn start_replicas(&mut self, step: u64) -> Result<()> {
        if self.slots <= 1 {
            return Ok(());
        }
        let model = self
            .model
            .take()
            .expect("the model is back after every update");
        if self.world.is_writer() {
            self.device
                .seed(step_seed(self.config.seed ^ INIT_SEED, step));
            rank_start::initialize(&model);
        }
        let model = super::ranks::broadcast_weights(self.world, model)?;
        self.model = Some(with_step_settings(model, &self.config));
        Ok(())
    }

    /// Logs a `diverged` event and says which checkpoint is kept.
    fn diverged(&mut self, step: u64, loss: f64, lr: f64) -> Error {
        let kept = match self.last_checkpoint {
            Some(s) => format!(
                "The last good checkpoint (step {s}) is kept in {}.",
                self.run.checkpoint(s).display()
            ),
            None => "No checkpoint was written yet.".to_string(),
        };
        let event = Event {
            lr: Some(lr),
            ..Event::new(step, self.wall(), EventKind::Diverged)
        };
        if let Err(e) = self.log(&event) {
            return e;
        }
        Error::Diverged { step, loss, kept }
    }

    /// Appends `event` to the run's log (rank 0; the other ranks write nothing).
    fn log(&mut self, event: &Event) -> Result<()> {
        match &mut self.events {
            Some(events) => Ok(events.append(event)?),
            None => Ok(()),
        }
    }

    /// The checkpoint, validation and samples due after step `done` (rank 0's: the other
    /// ranks of an MPI job go on to the next step, where they wait for it).
    fn after_step(&mut self, done: u64, options: &mut TrainOptions<'_>) -> Result<()> {
        let last = done == self.config.steps;
        if done.is_multiple_of(self.config.checkpoint_every) || last {
            self.checkpoint(done)?;
        }
        if !self.world.is_writer() {
            return Ok(());
        }
        // One sample folder per step, shared by validation and the recipe's pictures.
        let mut samples = SampleWriter::new(self.run, done)
            .keep(self.recipe.samples_keep())
            .datasets(self.card.datasets.clone());
        let every = self.config.val.every_steps;
        if last || (every > 0 && done.is_multiple_of(every)) {
            let v0 = Instant::now();
            let mut metrics = validate(
                self.model(),
                &self.datasets,
                &self.config,
                &mut samples,
                &self.device,
            )?;
            self.keep_best(done, &mut metrics)?;
            self.log(&Event {
                metrics: metrics.clone(),
                ..Event::new(done, self.wall(), EventKind::Val)
            })?;
            options.report(Report::Validated {
                step: done,
                metrics: &metrics,
                seconds: v0.elapsed().as_secs_f64(),
            });
            self.outcome.val_metrics = metrics;
        }
        self.recipe
            .write_samples(self.model(), done, &mut samples, &self.device)?;
        Ok(samples.finish()?)
    }

    /// The mean over the validated datasets of each one's chosen metric goes into `metrics`
    /// (key [`keys::VAL_MEAN`]); when it beats the best so far, the model becomes
    /// `checkpoints/best`.
    fn keep_best(&mut self, done: u64, metrics: &mut BTreeMap<MetricKey, f64>) -> Result<()> {
        let keys: Vec<MetricKey> = self
            .config
            .datasets
            .iter()
            .zip(&self.datasets)
            .filter(|(entry, _)| entry.val_split.is_some())
            .map(|(entry, d)| MetricKey::score(&d.spec.name, entry.metric))
            .filter(|k| metrics.contains_key(k))
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let score = keys.iter().map(|k| metrics[k]).sum::<f64>() / keys.len() as f64;
        metrics.insert(keys::VAL_MEAN, score);
        if self.best.as_ref().is_some_and(|b| b.score >= score) {
            return Ok(());
        }
        let best = crate::run::checkpoint::BestScore {
            step: done,
            score,
            metrics: keys,
        };
        let writer = crate::run::checkpoint::BestWriter::begin(self.run)?;
        super::checkpoint::save_trained_model(self.model(), writer.dir())?;
        let state = TrainState {
            step: done,
            wall_s: self.wall(),
            loss_scale: self.scaler.as_ref().map(LossScaler::state),
        };
        writer.finish(&self.card, &state, &best)?;
        self.best = Some(best);
        Ok(())
    }

    /// Writes the checkpoint folder of step `done` and logs it as a `checkpoint` event (rank
    /// 0; the others note where it is).
    fn checkpoint(&mut self, done: u64) -> Result<()> {
        if !self.world.is_writer() {
            self.outcome.checkpoint = Some(self.run.checkpoint(done));
            self.last_checkpoint = Some(done);
            return Ok(());
        }
        let state = TrainState {
            step: done,
            wall_s: self.wall(),
            loss_scale: self.scaler.as_ref().map(LossScaler::state),
        };
        let dir = save_checkpoint(
            self.run,
            self.model(),
            &self.optimizer,
            &self.card,
            state,
            self.config.keep_checkpoints,
        )?;
        self.log(&Event::new(done, state.wall_s, EventKind::Checkpoint))?;
        self.outcome.checkpoint = Some(dir);
        self.last_checkpoint = Some(done);
        Ok(())
    }
}

/// The model a session starts from, and the training state it continues: a resumed run's
/// checkpoint (which must hold the model `card` describes), or a new model, started from
/// `init`'s weights where given.
fn starting_model(
    card: &ModelCard,
    resume: Option<&ResumePoint>,
    init: Option<&PathBuf>,
    train_device: &Device,
) -> Result<(Segmentor, TrainState)> {
    let model = Segmentor::new(&card.segmentor, train_device);
    let Some(point) = resume else {
        let model = match init {
            Some(init) => init_weights(model, &card.segmentor, init, train_device)?,
            None => model,
        };
        let state = TrainState {
            step: 0,
            wall_s: 0.0,
            loss_scale: None,
        };
        return Ok((model, state));
    };
    let saved = read_card(&point.dir)?;
    if saved.segmentor != card.segmentor {
        return Err(Error::Checkpoint {
            path: point.dir.clone(),
            reason: "this checkpoint holds another model than the run's config.ron describes \
                     (was config.ron edited?)"
                .into(),
        });
    }
    let state = read_state(&point.dir)?;
    let model = checkpoint::load(model, &point.dir.join(MODEL_FILE))?;
    Ok((model, state))
}

/// `model` set to compute as `config` says: in mixed precision or f32, with per-block
/// recomputation or not (settings of the module, not of its weights, so they are set again
/// on each model an update or a broadcast returns).
fn with_step_settings(model: Segmentor, config: &TrainConfig) -> Segmentor {
    model
        .with_mixed_precision(config.precision == Precision::Mixed)
        .with_block_recomputation(config.activation_checkpointing.blocks())
}

/// Data parallelism: the main device first, then the replicas' (autodiff devices); no more
/// devices than a step has images to split (alone: the rest left out, with a warning; in an
/// MPI job, where the devices of every rank count: refused). Returns the devices, the index of
/// this rank's first among every rank's, and the devices over every rank.
fn replica_devices(
    train_device: Device,
    options: &mut TrainOptions<'_>,
    checkpointing: Checkpointing,
    per_step_images: usize,
) -> Result<(Vec<Device>, usize, usize)> {
    let world = options.world();
    let mut devices: Vec<Device> = std::iter::once(train_device)
        .chain(
            options
                .replicas
                .iter()
                .map(|d| autodiff_device(d, checkpointing)),
        )
        .collect();
    if world.size() == 1 && devices.len() > per_step_images {
        options.report(Report::Warning(format!(
            "data parallel: {} GPUs but batches of {per_step_images}: using {per_step_images}",
            devices.len()
        )));
        devices.truncate(per_step_images.max(1));
    }
    let (first_slot, slots) = rank_start::slots(world, devices.len());
    if slots > per_step_images {
        return Err(Error::Ranks {
            reason: format!(
                "{} ranks with {slots} GPUs in all, but a step has {per_step_images} images \
                 to split between them: start fewer ranks (or fewer --gpus each), or raise \
                 the batch",
                world.size()
            ),
        });
    }
    Ok((devices, first_slot, slots))
}

/// Starting weights: an s5 checkpoint (folder or `.bpk`) of the same model, or of a dense
/// model of the same backbone (FFN-MoE experts are then initialised from the dense FFNs, and
/// every decoder from the dense model's first with a new head, see
/// [`crate::model::experts`]), or an imported `.pth` / `.safetensors` (timm, MAE, the
/// authors' S4P).
fn init_weights(
    model: Segmentor,
    target: &crate::model::SegmentorConfig,
    path: &Path,
    device: &Device,
) -> Result<Segmentor> {
    if path.is_dir() {
        let dir = resolve_checkpoint(path)?;
        crate::run::checkpoint::verify(&dir)?;
        let saved = read_card(&dir)?;
        // Another layout of a dense model (experts, datasets, classes): copy what carries
        // over (see `model::experts`); the same model: load it whole.
        let from_dense = saved.segmentor != *target
            && saved.segmentor.backbone.ffn == crate::model::FfnKind::Dense;
        if from_dense {
            let dense = checkpoint::load(
                Segmentor::new(&saved.segmentor, device),
                &dir.join(MODEL_FILE),
            )?;
            return crate::model::experts::init_from_dense(
                &dense,
                &saved.segmentor,
                target,
                0,
                device,
            )
            .map_err(|e| Error::Checkpoint {
                path: dir.clone(),
                reason: format!("cannot initialise the experts from it: {e}"),
            });
        }
        return checkpoint::load(model, &dir.join(MODEL_FILE));
    }
    if path.extension().is_some_and(|e| e == "bpk") {
        return checkpoint::load(model, path);
    }
    let mut model = model;
    let raw = import::read_checkpoint(path)?;
    import::load_segmentor(&mut model, &raw, path, device)?;
    Ok(model)
}
