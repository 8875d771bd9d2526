//! The training loop of `s5 train` (supervised, one or more datasets) and `s5 pretrain`
//! (plus FixMatch on unlabeled images, see [`super::semi`]), with everything a long run
//! needs: a progress bar, periodic validation, checkpoints that resume exactly (model,
//! optimizer, schedule, step, data order and dropout draws), a clean stop on Ctrl-C, and a
//! loud stop on a NaN loss that keeps the last good checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};

use super::card::{DatasetCard, ModelCard, TrainState, load_state, save_checkpoint};
use super::config::TrainConfig;
use super::fixmatch::Normalizers;
use super::loss::{cross_entropy_over, scalar};
use super::optimizer::Optimizer;
use super::parallel::{ShareLoss, shares, step_grads};
use super::schedule::CosineSchedule;
use super::semi::{SemiRun, summarize};
use crate::data::loader::{LabeledItem, LoaderConfig, Prefetcher, labeled_stream};
use crate::data::synth::colorize;
use crate::data::{DatasetSpec, IGNORE, SampleRef};
use crate::error::{Error, Result};
use crate::eval::{ConfusionMatrix, evaluate_split};
use crate::model::{Segmentor, checkpoint, import};
use crate::run::samples::{SampleEntry, SampleWriter};
use crate::run::{Event, EventLog, Manifest, RunDir};

/// How a run is driven (beyond its config).
#[derive(Debug, Default)]
pub struct TrainOptions<'a> {
    /// Continue from the run's newest checkpoint instead of starting.
    pub resume: bool,
    /// Set (e.g. by Ctrl-C) to checkpoint and stop after the current step.
    pub stop: Option<&'a AtomicBool>,
    /// Crash on purpose (`abort()`, no cleanup) after this step: for crash-recovery tests.
    pub abort_after_step: Option<u64>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Further GPUs (their plain devices) for data parallelism: each step's batch is split
    /// between the main device and these ([`super::parallel`]). Empty: one GPU.
    pub replicas: Vec<Device>,
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
    pub val_metrics: BTreeMap<String, f64>,
}

/// One dataset of the run, loaded.
struct Dataset {
    spec: Arc<DatasetSpec>,
    train: Arc<Vec<SampleRef>>,
    val: Vec<SampleRef>,
    weight: f64,
}

/// Mixed into the seed of data-parallel device k > 0, so its dropout draws differ.
const REPLICA_SEED: u64 = 0x5851_f42d_4c95_7f2d;

