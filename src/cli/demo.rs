//! `s5 demo`: the whole S5 method on synthetic data in one command, every stage a run in one
//! folder that `s5-viewer <folder>` opens:
//!
//! 1. `data/`: `s5 synth` (three labeled domains and an unlabeled pool with out-of-distribution
//!    images);
//! 2. `1-seed/`: a supervised seed model on the few labeled urban tiles (`s5 train`);
//! 3. `2-curation/`: `s5 curate run` of the pool with the seed model;
//! 4. `3-s4p/`: S4P (`s5 pretrain`) on the labeled tiles and the curated patches, from the
//!    seed model (the paper starts S4P from MAE weights; the demo has none, and from random
//!    weights a tiny model's teacher is too unsure for τ = 0.95 to pass many pixels);
//! 5. `4-moe-mdf/`: MoE-MDF (`s5 finetune`) over the three domains from the S4P model;
//! 6. `5-baseline/`: the same fine-tuning without pre-training (labels only): the
//!    supervised-only baseline at equal fine-tuning steps;
//!
//! then a summary (`summary.md`, `summary.png`). `demo.json` records each finished stage with
//! its time and numbers: a rerun skips those, and a stage stopped half-way resumes (training
//! runs from their newest checkpoint, curation from its finished shards).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use s5::curate::all::{RunOptions, run_all};
use s5::curate::floor::DEFAULT_QUANTILE;
use s5::curate::kmeans::KMeansConfig;
use s5::curate::run::{PlanOptions, PrototypeOptions, SelectOptions, SimilarityRule, Stale};
use s5::data::synth::{FEW_LABELED, SynthConfig};
use s5::run::curation::Embedding;
use s5::device::{self, Gpu, GpuBackend};
use s5::model::{FfnKind, VitConfig};
use s5::run::{RunDir, RunKind, keys};
use s5::train::config::{
    Backbone, DatasetEntry, FinetuneMode, FinetuneSetup, FixMatchSetup, RecipeSetup,
    UnlabeledEntry, ValMetric,
};
use s5::train::{Start, TrainConfig};
use serde::{Deserialize, Serialize};

use super::gpu_args::GpuArgs;
use super::train::{STOP, TrainUi, train_in};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The demo folder: the data, one run per stage, demo.json, summary.md and summary.png.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// How large: `tiny` runs on a CPU with lavapipe in about 10 minutes (two cores); `small` and
    /// `base` (ViT-S and ViT-B at 256 px) are for real GPUs.
    #[arg(long, value_enum, default_value_t = PresetArg::Tiny)]
    preset: PresetArg,
    #[command(flatten)]
    gpus: GpuArgs,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Steps of every training stage instead of the preset's (tests).
    #[arg(long, hide = true)]
    stage_steps: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PresetArg {
    /// A few steps per stage on a few 64 px tiles: for tests.
    #[value(hide = true)]
    Micro,
    Tiny,
    Small,
    Base,
}

/// Everything a preset decides.
struct Preset {
    name: &'static str,
    synth: SynthConfig,
    backbone: VitConfig,
    decoder_channels: usize,
    crop_px: u32,
    scale_range: (f32, f32),
    batch: usize,
    unlabeled_batch: usize,
    seed_steps: u64,
    s4p_steps: u64,
    finetune_steps: u64,
    val_every: u64,
    lr: f64,
    finetune_lr: f64,
    /// Curation: patch side, prototypes, share of the pool's patches kept.
    patch_px: u32,
    clusters: usize,
    keep_share: f64,
    /// P of MoE-MDF.
    expert_dim: usize,
}

