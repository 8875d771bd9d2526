//! The strong view (FixMatch's; the authors' `ColorJitter(0.5, 0.5, 0.5, 0.25)` with p 0.8,
//! `RandomGrayscale(0.2)`, `blur` with p 0.5 and σ ∈ [0.1, 2]).
//!
//! Brightness and contrast map each byte value to one output, so they run as 256-entry
//! tables; saturation, hue and grayscale work per pixel in f32 without library calls
//! (rounding is `(v + 0.5) as u8`, which also clamps) in blocks that vectorise; the blur is
//! `libblur`'s SIMD separable Gaussian with the `image` crate's kernel size and edges.

use image::RgbImage;
use libblur::{
    BlurImage, BlurImageMut, ConvolutionMode, EdgeMode, EdgeMode2D, FastBlurChannels,
    GaussianBlurParams, ThreadingPolicy,
};
use rand::Rng;

use super::draws::{Jitter, jitter_draws};
use super::{AugmentConfig, Probe, chance, uniform};

/// The strong view of a weak view's image: colour jitter (the four adjustments in random
/// order), grayscale, Gaussian blur, each with its probability. Geometry is unchanged, so the
/// weak view's labels, validity and confidence still line up.
pub fn strong<R: Rng>(image: &RgbImage, cfg: &AugmentConfig, rng: &mut R) -> RgbImage {
    strong_probed(image, cfg, rng, &mut ())
}

/// [`strong`], telling `probe` when the stages `colour jitter`, `grayscale` and `blur` end.
pub fn strong_probed<R: Rng, P: Probe>(
    image: &RgbImage,
    cfg: &AugmentConfig,
    rng: &mut R,
    probe: &mut P,
) -> RgbImage {
    let mut img = image.clone();
    for jitter in jitter_draws(cfg, rng) {
        match jitter {
            Jitter::Brightness(f) => apply_table(&mut img, |v| v * f),
            Jitter::Contrast(f) => {
                let mean = mean_gray(&img).round();
                apply_table(&mut img, |v| v * f + mean * (1.0 - f));
            }
            Jitter::Saturation(f) => in_lanes(&mut img, |[r, g, b]| {
                let gray = gray([*r, *g, *b]);
                for v in [r, g, b] {
                    *v = *v * f + gray * (1.0 - f);
                }
            }),
            Jitter::Hue(shift) => in_lanes(&mut img, |rgb| hue_shift(rgb, shift)),
        }
    }
    probe.mark("colour jitter");
    if chance(rng, cfg.grayscale_p) {
        for p in pixels(&mut img) {
            *p = [to_u8(gray(p.map(f32::from))); 3];
        }
    }
    probe.mark("grayscale");
    if chance(rng, cfg.blur_p) {
        let sigma = uniform(rng, cfg.blur_sigma);
        img = blur(&img, sigma);
    }
    probe.mark("blur");
    img
}

/// Gaussian blur of standard deviation `sigma` px (0 means 0.8, as `image::imageops::blur`),
/// over the kernel the `image` crate picks for that σ (odd, at least 3 taps,
/// `2·((σ - 0.8) / 0.3 + 1) + 1`), edges clamped, f32 weights.
fn blur(img: &RgbImage, sigma: f32) -> RgbImage {
    let sigma = if sigma > 0.0 { sigma } else { 0.8 };
    let taps = ((((sigma - 0.8) / 0.3) + 1.0) * 2.0 + 1.0).max(3.0) as u32;
    let taps = taps | 1;
    let (w, h) = img.dimensions();
    let mut out = vec![0u8; img.as_raw().len()];
    let src = BlurImage::borrow(img.as_raw(), w, h, FastBlurChannels::Channels3);
    let mut dst = BlurImageMut::borrow(&mut out, w, h, FastBlurChannels::Channels3);
    let blurred = libblur::gaussian_blur(
        &src,
        &mut dst,
        GaussianBlurParams::new(taps, f64::from(sigma)),
        EdgeMode2D::new(EdgeMode::Clamp),
        ThreadingPolicy::Single,
        ConvolutionMode::Exact,
    );
    match blurred {
        Ok(()) => RgbImage::from_raw(w, h, out).expect("same size as the input"),
        // What libblur declines (say, a kernel wider than a tiny crop), the `image` crate does.
        Err(_) => image::imageops::blur(img, sigma),
    }
}

