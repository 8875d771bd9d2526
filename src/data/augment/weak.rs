//! The weak view (paper §3; the authors' `resize`, `crop`, `hflip` and `vflip`): long side ×
//! U(scale_range), pad to the crop, random crop, flips, optional rot90 and rotation.
//!
//! Only the source pixels under the crop window are resampled, straight into the crop's
//! buffer, with `fast_image_resize` (the same triangle filter as PIL's `BILINEAR`, widened
//! when shrinking, in SIMD fixed point); flips reverse rows in place.

use std::cell::RefCell;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{GrayImage, RgbImage};
use rand::Rng;

use super::draws::crop_window;
use super::reference::rotate;
use super::{AugmentConfig, Probe, View, chance, uniform};
use crate::data::IGNORE;

thread_local! {
    /// One resampler per thread: it keeps its scratch buffers between samples.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// The weak view: long side × U(scale_range), pad to the crop (image 0, labels [`IGNORE`],
/// validity 0), random crop, flips, optional rot90 and rotation. `labels` `None` (unlabeled
/// input) gives [`IGNORE`] everywhere.
pub fn weak<R: Rng>(
    image: &RgbImage,
    labels: Option<&GrayImage>,
    cfg: &AugmentConfig,
    rng: &mut R,
) -> View {
    weak_probed(image, labels, cfg, rng, &mut ())
}

/// [`weak`], telling `probe` when the stages `scale + crop` and `flip + rotate` end.
pub fn weak_probed<R: Rng, P: Probe>(
    image: &RgbImage,
    labels: Option<&GrayImage>,
    cfg: &AugmentConfig,
    rng: &mut R,
    probe: &mut P,
) -> View {
    let (w, h) = image.dimensions();
    let c = cfg.crop_px;
    let side = c as usize;
    let mut rgb = vec![0u8; side * side * 3];
    let mut classes = vec![IGNORE; side * side];
    let mut valid = vec![0u8; side * side];

    let window = crop_window(w, h, cfg, rng);
    if let Some(region) = window.source {
        let [cw, ch] = window.covered;
        resample(image.as_raw(), w, h, 3, region, &mut rgb, side, [cw, ch]);
        if let Some(labels) = labels {
            resample(
                labels.as_raw(),
                w,
                h,
                1,
                region,
                &mut classes,
                side,
                [cw, ch],
            );
        }
        for row in valid.chunks_exact_mut(side).take(ch as usize) {
            row[..cw as usize].fill(1);
        }
    }
    probe.mark("scale + crop");

    if chance(rng, cfg.hflip_p) {
        flip_rows::<3>(&mut rgb, side);
        flip_rows::<1>(&mut classes, side);
        flip_rows::<1>(&mut valid, side);
    }
    if chance(rng, cfg.vflip_p) {
        flip_columns(&mut rgb, side * 3);
        flip_columns(&mut classes, side);
        flip_columns(&mut valid, side);
    }
    let mut view = View {
        image: RgbImage::from_raw(c, c, rgb).expect("crop_px² RGB pixels"),
        labels: GrayImage::from_raw(c, c, classes).expect("crop_px² labels"),
        valid: GrayImage::from_raw(c, c, valid).expect("crop_px² validity"),
    };
    if chance(rng, cfg.rot90_p) {
        use image::imageops::{rotate90, rotate180, rotate270};
        let turn = rng.random_range(1..=3);
        let (image, labels, valid) = (&view.image, &view.labels, &view.valid);
        view = match turn {
            1 => View {
                image: rotate90(image),
                labels: rotate90(labels),
                valid: rotate90(valid),
            },
            2 => View {
                image: rotate180(image),
                labels: rotate180(labels),
                valid: rotate180(valid),
            },
            _ => View {
                image: rotate270(image),
                labels: rotate270(labels),
                valid: rotate270(valid),
            },
        };
    }
    if chance(rng, cfg.rotate_p) {
        let angle = uniform(rng, (-cfg.rotate_max_deg, cfg.rotate_max_deg)).to_radians();
        view = rotate(&view, angle);
    }
    probe.mark("flip + rotate");
    view
}

/// Resamples `region` (`[x, y, width, height]` in source pixels) of a `width × height` image
/// with `channels` bytes per pixel to `size` (`[width, height]`), written into the top-left
/// corner of `dst`, whose rows are `dst_side` pixels long: triangle filter for 3 channels
/// (images), nearest neighbour for 1 (labels). A region of the target's size is copied.
///
/// # Shapes
/// src `[height, width, channels]`; dst `[_, dst_side, channels]`.
#[allow(clippy::too_many_arguments)]
fn resample(
    src: &[u8],
    width: u32,
    height: u32,
    channels: usize,
    region: [u32; 4],
    dst: &mut [u8],
    dst_side: usize,
    size: [u32; 2],
) {
    let [rx, ry, rw, rh] = region.map(|v| v as usize);
    let [cw, ch] = size.map(|v| v as usize);
    let dst_row = dst_side * channels;
    if (rw, rh) == (cw, ch) {
        for (row, dst) in dst.chunks_exact_mut(dst_row).take(ch).enumerate() {
            let start = ((ry + row) * width as usize + rx) * channels;
            dst[..cw * channels].copy_from_slice(&src[start..start + cw * channels]);
        }
        return;
    }
    let (pixel, alg) = if channels == 3 {
        (
            PixelType::U8x3,
            ResizeAlg::Convolution(FilterType::Bilinear),
        )
    } else {
        (PixelType::U8, ResizeAlg::Nearest)
    };
    let src = ImageRef::new(width, height, src, pixel).expect("buffer holds width × height");
    let options = ResizeOptions::new()
        .resize_alg(alg)
        .crop(rx as f64, ry as f64, rw as f64, rh as f64);
    let resize = |dst: &mut Image<'_>| {
        RESIZER
            .with_borrow_mut(|r| r.resize(&src, dst, &options))
            .expect("same pixel type, non-empty region inside the source")
    };
    if cw == dst_side {
        // Rows of the resampled part are whole rows of the crop: write them in place.
        let mut out = Image::from_slice_u8(size[0], size[1], &mut dst[..ch * dst_row], pixel)
            .expect("buffer holds the resampled rows");
        resize(&mut out);
    } else {
        let mut out = Image::new(size[0], size[1], pixel);
        resize(&mut out);
        for (row, src) in out.buffer().chunks_exact(cw * channels).enumerate() {
            dst[row * dst_row..row * dst_row + cw * channels].copy_from_slice(src);
        }
    }
}

/// Mirrors every row of a square buffer of side `side` left to right, pixel by pixel.
fn flip_rows<const CHANNELS: usize>(buffer: &mut [u8], side: usize) {
    for row in buffer.chunks_exact_mut(side * CHANNELS) {
        row.as_chunks_mut::<CHANNELS>().0.reverse();
    }
}

/// Swaps rows top to bottom; rows are `row_len` bytes.
fn flip_columns(buffer: &mut [u8], row_len: usize) {
    let rows = buffer.len() / row_len;
    for top in 0..rows / 2 {
        let (upper, lower) = buffer.split_at_mut((rows - 1 - top) * row_len);
        upper[top * row_len..(top + 1) * row_len].swap_with_slice(&mut lower[..row_len]);
    }
}