/// The seed of the device RNG (dropout, drop path) for a step: a resumed run draws the same
/// masks as an uninterrupted one.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Trains as `config` says into `run`, or continues it (`options.resume`, which reads the
/// run's own `config.ron` and ignores `config`).
pub fn train(
    config: TrainConfig,
    run: &RunDir,
    device: &Device,
    options: TrainOptions<'_>,
) -> Result<TrainOutcome> {
    let resume_from = if options.resume {
        Some(run.latest_checkpoint()?.ok_or_else(|| {
            Error::RunDir {
                path: run.root().to_path_buf(),
                reason:
                    "nothing to resume: the run has no checkpoint yet (start it without --resume)"
                        .into(),
            }
        })?)
    } else {
        if run.latest_checkpoint()?.is_some() {
            return Err(Error::RunDir {
                path: run.root().to_path_buf(),
                reason: "this run directory already has checkpoints: pass --resume to continue \
                         it, or choose another output folder"
                    .into(),
            });
        }
        None
    };
    let config = if resume_from.is_some() {
        Manifest::load(run)?;
        let mut saved = TrainConfig::load(&run.config())?;
        // A resumed run may be extended.
        saved.steps = saved.steps.max(config.steps);
        saved
    } else {
        config.resolved()?
    };
    config
        .validate()
        .map_err(|reason| Error::Config { reason })?;

    let datasets = load_datasets(&config)?;
    let card = ModelCard {
        segmentor: config
            .model
            .segmentor(datasets.iter().map(|d| d.spec.num_classes()).collect())?,
        datasets: datasets
            .iter()
            .zip(&config.datasets)
            .map(|(d, entry)| DatasetCard::of(&d.spec, &entry.spec))
            .collect(),
    };
    let train_device = device.clone().autodiff();
    let mut model = Segmentor::new(&card.segmentor, &train_device);
    let (start_step, wall_offset_s) = match &resume_from {
        Some((_, dir)) => {
            let state = load_state(dir)?;
            model = checkpoint::load(model, &dir.join("model.bpk"))?;
            (state.step, state.wall_s)
        }
        None => {
            if let Some(init) = &config.model.init {
                model = init_weights(model, init, &train_device)?;
            }
            (0, 0.0)
        }
    };
    let mut optimizer = Optimizer::new(&config.optimizer, &model);
    if let Some((_, dir)) = &resume_from {
        optimizer = optimizer.load(&dir.join("optimizer.bpk"))?;
    }
    if resume_from.is_none() {
        let kind = if config.semi.is_some() {
            "pretrain"
        } else {
            "train"
        };
        Manifest::new(kind).save(run)?;
    }
    crate::fsutil::write_atomic(&run.config(), config.to_ron().as_bytes())?;
    let mut events = EventLog::open(&run.events())?;

    let schedule = CosineSchedule {
        base_lr: config.optimizer.lr,
        final_lr: config.optimizer.final_lr,
        warmup_steps: config.optimizer.warmup_steps,
        total_steps: config.steps,
    };
    let mut loaders: Vec<Prefetcher<LabeledItem>> = datasets
        .iter()
        .enumerate()
        .map(|(i, d)| {
            labeled_stream(
                d.spec.clone(),
                d.train.clone(),
                config.augment.clone(),
                LoaderConfig {
                    batch: config.batch,
                    prefetch: config.prefetch,
                    seed: config.seed.wrapping_add(i as u64),
                    skip_bad: config.skip_bad,
                    start_step,
                    epoch_len: d.train.len(),
                },
            )
        })
        .collect();

    let mut semi = match &config.semi {
        Some(setup) => Some(SemiRun::new(setup, &config, &datasets[0].spec, start_step)?),
        None => None,
    };

    let bar = progress_bar(options.progress, config.steps, start_step);
    let started = Instant::now();
    // Training time so far, including earlier sessions of a resumed run.
    let wall = || wall_offset_s + started.elapsed().as_secs_f64();
    let mut outcome = TrainOutcome {
        steps_done: start_step,
        interrupted: false,
        checkpoint: resume_from.as_ref().map(|(_, d)| d.clone()),
        val_metrics: BTreeMap::new(),
    };
    let mut last_checkpoint_step = resume_from.as_ref().map(|(s, _)| *s);
    let crop = config.augment.crop_px as usize;
    let mut smoothed_ips: Option<f64> = None;
    // Data parallelism: the main device first; no more devices than images in a share.
    let per_step_images = config
        .semi
        .as_ref()
        .map_or(config.batch, |s| config.batch.min(s.unlabeled_batch));
    let mut devices: Vec<Device> = std::iter::once(train_device.clone())
        .chain(options.replicas.iter().map(|d| d.clone().autodiff()))
        .collect();
    if devices.len() > per_step_images {
        bar.println(format!(
            "data parallel: {} GPUs but batches of {per_step_images}: using {per_step_images}",
            devices.len()
        ));
        devices.truncate(per_step_images.max(1));
    }
    let names: Vec<String> = datasets.iter().map(|d| d.spec.name.clone()).collect();
    let weights: Vec<f64> = datasets.iter().map(|d| d.weight).collect();

    for step in start_step..config.steps {
        if options.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            outcome.interrupted = true;
            break;
        }
        let t0 = Instant::now();
        for (k, d) in devices.iter().enumerate() {
            // Device 0 draws what a one-GPU run draws; the others their own masks.
            let seed = config.seed ^ (k as u64).wrapping_mul(REPLICA_SEED);
            d.seed(step_seed(seed, step));
        }
        let mut batches = Vec::with_capacity(loaders.len());
        for (loader, entry) in loaders.iter_mut().zip(&config.datasets) {
            let batch = loader.next().ok_or_else(|| Error::Config {
                reason: format!(
                    "the loader of {} stopped (no training images?)",
                    entry.spec.display()
                ),
            })??;
            batches.push(batch.items);
        }
        let k = devices.len();
        let (grads, losses, stats) = match &mut semi {
            Some(semi) => {
                let (u, partner) = semi.next_unlabeled()?;
                let labeled = &batches[0];
                let norms = Normalizers::of(labeled, &u, &partner);
                let (ls, us) = (shares(labeled.len(), k), shares(u.len(), k));
                let loss = semi.loss();
                let out = step_grads(&model, &devices, |i, replica, device| {
                    Ok(loss.share(
                        replica,
                        &labeled[ls[i].clone()],
                        &u[us[i].clone()],
                        &partner[us[i].clone()],
                        norms,
                        device,
                    ))
                })?;
                let (losses, stats) = summarize(&out.sums, &out.per_image);
                (out.grads, losses, stats)
            }
            None => {
                let norms: Vec<f64> = batches.iter().map(|b| labeled_valid_px(b)).collect();
                let ranges: Vec<_> = batches.iter().map(|b| shares(b.len(), k)).collect();
                let out = step_grads(&model, &devices, |i, replica, device| {
                    let share: Vec<&[LabeledItem]> = batches
                        .iter()
                        .zip(&ranges)
                        .map(|(b, r)| &b[r[i].clone()])
                        .collect();
                    Ok(supervised_share(
                        replica, &share, &names, &weights, &norms, crop, device,
                    ))
                })?;
                let mut losses = out.sums;
                if datasets.len() == 1 {
                    losses.retain(|name, _| name == "loss");
                }
                (out.grads, losses, BTreeMap::new())
            }
        };
        let loss_value = losses.get("loss").copied().unwrap_or(f64::NAN);
        let lr = schedule.lr(step);
        if !loss_value.is_finite() {
            let kept = match last_checkpoint_step {
                Some(s) => format!(
                    "The last good checkpoint (step {s}) is kept in {}.",
                    run.checkpoint(s).display()
                ),
                None => "No checkpoint was written yet.".to_string(),
            };
            events.append(&Event {
                step,
                wall_s: wall(),
                kind: "diverged".into(),
                lr: Some(lr),
                ..Event::default()
            })?;
            bar.abandon();
            return Err(Error::Diverged {
                step,
                loss: loss_value,
                kept,
            });
        }
        let (updated, grad_norm) = optimizer.step(lr, model, grads);
        model = updated;
        let done = step + 1;
        outcome.steps_done = done;

        let unlabeled = config.semi.as_ref().map_or(0, |s| 2 * s.unlabeled_batch);
        let images = (config.batch * datasets.len() + unlabeled) as f64;
        let ips = images / t0.elapsed().as_secs_f64().max(1e-9);
        let smooth = smoothed_ips.map_or(ips, |s| 0.9 * s + 0.1 * ips);
        smoothed_ips = Some(smooth);
        let mut extra: BTreeMap<String, serde_json::Value> = stats
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect();
        if let Some(norm) = grad_norm {
            extra.insert("grad_norm".to_string(), serde_json::json!(norm));
        }
        events.append(&Event {
            step: done,
            wall_s: wall(),
            kind: "train".into(),
            losses,
            lr: Some(lr),
            images_per_s: Some(ips),
            extra,
            ..Event::default()
        })?;
        bar.set_position(done);
        let ratio = stats
            .get("mask_ratio")
            .map_or(String::new(), |r| format!("  mask {:.0}%", 100.0 * r));
        bar.set_message(format!(
            "loss {loss_value:.4}{ratio}  lr {lr:.2e}  {smooth:.1} img/s"
        ));

        let last = done == config.steps;
        if done % config.checkpoint_every == 0 || last {
            let state = TrainState {
                step: done,
                wall_s: wall(),
            };
            outcome.checkpoint = Some(checkpoint(
                run,
                &model,
                &optimizer,
                &card,
                state,
                &config,
                &mut events,
            )?);
            last_checkpoint_step = Some(done);
        }
        // One sample folder per step, shared by validation and FixMatch pictures.
        let keep = config.semi.as_ref().map_or(24, |s| s.samples.keep);
        let mut samples = SampleWriter::new(run, done).keep(keep);
        let every = config.val.every_steps;
        if last || (every > 0 && done % every == 0) {
            let v0 = Instant::now();
            let metrics = validate(&model, &datasets, &config, &mut samples, device)?;
            events.append(&Event {
                step: done,
                wall_s: wall(),
                kind: "val".into(),
                metrics: metrics.clone(),
                ..Event::default()
            })?;
            let line = metrics
                .iter()
                .filter(|(k, _)| k.ends_with("/mIoU"))
                .map(|(k, v)| format!("{k} {:.2}", 100.0 * v))
                .collect::<Vec<_>>()
                .join("  ");
            bar.println(format!(
                "step {done}: {line}  (validation {:.1} s)",
                v0.elapsed().as_secs_f64()
            ));
            outcome.val_metrics = metrics;
        }
        if let Some(semi) = &semi
            && semi.samples_due(done)
        {
            semi.write_samples(&model, &mut samples, device)?;
        }
        samples.finish()?;
        if options.abort_after_step == Some(done) {
            // A crash, not a shutdown: nothing after this line runs.
            std::process::abort();
        }
    }

    if outcome.interrupted && last_checkpoint_step != Some(outcome.steps_done) {
        let state = TrainState {
            step: outcome.steps_done,
            wall_s: wall(),
        };
        outcome.checkpoint = Some(checkpoint(
            run,
            &model,
            &optimizer,
            &card,
            state,
            &config,
            &mut events,
        )?);
    }
    if outcome.interrupted {
        events.append(&Event {
            step: outcome.steps_done,
            wall_s: wall(),
            kind: "stop".into(),
            ..Event::default()
        })?;
    }
    bar.finish_and_clear();
    Ok(outcome)
}

