//! The augmentations written plainly on the `image` crate: the behaviour the fast pipeline in
//! the parent module reproduces up to rounding, and what the tests compare it with. Same
//! random draws in the same order as the fast version.

use image::imageops::{self, FilterType};
use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::Rng;

use super::draws::{Jitter, crop_window, jitter_draws};
use super::{AugmentConfig, IMAGENET_MEAN, IMAGENET_STD, View, chance, uniform};
use crate::data::IGNORE;

/// The weak view: long side × U(scale_range), pad to the crop (image 0, labels [`IGNORE`],
/// validity 0), random crop, flips, optional rot90 and rotation. `labels` `None` (unlabeled
/// input) gives [`IGNORE`] everywhere.
pub fn weak<R: Rng>(
    image: &RgbImage,
    labels: Option<&GrayImage>,
    cfg: &AugmentConfig,
    rng: &mut R,
) -> View {
    let (w, h) = image.dimensions();
    let labels = labels
        .cloned()
        .unwrap_or_else(|| GrayImage::from_pixel(w, h, Luma([IGNORE])));

    let c = cfg.crop_px;
    let window = crop_window(w, h, cfg, rng);
    let mut view = View {
        image: RgbImage::new(c, c),
        labels: GrayImage::from_pixel(c, c, Luma([IGNORE])),
        valid: GrayImage::new(c, c),
    };
    if let Some([rx, ry, rw, rh]) = window.source {
        let [cw, ch] = window.covered;
        let src_image = imageops::crop_imm(image, rx, ry, rw, rh).to_image();
        let src_labels = imageops::crop_imm(&labels, rx, ry, rw, rh).to_image();
        let same = (rw, rh) == (cw, ch);
        let image_part = if same {
            src_image
        } else {
            imageops::resize(&src_image, cw, ch, FilterType::Triangle)
        };
        let labels_part = if same {
            src_labels
        } else {
            imageops::resize(&src_labels, cw, ch, FilterType::Nearest)
        };
        imageops::replace(&mut view.image, &image_part, 0, 0);
        imageops::replace(&mut view.labels, &labels_part, 0, 0);
        imageops::replace(
            &mut view.valid,
            &GrayImage::from_pixel(cw, ch, Luma([1])),
            0,
            0,
        );
    }

    if chance(rng, cfg.hflip_p) {
        imageops::flip_horizontal_in_place(&mut view.image);
        imageops::flip_horizontal_in_place(&mut view.labels);
        imageops::flip_horizontal_in_place(&mut view.valid);
    }
    if chance(rng, cfg.vflip_p) {
        imageops::flip_vertical_in_place(&mut view.image);
        imageops::flip_vertical_in_place(&mut view.labels);
        imageops::flip_vertical_in_place(&mut view.valid);
    }
    if chance(rng, cfg.rot90_p) {
        match rng.random_range(1..=3) {
            1 => {
                view.image = imageops::rotate90(&view.image);
                view.labels = imageops::rotate90(&view.labels);
                view.valid = imageops::rotate90(&view.valid);
            }
            2 => {
                view.image = imageops::rotate180(&view.image);
                view.labels = imageops::rotate180(&view.labels);
                view.valid = imageops::rotate180(&view.valid);
            }
            _ => {
                view.image = imageops::rotate270(&view.image);
                view.labels = imageops::rotate270(&view.labels);
                view.valid = imageops::rotate270(&view.valid);
            }
        }
    }
    if chance(rng, cfg.rotate_p) {
        let angle = uniform(rng, (-cfg.rotate_max_deg, cfg.rotate_max_deg)).to_radians();
        view = rotate(&view, angle);
    }
    view
}

