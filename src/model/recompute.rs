//! A ViT block recomputed in the backward pass (the authors' `with_cp=True`, i.e.
//! `torch.utils.checkpoint` around each block): the forward pass keeps the block's input
//! only, and the backward pass runs the block again with gradients (the autodiff node is
//! [`crate::kernels::recompute`]). The drop-path masks are drawn once, before the block, and
//! used by both passes.
//!
//! The backward pass of a block is also the moment its parameters' gradients are final (a
//! block's parameters serve that block alone): a caller can take them there, while the
//! blocks below are still to come ([`with_block_gradients`]; an MPI job sums them over its
//! ranks meanwhile).

use std::cell::RefCell;
use std::sync::Arc;

use burn::backend::DispatchTensor;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Int, Tensor};

use super::vit::Block;
use crate::kernels::{Recompute, recompute};

/// One recomputed block's parameter gradients, final once its backward pass ran.
pub struct BlockGradients {
    /// The block's index in the backbone.
    pub block: usize,
    /// Each parameter in the block's visit order: its id, its number of values and its
    /// gradient flattened (`None`: the parameter has none, e.g. frozen).
    pub params: Vec<(ParamId, usize, Option<Tensor<1>>)>,
}

/// What receives the recomputed blocks' gradients ([`with_block_gradients`]).
pub type BlockGradientsSink = Box<dyn FnMut(BlockGradients)>;

thread_local! {
    /// Where this thread's recomputed blocks hand their gradients ([`with_block_gradients`]).
    static SINK: RefCell<Option<BlockGradientsSink>> = const { RefCell::new(None) };
}

/// Runs `f` (a backward pass on this thread) with every recomputed block's gradients handed
/// to `sink` as soon as the block's backward pass has computed them, the top block first.
/// The gradients still reach the autodiff graph as usual.
pub fn with_block_gradients<R>(sink: BlockGradientsSink, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SINK.with(|s| s.borrow_mut().take());
        }
    }
    SINK.with(|s| *s.borrow_mut() = Some(sink));
    let _reset = Reset;
    f()
}

/// `block` (the backbone's block `index`) on `x`, keeping only `x` for the backward pass.
///
/// # Shapes
/// x `[B, N, D]`, token_ids `[B·N]`, masks two `[B]` → `[B, N, D]`.
pub fn block(
    index: usize,
    block: &Block,
    x: Tensor<3>,
    token_ids: &Tensor<1, Int>,
    masks: [Option<Tensor<1>>; 2],
) -> Tensor<3> {
    struct Params(Vec<DispatchTensor>);
    impl ModuleVisitor for Params {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().into_dispatch());
        }
    }
    let mut params = Params(Vec::new());
    block.visit(&mut params);
    let plain = PlainBlock {
        index,
        block: block.valid(),
        token_ids: token_ids.clone().inner(),
        masks: masks.map(|m| m.map(Tensor::inner)),
    };
    recompute(x, params.0, Arc::new(plain))
}

/// A block without autodiff, its inputs other than `x` fixed.
struct PlainBlock {
    index: usize,
    block: Block,
    token_ids: Tensor<1, Int>,
    masks: [Option<Tensor<1>>; 2],
}

impl Recompute for PlainBlock {
    fn forward(&self, x: DispatchTensor) -> DispatchTensor {
        self.block
            .forward_masked(Tensor::from_dispatch(x), &self.token_ids, &self.masks)
            .into_dispatch()
    }

    fn backward(
        &self,
        x: DispatchTensor,
        grad: DispatchTensor,
    ) -> (DispatchTensor, Vec<Option<DispatchTensor>>) {
        // Fresh leaves for the parameters (same values, same ids) and the input, on a graph
        // of their own.
        let block = self.block.clone().train();
        let x = Tensor::<3>::from_dispatch(x).autodiff().require_grad();
        let y = block.forward_masked(x.clone(), &self.token_ids, &self.masks);
        // Backpropagating y ⊙ grad from ones gives y the gradient `grad`.
        let grads = (y * Tensor::<3>::from_dispatch(grad)).backward();
        let dx = x
            .grad(&grads)
            .expect("a block's output depends on its input")
            .into_dispatch();
        let sink = SINK.with(|s| s.borrow().is_some());
        struct Grads<'g> {
            grads: &'g burn::tensor::Gradients,
            dispatch: Vec<Option<DispatchTensor>>,
            flat: Option<Vec<(ParamId, usize, Option<Tensor<1>>)>>,
        }
        impl ModuleVisitor for Grads<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let grad = param.val().grad(self.grads);
                if let Some(flat) = &mut self.flat {
                    let numel = param.val().shape().num_elements();
                    let values = grad.clone().map(|g| g.reshape([numel]));
                    flat.push((param.id, numel, values));
                }
                self.dispatch.push(grad.map(Tensor::into_dispatch));
            }
        }
        let mut dparams = Grads {
            grads: &grads,
            dispatch: Vec::new(),
            flat: sink.then(Vec::new),
        };
        block.visit(&mut dparams);
        if let Some(params) = dparams.flat {
            let gradients = BlockGradients {
                block: self.index,
                params,
            };
            SINK.with(|s| {
                if let Some(sink) = s.borrow_mut().as_mut() {
                    sink(gradients);
                }
            });
        }
        (dx, dparams.dispatch)
    }
}