/// Writes the checkpoint folder of `state.step` and logs it as a `checkpoint` event.
fn checkpoint(
    run: &RunDir,
    model: &Segmentor,
    optimizer: &Optimizer,
    card: &ModelCard,
    state: TrainState,
    config: &TrainConfig,
    events: &mut EventLog,
) -> Result<PathBuf> {
    let dir = save_checkpoint(run, model, optimizer, card, state, config.keep_checkpoints)?;
    events.append(&Event {
        step: state.step,
        wall_s: state.wall_s,
        kind: "checkpoint".into(),
        ..Event::default()
    })?;
    Ok(dir)
}

fn progress_bar(enabled: bool, total: u64, position: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ({elapsed} / eta {eta})")
            .expect("a valid template"),
    );
    bar.set_position(position);
    bar.reset_eta();
    bar
}

fn load_datasets(config: &TrainConfig) -> Result<Vec<Dataset>> {
    config
        .datasets
        .iter()
        .map(|entry| {
            let spec = entry.load_spec()?;
            let train = spec.samples(&entry.train_split)?;
            if train.is_empty() {
                return Err(Error::Spec {
                    path: entry.spec.clone(),
                    reason: format!("split `{}` has no images", entry.train_split),
                });
            }
            if let Some(missing) = train.iter().find(|s| s.mask.is_none()) {
                return Err(Error::MissingFile {
                    path: missing.image.clone(),
                    context: Some(format!(
                        "a mask for this image: split `{}` is used for supervised training",
                        entry.train_split
                    )),
                });
            }
            let val = match &entry.val_split {
                Some(split) => spec.samples(split)?,
                None => Vec::new(),
            };
            Ok(Dataset {
                spec: Arc::new(spec),
                train: Arc::new(train),
                val,
                weight: entry.loss_weight,
            })
        })
        .collect()
}