impl Preset {
    fn of(arg: PresetArg) -> Self {
        let custom = |dim, depth, heads, mlp_ratio, pos_grid_px| VitConfig {
            dim,
            depth,
            heads,
            patch_px: 16,
            mlp_ratio,
            pos_grid_px,
            drop_path: 0.0,
            feature_blocks: [0, depth / 3, 2 * depth / 3, depth - 1],
            ffn: FfnKind::Dense,
            activation: s5::model::Activation::Gelu,
        };
        match arg {
            PresetArg::Micro => Self {
                name: "micro",
                synth: SynthConfig {
                    tile_px: 64,
                    train_per_domain: 4,
                    val_per_domain: 2,
                    pool_in_domain: 2,
                    pool_ood_per_kind: 1,
                    pool_width_px: 128,
                    ..SynthConfig::default()
                },
                backbone: custom(32, 2, 2, 2, 64),
                decoder_channels: 16,
                crop_px: 64,
                scale_range: (0.75, 1.5),
                batch: 2,
                unlabeled_batch: 2,
                seed_steps: 2,
                s4p_steps: 2,
                finetune_steps: 2,
                val_every: 0,
                lr: 1e-3,
                finetune_lr: 5e-4,
                patch_px: 64,
                clusters: 2,
                keep_share: 0.5,
                expert_dim: 16,
            },
            PresetArg::Tiny => Self {
                name: "tiny",
                synth: SynthConfig {
                    tile_px: 128,
                    pool_width_px: 256,
                    ..SynthConfig::default()
                },
                backbone: custom(64, 4, 2, 4, 64),
                decoder_channels: 32,
                crop_px: 64,
                scale_range: (0.5, 1.0),
                batch: 4,
                unlabeled_batch: 4,
                seed_steps: 200,
                s4p_steps: 200,
                finetune_steps: 120,
                val_every: 40,
                lr: 1e-3,
                finetune_lr: 5e-4,
                patch_px: 64,
                clusters: 4,
                keep_share: 0.5,
                expert_dim: 32,
            },
            PresetArg::Small => Self {
                name: "small",
                synth: SynthConfig {
                    train_per_domain: 96,
                    val_per_domain: 24,
                    pool_in_domain: 96,
                    pool_ood_per_kind: 12,
                    pool_width_px: 512,
                    ..SynthConfig::default()
                },
                backbone: VitConfig {
                    pos_grid_px: 256,
                    ..VitConfig::vit_small()
                },
                decoder_channels: 128,
                crop_px: 256,
                scale_range: (0.5, 2.0),
                batch: 8,
                unlabeled_batch: 8,
                seed_steps: 1000,
                s4p_steps: 2000,
                finetune_steps: 1000,
                val_every: 250,
                lr: 2e-4,
                finetune_lr: 1e-4,
                patch_px: 256,
                clusters: 16,
                keep_share: 0.5,
                expert_dim: 128,
            },
            PresetArg::Base => Self {
                name: "base",
                synth: SynthConfig {
                    train_per_domain: 192,
                    val_per_domain: 32,
                    pool_in_domain: 192,
                    pool_ood_per_kind: 24,
                    pool_width_px: 512,
                    ..SynthConfig::default()
                },
                backbone: VitConfig {
                    pos_grid_px: 256,
                    ..VitConfig::vit_base()
                },
                decoder_channels: 256,
                crop_px: 256,
                scale_range: (0.5, 2.0),
                batch: 8,
                unlabeled_batch: 8,
                seed_steps: 2000,
                s4p_steps: 4000,
                finetune_steps: 2000,
                val_every: 500,
                lr: 1e-4,
                finetune_lr: 5e-5,
                patch_px: 256,
                clusters: 16,
                keep_share: 0.5,
                expert_dim: 256,
            },
        }
    }
}

/// `demo.json`: the preset and every finished stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DemoState {
    preset: String,
    /// Stage name → what it took and gave (finished stages only).
    stages: BTreeMap<String, StageResult>,
    /// Seconds spent in stages not finished yet (earlier, interrupted sessions).
    #[serde(default)]
    partial_s: BTreeMap<String, f64>,
}

/// A finished stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StageResult {
    seconds: f64,
    numbers: BTreeMap<String, f64>,
}

impl DemoState {
    fn path(out: &Path) -> PathBuf {
        out.join("demo.json")
    }

