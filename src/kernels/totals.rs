//! Sums along one axis of a `[R, D]` tensor on any backend, in fixed chunks of
//! [`crate::reduce::CHUNK`] values (chunk sums, then sums of those), so that no invocation
//! loops past lavapipe's 65 535-iteration cap and the order is the same on every run.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, TensorMetadata};
use burn::tensor::Shape;

/// Sums over all rows of `[R, D]`, [`crate::reduce::CHUNK`] rows per invocation at most
/// (lavapipe stops a longer loop), in a fixed order.
///
/// # Shapes
/// x `[R, D]` → `[D]`.
pub(super) fn column_totals<B: Backend>(mut x: FloatTensor<B>) -> FloatTensor<B> {
    let chunk = crate::reduce::CHUNK;
    loop {
        let [r, d] = x.shape().dims::<2>();
        if r <= chunk {
            return B::float_reshape(B::float_sum_dim(x, 0), Shape::new([d]));
        }
        let groups = r.div_ceil(chunk);
        if groups * chunk > r {
            let zeros = B::float_zeros(
                Shape::new([groups * chunk - r, d]),
                &x.device(),
                x.dtype().into(),
            );
            x = B::float_cat(vec![x, zeros], 0);
        }
        let sums = B::float_sum_dim(B::float_reshape(x, Shape::new([groups, chunk, d])), 1);
        x = B::float_reshape(sums, Shape::new([groups, d]));
    }
}

/// Sums along each row of `[R, D]` in chunks of [`crate::reduce::CHUNK`]: one `sum_dim`
/// over a whole 1024² image, or a whole BatchNorm channel, would loop past lavapipe's 65 535-
/// iteration cap and drop values.
///
/// # Shapes
/// x `[R, D]` → `[R, 1]`.
pub(super) fn row_totals<B: Backend>(mut x: FloatTensor<B>) -> FloatTensor<B> {
    let chunk = crate::reduce::CHUNK;
    loop {
        let [r, d] = x.shape().dims::<2>();
        if d <= chunk {
            return B::float_sum_dim(x, 1);
        }
        let groups = d.div_ceil(chunk);
        if groups * chunk > d {
            let zeros = B::float_zeros(
                Shape::new([r, groups * chunk - d]),
                &x.device(),
                x.dtype().into(),
            );
            x = B::float_cat(vec![x, zeros], 1);
        }
        let sums = B::float_sum_dim(B::float_reshape(x, Shape::new([r, groups, chunk])), 2);
        x = B::float_reshape(sums, Shape::new([r, groups]));
    }
}
