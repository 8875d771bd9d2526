//! The gradient sums of an MPI job overlapped with the backward pass, block by block.
//!
//! burn 0.22's autodiff hands out gradients only when the whole backward pass has run. A ViT
//! block recomputed in the backward pass ([`crate::model::recompute`], the authors'
//! `with_cp=True`) is an autodiff node of s5's own, and when it has run, its block's
//! parameters' gradients are final (they serve that block alone). There the block's
//! gradients are read back to the host and handed to a communication thread, which sums
//! them over the ranks ([`World::sum_f32`]) while the backward pass goes on with the blocks
//! below; the rest (decoder, neck, embeddings) is summed after the backward pass, as before.
//!
//! Every rank sums the same buckets in the same order, whatever its backward pass did: the
//! blocks from the top down, each as one buffer of one presence flag per parameter followed
//! by the parameters' values (zeros where this rank has no gradient). A block whose
//! gradients did not come out of its node on this rank (a rank with several GPUs, whose
//! gradients meet only after their backward passes, or a rank with no share of the batch)
//! is read from the backward pass's result instead, after it. Each value is summed in rank
//! order whatever buffer it travels in, so the sums are bit for bit those of summing after
//! the backward pass.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, channel};
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::distributed::World;
use crate::error::{Error, Result};
use crate::model::Segmentor;
use crate::model::recompute::{BlockGradients, with_block_gradients};

/// Parameters' gradients summed over the ranks before the rest: per parameter, the sum
/// (`None`: no rank had a gradient for it).
pub type Summed = HashMap<ParamId, Option<Vec<f32>>>;

/// What [`during_backward`] summed, and how many of its buckets the backward pass handed
/// over while it ran.
pub struct Early {
    pub summed: Summed,
    pub in_backward: usize,
    /// When the backward pass returned (its work submitted to the GPU).
    pub backward_end: Instant,
}

impl Early {
    /// Nothing summed early; the backward pass ended now.
    pub fn none() -> Self {
        Self {
            summed: Summed::new(),
            in_backward: 0,
            backward_end: Instant::now(),
        }
    }
}

/// One block's gradients on the host: every parameter's id, size and whether this rank has
/// its gradient, and the values of those it has, in order.
struct Bucket {
    block: usize,
    params: Vec<(ParamId, usize, bool)>,
    values: Vec<f32>,
}

enum Message {
    Bucket(Bucket),
    /// The backward pass has returned: buckets from here on were read after it.
    BackwardDone,
    Failed(String),
}

/// Runs `backward` (this rank's forward and backward passes, returning the gradients to be
/// summed and anything else) while a second thread sums each recomputed block's gradients
/// over the ranks as its backward pass hands them over; then sums the blocks it did not hand
/// over from the returned gradients. The returned gradients no longer hold the blocks'
/// parameters: their sums are in [`Early::summed`].
pub fn during_backward<R>(
    world: &World,
    model: &Segmentor,
    backward: impl FnOnce() -> Result<(GradientsParams, R)>,
) -> Result<(GradientsParams, R, Early)> {
    let layouts: Vec<Vec<(ParamId, usize)>> = model.backbone.blocks.iter().map(layout).collect();
    let (send, receive) = channel::<Message>();
    std::thread::scope(|scope| {
        let layouts = &layouts;
        let comm = scope.spawn(move || sum_buckets(world, layouts, receive));
        let handed = Rc::new(RefCell::new(BTreeSet::new()));
        let sink = {
            let (send, handed) = (send.clone(), Rc::clone(&handed));
            Box::new(move |gradients: BlockGradients| {
                handed.borrow_mut().insert(gradients.block);
                let message = match bucket(gradients.block, gradients.params) {
                    Ok(bucket) => Message::Bucket(bucket),
                    Err(e) => Message::Failed(e),
                };
                // A closed channel means the sums failed: the error comes from the thread.
                let _ = send.send(message);
            })
        };
        let result = with_block_gradients(sink, backward);
        let backward_end = Instant::now();
        let _ = send.send(Message::BackwardDone);
        let finished = result.and_then(|(mut grads, rest)| {
            for (block, params) in model.backbone.blocks.iter().enumerate() {
                // A handed-over block's node registered its gradients in the graph as well.
                let flat = take(&mut grads, params);
                if !handed.borrow().contains(&block) {
                    let bucket = bucket(block, flat).map_err(Error::Execution)?;
                    let _ = send.send(Message::Bucket(bucket));
                }
            }
            Ok((grads, rest))
        });
        if let Err(e) = &finished {
            let _ = send.send(Message::Failed(e.to_string()));
        }
        drop(send);
        let sums = comm
            .join()
            .unwrap_or_else(|_| Err(Error::Execution("the gradient-sum thread panicked".into())));
        let (grads, rest) = finished?;
        let (summed, in_backward) = sums?;
        Ok((
            grads,
            rest,
            Early {
                summed,
                in_backward,
                backward_end,
            },
        ))
    })
}

