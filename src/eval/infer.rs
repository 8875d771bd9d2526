//! A model applied to a whole image of any size: at once, resized, or in sliding windows
//! whose overlapping logits are averaged (the authors' evaluation modes; their windows are
//! 512 px every 256). Results come out as bands of finished rows, so a 10 000 × 10 000 px
//! tile never needs its logits in memory at once: the GPU holds one batch of windows, the
//! CPU one window-height of row sums.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use image::imageops::{self, FilterType};
use serde::{Deserialize, Serialize};

use crate::data::augment::normalize;

/// Sliding windows per GPU batch unless the caller says otherwise (`s5 predict`, `s5 eval`,
/// validation while training): GPU memory is bounded by this.
pub const DEFAULT_WINDOW_BATCH: usize = 4;
use crate::model::Segmentor;
use crate::model::resize::{Resample, resize};

/// The model's coarsest stride: inputs are padded to a multiple of it.
pub const STRIDE_PX: usize = 32;

/// How an image larger or smaller than the training crop is predicted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum InferMode {
    /// The whole image at once (padded to a multiple of 32); `flip` averages with the
    /// horizontally flipped prediction.
    Whole { flip: bool },
    /// Resized so its long side is `long_side_px`, predicted whole, logits resized back.
    Resize { long_side_px: u32, flip: bool },
    /// Windows of `window_px` every `stride_px` (the last one flush with the border);
    /// overlapping logits are averaged.
    Slide {
        window_px: u32,
        stride_px: u32,
        flip: bool,
    },
}

impl std::fmt::Display for InferMode {
    /// In words, as `s5 predict` and `s5 eval` report it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (text, flip) = match *self {
            InferMode::Whole { flip } => ("whole images".to_string(), flip),
            InferMode::Resize { long_side_px, flip } => {
                (format!("resized to a {long_side_px}-px long side"), flip)
            }
            InferMode::Slide {
                window_px,
                stride_px,
                flip,
            } => (
                format!("sliding {window_px}-px windows every {stride_px} px"),
                flip,
            ),
        };
        write!(
            f,
            "{text}{}",
            if flip {
                ", averaged with the h-flip"
            } else {
                ""
            }
        )
    }
}

impl InferMode {
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            InferMode::Whole { .. } => Ok(()),
            InferMode::Resize { long_side_px, .. } if long_side_px >= 32 => Ok(()),
            InferMode::Resize { long_side_px, .. } => Err(format!(
                "resize: long_side_px must be ≥ 32, got {long_side_px}"
            )),
            InferMode::Slide {
                window_px,
                stride_px,
                ..
            } if window_px >= 32 && stride_px >= 1 && stride_px <= window_px => Ok(()),
            InferMode::Slide {
                window_px,
                stride_px,
                ..
            } => Err(format!(
                "slide: need window_px ≥ 32 and 1 ≤ stride_px ≤ window_px, got window {window_px}, stride {stride_px}"
            )),
        }
    }
}

/// Finished rows of a prediction.
///
/// # Shapes
/// labels, confidence `[rows, W]` row-major, starting at image row `y`.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub y: usize,
    pub rows: usize,
    pub labels: Vec<u8>,
    /// Softmax probability of the chosen class.
    pub confidence: Vec<f32>,
}

/// Logits for a batch of any size: padded with zeros (the normalised mean colour) to a
/// multiple of [`STRIDE_PX`], cropped back; with `flip`, averaged with the prediction of the
/// mirrored batch.
///
/// # Shapes
/// images `[B, 3, H, W]` → `[B, K, H, W]`.
pub fn forward_any_size(
    model: &Segmentor,
    dataset: usize,
    images: Tensor<4>,
    flip: bool,
) -> Tensor<4> {
    let [_, _, h, w] = images.dims();
    let (ph, pw) = (
        h.div_ceil(STRIDE_PX) * STRIDE_PX,
        w.div_ceil(STRIDE_PX) * STRIDE_PX,
    );
    let padded = if (ph, pw) == (h, w) {
        images
    } else {
        images.pad((0, pw - w, 0, ph - h), 0.0)
    };
    let mut logits = model.forward(padded.clone(), dataset);
    if flip {
        let mirrored = model.forward(padded.flip([3]), dataset).flip([3]);
        logits = (logits + mirrored) / 2.0;
    }
    if (ph, pw) == (h, w) {
        logits
    } else {
        logits.narrow(2, 0, h).narrow(3, 0, w)
    }
}

/// The normalised image as a batch of one.
///
/// # Shapes
/// `H × W` RGB → `[1, 3, H, W]`.
pub fn image_tensor(image: &RgbImage, device: &Device) -> Tensor<4> {
    let (w, h) = image.dimensions();
    Tensor::from_data(
        TensorData::new(normalize(image), [1, 3, h as usize, w as usize]),
        device,
    )
}

