//! Data parallelism: one step's batch split into shares, one share per GPU, each share's
//! forward and backward on its own device (one thread each), the gradients brought to the
//! main device and summed there before the optimizer (and its global-norm clip) runs once.
//!
//! Every loss divides by a count of the *whole* batch (valid pixels, counted on the CPU), so
//! the shares' losses and gradients sum to the whole batch's, as in PyTorch DDP with
//! gradient averaging. Two things stay per share, as in DDP: BatchNorm statistics (each
//! replica normalises its own share; the running statistics kept are the main device's)
//! and dropout draws. burn's wgpu generator is one per process (its seed ignores the
//! device): the devices of one process draw their masks from one stream in whatever order
//! their threads reach it, so a one-process run over several GPUs with dropout or drop path
//! is not bit-reproducible. One GPU per process (one per MPI rank) is: each rank seeds its
//! own generator by its place in the job. With one device nothing is split and no thread is
//! started.
//!
//! Under MPI ([`crate::distributed`]) the batch is split over every rank's devices: each
//! rank computes its devices' shares of the global batch, and the gradients and the shares'
//! logged numbers are summed over the ranks ([`super::ranks`]) before the update, so every
//! rank takes the same step, the step of one process with as many GPUs.

use std::collections::BTreeMap;
use std::ops::Range;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};

use super::ranks::ShareNumbers;
use crate::distributed::World;
use crate::error::{Error, Result};
use crate::model::Segmentor;
use crate::run::{MetricKey, keys};

/// `n` items in `k` contiguous shares, the first `n % k` one longer; never an empty share
/// (fewer shares when `n < k`).
pub fn shares(n: usize, k: usize) -> Vec<Range<usize>> {
    let k = k.min(n).max(1);
    let (base, extra) = (n / k, n % k);
    let mut start = 0;
    (0..k)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

/// Where a step's shares run: this process's devices and its place among the job's ranks.
#[derive(Clone, Copy)]
pub struct Replicas<'a> {
    /// This process's autodiff devices, the main one first.
    pub devices: &'a [Device],
    pub world: &'a World,
    /// The index of this rank's first device among every rank's devices (the devices of
    /// lower ranks).
    pub first_slot: usize,
    /// Devices over every rank.
    pub slots: usize,
    /// Whether an MPI job sums each recomputed ViT block's gradients over the ranks while
    /// the backward pass goes on ([`super::overlap`]); the same on every rank.
    pub overlap: bool,
}

impl<'a> Replicas<'a> {
    /// One process's devices, alone.
    pub fn local(devices: &'a [Device]) -> Self {
        Self {
            devices,
            world: World::alone(),
            first_slot: 0,
            slots: devices.len(),
            overlap: false,
        }
    }

    /// This rank's shares of `n` items cut over every rank's devices ([`shares`]): the
    /// global shares `first_slot..first_slot + devices.len()`, fewer (or none) where `n` is
    /// smaller than the devices.
    pub fn shares(&self, n: usize) -> Vec<Range<usize>> {
        self.rank_slots().shares(n)
    }

    /// Where this rank's devices sit among every rank's.
    pub fn rank_slots(&self) -> RankSlots {
        RankSlots {
            first_slot: self.first_slot,
            devices: self.devices.len(),
            slots: self.slots,
        }
    }

    /// The items of `n` that this rank's shares cover together ([`RankSlots::span`]).
    pub fn span(&self, n: usize) -> Range<usize> {
        self.rank_slots().span(n)
    }

    /// The global index of this rank's device `k` (its dropout seed).
    pub fn slot(&self, k: usize) -> usize {
        self.first_slot + k
    }
}

/// Where one rank's devices sit among every rank's: enough to tell its shares of any batch
/// (a loader's thread asks for steps to come).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankSlots {
    /// The index of the rank's first device among every rank's devices.
    pub first_slot: usize,
    /// The rank's devices.
    pub devices: usize,
    /// Devices over every rank.
    pub slots: usize,
}

impl RankSlots {
    /// The rank's shares of `n` items ([`Replicas::shares`]).
    pub fn shares(&self, n: usize) -> Vec<Range<usize>> {
        if n == 0 {
            return Vec::new();
        }
        shares(n, self.slots)
            .into_iter()
            .skip(self.first_slot)
            .take(self.devices)
            .collect()
    }

    /// The items of a batch of `n` that the rank's shares cover together: consecutive;
    /// empty where the rank has no share.
    pub fn span(&self, n: usize) -> Range<usize> {
        let mine = self.shares(n);
        match (mine.first(), mine.last()) {
            (Some(first), Some(last)) => first.start..last.end,
            _ => 0..0,
        }
    }
}

/// What one share's forward pass produced.
pub struct ShareLoss {
    /// The share's part of the step's loss: shares' parts add up to the step's loss.
    pub loss: Tensor<1>,
    /// Quantities that add across shares (loss parts, pixel counts), read from the GPU.
    pub sums: BTreeMap<String, f64>,
    /// Per-image values (e.g. mean entropy), concatenated across shares in order.
    pub per_image: Vec<f64>,
}

/// One step's result over all shares (of every rank): summed gradients on the main device.
pub struct StepGrads {
    pub grads: GradientsParams,
    pub sums: BTreeMap<String, f64>,
    pub per_image: Vec<f64>,
    /// In an MPI job, what the sums over the ranks cost ([`RankSums::stats`]).
    pub rank_sums: Option<RankSums>,
}