/// A block's parameters (id, values) in visit order.
fn layout(block: &crate::model::vit::Block) -> Vec<(ParamId, usize)> {
    struct Ids(Vec<(ParamId, usize)>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push((param.id, param.val().shape().num_elements()));
        }
    }
    let mut ids = Ids(Vec::new());
    block.visit(&mut ids);
    ids.0
}

/// A block's parameters' gradients taken out of `grads`, flattened, in visit order.
fn take(
    grads: &mut GradientsParams,
    block: &crate::model::vit::Block,
) -> Vec<(ParamId, usize, Option<Tensor<1>>)> {
    struct Take<'a>(
        &'a mut GradientsParams,
        Vec<(ParamId, usize, Option<Tensor<1>>)>,
    );
    impl ModuleVisitor for Take<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let numel = param.val().shape().num_elements();
            let grad = self.0.remove::<D>(param.id).map(|g| g.reshape([numel]));
            self.1.push((param.id, numel, grad));
        }
    }
    let mut taken = Take(grads, Vec::new());
    block.visit(&mut taken);
    taken.1
}

/// A block's flattened gradients read back to the host (`f32`).
fn bucket(
    block: usize,
    flat: Vec<(ParamId, usize, Option<Tensor<1>>)>,
) -> std::result::Result<Bucket, String> {
    let mut params = Vec::with_capacity(flat.len());
    let mut present = Vec::new();
    for (id, numel, grad) in flat {
        params.push((id, numel, grad.is_some()));
        present.extend(grad);
    }
    let values = if present.is_empty() {
        Vec::new()
    } else {
        super::loss::read_floats(Tensor::cat(present, 0))
            .map_err(|e| format!("block {block}'s gradients: {e}"))?
    };
    Ok(Bucket {
        block,
        params,
        values,
    })
}

/// The communication thread: sums the blocks' buckets over the ranks from the top block down,
/// whatever order they arrive in; counts those that arrived before the backward pass ended.
fn sum_buckets(
    world: &World,
    layouts: &[Vec<(ParamId, usize)>],
    receive: Receiver<Message>,
) -> Result<(Summed, usize)> {
    let mut pending: BTreeMap<usize, Bucket> = BTreeMap::new();
    let (mut summed, mut in_backward, mut backward_done) = (Summed::new(), 0, false);
    for block in (0..layouts.len()).rev() {
        let bucket = loop {
            if let Some(bucket) = pending.remove(&block) {
                break bucket;
            }
            match receive.recv() {
                Ok(Message::Bucket(bucket)) => {
                    in_backward += usize::from(!backward_done);
                    pending.insert(bucket.block, bucket);
                }
                Ok(Message::BackwardDone) => backward_done = true,
                Ok(Message::Failed(e)) => return Err(Error::Execution(e)),
                Err(_) => {
                    return Err(Error::Execution(format!(
                        "the backward pass ended without block {block}'s gradients"
                    )));
                }
            }
        };
        let expected: Vec<(ParamId, usize)> =
            bucket.params.iter().map(|&(id, n, _)| (id, n)).collect();
        if expected != layouts[block] {
            return Err(Error::Execution(format!(
                "block {block}'s gradients came for other parameters than the model's"
            )));
        }
        summed.extend(sum_bucket(world, bucket));
    }
    Ok((summed, in_backward))
}

/// One bucket summed over the ranks: its presence flags and its values (zeros for a
/// parameter this rank has no gradient for) in one buffer.
fn sum_bucket(world: &World, bucket: Bucket) -> Vec<(ParamId, Option<Vec<f32>>)> {
    let flags = bucket.params.len();
    let mut buffer: Vec<f32> = bucket
        .params
        .iter()
        .map(|&(_, _, here)| f32::from(u8::from(here)))
        .collect();
    let mut read = 0;
    for &(_, numel, here) in &bucket.params {
        if here {
            buffer.extend_from_slice(&bucket.values[read..read + numel]);
            read += numel;
        } else {
            buffer.resize(buffer.len() + numel, 0.0);
        }
    }
    world.sum_f32(&mut buffer);
    let mut at = flags;
    bucket
        .params
        .iter()
        .enumerate()
        .map(|(i, &(id, numel, _))| {
            let values = buffer[at..at + numel].to_vec();
            at += numel;
            (id, (buffer[i] > 0.0).then_some(values))
        })
        .collect()
}
