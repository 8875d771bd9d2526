//! `s5 bench`: speed measured, not guessed. `kernels`: each custom op against its reference,
//! timed in one run on one device; `step`: a training step on one GPU against the same step
//! data parallel; `score`, `select`, `memory`, `data` and `all` in their modules. Each returns
//! a report that serialises to the `--json` output and displays as the tables printed.
//!
//! Every measurement: `warmup` untimed runs, then `reps` timed runs, each ended by a device
//! sync so the time is the GPU's, and the median is reported. The ops of one group run
//! interleaved, so their ratio is taken under the same conditions. Outputs stay alive until
//! the sync so lazy backends cannot skip the work.

pub mod all;
pub mod allreduce;
pub mod child;
pub mod fixmatch;
pub mod memory;
pub mod memory_report;
pub mod predict;
pub mod scaling;
pub mod select;
pub mod select_report;
pub mod step;

pub use all::{AllEvent, AllOptions, AllReport, bench_all};
pub use child::{Children, Job};
pub use step::{
    KernelReport, MoeStep, ScoreReport, StepReport, kernel_report, score_report, step_report,
};

use std::time::{Duration, Instant};

use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::{
    MoeKernel, MoeWeights, moe_ffn, moe_ffn_reference, pixel_stats, pixel_stats_reference,
};
use crate::model::{Segmentor, SegmentorConfig};
use crate::train::loss::cross_entropy_over;
use crate::train::parallel::{Replicas, ShareLoss, shares, step_grads};

/// Bytes in MiB.
pub fn mib(bytes: f64) -> f64 {
    bytes / f64::from(1u32 << 20)
}

/// How many runs each measurement takes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    pub warmup: usize,
    pub reps: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self { warmup: 2, reps: 7 }
    }
}

/// One timed operation.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// Group the row belongs to (`pixel_stats`, `moe_ffn`, `train step`).
    pub group: &'static str,
    pub name: &'static str,
    pub shape: String,
    pub median_ms: f64,
    pub min_ms: f64,
    /// Name of the row the ratio is taken against, within the same group.
    pub baseline: Option<&'static str>,
    /// `median_ms / baseline's median_ms`, filled in by [`with_ratios`].
    pub ratio: Option<f64>,
}

/// One operation under measurement; its output is kept alive until the device sync.
type Op<'a> = Box<dyn FnMut() -> Box<dyn std::any::Any> + 'a>;

