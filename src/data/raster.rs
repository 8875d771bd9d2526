//! Images read as the model sees them: three chosen bands mapped to 8 bits, the mask of pixels
//! without data and, for GeoTIFFs, the georeferencing.
//!
//! TIFFs of 8- or 16-bit unsigned samples, gray or RGB or multiband, striped or tiled, chunky or
//! planar, in any compression the `tiff` crate decodes, are read chunk by chunk: a window costs
//! the chunks it touches, never the whole file. Other files (PNG, JPEG, and TIFF layouts such
//! as palette or YCbCr) are decoded whole by the `image` crate, as before.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use image::{DynamicImage, RgbImage};
use tiff::decoder::{ChunkType, Decoder, DecodingResult, Limits};
use tiff::tags::Tag;

use super::geotiff::{GeoTags, read_nodata};
use crate::error::{Error, Result};
use crate::run::{Imaging, ValueRange};

/// The colour a pixel without data is given: the ImageNet mean (≈ 0 once normalised), the
/// same whatever value the file stores there, so nodata pixels change no prediction, loss or
/// score.
pub const NODATA_FILL: [u8; 3] = [124, 116, 104];

/// Rows read at once when a window is larger: bounds the raw buffer of a read.
const ROWS_PER_READ: u32 = 256;

/// One image file, open for reading windows.
pub struct Raster {
    path: PathBuf,
    width: u32,
    height: u32,
    /// Bands in the file.
    samples: usize,
    /// 8 or 16.
    bits: u8,
    bands: [usize; 3],
    /// Per chosen band, the 8-bit value of every raw value.
    lut: [Vec<u8>; 3],
    stretch: Stretch,
    nodata: Option<f64>,
    geo: GeoTags,
    pixels: Pixels,
}

/// How raw band values became 0–255.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stretch {
    /// 8-bit values as they are.
    Identity,
    /// Per chosen band, `low` → 0 and `high` → 255, linear between, clamped outside.
    Linear([(f64, f64); 3]),
}

/// A window of an image as the model sees it; pixels without data are [`NODATA_FILL`].
///
/// # Shapes
/// rgb `H × W`; nodata `[H · W]` row-major, `true` where the pixel has no data.
pub struct Window {
    pub rgb: RgbImage,
    /// `None` when the image has no nodata value.
    pub nodata: Option<Vec<bool>>,
}

enum Pixels {
    /// Read chunk by chunk (boxed: a TIFF decoder is far larger than a `Vec`).
    Chunks(Box<Chunks>),
    /// Interleaved samples of the whole image (`samples` per pixel).
    Decoded8(Vec<u8>),
    Decoded16(Vec<u16>),
}

struct Chunks {
    decoder: Decoder<BufReader<File>>,
    planar: bool,
    chunk_w: u32,
    chunk_h: u32,
    /// Chunks per row of chunks (1 for strips).
    across: u32,
    /// Chunks per band plane (all of them when chunky).
    per_plane: u32,
}

impl Raster {
    /// Opens `path` and settles how it is read under `imaging`: its bands are checked, the
    /// nodata value chosen (the spec's, else the file's), and a percentile stretch measured
    /// over the whole image (one streaming pass).
    ///
    /// # Errors
    /// An unreadable or corrupt file, a band the image does not have, samples other than 8- or
    /// 16-bit unsigned: each naming the file.
    pub fn open(path: &Path, imaging: &Imaging) -> Result<Self> {
        Self::open_with(path, imaging, None)
    }