/// Rotation about the centre: bilinear for the image, nearest for labels and validity;
/// pixels from outside the crop become padding.
pub(super) fn rotate(view: &View, angle: f32) -> View {
    let (w, h) = view.image.dimensions();
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    let mut out = View {
        image: RgbImage::new(w, h),
        labels: GrayImage::from_pixel(w, h, Luma([IGNORE])),
        valid: GrayImage::new(w, h),
    };
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let sx = cos * dx + sin * dy + cx;
            let sy = -sin * dx + cos * dy + cy;
            let (nx, ny) = (sx.round(), sy.round());
            if nx < 0.0 || ny < 0.0 || nx > (w - 1) as f32 || ny > (h - 1) as f32 {
                continue;
            }
            let (nx, ny) = (nx as u32, ny as u32);
            out.labels.put_pixel(x, y, *view.labels.get_pixel(nx, ny));
            out.valid.put_pixel(x, y, *view.valid.get_pixel(nx, ny));
            if view.valid.get_pixel(nx, ny)[0] == 0 {
                continue; // padding stays black
            }
            let (x0, y0) = (sx.floor().max(0.0) as u32, sy.floor().max(0.0) as u32);
            let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
            let (fx, fy) = (
                (sx - x0 as f32).clamp(0.0, 1.0),
                (sy - y0 as f32).clamp(0.0, 1.0),
            );
            let mut px = [0u8; 3];
            for (ch, v) in px.iter_mut().enumerate() {
                let p = |x, y| f32::from(view.image.get_pixel(x, y)[ch]);
                let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
                let bottom = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
                *v = (top * (1.0 - fy) + bottom * fy).round() as u8;
            }
            out.image.put_pixel(x, y, Rgb(px));
        }
    }
    out
}

/// The strong view of a weak view's image: colour jitter (the four adjustments in random
/// order), grayscale, Gaussian blur, each with its probability. Geometry is unchanged, so the
/// weak view's labels, validity and confidence still line up.
pub fn strong<R: Rng>(image: &RgbImage, cfg: &AugmentConfig, rng: &mut R) -> RgbImage {
    let mut img = image.clone();
    for jitter in jitter_draws(cfg, rng) {
        match jitter {
            Jitter::Brightness(f) => map_rgb(&mut img, |p| p.map(|v| v * f)),
            Jitter::Contrast(f) => {
                let mean = img.pixels().map(|p| gray(p.0.map(f32::from))).sum::<f32>()
                    / (img.width() * img.height()).max(1) as f32;
                let mean = mean.round();
                map_rgb(&mut img, |p| p.map(|v| v * f + mean * (1.0 - f)));
            }
            Jitter::Saturation(f) => map_rgb(&mut img, |p| {
                let g = gray(p);
                p.map(|v| v * f + g * (1.0 - f))
            }),
            Jitter::Hue(shift) => map_rgb(&mut img, |p| hue_shift(p, shift)),
        }
    }
    if chance(rng, cfg.grayscale_p) {
        map_rgb(&mut img, |p| [gray(p); 3]);
    }
    if chance(rng, cfg.blur_p) {
        let sigma = uniform(rng, cfg.blur_sigma);
        img = imageops::blur(&img, sigma);
    }
    img
}

fn gray(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

fn map_rgb(img: &mut RgbImage, f: impl Fn([f32; 3]) -> [f32; 3]) {
    for p in img.pixels_mut() {
        let out = f(p.0.map(f32::from));
        p.0 = out.map(|v| v.round().clamp(0.0, 255.0) as u8);
    }
}

/// Rotates the hue by `shift` turns (torchvision `adjust_hue`).
fn hue_shift(p: [f32; 3], shift: f32) -> [f32; 3] {
    let [r, g, b] = p.map(|v| v / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    if delta <= 0.0 {
        return p;
    }
    let h = if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    } / 6.0;
    let h = (h + shift).rem_euclid(1.0) * 6.0;
    let (s, v) = (delta / max, max);
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r1, g1, b1) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r1 + m, g1 + m, b1 + m].map(|v| v * 255.0)
}

/// The image as normalised planar floats, `(v / 255 - mean) / std` per channel.
///
/// # Shapes
/// `[H, W, 3]` u8 → `[3, H, W]` f32.
pub fn normalize(image: &RgbImage) -> Vec<f32> {
    let (w, h) = image.dimensions();
    let n = (w * h) as usize;
    let mut out = vec![0.0; 3 * n];
    for (i, p) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = (f32::from(p[c]) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    out
}
