//! `s5 predict`: an image of any size to three outputs, streamed row band by row band so that
//! neither the logits nor the outputs of a 10 000 × 10 000 px tile are ever whole in memory:
//!
//! ```text
//! <out>/index/<stem>.png        class index per pixel (8-bit gray)
//! <out>/color/<stem>.png        the dataset's palette colours
//! <out>/confidence/<stem>.png   softmax probability of the chosen class × 255
//! ```
//! A georeferenced input (a GeoTIFF) gets `index/<stem>.tif` (uint8, the palette as its colour
//! map) and `confidence/<stem>.tif` (float32 probability) instead, tiled and deflated, with the
//! input's georeferencing and nodata. Pixels without data are written as nodata (index 255, or
//! the input's nodata value where it is no class; confidence the input's value, 0 in a PNG,
//! black in colour). Each file is written beside its final name and renamed when complete.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::geotiff_writer::{BandFormat, TiledWriter};
use super::infer::{Band, InferMode, predict_bands};
use crate::data::IGNORE;
use crate::data::raster::Raster;
use crate::error::{Error, Result};
use crate::fsutil::AtomicFile;
use crate::model::Segmentor;
use crate::run::{DatasetCard, Imaging, ValueRange};

/// The three files written for one input.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionFiles {
    pub index: PathBuf,
    pub color: PathBuf,
    pub confidence: PathBuf,
    pub size_px: (u32, u32),
    /// Whether the input was georeferenced (index and confidence are GeoTIFFs).
    pub georeferenced: bool,
}

/// Where the PNG outputs of `input` go under `out` (a georeferenced input's index and
/// confidence take the same names with `.tif`).
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

/// Where a band's outputs go: PNGs, or GeoTIFFs for a georeferenced input.
enum Outputs {
    /// Writers boxed: each is hundreds of bytes, of different sizes per format.
    Png {
        index: Box<PngRows>,
        confidence: Box<PngRows>,
    },
    Tiff {
        index: Box<TiledWriter<u8>>,
        confidence: Box<TiledWriter<f32>>,
    },
}

/// The nodata values of the outputs for an input whose nodata is `value`: the index keeps it
/// where it is no class (an integer from `classes` to 255), else 255; the confidence keeps it
/// where no probability can equal it (outside (0, 1]), else NaN.
pub fn output_nodata(value: f64, classes: usize) -> (u8, f32) {
    let index = if value.fract() == 0.0 && value >= classes as f64 && value <= 255.0 {
        value as u8
    } else {
        IGNORE
    };
    let confidence = if value > 0.0 && value <= 1.0 {
        f32::NAN
    } else {
        value as f32
    };
    (index, confidence)
}

/// Predicts `input` with `model` (eval mode) as the decoder of `card`'s dataset and writes its
/// index, colour and confidence under `out`, reading the input as the dataset was read in
/// training (`card.imaging`). Sliding windows read a TIFF one window height at a time.
#[allow(clippy::too_many_arguments)]
pub fn predict_file(
    model: &Segmentor,
    dataset: usize,
    card: &DatasetCard,
    input: &Path,
    out: &Path,
    mode: InferMode,
    window_batch: usize,
    device: &Device,
) -> Result<PredictionFiles> {
    let raster = Raster::open(input, &card.imaging)?;
    let (w, h) = raster.size_px();
    let geo = raster.geo().clone();
    let georeferenced = geo.is_georeferenced();
    let nodata = raster
        .nodata()
        .map(|v| output_nodata(v, card.classes.len()));
    // A second handle reads each finished band's nodata mask; the mask does not depend on the
    // value range, so a fixed one spares a second percentile pass.
    let mut masks = match raster.nodata() {
        Some(_) => Some(Raster::open(
            input,
            &Imaging {
                range: Some(ValueRange::Fixed {
                    low: 0.0,
                    high: 1.0,
                }),
                ..card.imaging
            },
        )?),
        None => None,
    };
    let (index_png, color_path, confidence_png) = output_paths(input, out);
    let (index_path, confidence_path) = if georeferenced {
        (
            index_png.with_extension("tif"),
            confidence_png.with_extension("tif"),
        )
    } else {
        (index_png, confidence_png)
    };
    let mut outputs = if georeferenced {
        let mut palette = card.palette.clone();
        palette.resize(256, [0, 0, 0]);
        Outputs::Tiff {
            index: Box::new(TiledWriter::create(
                &index_path,
                w,
                h,
                BandFormat {
                    bits: 8,
                    palette: Some(palette),
                    nodata: nodata.map(|(i, _)| f64::from(i)),
                },
                geo.clone(),
            )?),
            confidence: Box::new(TiledWriter::create(
                &confidence_path,
                w,
                h,
                BandFormat {
                    bits: 32,
                    palette: None,
                    nodata: nodata.map(|(_, c)| f64::from(c)),
                },
                geo,
            )?),
        }
    } else {
        Outputs::Png {
            index: Box::new(PngRows::create(
                &index_path,
                w,
                h,
                png::ColorType::Grayscale,
            )?),
            confidence: Box::new(PngRows::create(
                &confidence_path,
                w,
                h,
                png::ColorType::Grayscale,
            )?),
        }
    };
    let mut color = PngRows::create(&color_path, w, h, png::ColorType::Rgb)?;
    let palette = &card.palette;
    predict_bands(
        model,
        dataset,
        raster,
        mode,
        window_batch,
        device,
        |mut band: Band| {
            let missing = match masks.as_mut() {
                Some(masks) => masks.read(0, band.y as u32, w, band.rows as u32)?.nodata,
                None => None,
            };
            let rgb: Vec<u8> = band
                .labels
                .iter()
                .enumerate()
                .flat_map(|(i, &l)| match &missing {
                    Some(m) if m[i] => [0, 0, 0],
                    _ => palette.get(usize::from(l)).copied().unwrap_or([0, 0, 0]),
                })
                .collect();
            color.write(&rgb)?;
            if let (Some(m), Some((index_nodata, confidence_nodata))) = (&missing, nodata) {
                for ((label, conf), &gone) in
                    band.labels.iter_mut().zip(&mut band.confidence).zip(m)
                {
                    if gone {
                        *label = index_nodata;
                        *conf = confidence_nodata;
                    }
                }
            }
            match &mut outputs {
                Outputs::Png { index, confidence } => {
                    index.write(&band.labels)?;
                    let conf: Vec<u8> = band
                        .confidence
                        .iter()
                        .map(|&c| {
                            if c.is_finite() {
                                (c.clamp(0.0, 1.0) * 255.0).round() as u8
                            } else {
                                0
                            }
                        })
                        .collect();
                    confidence.write(&conf)
                }
                Outputs::Tiff { index, confidence } => {
                    index.write_rows(&band.labels)?;
                    confidence.write_rows(&band.confidence)
                }
            }
        },
    )?;
    match outputs {
        Outputs::Png { index, confidence } => {
            index.commit()?;
            confidence.commit()?;
        }
        Outputs::Tiff { index, confidence } => {
            index.commit()?;
            confidence.commit()?;
        }
    }
    color.commit()?;
    Ok(PredictionFiles {
        index: index_path,
        color: color_path,
        confidence: confidence_path,
        size_px: (w, h),
        georeferenced,
    })
}