fn op<'a, T: 'static>(mut run: impl FnMut() -> T + 'a) -> Op<'a> {
    Box::new(move || Box::new(run()) as Box<dyn std::any::Any>)
}

/// Times `ops` interleaved (each repetition runs every op once, in turn), so a slow spell of
/// the machine hits all of them alike and their ratios stay meaningful. Returns
/// (median ms, min ms) per op.
fn time_interleaved(
    device: &Device,
    config: BenchConfig,
    ops: &mut [Op<'_>],
) -> Result<Vec<(f64, f64)>> {
    let sync = || {
        device
            .sync()
            .map_err(|e| Error::Execution(format!("device sync during the benchmark: {e}")))
    };
    for _ in 0..config.warmup {
        for run in ops.iter_mut() {
            let out = run();
            sync()?;
            drop(out);
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(config.reps); ops.len()];
    for _ in 0..config.reps.max(1) {
        for (run, samples) in ops.iter_mut().zip(&mut samples) {
            sync()?;
            let start = Instant::now();
            let out = run();
            sync()?;
            samples.push(start.elapsed());
            drop(out);
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(samples
        .into_iter()
        .map(|mut s| {
            s.sort();
            (ms(s[s.len() / 2]), ms(s[0]))
        })
        .collect())
}

/// Shapes of the kernel benchmark (defaults: the issue's; tests use tiny ones).
#[derive(Debug, Clone, Copy)]
pub struct KernelShapes {
    /// pixel_stats logits `[B, K, H, W]`.
    pub logits: [usize; 4],
    /// MoE FFN: images, tokens per image (rows N = images · tokens), F (= 4D), C, P, T.
    pub moe_images: usize,
    pub moe_tokens: usize,
    pub moe_hidden: usize,
    pub moe_out: usize,
    pub moe_expert: usize,
    pub moe_datasets: usize,
}

impl Default for KernelShapes {
    fn default() -> Self {
        Self {
            logits: [8, 16, 256, 256],
            moe_images: 8,
            moe_tokens: 1024,
            moe_hidden: 1536,
            moe_out: 384,
            moe_expert: 96,
            moe_datasets: 4,
        }
    }
}

/// Which kernel groups to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelGroup {
    PixelStats,
    MoeFfn,
}

/// Times `pixel_stats` against its reference and burn's `sum`, and `moe_ffn` against a dense
/// `Linear(F -> C)` and the naive composition (the groups in `groups`, all when empty).
pub fn bench_kernels(
    device: &Device,
    shapes: KernelShapes,
    config: BenchConfig,
    groups: &[KernelGroup],
) -> Result<Vec<Timing>> {
    let wanted = |g| groups.is_empty() || groups.contains(&g);
    let mut rows = Vec::new();
    if wanted(KernelGroup::PixelStats) {
        bench_pixel_stats(device, shapes, config, &mut rows)?;
    }
    if wanted(KernelGroup::MoeFfn) {
        bench_moe_ffn(device, shapes, config, &mut rows)?;
    }
    Ok(with_ratios(rows))
}

/// Appends one row; `baseline` names the row its ratio is taken against.
fn push(
    rows: &mut Vec<Timing>,
    group: &'static str,
    name: &'static str,
    shape: &str,
    baseline: Option<&'static str>,
    (median_ms, min_ms): (f64, f64),
) {
    rows.push(Timing {
        group,
        name,
        shape: shape.to_string(),
        median_ms,
        min_ms,
        baseline,
        ratio: None,
    });
}

fn bench_pixel_stats(
    device: &Device,
    shapes: KernelShapes,
    config: BenchConfig,
    rows: &mut Vec<Timing>,
) -> Result<()> {
    let group = "pixel_stats";
    let [b, k, h, w] = shapes.logits;
    let logits = Tensor::<4>::random([b, k, h, w], Distribution::Normal(0.0, 2.0), device);
    let shape = format!("[{b}, {k}, {h}, {w}]");
    let floor = "sum (burn, memory floor)";
    let reference = "pixel_stats reference (tensor ops)";
    let kernel = "pixel_stats (WGSL)";
    let times = time_interleaved(
        device,
        config,
        &mut [
            op(|| logits.clone().sum()),
            op(|| pixel_stats_reference(logits.clone(), None, Some(0))),
            op(|| pixel_stats(logits.clone(), None, Some(0))),
        ],
    )?;
    push(rows, group, floor, &shape, None, times[0]);
    push(rows, group, reference, &shape, None, times[1]);
    push(rows, group, kernel, &shape, Some(reference), times[2]);
    push(rows, group, kernel, &shape, Some(floor), times[2]);
    Ok(())
}

fn bench_moe_ffn(
    device: &Device,
    shapes: KernelShapes,
    config: BenchConfig,
    rows: &mut Vec<Timing>,
) -> Result<()> {
    let group = "moe_ffn";
    let n = shapes.moe_images * shapes.moe_tokens;
    let (f, c, p, t) = (
        shapes.moe_hidden,
        shapes.moe_out,
        shapes.moe_expert,
        shapes.moe_datasets,
    );
    let normal = Distribution::Normal(0.0, 0.02);
    let hidden = Tensor::<2>::random([n, f], Distribution::Normal(0.0, 1.0), device);
    let weights = MoeWeights {
        w_shared: Tensor::random([f, c - p], normal, device),
        b_shared: Tensor::random([c - p], normal, device),
        w_expert: Tensor::random([t, f, p], normal, device),
        b_expert: Tensor::random([t, p], normal, device),
    };
    // Each image's tokens belong to one dataset, images cycling through the datasets.
    let ids: Vec<i32> = (0..n)
        .map(|row| ((row / shapes.moe_tokens) % t) as i32)
        .collect();
    let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), device);
    let dense_w = Tensor::<2>::random([f, c], normal, device);
    let dense_b = Tensor::<1>::random([c], normal, device);
    let shape = format!("N={n} F={f} C={c} P={p} T={t}");
    let dense = "dense Linear (burn matmul + bias)";
    let naive = "naive composition (every expert, select)";
    // Both tilings run on every adapter; the model picks one for its adapter.
    let auto = crate::device::moe_kernel();
    let kernels = [
        (
            MoeKernel::WorkgroupTiles,
            "moe_ffn (WGSL, workgroup tiles)",
            "moe_ffn (WGSL, workgroup tiles) [auto]",
        ),
        (
            MoeKernel::RegisterTiles,
            "moe_ffn (WGSL, register tiles)",
            "moe_ffn (WGSL, register tiles) [auto]",
        ),
    ]
    .map(|(kernel, name, auto_name)| (if kernel == auto { auto_name } else { name }, kernel));
    let (hidden, weights, ids) = (&hidden, &weights, &ids);
    let run = |kernel| move || moe_ffn(hidden.clone(), weights, ids.clone(), kernel);
    let times = time_interleaved(
        device,
        config,
        &mut [
            op(|| hidden.clone().matmul(dense_w.clone()) + dense_b.clone().unsqueeze()),
            op(|| moe_ffn_reference(hidden.clone(), weights, ids.clone())),
            op(run(kernels[0].1)),
            op(run(kernels[1].1)),
        ],
    )?;
    push(rows, group, dense, &shape, None, times[0]);
    push(rows, group, naive, &shape, None, times[1]);
    for ((name, _), time) in kernels.into_iter().zip(&times[2..]) {
        push(rows, group, name, &shape, Some(dense), *time);
        push(rows, group, name, &shape, Some(naive), *time);
    }
    Ok(())
}

/// The batch of [`bench_train_step`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepShapes {
    pub batch: usize,
    pub crop_px: usize,
}

/// Fixed pseudo-random step inputs (a step's time does not depend on the values).
///
/// # Shapes
/// images `[b, 3, s, s]` in `[-0.5, 0.5)`, labels `[b, s, s]` in `0..k`, row-major.
fn random_batch(b: usize, s: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<i32>) {
    let mut state = seed.max(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let images = (0..b * 3 * s * s)
        .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        .collect();
    let labels = (0..b * s * s).map(|_| (next() % k as u64) as i32).collect();
    (images, labels)
}

/// One training step's forward and backward (loss: cross-entropy on a random batch;
/// gradients summed on the main device) on the main device alone, and data parallel over
/// every device of `devices` (the main one first), timed interleaved; with the main device's
/// memory after the first one-GPU step (its peak: nothing bigger ran before).
pub fn bench_train_step(
    devices: &[Device],
    model: &SegmentorConfig,
    shapes: StepShapes,
    config: BenchConfig,
) -> Result<(Vec<Timing>, Option<crate::memory::DeviceMemory>)> {
    let group = "train step";
    let train: Vec<Device> = devices.iter().map(|d| d.clone().autodiff()).collect();
    let segmentor = Segmentor::new(model, &train[0]);
    let (b, s, k) = (shapes.batch, shapes.crop_px, model.classes[0]);
    let (images, labels) = random_batch(b, s, k, 0x2545_f491_4f6c_dd1d);
    let step = |devices: &[Device]| -> Result<GradientsParams> {
        let parts = shares(b, devices.len());
        let replicas = Replicas::local(devices);
        let out = step_grads(
            &segmentor,
            replicas,
            parts.len(),
            1.0,
            |i, replica, device| {
                let r = parts[i].clone();
                let n = r.len();
                let images = images[r.start * 3 * s * s..r.end * 3 * s * s].to_vec();
                let labels = labels[r.start * s * s..r.end * s * s].to_vec();
                let loss = cross_entropy_over(
                    replica.forward(
                        Tensor::from_data(TensorData::new(images, [n, 3, s, s]), device),
                        0,
                    ),
                    Tensor::from_data(TensorData::new(labels, [n, s, s]), device),
                    Tensor::ones([n, s, s], device),
                    (b * s * s) as f64,
                );
                Ok(ShareLoss {
                    loss,
                    sums: Default::default(),
                    per_image: Vec::new(),
                })
            },
        )?;
        Ok(out.grads)
    };
    // Surface errors once, outside the timing; read the memory of the one-GPU step.
    let grads = step(&train[..1])?;
    devices[0]
        .sync()
        .map_err(|e| Error::Execution(format!("device sync during the benchmark: {e}")))?;
    let memory = crate::memory::device_memory(&devices[0]);
    drop(grads);
    if devices.len() > 1 {
        step(&train)?;
    }
    let shape = |gpus: usize| format!("batch {b} × {s}² px on {gpus} GPU(s)");
    let one = "forward + backward, one GPU";
    let parallel = "forward + backward, data parallel";
    let times = time_interleaved(
        &devices[0],
        config,
        &mut [op(|| step(&train[..1]).ok()), op(|| step(&train).ok())],
    )?;
    let mut rows = Vec::new();
    push(&mut rows, group, one, &shape(1), None, times[0]);
    let used = shares(b, train.len()).len();
    push(
        &mut rows,
        group,
        parallel,
        &shape(used),
        Some(one),
        times[1],
    );
    Ok((with_ratios(rows), memory))
}

/// One MoE-MDF training step (the batch split evenly over `datasets` datasets, one backbone
/// pass with each token routed to its dataset's expert, each dataset's decoder on its share,
/// the losses summed) against the same step with a dense backbone, timed interleaved on
/// `device`. `model`'s backbone must be dense; its first class count serves every dataset.
pub fn bench_moe_step(
    device: &Device,
    model: &SegmentorConfig,
    datasets: usize,
    expert_dim: usize,
    shapes: StepShapes,
    config: BenchConfig,
) -> Result<Vec<Timing>> {
    let group = "moe-mdf step";
    let train = device.clone().autodiff();
    let t = datasets.max(1);
    let mut dense_cfg = model.clone();
    dense_cfg.classes = vec![model.classes[0]; t];
    let mut moe_cfg = dense_cfg.clone();
    moe_cfg.backbone = moe_cfg.backbone.clone().with_moe(t, expert_dim);
    let dense = Segmentor::new(&dense_cfg, &train);
    let moe = Segmentor::new(&moe_cfg, &train);
    let (b, s, k) = (shapes.batch.max(t), shapes.crop_px, model.classes[0]);
    let (images, labels) = random_batch(b, s, k, 0x9e37_79b9_7f4a_7c15);
    let ids: Vec<usize> = (0..b).map(|i| i * t / b).collect();
    let step = |segmentor: &Segmentor| -> GradientsParams {
        let x = Tensor::from_data(TensorData::new(images.clone(), [b, 3, s, s]), &train);
        let per_image = segmentor.forward_mixed(x, &ids);
        let logits = Tensor::cat(per_image, 0);
        let loss = cross_entropy_over(
            logits,
            Tensor::from_data(TensorData::new(labels.clone(), [b, s, s]), &train),
            Tensor::ones([b, s, s], &train),
            (b * s * s) as f64,
        );
        GradientsParams::from_grads(loss.backward(), segmentor)
    };
    step(&dense);
    step(&moe);
    let times = time_interleaved(
        device,
        config,
        &mut [op(|| step(&dense)), op(|| step(&moe))],
    )?;
    let shape = format!("batch {b} × {s}² px, {t} datasets, P = {expert_dim}");
    let dense_name = "forward + backward, dense backbone";
    let mut rows = Vec::new();
    push(&mut rows, group, dense_name, &shape, None, times[0]);
    push(
        &mut rows,
        group,
        "forward + backward, FFN-MoE backbone",
        &shape,
        Some(dense_name),
        times[1],
    );
    Ok(with_ratios(rows))
}

/// Fills each row's `ratio` from its baseline row in the same group.
pub fn with_ratios(mut rows: Vec<Timing>) -> Vec<Timing> {
    let medians: Vec<(&'static str, &'static str, f64)> = rows
        .iter()
        .map(|r| (r.group, r.name, r.median_ms))
        .collect();
    for row in &mut rows {
        row.ratio = row.baseline.and_then(|base| {
            medians
                .iter()
                .find(|(g, n, _)| *g == row.group && *n == base)
                .map(|(_, _, m)| row.median_ms / m)
        });
    }
    rows
}

/// The table `s5 bench kernels` prints.
pub fn format_table(rows: &[Timing]) -> String {
    let mut out = format!(
        "{:<12} {:<42} {:<30} {:>11} {:>11}  {}\n",
        "group", "op", "shape", "median ms", "min ms", "time ratio vs"
    );
    for r in rows {
        let ratio = match (r.ratio, r.baseline) {
            (Some(x), Some(base)) => format!("{x:.2}x {base}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<12} {:<42} {:<30} {:>11.2} {:>11.2}  {}\n",
            r.group, r.name, r.shape, r.median_ms, r.min_ms, ratio
        ));
    }
    out
}

/// Writes `records` made-up patch records (uniform entropies, similarities and foreground
/// shares over `clusters` clusters, seeded) into `shards` record files in `dir`, streaming:
/// the input of `s5 bench select`, which needs pools larger than memory.
pub fn write_synthetic_records(
    dir: &std::path::Path,
    records: u64,
    shards: u64,
    clusters: u32,
    seed: u64,
) -> Result<Vec<std::path::PathBuf>> {
    use rand::{Rng, SeedableRng};

    use crate::curate::record::{PatchRecord, RecordWriter};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let per_shard = records.div_ceil(shards.max(1)).max(1);
    let mut paths = Vec::new();
    let mut start = 0;
    while start < records {
        let end = (start + per_shard).min(records);
        let path = dir.join(format!("shard-{:05}.bin", paths.len()));
        let mut writer = RecordWriter::create(&path)?;
        for patch in start..end {
            writer.push(&PatchRecord {
                patch,
                content: rng.random(),
                entropy: rng.random_range(0.0..2.0),
                confidence: rng.random_range(0.3..1.0),
                foreground: rng.random_range(0.0..1.0),
                similarity: rng.random_range(-1.0..1.0),
                margin: rng.random_range(0.0..0.5),
                cluster: rng.random_range(0..clusters.max(1)),
            })?;
        }
        writer.finish()?;
        paths.push(path);
        start = end;
    }
    Ok(paths)
}

/// Curation's scoring of one batch of patches (forward with backbone maps, `pixel_stats`,
/// embedding, nearest prototype, records read back) against the same model's forward alone
/// on the same batch, timed interleaved: the cost of everything scoring adds.
pub fn bench_score(
    device: &Device,
    model: &SegmentorConfig,
    shapes: StepShapes,
    prototypes: usize,
    config: BenchConfig,
) -> Result<Vec<Timing>> {
    use crate::curate::score::{LoadedPatch, ScoreSetup, score_batch};
    use crate::run::curation::{Embedding, ModelRef, Prototypes};
    let group = "curate score";
    let segmentor = Segmentor::new(model, device);
    let (b, s) = (shapes.batch, shapes.crop_px);
    let patches: Vec<LoadedPatch> = (0..b)
        .map(|i| {
            let (image, _) = crate::data::synth::urban_tile(s as u32, s as u32, i as u64);
            LoadedPatch::new(i as u64, image)
        })
        .collect();
    let dim = model.backbone.dim;
    let centroids: Vec<Vec<f32>> = (0..prototypes)
        .map(|m| {
            let mut c: Vec<f32> = (0..dim)
                .map(|d| ((m * 31 + d * 7) % 13) as f32 - 6.0)
                .collect();
            crate::curate::kmeans::normalize_rows(&mut c, dim);
            c
        })
        .collect();
    let flat: Vec<f32> = centroids.iter().flatten().copied().collect();
    let on_device = Tensor::<2>::from_data(TensorData::new(flat, [prototypes, dim]), device);
    let prototypes = Prototypes {
        model: ModelRef {
            checkpoint: "bench".into(),
            sha256: String::new(),
        },
        dataset: "bench".into(),
        split: "bench".into(),
        embedding: Embedding::default(),
        centroids,
        labeled_per_cluster: vec![1; prototypes],
        mean_similarity: 0.0,
        seed: 0,
        restarts: 1,
    };
    let setup = ScoreSetup {
        dataset: 0,
        background: Some(0),
        batch: b,
        // Every patch keeps its embedding (a pool under 20 000 patches): the dearest case.
        sample_below: u64::MAX,
    };
    let images: Vec<f32> = patches
        .iter()
        .flat_map(|p| crate::data::augment::normalize(&p.image))
        .collect();
    let forward = || {
        let x = Tensor::<4>::from_data(TensorData::new(images.clone(), [b, 3, s, s]), device);
        segmentor.forward(x, 0)
    };
    let score = || {
        score_batch(
            &segmentor,
            &patches,
            s,
            &on_device,
            &prototypes,
            setup,
            device,
        )
    };
    // Once outside the timing: a GPU failure is an error, not a timed no-op.
    score()?;
    let shape = format!("batch {b} × {s}² px");
    let alone = "forward alone (logits)";
    let times = time_interleaved(device, config, &mut [op(forward), op(score)])?;
    let mut rows = Vec::new();
    push(&mut rows, group, alone, &shape, None, times[0]);
    push(
        &mut rows,
        group,
        "scoring: forward, stats, prototypes, embeddings kept",
        &shape,
        Some(alone),
        times[1],
    );
    Ok(with_ratios(rows))
}