/// What summing a step's gradients over the ranks of an MPI job cost.
#[derive(Debug, Clone, Copy)]
pub struct RankSums {
    /// Seconds from the end of this rank's backward pass (its submission to the GPU) until
    /// the summed gradients were back: the communication the backward pass did not hide.
    pub wait_s: f64,
    /// Recomputed blocks whose gradients were handed to the sums while the backward pass ran.
    pub in_backward: usize,
}

impl RankSums {
    /// As a step's event fields (`sum_wait_s`, `sums_in_backward`).
    pub fn stats(self) -> [(MetricKey, f64); 2] {
        [
            (keys::SUM_WAIT_S, self.wait_s),
            (keys::SUMS_IN_BACKWARD, self.in_backward as f64),
        ]
    }
}

/// Runs `share(k, replica, device)` for this rank's first `local` devices (autodiff devices,
/// the main one first) and sums the gradients of the returned losses, multiplied by
/// `loss_scale` (mixed precision's loss scale; 1 otherwise), on the main device, then over
/// the ranks. `local` may be 0 (a rank whose shares of a small batch are empty): the rank
/// still joins the sums.
///
/// `model` lives on the main device; device k > 0 gets a copy (`fork`) for this step.
pub fn step_grads<F>(
    model: &Segmentor,
    replicas: Replicas<'_>,
    local: usize,
    loss_scale: f64,
    share: F,
) -> Result<StepGrads>
where
    F: Fn(usize, &Segmentor, &Device) -> Result<ShareLoss> + Sync,
{
    let world = replicas.world;
    if world.size() <= 1 {
        let (grads, numbers) = local_grads(model, replicas, local, loss_scale, &share)?;
        return Ok(gathered(grads, numbers, None));
    }
    let (grads, numbers, early) = if replicas.overlap && model.backbone.recompute_blocks {
        super::overlap::during_backward(world, model, || {
            local_grads(model, replicas, local, loss_scale, &share)
        })?
    } else {
        let (grads, numbers) = local_grads(model, replicas, local, loss_scale, &share)?;
        (grads, numbers, super::overlap::Early::none())
    };
    let main = &replicas.devices[0];
    let grads = super::ranks::sum_grads(world, model, grads, early.summed, main)?;
    let numbers = super::ranks::gather_shares(world, &numbers);
    let sums = RankSums {
        wait_s: early.backward_end.elapsed().as_secs_f64(),
        in_backward: early.in_backward,
    };
    Ok(gathered(grads, numbers, Some(sums)))
}

/// This rank's shares' gradients, summed on its main device, and their numbers.
fn local_grads<F>(
    model: &Segmentor,
    replicas: Replicas<'_>,
    local: usize,
    loss_scale: f64,
    share: &F,
) -> Result<(GradientsParams, Vec<ShareNumbers>)>
where
    F: Fn(usize, &Segmentor, &Device) -> Result<ShareLoss> + Sync,
{
    let devices = &replicas.devices[..local.min(replicas.devices.len())];
    let run =
        |k: usize, replica: Segmentor, device: &Device| -> Result<(GradientsParams, ShareLoss)> {
            let out = share(k, &replica, device)?;
            let loss = if loss_scale == 1.0 {
                out.loss.clone()
            } else {
                out.loss.clone() * loss_scale
            };
            let grads = GradientsParams::from_grads(loss.backward(), &replica);
            Ok((grads, out))
        };
    let results: Vec<Result<(GradientsParams, ShareLoss)>> = if devices.len() <= 1 {
        devices
            .first()
            .map(|d| run(0, model.clone(), d))
            .into_iter()
            .collect()
    } else {
        let replicas: Vec<Segmentor> = devices
            .iter()
            .enumerate()
            .map(|(k, d)| {
                if k == 0 {
                    model.clone()
                } else {
                    model.clone().fork(d)
                }
            })
            .collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = replicas
                .into_iter()
                .zip(devices)
                .enumerate()
                .map(|(k, (replica, device))| scope.spawn(move || run(k, replica, device)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Execution(
                            "a data-parallel worker thread panicked".into(),
                        ))
                    })
                })
                .collect()
        })
    };
    let main = &replicas.devices[0];
    let mut accumulator = GradientsAccumulator::<Segmentor>::new();
    let mut numbers = Vec::with_capacity(results.len());
    for (k, result) in results.into_iter().enumerate() {
        let (grads, out) = result?;
        let grads = if k == 0 {
            grads
        } else {
            grads.to_device(main, model)
        };
        accumulator.accumulate(model, grads);
        numbers.push(ShareNumbers {
            sums: out.sums,
            per_image: out.per_image,
        });
    }
    Ok((accumulator.grads(), numbers))
}

/// The step's gradients and its shares' numbers (every rank's, in batch order) summed as one
/// process sums its devices'.
fn gathered(
    grads: GradientsParams,
    numbers: Vec<ShareNumbers>,
    rank_sums: Option<RankSums>,
) -> StepGrads {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    let mut per_image = Vec::new();
    for share in numbers {
        for (name, value) in share.sums {
            *sums.entry(name).or_default() += value;
        }
        per_image.extend(share.per_image);
    }
    StepGrads {
        grads,
        sums,
        per_image,
        rank_sums,
    }
}