fn pixels(img: &mut RgbImage) -> &mut [[u8; 3]] {
    let raw: &mut [u8] = img;
    raw.as_chunks_mut::<3>().0
}

/// Pixels per block of [`in_lanes`].
const LANES: usize = 16;

/// Runs `f` on blocks of [`LANES`] pixels split into planar R, G and B floats (0..=255), so
/// that its arithmetic compiles to SIMD, and writes the results back rounded and clamped.
fn in_lanes(img: &mut RgbImage, f: impl Fn([&mut f32; 3])) {
    for block in pixels(img).chunks_mut(LANES) {
        let mut planes = [[0f32; LANES]; 3];
        for (i, p) in block.iter().enumerate() {
            for c in 0..3 {
                planes[c][i] = f32::from(p[c]);
            }
        }
        let [r, g, b] = &mut planes;
        for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
            f([r, g, b]);
        }
        for (i, p) in block.iter_mut().enumerate() {
            for c in 0..3 {
                p[c] = to_u8(planes[c][i]);
            }
        }
    }
}

/// Rounds to the nearest byte, halves up, clamping to 0..=255 (`as` saturates).
#[inline(always)]
fn to_u8(v: f32) -> u8 {
    (v + 0.5) as u8
}

#[inline(always)]
fn gray(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Mean luma over the image, from exact per-channel sums.
fn mean_gray(img: &RgbImage) -> f32 {
    let mut sums = [0u64; 3];
    for p in img.as_raw().as_chunks::<3>().0 {
        for c in 0..3 {
            sums[c] += u64::from(p[c]);
        }
    }
    let n = (img.width() as u64 * img.height() as u64).max(1) as f64;
    ((0.299 * sums[0] as f64 + 0.587 * sums[1] as f64 + 0.114 * sums[2] as f64) / n) as f32
}

/// Maps every byte through `f`, rounded and clamped, via a 256-entry table.
fn apply_table(img: &mut RgbImage, f: impl Fn(f32) -> f32) {
    let table: [u8; 256] = std::array::from_fn(|v| to_u8(f(v as f32)));
    let raw: &mut [u8] = img;
    for v in raw {
        *v = table[usize::from(*v)];
    }
}

/// `x.floor()` for |x| < 2³¹ without a library call.
#[inline(always)]
fn floor(x: f32) -> f32 {
    let t = x as i32 as f32;
    if t > x { t - 1.0 } else { t }
}

/// Rotates the hue of one pixel (channels on 0..=255) by `shift` turns: torchvision
/// `adjust_hue`'s HSV round trip, written without branches (HSV → RGB as
/// `v - c·clamp(min(k, 4 - k), 0, 1)` with `k = (n + h) mod 6` for n = 5, 3, 1), so blocks of
/// pixels vectorise. Gray pixels (no chroma) are unchanged.
#[inline(always)]
fn hue_shift([r, g, b]: [&mut f32; 3], shift: f32) {
    let max = r.max(*g).max(*b);
    let min = r.min(*g).min(*b);
    let chroma = max - min;
    let inv = if chroma > 0.0 { 1.0 / chroma } else { 0.0 };
    let from_r = (*g - *b) * inv;
    let from_r = if from_r < 0.0 { from_r + 6.0 } else { from_r };
    let from_g = (*b - *r) * inv + 2.0;
    let from_b = (*r - *g) * inv + 4.0;
    let sextant = if max == *r {
        from_r
    } else if max == *g {
        from_g
    } else {
        from_b
    };
    let turned = sextant + shift * 6.0;
    let h = turned - 6.0 * floor(turned * (1.0 / 6.0));
    for (v, n) in [(r, 5.0), (g, 3.0), (b, 1.0)] {
        let k = n + h;
        let k = if k >= 6.0 { k - 6.0 } else { k };
        *v = max - chroma * k.min(4.0 - k).clamp(0.0, 1.0);
    }
}