    fn load(out: &Path) -> Result<Option<Self>> {
        let path = Self::path(out);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: not a demo state file (delete it to start the demo over)",
                    path.display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn save(&self, out: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        s5::fsutil::write_atomic(&Self::path(out), text.as_bytes())?;
        Ok(())
    }
}

/// The stages, in order: (key, title).
const STAGES: [(&str, &str); 6] = [
    ("data", "data (s5 synth)"),
    ("seed", "1 seed model (s5 train)"),
    ("curation", "2 curation (s5 curate)"),
    ("s4p", "3 S4P (s5 pretrain)"),
    ("moe-mdf", "4 MoE-MDF from S4P (s5 finetune)"),
    ("baseline", "5 baseline: MoE-MDF, no pre-training"),
];

/// How a stage ended.
enum Ended {
    Done(BTreeMap<String, f64>),
    /// Stopped by Ctrl-C (a checkpoint is written; a rerun continues).
    Stopped,
}

pub fn run(backend: Option<GpuBackend>, args: DemoArgs) -> Result<()> {
    let mut preset = Preset::of(args.preset);
    if let Some(steps) = args.stage_steps {
        (preset.seed_steps, preset.s4p_steps, preset.finetune_steps) = (steps, steps, steps);
    }
    let out = args.out.clone();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut state = match DemoState::load(&out)? {
        Some(state) if state.preset != preset.name => bail!(
            "{} holds a `{}` demo: rerun with --preset {} to continue it, or choose another --out",
            out.display(),
            state.preset,
            state.preset
        ),
        Some(state) => state,
        None => DemoState {
            preset: preset.name.into(),
            ..DemoState::default()
        },
    };
    state.save(&out)?;
    super::train::install_ctrlc()?;
    let gpus = device::training_gpus(backend, args.gpus.choice())?;
    let demo = Demo {
        preset,
        out: std::path::absolute(&out)?,
        shown: out.clone(),
        backend,
        gpus,
        quiet: args.quiet,
    };
    let started = Instant::now();
    for (i, (key, title)) in STAGES.iter().enumerate() {
        if let Some(done) = state.stages.get(*key) {
            eprintln!(
                "[{}/{}] {title}: done ({})",
                i + 1,
                STAGES.len(),
                duration(done.seconds)
            );
            continue;
        }
        eprintln!("[{}/{}] {title}", i + 1, STAGES.len());
        let t0 = Instant::now();
        let ended = demo.stage(key)?;
        let seconds = t0.elapsed().as_secs_f64() + state.partial_s.remove(*key).unwrap_or(0.0);
        match ended {
            Ended::Done(numbers) => {
                state
                    .stages
                    .insert((*key).into(), StageResult { seconds, numbers });
                state.save(&out)?;
            }
            Ended::Stopped => {
                state.partial_s.insert((*key).into(), seconds);
                state.save(&out)?;
                println!(
                    "stopped in stage `{key}`; run the same command again to continue:\n  s5 demo --out {} --preset {}",
                    out.display(),
                    demo.preset.name
                );
                return Ok(());
            }
        }
    }
    let summary = summary(&demo, &state)?;
    println!("{summary}");
    s5::fsutil::write_atomic(&out.join("summary.md"), summary.as_bytes())?;
    if let Err(e) = super::demo_picture::write(&demo.out) {
        eprintln!("warning: summary.png not written: {e:#}");
    }
    eprintln!(
        "(this session: {})",
        duration(started.elapsed().as_secs_f64())
    );
    Ok(())
}

/// One demo folder's setup.
struct Demo {
    preset: Preset,
    /// The folder, absolute (what the runs record).
    out: PathBuf,
    /// The folder as the user wrote it (what messages show).
    shown: PathBuf,
    backend: Option<GpuBackend>,
    gpus: Vec<Gpu>,
    quiet: bool,
}

impl Demo {
    fn data(&self) -> PathBuf {
        self.out.join("data")
    }

    fn spec(&self, domain: &str) -> PathBuf {
        self.data().join(domain).join(format!("{domain}.ron"))
    }

    fn stage(&self, key: &str) -> Result<Ended> {
        match key {
            "data" => self.synth(),
            "seed" => self.train("1-seed", self.seed_config(), RunKind::Train),
            "curation" => self.curate(),
            "s4p" => self.train("3-s4p", self.s4p_config(), RunKind::Pretrain),
            "moe-mdf" => self.train(
                "4-moe-mdf",
                self.finetune_config(Some(self.out.join("3-s4p"))),
                RunKind::Finetune,
            ),
            "baseline" => self.train("5-baseline", self.finetune_config(None), RunKind::Finetune),
            _ => unreachable!("the stages are listed in STAGES"),
        }
    }

    fn synth(&self) -> Result<Ended> {
        let cfg = &self.preset.synth;
        s5::data::synth::generate(&self.data(), cfg, &|| {})?;
        let numbers = BTreeMap::from([
            ("train_tiles_per_domain".into(), cfg.train_per_domain as f64),
            ("val_tiles_per_domain".into(), cfg.val_per_domain as f64),
            ("tile_px".into(), f64::from(cfg.tile_px)),
        ]);
        Ok(Ended::Done(numbers))
    }

