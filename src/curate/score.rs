//! Scoring unlabeled patches with the seed model (paper §3, Eq. 1): one forward per batch
//! gives the logits and the backbone maps; `pixel_stats` gives each patch's mean pixel
//! entropy over the non-background classes, and each pixel's class and confidence (hence
//! the mean confidence and the foreground share); the embedding gives the nearest
//! prototype, its cosine similarity and the margin to the second.

use std::ops::Range;

use burn::tensor::{Bool, Device, Tensor, TensorData};
use rayon::prelude::*;

use super::embed::embed;
use super::record::PatchRecord;
use super::select::tiebreak;
use crate::data::DatasetSpec;
use crate::data::augment::normalize;
use crate::data::source::TiledSource;
use crate::error::{Error, Result};
use crate::eval::infer::STRIDE_PX;
use crate::kernels::pixel_stats;
use crate::model::Segmentor;
use crate::run::curation::{Prototypes, SkippedFile};

/// What a scoring pass needs besides the model and the patches.
#[derive(Debug, Clone, Copy)]
pub struct ScoreSetup {
    /// The decoder (dataset) whose classes score the patches.
    pub dataset: usize,
    /// Its background class, left out of the entropy and not counted as foreground.
    pub background: Option<usize>,
    /// Patches per forward pass.
    pub batch: usize,
    /// Patches whose [`tiebreak`] hash is below this keep their embedding (the report's
    /// projection sample, see [`super::sample`]); 0 keeps none.
    pub sample_below: u64,
}

/// A patch read from the pool, with the hash of its content.
pub struct LoadedPatch {
    pub patch: u64,
    pub content: u64,
    pub image: image::RgbImage,
    /// `true` where the image has no data: left out of the entropy, confidence and
    /// foreground statistics.
    pub nodata: Option<Vec<bool>>,
}

impl LoadedPatch {
    pub fn new(patch: u64, image: image::RgbImage) -> Self {
        Self {
            patch,
            content: content_hash(&image),
            image,
            nodata: None,
        }
    }

    /// A patch with its nodata mask (`[H · W]`, row-major).
    pub fn with_nodata(mut self, nodata: Option<Vec<bool>>) -> Self {
        self.nodata = nodata;
        self
    }
}

/// The first 8 bytes of the SHA-256 of an image's size and pixels.
pub fn content_hash(image: &image::RgbImage) -> u64 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(image.width().to_le_bytes());
    hasher.update(image.height().to_le_bytes());
    hasher.update(image.as_raw());
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The records of a scored batch, and the embeddings of its sampled patches.
#[derive(Default)]
pub struct Scored {
    pub records: Vec<PatchRecord>,
    /// `(record, embedding)` of the patches [`ScoreSetup::sample_below`] picks.
    pub samples: Vec<(PatchRecord, Vec<f32>)>,
}

