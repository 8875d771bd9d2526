//! `s5 predict`: an image of any size to three PNGs, streamed row band by row band so that
//! neither the logits nor the outputs of a 10 000 × 10 000 px tile are ever whole in memory:
//!
//! ```text
//! <out>/index/<stem>.png        class index per pixel (8-bit gray)
//! <out>/color/<stem>.png        the dataset's palette colours
//! <out>/confidence/<stem>.png   softmax probability of the chosen class × 255
//! ```
//! Each file is written beside its final name and renamed when complete.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::infer::{Band, InferMode, predict_bands};
use crate::data::io::read_rgb;
use crate::error::{Error, Result};
use crate::fsutil::AtomicFile;
use crate::model::Segmentor;

/// The three files written for one input.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionFiles {
    pub index: PathBuf,
    pub color: PathBuf,
    pub confidence: PathBuf,
    pub size_px: (u32, u32),
}

/// Where the outputs of `input` go under `out`.
pub fn output_paths(input: &Path, out: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let stem = input
        .file_stem()
        .map_or_else(|| "prediction".into(), |s| s.to_string_lossy().into_owned());
    let name = format!("{stem}.png");
    (
        out.join("index").join(&name),
        out.join("color").join(&name),
        out.join("confidence").join(&name),
    )
}

/// Refuses, before any work, inputs that would write the same output files (`tile.png` and
/// `tile.tif` both make `index/tile.png`): the second would silently replace the first.
/// The same file listed twice is predicted once (its duplicates are dropped).
pub fn distinct_outputs(inputs: Vec<PathBuf>, out: &Path) -> Result<Vec<PathBuf>> {
    let mut by_output: std::collections::HashMap<PathBuf, PathBuf> = Default::default();
    let mut kept = Vec::with_capacity(inputs.len());
    for input in inputs {
        let (index, _, _) = output_paths(&input, out);
        let same_file = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        match by_output.get(&index) {
            Some(first) if same_file(first, &input) => continue,
            Some(first) => {
                return Err(Error::SameOutput {
                    first: first.clone(),
                    second: input,
                    output: index,
                });
            }
            None => {
                by_output.insert(index, input.clone());
                kept.push(input);
            }
        }
    }
    Ok(kept)
}

/// A PNG written row by row into an [`AtomicFile`].
struct PngRows {
    file: AtomicFile,
    writer: png::StreamWriter<'static, std::fs::File>,
}

impl PngRows {
    fn create(path: &Path, width: u32, height: u32, color: png::ColorType) -> Result<Self> {
        let mut file = AtomicFile::create(path, ".png")?;
        let encoding = |e: png::EncodingError| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        };
        let handle = file.file().try_clone().map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut encoder = png::Encoder::new(handle, width, height);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let writer = encoder
            .write_header()
            .map_err(encoding)?
            .into_stream_writer()
            .map_err(encoding)?;
        Ok(Self { file, writer })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_all(bytes).map_err(|source| Error::Io {
            path: self.file.path().to_path_buf(),
            source,
        })
    }

    fn commit(mut self) -> Result<()> {
        let path = self.file.path().to_path_buf();
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        self.writer
            .finish()
            .map_err(|e| io(std::io::Error::other(e)))?;
        self.file.file().sync_all().map_err(io)?;
        Ok(self.file.commit()?)
    }
}

/// Predicts `input` with `model` (eval mode) as dataset `dataset` and writes its index,
/// colour and confidence PNGs under `out`. Colours come from `palette`.
#[allow(clippy::too_many_arguments)]
pub fn predict_file(
    model: &Segmentor,
    dataset: usize,
    palette: &[[u8; 3]],
    input: &Path,
    out: &Path,
    mode: InferMode,
    window_batch: usize,
    device: &Device,
) -> Result<PredictionFiles> {
    let image = read_rgb(input)?;
    let (w, h) = image.dimensions();
    let (index_path, color_path, confidence_path) = output_paths(input, out);
    let mut index = PngRows::create(&index_path, w, h, png::ColorType::Grayscale)?;
    let mut color = PngRows::create(&color_path, w, h, png::ColorType::Rgb)?;
    let mut confidence = PngRows::create(&confidence_path, w, h, png::ColorType::Grayscale)?;
    predict_bands(
        model,
        dataset,
        &image,
        mode,
        window_batch,
        device,
        |band: Band| {
            index.write(&band.labels)?;
            let rgb: Vec<u8> = band
                .labels
                .iter()
                .flat_map(|&l| palette.get(usize::from(l)).copied().unwrap_or([0, 0, 0]))
                .collect();
            color.write(&rgb)?;
            let conf: Vec<u8> = band
                .confidence
                .iter()
                .map(|&c| (c.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect();
            confidence.write(&conf)
        },
    )?;
    drop(image);
    index.commit()?;
    color.commit()?;
    confidence.commit()?;
    Ok(PredictionFiles {
        index: index_path,
        color: color_path,
        confidence: confidence_path,
        size_px: (w, h),
    })
}