    /// What every training of the demo shares.
    fn base_config(&self, datasets: Vec<DatasetEntry>, steps: u64, lr: f64) -> TrainConfig {
        let p = &self.preset;
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
        let p = &self.preset;
        self.base_config(vec![self.urban(FEW_LABELED)], p.seed_steps, p.lr)
    }

    fn s4p_config(&self) -> TrainConfig {
        let p = &self.preset;
        let mut c = self.base_config(vec![self.urban(FEW_LABELED)], p.s4p_steps, p.lr);
        c.model.init = Some(self.out.join("1-seed"));
        c.recipe = RecipeSetup::FixMatch(FixMatchSetup {
            unlabeled: UnlabeledEntry {
                spec: self.spec("pool"),
                patches: Some(self.out.join("2-curation/curation/selected.tsv")),
                ..UnlabeledEntry::default()
            },
            unlabeled_batch: p.unlabeled_batch,
            samples: s5::train::config::SampleSetup {
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
        let p = &self.preset;
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

    /// A training stage: new, or resumed from its newest checkpoint; the last validation's
    /// metrics (and the step's last training numbers) are its numbers.
    fn train(&self, folder: &str, config: TrainConfig, kind: RunKind) -> Result<Ended> {
        let dir = self.out.join(folder);
        let run = RunDir::new(&dir);
        let start = if run.latest_checkpoint()?.is_some() {
            Start::Resume {
                check: None,
                steps: None,
            }
        } else {
            Start::New(config)
        };
        let outcome = train_in(
            &self.gpus,
            start,
            &dir,
            kind,
            TrainUi {
                quiet: self.quiet,
                abort_after_step: None,
            },
        )?;
        if outcome.interrupted || STOP.load(Ordering::SeqCst) {
            return Ok(Ended::Stopped);
        }
        let events = s5::run::read_events(&run.events())?;
        let mut numbers = events
            .iter()
            .rfind(|e| e.kind == "val")
            .map(|e| e.metrics.clone())
            .unwrap_or_default();
        if let Some(last) = events.iter().rfind(|e| e.kind == "train") {
            for key in [
                keys::MASK_RATIO,
                "pseudo_label_acc_confident",
                "pseudo_label_acc_all",
            ] {
                if let Some(v) = last.extra_f64(key) {
                    numbers.insert(key.into(), v);
                }
            }
        }
        numbers.insert("steps".into(), outcome.steps_done as f64);
        Ok(Ended::Done(numbers))
    }

    fn curate(&self) -> Result<Ended> {
        let p = &self.preset;
        let dir = self.out.join("2-curation");
        let pool = self.spec("pool");
        let truth = self.data().join("pool/truth.ron");
        // The pool's patches: images of `tile_px` × `pool_width_px`.
        let per_image = (p.synth.pool_width_px / p.patch_px) * (p.synth.tile_px / p.patch_px);
        let images = p.synth.pool_total() as f64;
        let budget = ((images * f64::from(per_image) * p.keep_share).round() as u64).max(1);
        let options = RunOptions {
            out: dir.clone(),
            plan: PlanOptions {
                spec: pool,
                split: "unlabeled".into(),
                patch_px: p.patch_px,
                stride_px: p.patch_px,
                truth: Some(truth.clone()),
                stale: Stale::Refuse,
            },
            // The prototypes cluster the urban training images (features only, no labels:
            // the few labeled tiles alone are too few images for the clusters).
            prototypes: PrototypeOptions {
                model: self.out.join("1-seed"),
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
                budget,
                foreground_min: None,
                entropy_max: None,
                similarity: SimilarityRule::Floor,
                ignore_clusters: false,
            },
        };
        let bars = super::curate_progress::Bars::new(None);
        run_all(&options, device::gpu(self.backend)?, &|p| bars.show(p))?;
        bars.finish();
        let evaluation = s5::curate::evaluate::evaluate_run(&dir, &truth)?;
        let pooled: u64 = evaluation.kinds.iter().map(|k| k.pool_patches).sum();
        let selected: u64 = evaluation.kinds.iter().map(|k| k.selected_patches).sum();
        Ok(Ended::Done(BTreeMap::from([
            ("pool_patches".into(), pooled as f64),
            ("selected_patches".into(), selected as f64),
            ("pool_ood_share".into(), evaluation.pool_ood_share),
            ("selected_ood_share".into(), evaluation.selected_ood_share),
        ])))
    }
}

/// `1 min 5 s`, `12 s`.
fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{:.1} s", seconds)
    }
}

/// The summary (Markdown): per stage its time and key numbers, the comparison with the
/// baseline, where to look next.
fn summary(demo: &Demo, state: &DemoState) -> Result<String> {
    let get = |stage: &str, key: &str| -> f64 {
        state
            .stages
            .get(stage)
            .and_then(|s| s.numbers.get(key).copied())
            .unwrap_or(f64::NAN)
    };
    let pct = |v: f64| {
        if v.is_finite() {
            format!("{:.1}", 100.0 * v)
        } else {
            "–".to_string()
        }
    };
    let total: f64 = state.stages.values().map(|s| s.seconds).sum();
    let mut lines = vec![
        format!(
            "# s5 demo (preset `{}`), {} in all",
            state.preset,
            duration(total)
        ),
        String::new(),
        "| stage | time | result |".into(),
        "|---|---|---|".into(),
    ];
    let p = &demo.preset;
    for (key, title) in STAGES {
        let seconds = state.stages.get(key).map_or(0.0, |s| s.seconds);
        let result = match key {
            "data" => format!(
                "3 labeled domains of {} + {} tiles ({} px; urban: its `{}` split labeled), pool of {} images",
                p.synth.train_per_domain,
                p.synth.val_per_domain,
                p.synth.tile_px,
                FEW_LABELED,
                p.synth.pool_total()
            ),
            "seed" => format!("urban mIoU {}", pct(get("seed", "synth-urban/mIoU"))),
            "curation" => format!(
                "kept {} of {} patches; out-of-distribution share {} % in the pool, **{} %** kept",
                get("curation", "selected_patches"),
                get("curation", "pool_patches"),
                pct(get("curation", "pool_ood_share")),
                pct(get("curation", "selected_ood_share")),
            ),
            "s4p" => {
                let mut text = format!(
                    "urban mIoU {}; τ-mask {} % of the unlabeled pixels at the end",
                    pct(get("s4p", "synth-urban/mIoU")),
                    pct(get("s4p", keys::MASK_RATIO)),
                );
                let right = get("s4p", "pseudo_label_acc_confident");
                if right.is_finite() {
                    text += &format!(", pseudo-labels right on {} % of them", pct(right));
                }
                text
            }
            "moe-mdf" | "baseline" => format!(
                "urban mF1 {}, rural mIoU {}, suburb mIoU {} (mean {})",
                pct(get(key, "synth-urban/mF1")),
                pct(get(key, "synth-rural/mIoU")),
                pct(get(key, "synth-suburb/mIoU")),
                pct(get(key, keys::VAL_MEAN)),
            ),
            _ => String::new(),
        };
        lines.push(format!("| {title} | {} | {result} |", duration(seconds)));
    }
    let (s5_urban, base_urban) = (
        get("moe-mdf", "synth-urban/mIoU"),
        get("baseline", "synth-urban/mIoU"),
    );
    lines.push(String::new());
    lines.push(format!(
        "Labeled domain (urban, trained on its `{}` split; validation mIoU) after {} fine-tuning steps: \
         **S4P + MoE-MDF {}** against {} for the supervised-only baseline (the same \
         fine-tuning without pre-training), {:+.1} points. The S4P chain trained longer in all: \
         the seed model (the same labels, {} supervised steps) scores {} before S4P and {} \
         after it.",
        FEW_LABELED,
        p.finetune_steps,
        pct(s5_urban),
        pct(base_urban),
        100.0 * (s5_urban - base_urban),
        p.seed_steps,
        pct(get("seed", "synth-urban/mIoU")),
        pct(get("s4p", "synth-urban/mIoU")),
    ));
    lines.push(String::new());
    lines.push(format!(
        "Runs in `{}`: `1-seed`, `2-curation`, `3-s4p`, `4-moe-mdf`, `5-baseline`; pictures in \
         `summary.png` (rows: domains; columns: image, truth, S4P + MoE-MDF, baseline). Watch \
         them: `cargo run --release -p s5-viewer -- {}`. One dataset of the MoE-MDF model as a \
         plain model: `s5 finetune export --model {}/4-moe-mdf/checkpoints/best --dataset \
         synth-urban --out urban-model`.",
        demo.shown.display(),
        demo.shown.display(),
        demo.shown.display(),
    ));
    Ok(lines.join("\n"))
}
