//! Whole-tensor sums that are right on every adapter and give the same bits on every run.
//!
//! Two platform traps make `Tensor::sum` and a long `sum_dim` unfit for training:
//! - burn-cubecl's `Tensor::sum` adds per-workgroup partial sums with float atomics wherever
//!   the adapter has them (lavapipe does), so the order of those additions, and the last
//!   bit of the result, depends on which workgroup finishes first.
//!   A gradient norm off by one bit changes the clipping factor of every gradient, Adam turns
//!   that into lr-sized differences, and two identical runs drift apart by 1e-4 within a few
//!   steps (seen as a flaky resume test under CPU load).
//! - `sum_dim` reduces each output with one invocation looping over the whole axis, and
//!   lavapipe (llvmpipe) stops any invocation after 65 535 loop iterations in all: a 1 M
//!   element `sum_dim` silently drops most of its input there.
//!
//! [`total`] reduces in fixed chunks of [`CHUNK`] elements, chunk sums then sums of those,
//! so no loop is long and nothing is atomic. It is also more accurate than one long
//! sequential sum.

use burn::tensor::Tensor;

/// Elements one reduction invocation adds up (well under lavapipe's loop cap).
pub const CHUNK: usize = 4096;

/// The sum of all elements, reduced in a fixed tree (bit-reproducible from run to run,
/// correct on lavapipe at any size).
///
/// # Shapes
/// `x` any shape `[..]` → `[1]`.
pub fn total<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    let mut flat = x.flatten::<1>(0, D - 1);
    loop {
        let n = flat.dims()[0];
        if n <= CHUNK {
            return flat.sum_dim(0);
        }
        let rows = n.div_ceil(CHUNK);
        if rows * CHUNK > n {
            let zeros = Tensor::zeros([rows * CHUNK - n], &flat.device());
            flat = Tensor::cat(vec![flat, zeros], 0);
        }
        flat = flat.reshape([rows, CHUNK]).sum_dim(1).reshape([rows]);
    }
}
