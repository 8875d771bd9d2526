//! A model scored on a dataset split: each image predicted ([`super::infer`]), its labels
//! and ground truth counted into one confusion matrix on the GPU.

use burn::tensor::{Device, Int, Tensor, TensorData};
use image::{GrayImage, RgbImage};

use super::infer::{Band, InferMode, predict_bands};
use super::metrics::ConfusionMatrix;
use crate::data::io::read_sample;
use crate::data::{DatasetSpec, SampleRef};
use crate::error::{Error, Result};
use crate::model::Segmentor;

/// One scored image, for callers that keep a few (the trainer's samples for the viewer).
pub struct Scored<'a> {
    pub index: usize,
    pub sample: &'a SampleRef,
    pub image: &'a RgbImage,
    pub truth: &'a GrayImage,
    pub prediction: &'a GrayImage,
}

/// Predicts every image of `samples` (which must have masks) with `model` in eval mode as
/// dataset `dataset`, and accumulates the confusion matrix. `on_image` sees each scored image.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_split(
    model: &Segmentor,
    dataset: usize,
    spec: &DatasetSpec,
    samples: &[SampleRef],
    mode: InferMode,
    window_batch: usize,
    device: &Device,
    mut on_image: impl FnMut(Scored<'_>) -> Result<()>,
) -> Result<ConfusionMatrix> {
    let mut matrix = ConfusionMatrix::new(spec.num_classes());
    for (index, sample) in samples.iter().enumerate() {
        let crate::data::io::Sample {
            image,
            labels: truth,
            ..
        } = read_sample(spec, sample)?;
        let truth = truth.ok_or_else(|| Error::MissingFile {
            path: sample.image.clone(),
            context: Some("a ground-truth mask for this image: evaluation needs one".into()),
        })?;
        let prediction = predict_image(model, dataset, &image, mode, window_batch, device)?;
        let n = truth.len();
        let to_tensor = |labels: &[u8]| {
            let values: Vec<i32> = labels.iter().map(|&l| i32::from(l)).collect();
            Tensor::<1, Int>::from_data(TensorData::new(values, [n]), device)
        };
        matrix.add_tensors(to_tensor(truth.as_raw()), to_tensor(prediction.as_raw()))?;
        on_image(Scored {
            index,
            sample,
            image: &image,
            truth: &truth,
            prediction: &prediction,
        })?;
    }
    Ok(matrix)
}

/// The label map of one image.
pub fn predict_image(
    model: &Segmentor,
    dataset: usize,
    image: &RgbImage,
    mode: InferMode,
    window_batch: usize,
    device: &Device,
) -> Result<GrayImage> {
    let (w, h) = image.dimensions();
    let mut labels = vec![0u8; (w * h) as usize];
    predict_bands(
        model,
        dataset,
        image,
        mode,
        window_batch,
        device,
        |band: Band| {
            let start = band.y * w as usize;
            labels[start..start + band.labels.len()].copy_from_slice(&band.labels);
            Ok(())
        },
    )?;
    Ok(GrayImage::from_raw(w, h, labels).expect("one label per pixel"))
}
