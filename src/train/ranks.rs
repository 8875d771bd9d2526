//! A step's results summed over the ranks of an MPI job ([`crate::distributed`]): the
//! gradients, and every share's logged sums and per-image values, so that rank 0 updates
//! with the whole batch's gradients and logs what a one-process run over as many GPUs logs;
//! then rank 0's weights, sent to every rank.
//!
//! Gradients travel as one f32 buffer per step, the parameters in the model's visit order
//! (those of recomputed ViT blocks summed during the backward pass travel apart, one buffer
//! per block: [`super::overlap`]).
//! A parameter can have a gradient on some ranks only (a dataset's decoder or expert whose
//! crops went to other ranks' shares): which parameters have one anywhere is summed first
//! (one flag each), and a rank without a gradient for such a parameter sends zeros, as
//! burn's accumulator over one process's devices keeps the one gradient it has. A parameter
//! without a gradient on any rank stays without one (AdamW leaves it alone).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use super::overlap::Summed;
use crate::distributed::World;
use crate::error::Result;
use crate::model::Segmentor;

/// One share's logged numbers: its sums (loss parts, pixel counts) and per-image values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShareNumbers {
    pub sums: BTreeMap<String, f64>,
    pub per_image: Vec<f64>,
}

/// The gradients `grads` (this rank's, on `device`) summed over the ranks in rank order
/// ([`World::sum_f32`]): the same values on every rank. The parameters in `early` were
/// summed already ([`super::overlap`]): their sums join the result as they are.
pub fn sum_grads(
    world: &World,
    model: &Segmentor,
    mut grads: GradientsParams,
    early: Summed,
    device: &Device,
) -> Result<GradientsParams> {
    // Pass 1: each parameter's size and this rank's gradient, in visit order.
    struct Take<'a> {
        grads: &'a mut GradientsParams,
        early: &'a Summed,
        params: Vec<(ParamId, usize, bool)>,
        local: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for Take<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.early.contains_key(&param.id) {
                return;
            }
            let numel = param.val().shape().num_elements();
            let grad = self.grads.remove::<D>(param.id);
            self.params.push((param.id, numel, grad.is_some()));
            if let Some(g) = grad {
                self.local.push(g.reshape([numel]));
            }
        }
    }
    let mut take = Take {
        grads: &mut grads,
        early: &early,
        params: Vec::new(),
        local: Vec::new(),
    };
    model.visit(&mut take);
    let Take { params, local, .. } = take;
    // Which parameters have a gradient on some rank.
    let mut anywhere: Vec<f32> = params
        .iter()
        .map(|&(_, _, here)| f32::from(u8::from(here)))
        .collect();
    world.sum_f32(&mut anywhere);
    let local: Vec<f32> = if local.is_empty() {
        Vec::new()
    } else {
        super::loss::read_floats(Tensor::cat(local, 0))?
    };
    // The send buffer: every parameter with a gradient somewhere, zeros where not here.
    let mut buffer = Vec::new();
    let mut read = 0;
    for (&(_, numel, here), &count) in params.iter().zip(&anywhere) {
        if count > 0.0 {
            if here {
                buffer.extend_from_slice(&local[read..read + numel]);
            } else {
                buffer.resize(buffer.len() + numel, 0.0);
            }
        }
        if here {
            read += numel;
        }
    }
    world.sum_f32(&mut buffer);
    // Pass 2: the sums back as gradients of the same parameters.
    struct Put<'a> {
        grads: &'a mut GradientsParams,
        early: &'a Summed,
        buffer: &'a [f32],
        anywhere: &'a [f32],
        index: usize,
        read: usize,
        device: &'a Device,
    }
    impl ModuleVisitor for Put<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let shape = param.val().shape();
            if let Some(summed) = self.early.get(&param.id) {
                if let Some(values) = summed {
                    let grad =
                        Tensor::<D>::from_data(TensorData::new(values.clone(), shape), self.device);
                    self.grads.register::<D>(param.id, grad);
                }
                return;
            }
            let present = self.anywhere[self.index] > 0.0;
            self.index += 1;
            if !present {
                return;
            }
            let numel = shape.num_elements();
            let values = self.buffer[self.read..self.read + numel].to_vec();
            self.read += numel;
            let grad = Tensor::<D>::from_data(TensorData::new(values, shape), self.device);
            self.grads.register::<D>(param.id, grad);
        }
    }
    let mut summed = GradientsParams::new();
    let inner = device.clone().inner();
    model.visit(&mut Put {
        grads: &mut summed,
        early: &early,
        buffer: &buffer,
        anywhere: &anywhere,
        index: 0,
        read: 0,
        device: &inner,
    });
    Ok(summed)
}

