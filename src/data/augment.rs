//! The S5 / FixMatch augmentations (paper §3, "Semi-Supervised Pre-Training", and the
//! authors' training code): the weak view (scale, pad, crop, flips,
//! optional rot90 and rotation), the strong view on top of it (colour jitter, grayscale,
//! blur), CutMix boxes mixing image, pseudo-label, confidence and validity with one box, and
//! ImageNet normalisation. All randomness comes from the caller's RNG, so a seed gives the
//! same bytes.

use image::imageops::{self, FilterType};
use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::IGNORE;

/// Every probability and range of the augmentations; defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Output side (square crops).
    pub crop_px: u32,
    /// The long side is scaled by a factor drawn from this range.
    pub scale_range: (f32, f32),
    pub hflip_p: f32,
    pub vflip_p: f32,
    /// Rotation by a random multiple of 90° (the paper lists rotation; the authors' code never
    /// applies it, hence 0 by default).
    pub rot90_p: f32,
    /// Rotation by an angle in ±`rotate_max_deg` (pixels rotated in from outside are padding).
    pub rotate_p: f32,
    pub rotate_max_deg: f32,
    /// Colour jitter probability and strengths (torchvision `ColorJitter` semantics).
    pub jitter_p: f32,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
    pub grayscale_p: f32,
    pub blur_p: f32,
    pub blur_sigma: (f32, f32),
    pub cutmix_p: f32,
    /// Box area as a share of the crop.
    pub cutmix_area: (f32, f32),
    /// Box aspect ratio (height / width).
    pub cutmix_aspect: (f32, f32),
    /// Labeled crops also get the strong view's colour augmentations (jitter, grayscale,
    /// blur) after the weak view: the authors' MoE-MDF fine-tuning does, with `rot90_p` 0.5.
    pub labeled_strong: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            crop_px: 512,
            scale_range: (0.5, 2.0),
            hflip_p: 0.5,
            vflip_p: 0.5,
            rot90_p: 0.0,
            rotate_p: 0.0,
            rotate_max_deg: 30.0,
            jitter_p: 0.8,
            brightness: 0.5,
            contrast: 0.5,
            saturation: 0.5,
            hue: 0.25,
            grayscale_p: 0.2,
            blur_p: 0.5,
            blur_sigma: (0.1, 2.0),
            cutmix_p: 0.5,
            cutmix_area: (0.02, 0.4),
            cutmix_aspect: (0.3, 1.0 / 0.3),
            labeled_strong: false,
        }
    }
}

/// A weakly augmented crop.
///
/// # Shapes
/// All three `crop_px × crop_px`.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub image: RgbImage,
    /// Class per pixel, [`IGNORE`] where unknown (unlabeled input) or padded.
    pub labels: GrayImage,
    /// 1 where the pixel comes from the input, 0 where it is padding.
    pub valid: GrayImage,
}

fn uniform<R: Rng>(rng: &mut R, (lo, hi): (f32, f32)) -> f32 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

