//! A ViT block recomputed in the backward pass (the authors' `with_cp=True`, i.e.
//! `torch.utils.checkpoint` around each block): the forward pass keeps the block's input
//! only, and the backward pass runs the block again with gradients (the autodiff node is
//! [`crate::kernels::recompute`]). The drop-path masks are drawn once, before the block, and
//! used by both passes.

use std::sync::Arc;

use burn::backend::DispatchTensor;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Int, Tensor};

use super::vit::Block;
use crate::kernels::{Recompute, recompute};

/// `block` on `x`, keeping only `x` for the backward pass.
///
/// # Shapes
/// x `[B, N, D]`, token_ids `[B·N]`, masks two `[B]` → `[B, N, D]`.
pub fn block(
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
        block: block.valid(),
        token_ids: token_ids.clone().inner(),
        masks: masks.map(|m| m.map(Tensor::inner)),
    };
    recompute(x, params.0, Arc::new(plain))
}

/// A block without autodiff, its inputs other than `x` fixed.
struct PlainBlock {
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
        struct Grads<'g>(&'g burn::tensor::Gradients, Vec<Option<DispatchTensor>>);
        impl ModuleVisitor for Grads<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.1
                    .push(param.val().grad(self.0).map(Tensor::into_dispatch));
            }
        }
        let mut dparams = Grads(&grads, Vec::new());
        block.visit(&mut dparams);
        (dx, dparams.1)
    }
}
