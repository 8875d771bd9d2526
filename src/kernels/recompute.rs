//! Per-block recomputation (`torch.utils.checkpoint` of a whole block; the authors'
//! `with_cp=True`): one autodiff node for a block, whose forward pass runs the block without
//! autodiff and keeps only its input, and whose backward pass runs the block again with
//! gradients on that input and the block's parameters and hands their gradients on.
//!
//! burn's own checkpointing (the balanced strategy) decides op by op and keeps every
//! compute-bound op's output; this node keeps nothing of the block's inside. Its backward pass
//! records the recomputed block on a graph of its own (fresh leaves for the input and the
//! parameters, nothing shared with the graph being differentiated) and calls `backward` on it:
//! burn 0.22's autodiff keeps one graph per set of connected nodes, each behind its own lock,
//! so this inner backward does not wait on the outer one.
//!
//! The block must compute the same values on both passes: randomness (drop path) is drawn
//! before the node and passed in.

use std::fmt;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, BackendTensor, Cube, DispatchAutodiffContext, DispatchTensor,
    DispatchTensorKind, GradientCheckpointingStrategy,
};
use burn::tensor::Tensor;

/// The most parameter tensors a recomputed block may have (a ViT block has 12 dense, 14
/// with FFN-MoE).
pub const MAX_BLOCK_PARAMS: usize = 31;

/// A block that can be run twice with the same result. Tensors cross as [`DispatchTensor`]s:
/// the parameters have different ranks.
pub trait Recompute: Send + Sync {
    /// The block on `x` without autodiff (no tensor it touches is tracked).
    fn forward(&self, x: DispatchTensor) -> DispatchTensor;

    /// The block on `x` again, with gradients: `x`'s gradient and each parameter's (in the
    /// order of the `params` given to [`recompute`]; `None` for a frozen one) when the output's
    /// gradient is `grad`.
    fn backward(
        &self,
        x: DispatchTensor,
        grad: DispatchTensor,
    ) -> (DispatchTensor, Vec<Option<DispatchTensor>>);
}

/// `block` on `x`, recomputed in the backward pass instead of keeping its activations.
/// `params` are the block's parameters as the graph holds them (their gradients go there),
/// in the order [`Recompute::backward`] returns their gradients. Without autodiff this is
/// `block.forward(x)`.
///
/// # Shapes
/// x any → what the block returns.
pub fn recompute<const D: usize>(
    x: Tensor<D>,
    params: Vec<DispatchTensor>,
    block: Arc<dyn Recompute>,
) -> Tensor<D> {
    assert!(
        params.len() <= MAX_BLOCK_PARAMS,
        "recompute: {} parameter tensors, at most {MAX_BLOCK_PARAMS}",
        params.len()
    );
    let x = x.into_dispatch();
    let strategy = match x.autodiff {
        DispatchAutodiffContext::Enabled(strategy) => strategy,
        DispatchAutodiffContext::Disabled => return Tensor::from_dispatch(block.forward(x)),
    };
    let x = tracked(x);
    let params: Vec<_> = params.into_iter().map(tracked).collect();
    let out = match strategy {
        GradientCheckpointingStrategy::Balanced => {
            node_for::<BalancedCheckpointing>(x, params, block)
        }
        GradientCheckpointingStrategy::Disabled => node_for::<NoCheckpointing>(x, params, block),
    };
    Tensor::from_dispatch(DispatchTensor {
        kind: DispatchTensorKind::Autodiff(Box::new(DispatchTensorKind::Cube(
            BackendTensor::Autodiff(out),
        ))),
        autodiff: DispatchAutodiffContext::Enabled(strategy),
    })
}

type Tracked = FloatTensor<Autodiff<Cube>>;

/// The autodiff tensor of a float; a constant leaf for one without autodiff (a frozen
/// parameter on a plain device).
fn tracked(t: DispatchTensor) -> Tracked {
    #[allow(unreachable_patterns)]
    match t.kind {
        DispatchTensorKind::Autodiff(inner) => match *inner {
            DispatchTensorKind::Cube(tensor) => tensor.autodiff(),
            _ => panic!("recompute runs on the cubecl backend only"),
        },
        DispatchTensorKind::Cube(tensor) => Autodiff::<Cube>::from_inner(tensor.float()),
        _ => panic!("recompute runs on the cubecl backend only"),
    }
}

fn plain(t: FloatTensor<Cube>) -> DispatchTensor {
    DispatchTensor {
        kind: DispatchTensorKind::Cube(BackendTensor::Float(t)),
        autodiff: DispatchAutodiffContext::Disabled,
    }
}

fn unplain(t: DispatchTensor) -> FloatTensor<Cube> {
    #[allow(unreachable_patterns)]
    match t.kind {
        DispatchTensorKind::Cube(tensor) => tensor.float(),
        _ => panic!("recompute: a block returned a tensor with autodiff where a plain one belongs"),
    }
}

/// Picks the node's arity (the input and the parameters: parents are a fixed-size array).
fn node_for<C: CheckpointStrategy>(
    x: Tracked,
    params: Vec<Tracked>,
    block: Arc<dyn Recompute>,
) -> Tracked {
    macro_rules! arity {
        ($($n:literal)*) => {
            match params.len() + 1 {
                $($n => node::<C, $n>(x, params, block),)*
                n => unreachable!("{n} parents"),
            }
        };
    }
    arity!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32)
}

fn node<C: CheckpointStrategy, const N: usize>(
    x: Tracked,
    params: Vec<Tracked>,
    block: Arc<dyn Recompute>,
) -> Tracked {
    let guards: Vec<NodeGuard> = std::iter::once(x.node())
        .chain(params.iter().map(|p| p.node()))
        .collect();
    let Ok(guards) = <[NodeGuard; N]>::try_from(guards) else {
        unreachable!("N is the number of parents")
    };
    let input = x.primitive().clone();
    let out = unplain(block.forward(plain(input.clone())));
    match RecomputeBackward
        .prepare::<C>(guards)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((input, Block(block)), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// The block a node recomputes.
#[derive(Clone)]
struct Block(Arc<dyn Recompute>);

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Block")
    }
}

/// Runs the block again with gradients and registers those of the input and the parameters.
#[derive(Debug)]
struct RecomputeBackward;

impl<const N: usize> Backward<Cube, N> for RecomputeBackward {
    /// (the block's input, the block)
    type State = (FloatTensor<Cube>, Block);

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Cube>(&ops.node);
        let (input, Block(block)) = ops.state;
        let (dx, mut dparams) = block.backward(plain(input), plain(grad));
        assert_eq!(
            dparams.len() + 1,
            N,
            "recompute: one gradient per parameter"
        );
        let mut dx = Some(dx);
        for (i, parent) in ops.parents.into_iter().enumerate() {
            let Some(parent) = parent else { continue };
            let g = if i == 0 {
                dx.take()
            } else {
                dparams[i - 1].take()
            };
            if let Some(g) = g {
                grads.register::<Cube>(parent.id, unplain(g));
            }
        }
    }
}