/// Where a prediction reads its pixels: an image in memory, or a file read one band of rows
/// at a time (sliding windows need one window height).
pub trait Rows {
    /// Width and height in pixels.
    fn size_px(&self) -> (u32, u32);
    /// Rows `y .. y + rows`, full width.
    fn rows(&mut self, y: u32, rows: u32) -> crate::Result<RgbImage>;
}

impl Rows for &RgbImage {
    fn size_px(&self) -> (u32, u32) {
        self.dimensions()
    }

    fn rows(&mut self, y: u32, rows: u32) -> crate::Result<RgbImage> {
        Ok(imageops::crop_imm(*self, 0, y, self.width(), rows).to_image())
    }
}

impl Rows for crate::data::raster::Raster {
    fn size_px(&self) -> (u32, u32) {
        crate::data::raster::Raster::size_px(self)
    }

    fn rows(&mut self, y: u32, rows: u32) -> crate::Result<RgbImage> {
        let width = self.size_px().0;
        Ok(self.read(0, y, width, rows)?.rgb)
    }
}

/// Predicts `image` with `model` (in eval mode) for `dataset`, handing each band of finished
/// rows to `on_band` top to bottom. `window_batch` windows go through the GPU at once in
/// sliding mode, which reads one window height of rows at a time; the other modes read the
/// whole image.
pub fn predict_bands(
    model: &Segmentor,
    dataset: usize,
    mut image: impl Rows,
    mode: InferMode,
    window_batch: usize,
    device: &Device,
    mut on_band: impl FnMut(Band) -> crate::Result<()>,
) -> crate::Result<()> {
    let (w, h) = image.size_px();
    let (w, h) = (w as usize, h as usize);
    match mode {
        InferMode::Whole { flip } => {
            let image = image.rows(0, h as u32)?;
            let logits = forward_any_size(model, dataset, image_tensor(&image, device), flip);
            on_band(band_from_logits(logits, 0)?)
        }
        InferMode::Resize { long_side_px, flip } => {
            let image = image.rows(0, h as u32)?;
            let image = &image;
            let scale = long_side_px as f64 / w.max(h) as f64;
            let (rw, rh) = (
                ((w as f64 * scale).round() as u32).max(1),
                ((h as f64 * scale).round() as u32).max(1),
            );
            let small = imageops::resize(image, rw, rh, FilterType::Triangle);
            let logits = forward_any_size(model, dataset, image_tensor(&small, device), flip);
            let logits = resize(logits, [h, w], Resample::Bilinear);
            on_band(band_from_logits(logits, 0)?)
        }
        InferMode::Slide {
            window_px,
            stride_px,
            flip,
        } => slide(
            model,
            dataset,
            &mut image,
            window_px as usize,
            stride_px as usize,
            flip,
            window_batch.max(1),
            device,
            &mut on_band,
        ),
    }
}

/// Window origins along one axis: every `stride` from 0, the last one flush with the end
/// (mmseg's grid), one window when the image is not larger than the window.
pub fn window_starts(len: usize, window: usize, stride: usize) -> Vec<usize> {
    if len <= window {
        return vec![0];
    }
    let count = (len - window).div_ceil(stride) + 1;
    (0..count).map(|i| (i * stride).min(len - window)).collect()
}

/// A failed read of what the GPU computed for `what`, as an error that says how to ask for
/// less: the usual cause is a whole large image (or a large batch of windows) needing more
/// memory than the adapter has.
fn gpu_failed(what: &str, error: impl std::fmt::Display) -> crate::Error {
    crate::Error::gpu_failed(
        what,
        error,
        "A whole image at once may need more GPU memory than the adapter has: predict it in \
         sliding windows (`s5 predict --mode slide`; in a training config `val: (mode: \
         Slide(window_px: 512, stride_px: 384, flip: false))`) or with fewer windows per batch \
         (`--window-batch`)",
    )
}

/// Argmax and max softmax probability of a `[1, K, H, W]` logit map, as one band.
fn band_from_logits(logits: Tensor<4>, y: usize) -> crate::Result<Band> {
    let [_, _, h, w] = logits.dims();
    let what = || format!("the prediction of a {w} × {h} px image");
    let probs = softmax(logits, 1);
    let (confidence, labels) = probs.max_dim_with_indices(1);
    let labels: Vec<u8> = labels
        .try_into_data()
        .map_err(|e| gpu_failed(&what(), e))?
        .convert::<i32>()
        .try_into_vec::<i32>()
        .expect("indices are integers")
        .into_iter()
        .map(|l| l as u8)
        .collect();
    let confidence = confidence
        .try_into_data()
        .map_err(|e| gpu_failed(&what(), e))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("probabilities are floats");
    debug_assert_eq!(labels.len(), h * w);
    Ok(Band {
        y,
        rows: h,
        labels,
        confidence,
    })
}