fn chance<R: Rng>(rng: &mut R, p: f32) -> bool {
    p > 0.0 && rng.random::<f32>() < p
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
    let (w, h) = image.dimensions();
    let labels = labels
        .cloned()
        .unwrap_or_else(|| GrayImage::from_pixel(w, h, Luma([IGNORE])));

    // Scale the long side, pad to at least the crop, crop: done as "choose the crop window in
    // the scaled frame, then resample only the source region under it", so the cost is the
    // crop's, not the scaled image's. Padding lies right of and below the image.
    let factor = uniform(rng, cfg.scale_range);
    let long = w.max(h) as f32 * factor;
    let scale = long / w.max(h) as f32;
    let (sw, sh) = (
        ((w as f32 * scale).round() as u32).max(1),
        ((h as f32 * scale).round() as u32).max(1),
    );
    let c = cfg.crop_px;
    let x = rng.random_range(0..=sw.max(c) - c);
    let y = rng.random_range(0..=sh.max(c) - c);
    // The part of the crop covered by the scaled image, and the source pixels under it.
    let (cw, ch) = (
        (sw.min(x + c) - x.min(sw)).min(c),
        (sh.min(y + c) - y.min(sh)).min(c),
    );
    let mut view = View {
        image: RgbImage::new(c, c),
        labels: GrayImage::from_pixel(c, c, Luma([IGNORE])),
        valid: GrayImage::new(c, c),
    };
    if cw > 0 && ch > 0 {
        let to_src = |v: u32, len: u32| ((v as f32 / scale).round() as u32).min(len);
        let (x0, y0) = (to_src(x, w), to_src(y, h));
        let (x1, y1) = (
            to_src(x + cw, w).max(x0 + 1).min(w),
            to_src(y + ch, h).max(y0 + 1).min(h),
        );
        let (x0, y0) = (x0.min(x1 - 1), y0.min(y1 - 1));
        let region = |img_w, img_h| (x0, y0, (x1 - x0).min(img_w), (y1 - y0).min(img_h));
        let (rx, ry, rw, rh) = region(w, h);
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
fn rotate(view: &View, angle: f32) -> View {
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
    if chance(rng, cfg.jitter_p) {
        let mut order = [0usize, 1, 2, 3];
        for i in (1..4).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        for op in order {
            match op {
                0 if cfg.brightness > 0.0 => {
                    let f = uniform(rng, (1.0 - cfg.brightness, 1.0 + cfg.brightness)).max(0.0);
                    map_rgb(&mut img, |p| p.map(|v| v * f));
                }
                1 if cfg.contrast > 0.0 => {
                    let f = uniform(rng, (1.0 - cfg.contrast, 1.0 + cfg.contrast)).max(0.0);
                    let mean = img.pixels().map(|p| gray(p.0.map(f32::from))).sum::<f32>()
                        / (img.width() * img.height()).max(1) as f32;
                    let mean = mean.round();
                    map_rgb(&mut img, |p| p.map(|v| v * f + mean * (1.0 - f)));
                }
                2 if cfg.saturation > 0.0 => {
                    let f = uniform(rng, (1.0 - cfg.saturation, 1.0 + cfg.saturation)).max(0.0);
                    map_rgb(&mut img, |p| {
                        let g = gray(p);
                        p.map(|v| v * f + g * (1.0 - f))
                    });
                }
                3 if cfg.hue > 0.0 => {
                    let shift = uniform(rng, (-cfg.hue, cfg.hue));
                    map_rgb(&mut img, |p| hue_shift(p, shift));
                }
                _ => {}
            }
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

/// A CutMix box in a square crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutMixBox {
    pub x_px: u32,
    pub y_px: u32,
    pub width_px: u32,
    pub height_px: u32,
}

impl CutMixBox {
    /// With probability `cutmix_p`, a box of area U(cutmix_area) × the crop and aspect
    /// (height / width) U(cutmix_aspect), placed uniformly where it fits; else `None`.
    pub fn sample<R: Rng>(crop_px: u32, cfg: &AugmentConfig, rng: &mut R) -> Option<Self> {
        if !chance(rng, cfg.cutmix_p) {
            return None;
        }
        let side = crop_px as f32;
        let area = uniform(rng, cfg.cutmix_area) * side * side;
        for _ in 0..100 {
            let aspect = uniform(rng, cfg.cutmix_aspect);
            let w = (area / aspect).sqrt().round() as u32;
            let h = (area * aspect).sqrt().round() as u32;
            if w == 0 || h == 0 || w > crop_px || h > crop_px {
                continue;
            }
            return Some(Self {
                x_px: rng.random_range(0..=crop_px - w),
                y_px: rng.random_range(0..=crop_px - h),
                width_px: w,
                height_px: h,
            });
        }
        None
    }

    /// Whether pixel (x, y) is inside the box.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x_px
            && x < self.x_px + self.width_px
            && y >= self.y_px
            && y < self.y_px + self.height_px
    }

    /// Copies the box from `src` into `dst`, row-major `[H, W, channels]` planes of one type:
    /// images, labels, confidence and validity are all mixed with the same call.
    ///
    /// # Shapes
    /// dst, src `[width_px_of_plane * H * channels]`.
    pub fn paste<T: Copy>(&self, dst: &mut [T], src: &[T], plane_width_px: u32, channels: usize) {
        let w = plane_width_px as usize;
        for y in self.y_px as usize..(self.y_px + self.height_px) as usize {
            let start = (y * w + self.x_px as usize) * channels;
            let end = start + self.width_px as usize * channels;
            dst[start..end].copy_from_slice(&src[start..end]);
        }
    }
}

/// ImageNet mean and standard deviation (RGB, on [0, 1]).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

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
