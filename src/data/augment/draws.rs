//! The random draws of the weak view's crop and the strong view's colour jitter, shared by the
//! fast pipeline and its reference, so that a seed picks the same window and the same jitter
//! in both.

use rand::Rng;

use super::{AugmentConfig, chance, uniform};

/// Where a weak view's crop falls: the part of the `crop_px` square covered by the scaled
/// image (`covered`, from the top-left corner; the rest is padding) and the source pixels
/// under it (`source`: x, y, width, height), `None` when nothing is covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CropWindow {
    pub covered: [u32; 2],
    pub source: Option<[u32; 4]>,
}

/// Draws the scale (long side × U(scale_range)) and the crop's corner in the scaled, padded
/// frame of a `width × height` image. Only the source region under the crop is ever
/// resampled, so a view costs the crop's pixels whatever the scale.
pub(crate) fn crop_window<R: Rng>(
    width: u32,
    height: u32,
    cfg: &AugmentConfig,
    rng: &mut R,
) -> CropWindow {
    let (w, h) = (width, height);
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
    let source = (cw > 0 && ch > 0 && w > 0 && h > 0).then(|| {
        let to_src = |v: u32, len: u32| ((v as f32 / scale).round() as u32).min(len);
        let (x0, y0) = (to_src(x, w), to_src(y, h));
        let (x1, y1) = (
            to_src(x + cw, w).max(x0 + 1).min(w),
            to_src(y + ch, h).max(y0 + 1).min(h),
        );
        let (x0, y0) = (x0.min(x1 - 1), y0.min(y1 - 1));
        [x0, y0, x1 - x0, y1 - y0]
    });
    CropWindow {
        covered: [cw, ch],
        source,
    }
}

/// One colour adjustment with its drawn strength (torchvision `ColorJitter` semantics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Jitter {
    Brightness(f32),
    Contrast(f32),
    Saturation(f32),
    /// Hue rotation in turns.
    Hue(f32),
}

/// With probability `jitter_p`, the four adjustments in random order, each with its factor
/// (those with strength 0 left out); else none.
pub(crate) fn jitter_draws<R: Rng>(cfg: &AugmentConfig, rng: &mut R) -> Vec<Jitter> {
    if !chance(rng, cfg.jitter_p) {
        return Vec::new();
    }
    let mut order = [0usize, 1, 2, 3];
    for i in (1..4).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let factor =
        |strength: f32, rng: &mut R| uniform(rng, (1.0 - strength, 1.0 + strength)).max(0.0);
    order
        .into_iter()
        .filter_map(|op| match op {
            0 if cfg.brightness > 0.0 => Some(Jitter::Brightness(factor(cfg.brightness, rng))),
            1 if cfg.contrast > 0.0 => Some(Jitter::Contrast(factor(cfg.contrast, rng))),
            2 if cfg.saturation > 0.0 => Some(Jitter::Saturation(factor(cfg.saturation, rng))),
            3 if cfg.hue > 0.0 => Some(Jitter::Hue(uniform(rng, (-cfg.hue, cfg.hue)))),
            _ => None,
        })
        .collect()
}