/// Row sums of logits for the rows not yet finished, `[rows][K][W]`, with the number of
/// windows that covered each pixel.
struct RowAccumulator {
    classes: usize,
    width: usize,
    /// Image row of the first row held.
    y0: usize,
    sums: Vec<f32>,
    counts: Vec<u16>,
}

impl RowAccumulator {
    fn rows(&self) -> usize {
        self.counts.len() / self.width
    }

    /// Makes rows up to (excluding) `end` present.
    fn extend_to(&mut self, end: usize) {
        let have = self.y0 + self.rows();
        if end > have {
            let more = end - have;
            self.sums
                .resize(self.sums.len() + more * self.classes * self.width, 0.0);
            self.counts.resize(self.counts.len() + more * self.width, 0);
        }
    }

    /// Adds one window's logits `[K, wh, ww]` at (x, y).
    fn add(&mut self, logits: &[f32], x: usize, y: usize, ww: usize, wh: usize) {
        let (k, width) = (self.classes, self.width);
        for r in 0..wh {
            let row = y + r - self.y0;
            for c in 0..k {
                let src = &logits[(c * wh + r) * ww..(c * wh + r) * ww + ww];
                let dst = &mut self.sums[(row * k + c) * width + x..(row * k + c) * width + x + ww];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += s;
                }
            }
            for n in &mut self.counts[row * width + x..row * width + x + ww] {
                *n += 1;
            }
        }
    }

    /// Removes and returns rows before `end` as a finished band.
    fn finish_before(&mut self, end: usize) -> Option<Band> {
        let rows = end.saturating_sub(self.y0).min(self.rows());
        if rows == 0 {
            return None;
        }
        let (k, width) = (self.classes, self.width);
        let mut labels = Vec::with_capacity(rows * width);
        let mut confidence = Vec::with_capacity(rows * width);
        let mut logits = vec![0.0f32; k];
        for r in 0..rows {
            for x in 0..width {
                let n = f32::from(self.counts[r * width + x].max(1));
                for (c, l) in logits.iter_mut().enumerate() {
                    *l = self.sums[(r * k + c) * width + x] / n;
                }
                let (best, max) =
                    logits
                        .iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                            if v > bv { (i, v) } else { (bi, bv) }
                        });
                let z: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
                labels.push(best as u8);
                confidence.push(1.0 / z);
            }
        }
        self.sums.drain(..rows * k * width);
        self.counts.drain(..rows * width);
        let band = Band {
            y: self.y0,
            rows,
            labels,
            confidence,
        };
        self.y0 += rows;
        Some(band)
    }
}

/// The most rows of a band that sliding windows hand over at once.
const BAND_ROWS: usize = 64;

#[allow(clippy::too_many_arguments)]
fn slide(
    model: &Segmentor,
    dataset: usize,
    image: &mut impl Rows,
    window: usize,
    stride: usize,
    flip: bool,
    window_batch: usize,
    device: &Device,
    on_band: &mut impl FnMut(Band) -> crate::Result<()>,
) -> crate::Result<()> {
    let (w, h) = image.size_px();
    let (w, h) = (w as usize, h as usize);
    let (wh, ww) = (window.min(h), window.min(w));
    let ys = window_starts(h, wh, stride);
    let xs = window_starts(w, ww, stride);
    let classes = model
        .decoders
        .get(dataset)
        .map(|d| d.classes())
        .expect("dataset has a decoder");
    let mut acc = RowAccumulator {
        classes,
        width: w,
        y0: 0,
        sums: Vec::new(),
        counts: Vec::new(),
    };
    for (i, &y) in ys.iter().enumerate() {
        acc.extend_to(y + wh);
        let rows = image.rows(y as u32, wh as u32)?;
        for chunk in xs.chunks(window_batch) {
            let mut batch = Vec::with_capacity(chunk.len() * 3 * wh * ww);
            for &x in chunk {
                let crop = imageops::crop_imm(&rows, x as u32, 0, ww as u32, wh as u32);
                batch.extend(normalize(&crop.to_image()));
            }
            let input =
                Tensor::<4>::from_data(TensorData::new(batch, [chunk.len(), 3, wh, ww]), device);
            let logits = forward_any_size(model, dataset, input, flip)
                .try_into_data()
                .map_err(|e| {
                    gpu_failed(
                        &format!("a batch of {} windows of {ww} × {wh} px", chunk.len()),
                        e,
                    )
                })?
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("logits are floats");
            let per = classes * wh * ww;
            for (j, &x) in chunk.iter().enumerate() {
                acc.add(&logits[j * per..(j + 1) * per], x, y, ww, wh);
            }
        }
        // Finished rows leave in bands of at most BAND_ROWS, so their outputs (labels,
        // confidence, colours, several bytes a pixel) never stand beside the logits of a
        // whole window height.
        let next = ys.get(i + 1).copied().unwrap_or(h);
        while let Some(band) = acc.finish_before(next.min(acc.y0 + BAND_ROWS)) {
            on_band(band)?;
        }
    }
    Ok(())
}
