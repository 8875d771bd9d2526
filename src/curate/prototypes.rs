//! The prototypes of the labeled set (paper §3, "Pre-training Dataset Curation"): the seed
//! model embeds every labeled image of a split, spherical K-Means groups the embeddings into
//! M clusters, and `N_m^l` counts the labeled images of each (the weights of Eq. 3).
//!
//! Each image goes through the model whole, padded with zeros (the normalised mean colour)
//! to a multiple of the model's coarsest stride, as `s5 eval --mode whole` does.

use burn::tensor::{Device, Tensor};

use super::embed::embed;
use super::kmeans::{KMeansConfig, spherical_kmeans};
use crate::data::DatasetSpec;
use crate::data::io::read_image;
use crate::error::{Error, Result};
use crate::eval::infer::{STRIDE_PX, image_tensor};
use crate::model::Segmentor;
use crate::run::curation::{Embedding, ModelRef, Prototypes};

/// Embeds the images of `split` of `spec` with decoder `dataset` of `model` (eval mode) and
/// clusters them; returns the prototypes and the embeddings they were made from (`[N, D]`
/// row-major, in the split's order: what the similarity floor compares with). `each_image`
/// is called after every image (progress).
#[allow(clippy::too_many_arguments)]
pub fn build_prototypes(
    model: &Segmentor,
    model_ref: ModelRef,
    dataset: usize,
    spec: &DatasetSpec,
    split: &str,
    embedding: Embedding,
    kmeans: &KMeansConfig,
    device: &Device,
    each_image: &dyn Fn(),
) -> Result<(Prototypes, Vec<f32>)> {
    if embedding.level > 3 {
        return Err(Error::Config {
            reason: format!(
                "embedding level {} does not exist: the backbone has four feature maps, 0 to 3",
                embedding.level
            ),
        });
    }
    let (rows, dim) = embed_images(model, dataset, spec, split, embedding, device, each_image)?;
    let clusters = spherical_kmeans(&rows, dim, kmeans, device)?;
    let prototypes = Prototypes {
        model: model_ref,
        dataset: spec.name.clone(),
        split: split.to_string(),
        embedding,
        centroids: clusters.centroids,
        labeled_per_cluster: clusters.counts,
        mean_similarity: clusters.mean_similarity,
        seed: kmeans.seed,
        restarts: kmeans.restarts,
    };
    Ok((prototypes, rows))
}

/// The embedding of every image of `split` of `spec` by decoder `dataset` of `model`, each a
/// whole-image forward, in the split's order: `(rows, dim)`, `rows` holding one unit vector
/// of `dim` values per image. `each_image` is called after every image.
pub fn embed_images(
    model: &Segmentor,
    dataset: usize,
    spec: &DatasetSpec,
    split: &str,
    embedding: Embedding,
    device: &Device,
    each_image: &dyn Fn(),
) -> Result<(Vec<f32>, usize)> {
    let samples = spec.samples(split)?;
    let mut rows: Vec<f32> = Vec::new();
    let mut dim = 0;
    for sample in &samples {
        let image = read_image(&sample.image, &spec.imaging)?.rgb;
        let (w, h) = (image.width() as usize, image.height() as usize);
        let (ph, pw) = (
            h.div_ceil(STRIDE_PX) * STRIDE_PX,
            w.div_ceil(STRIDE_PX) * STRIDE_PX,
        );
        let padded: Tensor<4> = image_tensor(&image, device).pad((0, pw - w, 0, ph - h), 0.0);
        let (_, maps) = model.forward_with_features(padded, dataset);
        let vector = embed(&maps, embedding);
        dim = vector.dims()[1];
        let what = format!("the features of {} ({w} × {h} px)", sample.image.display());
        rows.extend(
            vector
                .try_into_data()
                .map_err(|e| {
                    Error::gpu_failed(
                        &what,
                        e,
                        "The prototypes embed each labeled image whole, which may need more \
                         GPU memory than the adapter has: cut the labeled images into tiles \
                         (e.g. 1024 px) in a split of their own for curation",
                    )
                })?
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| Error::Execution(format!("{what}: not floats: {e:?}")))?,
        );
        each_image();
    }
    Ok((rows, dim))
}