/// Starting weights: an s5 checkpoint (folder or `.bpk`) of the same model, or an imported
/// `.pth` / `.safetensors` (timm, MAE, the authors' S4P).
fn init_weights(model: Segmentor, path: &Path, device: &Device) -> Result<Segmentor> {
    let is_bpk = path.extension().is_some_and(|e| e == "bpk");
    if path.is_dir() {
        let dir = super::card::resolve_checkpoint(path)?;
        return checkpoint::load(model, &dir.join("model.bpk"));
    }
    if is_bpk {
        return checkpoint::load(model, path);
    }
    let mut model = model;
    let raw = import::read_checkpoint(path)?;
    import::load_segmentor(&mut model, &raw, path, device)?;
    Ok(model)
}

/// Labeled crops as tensors.
///
/// # Shapes
/// `B` items of side S → images `[B, 3, S, S]`, labels `[B, S, S]` (0 where not valid),
/// valid `[B, S, S]` (1 for a labeled, non-ignored, non-padding pixel).
pub fn labeled_tensors(
    items: &[LabeledItem],
    crop: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<3, Int>, Tensor<3>) {
    let b = items.len();
    let mut images = Vec::with_capacity(b * 3 * crop * crop);
    let mut labels = Vec::with_capacity(b * crop * crop);
    let mut valid = Vec::with_capacity(b * crop * crop);
    for item in items {
        images.extend_from_slice(&item.image);
        for (&l, &v) in item.labels.iter().zip(&item.valid) {
            let ok = counts(l, v);
            labels.push(if ok { i32::from(l) } else { 0 });
            valid.push(if ok { 1.0f32 } else { 0.0 });
        }
    }
    (
        Tensor::from_data(TensorData::new(images, [b, 3, crop, crop]), device),
        Tensor::from_data(TensorData::new(labels, [b, crop, crop]), device),
        Tensor::from_data(TensorData::new(valid, [b, crop, crop]), device),
    )
}