    /// [`Self::open`] with the stretch an earlier open of the same file measured (no second
    /// percentile pass).
    pub fn open_with(path: &Path, imaging: &Imaging, known: Option<Stretch>) -> Result<Self> {
        let fail = |reason: String| Error::ImageRead {
            path: path.to_path_buf(),
            reason,
        };
        let tiff_error = |e: tiff::TiffError| fail(e.to_string());
        let file = File::open(path).map_err(|e| Error::reading(path, e, None))?;
        let (mut width, mut height, samples, bits, geo, file_nodata, pixels);
        match Decoder::new(BufReader::new(file)) {
            Ok(decoder) => {
                let mut decoder = decoder.with_limits(Limits::unlimited());
                geo = GeoTags::read(&mut decoder).map_err(tiff_error)?;
                file_nodata = read_nodata(&mut decoder).map_err(tiff_error)?;
                (width, height) = decoder.dimensions().map_err(tiff_error)?;
                match chunk_layout(&mut decoder).map_err(tiff_error)? {
                    Layout::Chunked {
                        samples: s,
                        bits: b,
                        planar,
                    } => {
                        (samples, bits) = (s, b);
                        let (chunk_w, chunk_h) = decoder.chunk_dimensions();
                        if chunk_w == 0 || chunk_h == 0 {
                            return Err(fail("a TIFF chunk of size 0".into()));
                        }
                        let across = match decoder.get_chunk_type() {
                            ChunkType::Strip => 1,
                            ChunkType::Tile => width.div_ceil(chunk_w),
                        };
                        let per_plane = across * height.div_ceil(chunk_h);
                        pixels = Pixels::Chunks(Box::new(Chunks {
                            decoder,
                            planar,
                            chunk_w,
                            chunk_h,
                            across,
                            per_plane,
                        }));
                    }
                    Layout::Unsupported(reason) => return Err(fail(reason)),
                    Layout::Other => {
                        drop(decoder);
                        (samples, bits, pixels, width, height) = decode_whole(path)?;
                    }
                }
            }
            Err(_) => {
                geo = GeoTags::default();
                file_nodata = None;
                (samples, bits, pixels, width, height) = decode_whole(path)?;
            }
        }
        let bands = match imaging.bands {
            Some(bands) => {
                if let Some(&b) = bands.iter().find(|&&b| b >= samples) {
                    return Err(fail(format!(
                        "the spec's imaging bands {bands:?} name band {b}, but this image has \
                         {samples} band{} (0-based): choose bands below {samples}",
                        if samples == 1 { "" } else { "s" }
                    )));
                }
                bands
            }
            None if samples >= 3 => [0, 1, 2],
            None => [0, 0, 0],
        };
        let mut raster = Self {
            path: path.to_path_buf(),
            width,
            height,
            samples,
            bits,
            bands,
            lut: Default::default(),
            stretch: Stretch::Identity,
            nodata: imaging.nodata.or(file_nodata),
            geo,
            pixels,
        };
        let range = match (imaging.range, bits) {
            (Some(range), _) => Some(range),
            (None, 8) => None,
            (None, _) => Some(ValueRange::DEFAULT_16_BIT),
        };
        raster.stretch = match (known, range) {
            (Some(stretch), _) => stretch,
            (None, None) => Stretch::Identity,
            (None, Some(ValueRange::Fixed { low, high })) => Stretch::Linear([(low, high); 3]),
            (None, Some(ValueRange::Percentile { low, high })) => {
                Stretch::Linear(raster.percentiles(low, high)?)
            }
        };
        raster.lut = raster.tables();
        Ok(raster)
    }

