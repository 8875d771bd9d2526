//! Backbone features as one unit vector per image: what K-Means clusters (labeled images)
//! and what each unlabeled patch is compared with (its nearest prototype).

use burn::tensor::Tensor;

use crate::run::curation::{Embedding, Pooling};

/// The embedding of each image of a batch: the chosen feature map pooled over positions,
/// scaled to unit length.
///
/// # Shapes
/// four maps `[B, D, h, w]` → `[B, D]`.
///
/// # Panics
/// If `embedding.level` is not 0–3: checked where the setting is read.
pub fn embed(maps: &[Tensor<4>; 4], embedding: Embedding) -> Tensor<2> {
    let map = maps[embedding.level].clone();
    let [b, d, h, w] = map.dims();
    let flat = map.reshape([b, d, h * w]);
    let pooled: Tensor<2> = match embedding.pooling {
        Pooling::Mean => flat.mean_dim(2),
        Pooling::Max => flat.max_dim(2),
    }
    .reshape([b, d]);
    let norm = pooled
        .clone()
        .powi_scalar(2)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    pooled / norm
}
