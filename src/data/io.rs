//! Reading images (PNG, JPEG, TIFF; 8/16-bit; gray, RGB, RGBA) and masks in a dataset's
//! label encoding, with errors that name the file.

use std::path::Path;

use image::{DynamicImage, GrayImage, RgbImage};

use super::IGNORE;
use super::raster::{Raster, Window};
use super::spec::{DatasetSpec, LabelEncoding};
use crate::error::{Error, Result};
use crate::run::Imaging;

pub(crate) fn decode(path: &Path) -> Result<DynamicImage> {
    let reader = image::ImageReader::open(path).map_err(|e| Error::reading(path, e, None))?;
    let reader = reader
        .with_guessed_format()
        .map_err(|e| Error::reading(path, e, None))?;
    reader.decode().map_err(|e| Error::ImageRead {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Width and height from the file header, without decoding the pixels.
pub fn image_size(path: &Path) -> Result<(u32, u32)> {
    let reader = image::ImageReader::open(path).map_err(|e| Error::reading(path, e, None))?;
    let reader = reader
        .with_guessed_format()
        .map_err(|e| Error::reading(path, e, None))?;
    reader.into_dimensions().map_err(|e| Error::ImageRead {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// An image as the model sees it under a dataset's `imaging` (bands, value range, nodata;
/// see [`super::raster`]): 8-bit RGB and the nodata mask.
pub fn read_image(path: &Path, imaging: &Imaging) -> Result<Window> {
    Raster::open(path, imaging)?.read_all()
}

/// An image as 8-bit RGB under the default imaging: bands 0–2 (gray replicated), 8-bit as is,
/// 16-bit by a per-image 2–98 % percentile stretch.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    Ok(read_image(path, &Imaging::default())?.rgb)
}

/// A colour mask's pixels, 8-bit RGB as stored (no stretch, no band choice).
fn read_mask_rgb(path: &Path) -> Result<RgbImage> {
    Ok(decode(path)?.into_rgb8())
}

/// A mask's raw single-channel values: palette-indexed PNGs give their indices (not the
/// palette colours), gray PNGs and TIFFs their values, 8- or 16-bit.
fn read_index_values(path: &Path) -> Result<(u32, u32, Vec<u16>)> {
    let is_png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if is_png {
        return read_png_values(path);
    }
    let is_tiff = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"));
    if is_tiff {
        return read_tiff_values(path);
    }
    let bad = |what: &str| Error::ImageRead {
        path: path.to_path_buf(),
        reason: format!("an index mask must have one channel, this one is {what}"),
    };
    match decode(path)? {
        DynamicImage::ImageLuma8(m) => Ok((
            m.width(),
            m.height(),
            m.iter().map(|&v| u16::from(v)).collect(),
        )),
        DynamicImage::ImageLuma16(m) => Ok((m.width(), m.height(), m.into_raw())),
        other => Err(bad(&format!("{:?}", other.color()))),
    }
}

/// A single-band TIFF's raw values (a palette TIFF, as `s5 predict` writes, gives its indices).
fn read_tiff_values(path: &Path) -> Result<(u32, u32, Vec<u16>)> {
    let fail = |reason: String| Error::ImageRead {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::reading(path, e, None))?;
    let mut decoder = tiff::decoder::Decoder::new(std::io::BufReader::new(file))
        .map_err(|e| fail(e.to_string()))?
        .with_limits(tiff::decoder::Limits::unlimited());
    let samples = decoder
        .find_tag_unsigned::<u16>(tiff::tags::Tag::SamplesPerPixel)
        .map_err(|e| fail(e.to_string()))?
        .unwrap_or(1);
    if samples != 1 {
        return Err(fail(format!(
            "an index mask must have one channel, this one has {samples}"
        )));
    }
    let (w, h) = decoder.dimensions().map_err(|e| fail(e.to_string()))?;
    let photometric = decoder
        .find_tag_unsigned::<u16>(tiff::tags::Tag::PhotometricInterpretation)
        .map_err(|e| fail(e.to_string()))?;
    if photometric == Some(3) {
        let values = read_palette_indices(&mut decoder, w, h).map_err(|e| fail(e.to_string()))?;
        return Ok((w, h, values));
    }
    let values = match decoder.read_image().map_err(|e| fail(e.to_string()))? {
        tiff::decoder::DecodingResult::U8(v) => v.into_iter().map(u16::from).collect(),
        tiff::decoder::DecodingResult::U16(v) => v,
        _ => {
            return Err(fail(
                "an index mask must hold 8- or 16-bit unsigned integers".into(),
            ));
        }
    };
    Ok((w, h, values))
}

/// The indices of an 8-bit palette TIFF, uncompressed or deflated, striped or tiled (what
/// `s5 predict` writes; the `tiff` crate decodes no palette image).
fn read_palette_indices<R: std::io::Read + std::io::Seek>(
    decoder: &mut tiff::decoder::Decoder<R>,
    w: u32,
    h: u32,
) -> std::io::Result<Vec<u16>> {
    use std::io::{Read, SeekFrom};
    use tiff::tags::Tag;
    let bad = |what: &str| std::io::Error::other(format!("palette TIFF: {what}"));
    let tag = |d: &mut tiff::decoder::Decoder<R>, t| {
        d.find_tag_unsigned_vec::<u64>(t)
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    if tag(decoder, Tag::BitsPerSample)?.unwrap_or_default() != [8] {
        return Err(bad("only 8-bit indices are read"));
    }
    let compression = tag(decoder, Tag::Compression)?.unwrap_or_else(|| vec![1]);
    let (cw, ch, offsets, counts) = match tag(decoder, Tag::TileOffsets)? {
        Some(offsets) => (
            tag(decoder, Tag::TileWidth)?.and_then(|v| v.first().copied()),
            tag(decoder, Tag::TileLength)?.and_then(|v| v.first().copied()),
            offsets,
            tag(decoder, Tag::TileByteCounts)?,
        ),
        None => (
            Some(u64::from(w)),
            Some(
                tag(decoder, Tag::RowsPerStrip)?
                    .and_then(|v| v.first().copied())
                    .unwrap_or(u64::from(h)),
            ),
            tag(decoder, Tag::StripOffsets)?.ok_or_else(|| bad("no strips"))?,
            tag(decoder, Tag::StripByteCounts)?,
        ),
    };
    let (Some(cw), Some(ch), Some(counts)) = (cw, ch, counts) else {
        return Err(bad("chunk size or byte counts missing"));
    };
    let (cw, ch) = (cw.max(1) as usize, ch.max(1) as usize);
    let (w, h) = (w as usize, h as usize);
    let across = w.div_ceil(cw);
    if offsets.len() != counts.len() || offsets.len() < across * h.div_ceil(ch) {
        return Err(bad("fewer chunks than the image needs"));
    }
    let mut values = vec![0u16; w * h];
    let reader = decoder.inner();
    for (i, (&offset, &count)) in offsets.iter().zip(&counts).enumerate() {
        let (cx, cy) = (i % across * cw, i / across * ch);
        if cy >= h {
            break;
        }
        reader.seek(SeekFrom::Start(offset))?;
        let mut raw = vec![0u8; count as usize];
        reader.read_exact(&mut raw)?;
        let bytes = match compression[..] {
            [1] => raw,
            [8] | [32946] => {
                let mut out = Vec::with_capacity(cw * ch);
                flate2::read::ZlibDecoder::new(&raw[..]).read_to_end(&mut out)?;
                out
            }
            _ => return Err(bad("only uncompressed or deflated indices are read")),
        };
        for r in 0..ch.min(h - cy) {
            for c in 0..cw.min(w - cx) {
                let v = *bytes
                    .get(r * cw + c)
                    .ok_or_else(|| bad("a chunk is short"))?;
                values[(cy + r) * w + cx + c] = u16::from(v);
            }
        }
    }
    Ok(values)
}

fn read_png_values(path: &Path) -> Result<(u32, u32, Vec<u16>)> {
    let fail = |reason: String| Error::ImageRead {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::reading(path, e, None))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| fail(e.to_string()))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| fail("image too large".into()))?;
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| fail(e.to_string()))?;
    let (w, h) = (info.width, info.height);
    let bits = info.bit_depth as u32;
    if !matches!(
        info.color_type,
        png::ColorType::Grayscale | png::ColorType::Indexed
    ) {
        return Err(fail(format!(
            "an index mask must have one channel (gray or palette-indexed), this one is {:?}",
            info.color_type
        )));
    }
    let line = info.line_size;
    let mut values = Vec::with_capacity((w * h) as usize);
    for y in 0..h as usize {
        let row = &buf[y * line..(y + 1) * line];
        for x in 0..w as usize {
            let v = match bits {
                16 => u16::from_be_bytes([row[2 * x], row[2 * x + 1]]),
                8 => u16::from(row[x]),
                b => {
                    let per_byte = 8 / b as usize;
                    let byte = row[x / per_byte];
                    let shift = 8 - b as usize * (x % per_byte + 1);
                    u16::from((byte >> shift) & ((1u8 << b) - 1))
                }
            };
            values.push(v);
        }
    }
    Ok((w, h, values))
}

/// A predicted class map (index PNG or single-channel TIFF, as `s5 predict` writes), every
/// value checked to be one of the `classes`.
pub fn read_prediction(path: &Path, classes: usize) -> Result<GrayImage> {
    let (w, h, values) = read_index_values(path)?;
    let mut out = Vec::with_capacity(values.len());
    for (i, &v) in values.iter().enumerate() {
        if usize::from(v) >= classes {
            return Err(Error::LabelOutOfRange {
                path: path.to_path_buf(),
                value: v.to_string(),
                x: i as u32 % w,
                y: i as u32 / w,
                classes,
                hint: "in a prediction: is it the right dataset's spec?",
            });
        }
        out.push(v as u8);
    }
    Ok(GrayImage::from_raw(w, h, out).expect("w*h labels"))
}

/// A mask translated to s5 labels (class index, [`IGNORE`] for no class).
///
/// # Errors
/// Unreadable file, wrong channel count, a colour not in the palette, or a value outside the
/// classes (naming the first such pixel).
pub fn read_labels(path: &Path, spec: &DatasetSpec) -> Result<GrayImage> {
    let k = spec.num_classes();
    let out_of_range =
        |value: String, i: usize, w: u32, hint: &'static str| Error::LabelOutOfRange {
            path: path.to_path_buf(),
            value,
            x: i as u32 % w,
            y: i as u32 / w,
            classes: k,
            hint,
        };
    match &spec.encoding {
        LabelEncoding::Index { ignore } => {
            let (w, h, values) = read_index_values(path)?;
            let mut labels = Vec::with_capacity(values.len());
            for (i, &v) in values.iter().enumerate() {
                labels.push(if v == *ignore {
                    IGNORE
                } else if usize::from(v) < k {
                    v as u8
                } else {
                    return Err(out_of_range(v.to_string(), i, w, "and not the ignore value: check the spec's classes and `Index(ignore: ...)`"));
                });
            }
            Ok(GrayImage::from_raw(w, h, labels).expect("w*h labels"))
        }
        LabelEncoding::MinusOne => {
            let (w, h, values) = read_index_values(path)?;
            let mut labels = Vec::with_capacity(values.len());
            for (i, &v) in values.iter().enumerate() {
                labels.push(match v {
                    0 => IGNORE,
                    v if usize::from(v) <= k => (v - 1) as u8,
                    v => {
                        return Err(out_of_range(
                            v.to_string(),
                            i,
                            w,
                            "after `MinusOne` (value - 1; 0 is no-data)",
                        ));
                    }
                });
            }
            Ok(GrayImage::from_raw(w, h, labels).expect("w*h labels"))
        }
        LabelEncoding::Palette { ignore_colours } => {
            let rgb = read_mask_rgb(path)?;
            let w = rgb.width();
            let lookup: std::collections::HashMap<[u8; 3], u8> = spec
                .palette
                .iter()
                .enumerate()
                .map(|(i, c)| (*c, i as u8))
                .chain(ignore_colours.iter().map(|c| (*c, IGNORE)))
                .collect();
            let mut labels = Vec::with_capacity((rgb.width() * rgb.height()) as usize);
            for (i, p) in rgb.pixels().enumerate() {
                match lookup.get(&p.0) {
                    Some(&l) => labels.push(l),
                    None => {
                        return Err(out_of_range(
                            format!("colour {:?}", p.0),
                            i,
                            w,
                            "nor an ignore colour: check the spec's palette",
                        ));
                    }
                }
            }
            Ok(GrayImage::from_raw(rgb.width(), rgb.height(), labels).expect("w*h labels"))
        }
    }
}

/// An image read for a dataset: its pixels, its labels if it has a mask, which pixels have no
/// data.
///
/// # Shapes
/// image, labels `H × W`; nodata `[H · W]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub image: RgbImage,
    /// Class indices, [`IGNORE`] where the mask says no class and where the image has no data.
    pub labels: Option<GrayImage>,
    /// `true` where the image has no data; `None` when it has no nodata value.
    pub nodata: Option<Vec<bool>>,
}

/// An image under the spec's imaging and, if labeled, its labels, checked to be the same size;
/// pixels without data are [`IGNORE`] in the labels.
pub fn read_sample(spec: &DatasetSpec, sample: &super::SampleRef) -> Result<Sample> {
    let Window { rgb: image, nodata } = read_image(&sample.image, &spec.imaging)?;
    let Some(mask) = &sample.mask else {
        return Ok(Sample {
            image,
            labels: None,
            nodata,
        });
    };
    let mut labels = read_labels(mask, spec)?;
    if labels.dimensions() != image.dimensions() {
        return Err(Error::MaskSize {
            path: mask.clone(),
            image: sample.image.clone(),
            mask_w: labels.width(),
            mask_h: labels.height(),
            image_w: image.width(),
            image_h: image.height(),
        });
    }
    if let Some(nodata) = &nodata {
        for (label, &missing) in labels.iter_mut().zip(nodata) {
            if missing {
                *label = IGNORE;
            }
        }
    }
    Ok(Sample {
        image,
        labels: Some(labels),
        nodata,
    })
}