    /// Width and height in pixels.
    pub fn size_px(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The file's georeferencing (all absent for other files).
    pub fn geo(&self) -> &GeoTags {
        &self.geo
    }

    /// The nodata value in effect: the spec's, else the file's.
    pub fn nodata(&self) -> Option<f64> {
        self.nodata
    }

    /// The bands read, in R, G, B order.
    pub fn bands(&self) -> [usize; 3] {
        self.bands
    }

    /// How values were mapped to 8 bits.
    pub fn stretch(&self) -> Stretch {
        self.stretch
    }

    /// Bits per sample in the file (8 or 16).
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The whole image.
    pub fn read_all(&mut self) -> Result<Window> {
        self.read(0, 0, self.width, self.height)
    }

    /// The window of `w × h` px at (`x`, `y`), which must lie inside the image.
    pub fn read(&mut self, x: u32, y: u32, w: u32, h: u32) -> Result<Window> {
        assert!(
            x + w <= self.width && y + h <= self.height,
            "window inside the image"
        );
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        let mut nodata = self.nodata.map(|_| vec![false; w as usize * h as usize]);
        let mut row = 0;
        while row < h {
            let rows = ROWS_PER_READ.min(h - row);
            let raw = self.read_raw(x, y + row, w, rows)?;
            let start = row as usize * w as usize;
            let out = &mut rgb[start * 3..(start + rows as usize * w as usize) * 3];
            for (px, (dst, src)) in out.chunks_exact_mut(3).zip(raw.chunks_exact(3)).enumerate() {
                for c in 0..3 {
                    dst[c] = self.lut[c][usize::from(src[c])];
                }
                if let (Some(mask), Some(value)) = (nodata.as_mut(), self.nodata) {
                    let missing = src.iter().all(|&v| f64::from(v) == value);
                    mask[start + px] = missing;
                    if missing {
                        dst.copy_from_slice(&NODATA_FILL);
                    }
                }
            }
            row += rows;
        }
        Ok(Window {
            rgb: RgbImage::from_raw(w, h, rgb).expect("w*h*3 values"),
            nodata,
        })
    }

    /// Raw values of the chosen bands in a window, interleaved.
    ///
    /// # Shapes
    /// `[h · w · 3]`, row-major.
    fn read_raw(&mut self, x: u32, y: u32, w: u32, h: u32) -> Result<Vec<u16>> {
        let (width, samples, bands) = (self.width as usize, self.samples, self.bands);
        let mut out = vec![0u16; w as usize * h as usize * 3];
        let (x, y, w, h) = (x as usize, y as usize, w as usize, h as usize);
        match &mut self.pixels {
            Pixels::Decoded8(data) => copy_window(&mut out, w, h, |r, c, b| {
                u16::from(data[((y + r) * width + x + c) * samples + bands[b]])
            }),
            Pixels::Decoded16(data) => copy_window(&mut out, w, h, |r, c, b| {
                data[((y + r) * width + x + c) * samples + bands[b]]
            }),
            Pixels::Chunks(chunks) => {
                let fail = |e: tiff::TiffError| Error::ImageRead {
                    path: self.path.clone(),
                    reason: e.to_string(),
                };
                let (cw, ch) = (chunks.chunk_w as usize, chunks.chunk_h as usize);
                for cy in y / ch..(y + h).div_ceil(ch) {
                    for cx in x / cw..(x + w).div_ceil(cw) {
                        let index = (cy * chunks.across as usize + cx) as u32;
                        // Chunky: one chunk holds every band; planar: one chunk per band.
                        let planes: Vec<usize> = if chunks.planar {
                            let mut p = bands.to_vec();
                            p.sort_unstable();
                            p.dedup();
                            p
                        } else {
                            vec![0]
                        };
                        for plane in planes {
                            let chunk = index + plane as u32 * chunks.per_plane;
                            let (dw, dh) = chunks.decoder.chunk_data_dimensions(chunk);
                            let data = widen(chunks.decoder.read_chunk(chunk).map_err(fail)?)
                                .ok_or_else(|| Error::ImageRead {
                                    path: self.path.clone(),
                                    reason: "a chunk decoded to another sample type than the \
                                             image declares"
                                        .into(),
                                })?;
                            let per_px = if chunks.planar { 1 } else { samples };
                            let (dw, dh) = (dw as usize, dh as usize);
                            if data.len() < dw * dh * per_px {
                                return Err(Error::ImageRead {
                                    path: self.path.clone(),
                                    reason: format!(
                                        "chunk {chunk} decoded to {} samples, not {dw} × {dh} \
                                         px of {per_px}",
                                        data.len()
                                    ),
                                });
                            }
                            let (x0, y0) = (cx * cw, cy * ch);
                            let (ys, ye) = (y.max(y0), (y + h).min(y0 + dh));
                            let (xs, xe) = (x.max(x0), (x + w).min(x0 + dw));
                            for iy in ys..ye {
                                for ix in xs..xe {
                                    let src = ((iy - y0) * dw + (ix - x0)) * per_px;
                                    let dst = ((iy - y) * w + (ix - x)) * 3;
                                    for (b, &band) in bands.iter().enumerate() {
                                        if chunks.planar {
                                            if band == plane {
                                                out[dst + b] = data[src];
                                            }
                                        } else {
                                            out[dst + b] = data[src + band];
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Per chosen band, the values at percentiles `low` and `high` of the pixels with data
    /// (lower nearest rank); a band with one value everywhere gets `(v, v + 1)`.
    fn percentiles(&mut self, low: f64, high: f64) -> Result<[(f64, f64); 3]> {
        let bins = 1usize << self.bits;
        let mut histograms = vec![vec![0u64; bins]; 3];
        let mut y = 0;
        while y < self.height {
            let rows = ROWS_PER_READ.min(self.height - y);
            let raw = self.read_raw(0, y, self.width, rows)?;
            for px in raw.chunks_exact(3) {
                if let Some(value) = self.nodata
                    && px.iter().all(|&v| f64::from(v) == value)
                {
                    continue;
                }
                for (c, &v) in px.iter().enumerate() {
                    histograms[c][usize::from(v)] += 1;
                }
            }
            y += rows;
        }
        let mut out = [(0.0, 1.0); 3];
        for (c, histogram) in histograms.iter().enumerate() {
            let n: u64 = histogram.iter().sum();
            if n == 0 {
                out[c] = (0.0, (bins - 1) as f64);
                continue;
            }
            let at = |p: f64| {
                let rank = ((p / 100.0) * (n - 1) as f64).floor() as u64;
                let mut seen = 0;
                for (v, &count) in histogram.iter().enumerate() {
                    seen += count;
                    if seen > rank {
                        return v as f64;
                    }
                }
                (bins - 1) as f64
            };
            let (lo, hi) = (at(low), at(high));
            out[c] = (lo, if hi > lo { hi } else { lo + 1.0 });
        }
        Ok(out)
    }

    fn tables(&self) -> [Vec<u8>; 3] {
        let bins = 1usize << self.bits;
        std::array::from_fn(|c| {
            (0..bins)
                .map(|v| match self.stretch {
                    Stretch::Identity => v.min(255) as u8,
                    Stretch::Linear(ranges) => map_value(v as f64, ranges[c]),
                })
                .collect()
        })
    }
}

/// `v` on 0–255 for the range `(low, high)`, rounded, clamped.
pub fn map_value(v: f64, (low, high): (f64, f64)) -> u8 {
    ((v - low) / (high - low) * 255.0).round().clamp(0.0, 255.0) as u8
}

fn copy_window(out: &mut [u16], w: usize, h: usize, value: impl Fn(usize, usize, usize) -> u16) {
    for r in 0..h {
        for c in 0..w {
            for b in 0..3 {
                out[(r * w + c) * 3 + b] = value(r, c, b);
            }
        }
    }
}

fn widen(result: DecodingResult) -> Option<Vec<u16>> {
    match result {
        DecodingResult::U8(v) => Some(v.into_iter().map(u16::from).collect()),
        DecodingResult::U16(v) => Some(v),
        _ => None,
    }
}

enum Layout {
    /// Read chunk by chunk.
    Chunked {
        samples: usize,
        bits: u8,
        planar: bool,
    },
    /// Decoded whole by the `image` crate.
    Other,
    /// Refused, saying why.
    Unsupported(String),
}

/// Whether a TIFF's samples are ones the chunk reader takes.
fn chunk_layout(decoder: &mut Decoder<BufReader<File>>) -> tiff::TiffResult<Layout> {
    let samples = decoder
        .find_tag_unsigned::<u16>(Tag::SamplesPerPixel)?
        .unwrap_or(1);
    let bits = decoder
        .find_tag_unsigned_vec::<u16>(Tag::BitsPerSample)?
        .unwrap_or_else(|| vec![1]);
    let formats = decoder
        .find_tag_unsigned_vec::<u16>(Tag::SampleFormat)?
        .unwrap_or_else(|| vec![1]);
    let photometric = decoder
        .find_tag_unsigned::<u16>(Tag::PhotometricInterpretation)?
        .unwrap_or(1);
    let planar = decoder
        .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)?
        .unwrap_or(1)
        == 2;
    // 1: BlackIsZero, 2: RGB. Palette, YCbCr, CMYK, WhiteIsZero... go through `image`.
    if !matches!(photometric, 1 | 2) || samples == 0 {
        return Ok(Layout::Other);
    }
    let first = bits[0];
    if !bits.iter().all(|&b| b == first) || !matches!(first, 8 | 16) {
        return Ok(Layout::Unsupported(format!(
            "s5 reads TIFFs of 8- or 16-bit samples; this one has {bits:?} bits per sample: \
             convert it, e.g. `gdal_translate -ot UInt16 in.tif out.tif`"
        )));
    }
    if !formats.iter().all(|&f| f == 1) {
        let kind = match formats.iter().find(|&&f| f != 1) {
            Some(2) => "signed integer",
            Some(3) => "floating-point",
            _ => "non-integer",
        };
        return Ok(Layout::Unsupported(format!(
            "s5 reads unsigned-integer TIFFs; this one has {kind} samples: rescale it to \
             UInt16, e.g. `gdal_translate -ot UInt16 -scale in.tif out.tif`"
        )));
    }
    // The `tiff` crate decodes only the bands its colour type counts: an RGB TIFF whose
    // extra bands are not alpha (GDAL's RGB + NIR) comes back short.
    let decoded = match decoder.colortype() {
        Ok(color) => color.num_samples(),
        Err(_) => return Ok(Layout::Other),
    };
    if !planar && decoded != samples {
        return Ok(Layout::Unsupported(format!(
            "this TIFF declares RGB colour with {} extra band(s) that are not alpha, which s5's \
             TIFF reader cannot decode; rewrite it as plain bands, e.g. `gdal_translate -co \
             PHOTOMETRIC=MINISBLACK -co INTERLEAVE=BAND in.tif out.tif`",
            samples - 3
        )));
    }
    Ok(Layout::Chunked {
        samples: usize::from(samples),
        bits: first as u8,
        planar,
    })
}

/// A file decoded whole by the `image` crate: samples per pixel, bits, pixels, size.
fn decode_whole(path: &Path) -> Result<(usize, u8, Pixels, u32, u32)> {
    let image = super::io::decode(path)?;
    let (w, h) = (image.width(), image.height());
    let channels = usize::from(image.color().channel_count());
    Ok(match image {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => (channels, 8, Pixels::Decoded8(image.into_bytes()), w, h),
        DynamicImage::ImageLuma16(i) => (1, 16, Pixels::Decoded16(i.into_raw()), w, h),
        DynamicImage::ImageLumaA16(i) => (2, 16, Pixels::Decoded16(i.into_raw()), w, h),
        DynamicImage::ImageRgb16(i) => (3, 16, Pixels::Decoded16(i.into_raw()), w, h),
        DynamicImage::ImageRgba16(i) => (4, 16, Pixels::Decoded16(i.into_raw()), w, h),
        other if other.color().has_alpha() => (
            4,
            16,
            Pixels::Decoded16(other.into_rgba16().into_raw()),
            w,
            h,
        ),
        other => (
            3,
            16,
            Pixels::Decoded16(other.into_rgb16().into_raw()),
            w,
            h,
        ),
    })
}