/// Rank 0's weights (every float parameter and BatchNorm statistic, in visit order), on
/// every rank: the other ranks' values are replaced, their ids and gradient flags kept; the
/// statistics matter where a rank runs the model in eval mode (FixMatch's teacher).
/// Rank 0 alone updates the weights, so that every rank holds the same bits whatever kernels
/// its own process would have chosen for the update.
pub fn broadcast_weights(world: &World, model: Segmentor) -> Result<Segmentor> {
    if world.size() <= 1 {
        return Ok(model);
    }
    struct Flatten(Vec<Tensor<1>>, usize);
    impl ModuleVisitor for Flatten {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            let numel = value.shape().num_elements();
            self.1 += numel;
            self.0.push(value.reshape([numel]));
        }
    }
    // BatchNorm's running statistics lag one update until a validation snapshot brings them
    // up to date (burn's `RunningState` keeps each forward's update aside until then): rank 0
    // sends them current, as a checkpoint saves them, and the other ranks settle their own
    // pending updates first, so that none is applied over rank 0's values later.
    let _ = model.valid();
    let mut flat = Flatten(Vec::new(), 0);
    model.visit(&mut flat);
    let Flatten(parts, total) = flat;
    let mut values = if world.is_writer() && total > 0 {
        super::loss::read_floats(Tensor::cat(parts, 0))?
    } else {
        drop(parts);
        vec![0.0; total]
    };
    world.broadcast_f32(&mut values);
    if world.is_writer() {
        return Ok(model);
    }
    struct Load<'a> {
        values: &'a [f32],
        read: usize,
    }
    impl ModuleMapper for Load<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (values, read) = (self.values, &mut self.read);
            param.map(|tensor| {
                let shape = tensor.shape();
                let numel = shape.num_elements();
                let part = values[*read..*read + numel].to_vec();
                *read += numel;
                let loaded = Tensor::<D>::from_data(TensorData::new(part, shape), &tensor.device());
                if tensor.is_require_grad() {
                    loaded.require_grad()
                } else {
                    loaded
                }
            })
        }
    }
    Ok(model.map(&mut Load {
        values: &values,
        read: 0,
    }))
}

/// Every rank's shares' numbers, in rank order (each rank's shares in device order): the
/// step's shares in the order of the global batch.
pub fn gather_shares(world: &World, mine: &[ShareNumbers]) -> Vec<ShareNumbers> {
    world
        .all_gather_bytes(&encode(mine))
        .iter()
        .flat_map(|bytes| decode(bytes))
        .collect()
}

/// `shares` as bytes: per share, its sums (key length, key, value) and its per-image values,
/// every number little-endian (f64 bits, exact).
pub fn encode(shares: &[ShareNumbers]) -> Vec<u8> {
    let mut out = Vec::new();
    let count = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as u64).to_le_bytes());
    count(&mut out, shares.len());
    for share in shares {
        count(&mut out, share.sums.len());
        for (key, value) in &share.sums {
            count(&mut out, key.len());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        count(&mut out, share.per_image.len());
        for value in &share.per_image {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out
}

/// The inverse of [`encode`] (bytes another rank of this same binary wrote).
pub fn decode(bytes: &[u8]) -> Vec<ShareNumbers> {
    struct Reader<'a> {
        bytes: &'a [u8],
        at: usize,
    }
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> &'a [u8] {
            let slice = &self.bytes[self.at..self.at + n];
            self.at += n;
            slice
        }
        fn word(&mut self) -> u64 {
            u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
        }
    }
    let mut r = Reader { bytes, at: 0 };
    let mut out = Vec::new();
    for _ in 0..r.word() {
        let mut share = ShareNumbers::default();
        for _ in 0..r.word() {
            let len = r.word() as usize;
            let key = String::from_utf8_lossy(r.take(len)).into_owned();
            share.sums.insert(key, f64::from_bits(r.word()));
        }
        for _ in 0..r.word() {
            share.per_image.push(f64::from_bits(r.word()));
        }
        out.push(share);
    }
    out
}