/// Scores the patches `range` of `source` (an unreadable image is skipped and listed, never
/// fatal). `done(n)` is called after every batch with the patches handled so far.
#[allow(clippy::too_many_arguments)]
pub fn score_range(
    model: &Segmentor,
    spec: &DatasetSpec,
    source: &TiledSource,
    range: Range<u64>,
    prototypes: &Prototypes,
    setup: ScoreSetup,
    device: &Device,
    done: &dyn Fn(u64),
) -> Result<(Scored, Vec<SkippedFile>)> {
    let m = prototypes.centroids.len();
    let dim = prototypes.centroids.first().map_or(0, Vec::len);
    let centroids = Tensor::<2>::from_data(
        TensorData::new(
            prototypes
                .centroids
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<f32>>(),
            [m, dim],
        ),
        device,
    );
    let side = source
        .patches
        .iter()
        .map(|p| p.width_px.max(p.height_px) as usize)
        .max()
        .unwrap_or(STRIDE_PX)
        .div_ceil(STRIDE_PX)
        * STRIDE_PX;
    let mut scored = Scored {
        records: Vec::with_capacity((range.end - range.start) as usize),
        samples: Vec::new(),
    };
    let mut skipped: Vec<SkippedFile> = Vec::new();
    let indices: Vec<u64> = range.clone().collect();
    // Batches start at multiples of the batch size (as shards do, see `plan::shard_range`).
    let batch = setup.batch.max(1);
    let lead = ((batch as u64 - range.start % batch as u64) % batch as u64) as usize;
    let (head, tail) = indices.split_at(lead.min(indices.len()));
    for chunk in std::iter::once(head)
        .filter(|h| !h.is_empty())
        .chain(tail.chunks(batch))
    {
        // Read the batch's patches in parallel; an unreadable image is noted once.
        let loaded: Vec<(u64, Result<LoadedPatch>)> = chunk
            .par_iter()
            .map(|&i| {
                let image = source.load(spec, i as usize);
                (
                    i,
                    image.map(|s| LoadedPatch::new(i, s.image).with_nodata(s.nodata)),
                )
            })
            .collect();
        let mut batch = Vec::new();
        for (i, patch) in loaded {
            match patch {
                Ok(patch) => batch.push(patch),
                Err(e) => {
                    let path = &source.images[source.patches[i as usize].image].image;
                    if !skipped.iter().any(|s| &s.path == path) {
                        skipped.push(SkippedFile {
                            path: path.clone(),
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        if !batch.is_empty() {
            let more = score_batch(model, &batch, side, &centroids, prototypes, setup, device)?;
            scored.records.extend(more.records);
            scored.samples.extend(more.samples);
        }
        done(chunk.last().map_or(0, |&l| l + 1 - range.start));
    }
    Ok((scored, skipped))
}

/// The normalised pixels of a batch, each patch padded to `side`, and which pixels are valid
/// (inside the patch and with data): what [`score_batch`] feeds the model and `pixel_stats`.
///
/// # Shapes
/// pixels `[B, 3, side, side]`; valid `[B, side, side]`.
pub fn batch_inputs(batch: &[LoadedPatch], side: usize) -> (Vec<f32>, Vec<bool>) {
    let b = batch.len();
    let plane = side * side;
    let mut pixels = vec![0f32; b * 3 * plane];
    let mut valid = vec![false; b * plane];
    for (k, LoadedPatch { image, nodata, .. }) in batch.iter().enumerate() {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let normalized = normalize(image);
        for c in 0..3 {
            for y in 0..h {
                let from = c * w * h + y * w;
                let to = (k * 3 + c) * plane + y * side;
                pixels[to..to + w].copy_from_slice(&normalized[from..from + w]);
            }
        }
        for y in 0..h {
            let row = &mut valid[k * plane + y * side..k * plane + y * side + w];
            match nodata {
                Some(nodata) => {
                    for (v, &missing) in row.iter_mut().zip(&nodata[y * w..(y + 1) * w]) {
                        *v = !missing;
                    }
                }
                None => row.fill(true),
            }
        }
    }
    (pixels, valid)
}

/// Records of one batch of loaded patches, each padded to `side` (padding is not valid);
/// `centroids` are the prototypes' `[M, D]` on the device.
pub fn score_batch(
    model: &Segmentor,
    batch: &[LoadedPatch],
    side: usize,
    centroids: &Tensor<2>,
    prototypes: &Prototypes,
    setup: ScoreSetup,
    device: &Device,
) -> Result<Scored> {
    let b = batch.len();
    let plane = side * side;
    let (pixels, valid) = batch_inputs(batch, side);
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [b, 3, side, side]), device);
    let mask =
        Tensor::<3, Bool>::from_data(TensorData::new(valid.clone(), [b, side, side]), device);
    let (logits, maps) = model.forward_with_features(images, setup.dataset);
    let stats = pixel_stats(logits, Some(mask), setup.background);
    let what = format!("the scores of {b} patches of {side} px");
    let floats = |t: Tensor<1>| -> Result<Vec<f32>> {
        let data = t.try_into_data().map_err(|e| {
            Error::gpu_failed(
                &what,
                e,
                "A batch may need more GPU memory than the adapter has: score with a smaller \
                 `--batch` (the scores do not depend on it)",
            )
        })?;
        data.convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Execution(format!("{what}: not floats: {e:?}")))
    };
    let entropy = floats(stats.entropy)?;
    let confidence = floats(stats.confidence.reshape([b * plane]))?;
    let labels: Vec<i32> = floats(stats.labels.reshape([b * plane]).float())?
        .into_iter()
        .map(|l| l as i32)
        .collect();
    let embedded = embed(&maps, prototypes.embedding);
    let similarity = floats(
        embedded
            .clone()
            .matmul(centroids.clone().transpose())
            .reshape([b * centroids.dims()[0]]),
    )?;
    let m = centroids.dims()[0];
    let records: Vec<PatchRecord> = batch
        .iter()
        .enumerate()
        .map(|(k, patch)| {
            let range = k * plane..(k + 1) * plane;
            let (mut n, mut conf, mut fg) = (0usize, 0f64, 0usize);
            for ((&v, &c), &l) in valid[range.clone()]
                .iter()
                .zip(&confidence[range.clone()])
                .zip(&labels[range])
            {
                if v {
                    n += 1;
                    conf += f64::from(c);
                    fg += usize::from(setup.background != Some(l as usize));
                }
            }
            let sims = &similarity[k * m..(k + 1) * m];
            // Nearest prototype (ties to the lower index) and the runner-up's similarity.
            let (best, first) =
                sims.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |(bi, bs), (i, &s)| {
                        if s > bs { (i, s) } else { (bi, bs) }
                    });
            let second = sims
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != best)
                .map(|(_, &s)| s)
                .fold(f32::NEG_INFINITY, f32::max);
            let n = n.max(1) as f64;
            PatchRecord {
                patch: patch.patch,
                content: patch.content,
                entropy: entropy[k],
                confidence: (conf / n) as f32,
                foreground: (fg as f64 / n) as f32,
                similarity: first,
                margin: if second.is_finite() {
                    first - second
                } else {
                    first + 1.0
                },
                cluster: best as u32,
            }
        })
        .collect();
    let sampled: Vec<usize> = (0..b)
        .filter(|&k| tiebreak(batch[k].patch) < setup.sample_below)
        .collect();
    let mut samples = Vec::with_capacity(sampled.len());
    if !sampled.is_empty() {
        let dim = embedded.dims()[1];
        let vectors = floats(embedded.reshape([b * dim]))?;
        for k in sampled {
            samples.push((records[k], vectors[k * dim..(k + 1) * dim].to_vec()));
        }
    }
    Ok(Scored { records, samples })
}
