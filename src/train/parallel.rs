//! Data parallelism: one step's batch split into shares, one share per GPU, each share's
//! forward and backward on its own device (one thread each), the gradients brought to the
//! main device and summed there before the optimizer (and its global-norm clip) runs once.
//!
//! Every loss divides by a count of the *whole* batch (valid pixels, counted on the CPU), so
//! the shares' losses and gradients sum to the whole batch's, as in PyTorch DDP with
//! gradient averaging. Two things stay per share, as in DDP: BatchNorm statistics (each
//! replica normalises its own share; the running statistics kept are the main device's)
//! and dropout draws (each device has its own seed). With one device nothing is split and
//! no thread is started.

use std::collections::BTreeMap;
use std::ops::Range;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor};

use crate::error::{Error, Result};
use crate::model::Segmentor;

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

/// What one share's forward pass produced.
pub struct ShareLoss {
    /// The share's part of the step's loss: shares' parts add up to the step's loss.
    pub loss: Tensor<1>,
    /// Quantities that add across shares (loss parts, pixel counts), read from the GPU.
    pub sums: BTreeMap<String, f64>,
    /// Per-image values (e.g. mean entropy), concatenated across shares in order.
    pub per_image: Vec<f64>,
}

/// One step's result over all shares: summed gradients on the main device.
pub struct StepGrads {
    pub grads: GradientsParams,
    pub sums: BTreeMap<String, f64>,
    pub per_image: Vec<f64>,
}

/// Runs `share(k, replica, device)` for every device (autodiff devices, the main one first)
/// and sums the gradients of the returned losses, multiplied by `loss_scale` (mixed
/// precision's loss scale; 1 otherwise), on `devices[0]`.
///
/// `model` lives on `devices[0]`; device k > 0 gets a copy (`fork`) for this step.
pub fn step_grads<F>(
    model: &Segmentor,
    devices: &[Device],
    loss_scale: f64,
    share: F,
) -> Result<StepGrads>
where
    F: Fn(usize, &Segmentor, &Device) -> Result<ShareLoss> + Sync,
{
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
        vec![run(0, model.clone(), &devices[0])]
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
    let mut accumulator = GradientsAccumulator::<Segmentor>::new();
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    let mut per_image = Vec::new();
    for (k, result) in results.into_iter().enumerate() {
        let (grads, out) = result?;
        let grads = if k == 0 {
            grads
        } else {
            grads.to_device(&devices[0], model)
        };
        accumulator.accumulate(model, grads);
        for (name, value) in out.sums {
            *sums.entry(name).or_default() += value;
        }
        per_image.extend(out.per_image);
    }
    Ok(StepGrads {
        grads: accumulator.grads(),
        sums,
        per_image,
    })
}