/// Whether a pixel with this label and padding flag counts in the supervised loss: labeled,
/// not ignored, not padding.
fn counts(label: u8, valid: u8) -> bool {
    valid != 0 && label != IGNORE
}

/// Valid labeled pixels of a batch (see [`counts`]): the denominator of its cross-entropy.
pub fn labeled_valid_px(items: &[LabeledItem]) -> f64 {
    items
        .iter()
        .map(|item| {
            item.labels
                .iter()
                .zip(&item.valid)
                .filter(|&(&l, &v)| counts(l, v))
                .count()
        })
        .sum::<usize>() as f64
}

/// `Σ_d w_d · CE_d` over one share of every dataset's batch (one backbone pass for all of
/// them), each CE divided by its whole batch's valid pixels `norms[d]`: sums `loss` and
/// `loss/<dataset>`.
fn supervised_share(
    model: &Segmentor,
    batches: &[&[LabeledItem]],
    names: &[String],
    weights: &[f64],
    norms: &[f64],
    crop: usize,
    device: &Device,
) -> ShareLoss {
    let parts: Vec<_> = batches
        .iter()
        .map(|items| labeled_tensors(items, crop, device))
        .collect();
    let logits: Vec<Tensor<4>> = if parts.len() == 1 {
        vec![model.forward(parts[0].0.clone(), 0)]
    } else {
        let ids: Vec<usize> = batches
            .iter()
            .enumerate()
            .flat_map(|(d, items)| std::iter::repeat_n(d, items.len()))
            .collect();
        let images = Tensor::cat(parts.iter().map(|p| p.0.clone()).collect(), 0);
        let per_image = model.forward_mixed(images, &ids);
        let mut offset = 0;
        batches
            .iter()
            .map(|items| {
                let group = Tensor::cat(per_image[offset..offset + items.len()].to_vec(), 0);
                offset += items.len();
                group
            })
            .collect()
    };
    let per_dataset: Vec<Tensor<1>> = parts
        .into_iter()
        .zip(logits)
        .zip(norms)
        .map(|(((_, labels, valid), logits), &n)| cross_entropy_over(logits, labels, valid, n))
        .collect();
    let loss = per_dataset
        .iter()
        .zip(weights)
        .map(|(l, &w)| l.clone() * w)
        .reduce(|a, b| a + b)
        .expect("at least one dataset");
    let mut sums = BTreeMap::from([("loss".to_string(), scalar(loss.clone()))]);
    for (name, value) in names.iter().zip(per_dataset) {
        sums.insert(format!("loss/{name}"), scalar(value));
    }
    ShareLoss {
        loss,
        sums,
        per_image: Vec::new(),
    }
}

/// Scores every validated dataset; adds a few predictions to the step's samples.
fn validate(
    model: &Segmentor,
    datasets: &[Dataset],
    config: &TrainConfig,
    samples: &mut SampleWriter,
    device: &Device,
) -> Result<BTreeMap<String, f64>> {
    let eval_model = model.valid();
    let mut metrics = BTreeMap::new();
    for (d, dataset) in datasets.iter().enumerate() {
        if dataset.val.is_empty() {
            continue;
        }
        let n = config
            .val
            .max_images
            .unwrap_or(usize::MAX)
            .min(dataset.val.len());
        let spec = &dataset.spec;
        let matrix: ConfusionMatrix = evaluate_split(
            &eval_model,
            d,
            spec,
            &dataset.val[..n],
            config.val.mode,
            4,
            device,
            |scored| {
                if scored.index < config.val.sample_images {
                    let entry = SampleEntry {
                        image_id: stem(&scored.sample.image),
                        dataset: spec.name.clone(),
                        kind: "val".into(),
                        ..SampleEntry::default()
                    };
                    let truth = colorize(scored.truth, &spec.palette);
                    let prediction = colorize(scored.prediction, &spec.palette);
                    samples.add(
                        entry,
                        &[
                            ("image", scored.image),
                            ("truth", &truth),
                            ("prediction", &prediction),
                        ],
                    )?;
                }
                Ok(())
            },
        )?;
        let exclude = if config.val.exclude_background {
            spec.background.map(usize::from)
        } else {
            None
        };
        let summary = matrix.summary(exclude);
        let name = &spec.name;
        metrics.insert(format!("{name}/mIoU"), summary.miou);
        metrics.insert(format!("{name}/mF1"), summary.mf1);
        metrics.insert(format!("{name}/OA"), summary.overall_accuracy);
    }
    Ok(metrics)
}

/// A file's name without folder and extension.
fn stem(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}
