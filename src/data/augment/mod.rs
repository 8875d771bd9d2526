//! The S5 / FixMatch augmentations (paper §3, "Semi-Supervised Pre-Training", and the
//! authors' training code): the weak view (scale, pad, crop, flips,
//! optional rot90 and rotation), the strong view on top of it (colour jitter, grayscale,
//! blur), CutMix boxes mixing image, pseudo-label, confidence and validity with one box, and
//! ImageNet normalisation. All randomness comes from the caller's RNG, so a seed gives the
//! same bytes.
//!
//! The pipeline is written for speed (SIMD resampling from `fast_image_resize`, lookup tables
//! for the per-value colour operations, a fused normalisation); [`reference`] keeps the
//! straightforward version on the `image` crate that it is tested against. Both draw the same
//! random numbers in the same order, so a seed picks the same crop, flips, jitter and box in
//! both, and their pixels differ by rounding only. [`Stages`] times each stage
//! (`s5 bench data`).

mod cutmix;
mod draws;
mod normalize;
mod probe;
pub mod reference;
mod strong;
mod weak;

use image::GrayImage;
use image::RgbImage;
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use cutmix::CutMixBox;
pub use normalize::{IMAGENET_MEAN, IMAGENET_STD, normalize};
pub use probe::{Probe, Stages};
pub use strong::{strong, strong_probed};
pub use weak::{weak, weak_probed};

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
    /// Class per pixel, [`IGNORE`](crate::data::IGNORE) where unknown (unlabeled input) or padded.
    pub labels: GrayImage,
    /// 1 where the pixel comes from the input, 0 where it is padding.
    pub valid: GrayImage,
}

pub(crate) fn uniform<R: Rng>(rng: &mut R, (lo, hi): (f32, f32)) -> f32 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

pub(crate) fn chance<R: Rng>(rng: &mut R, p: f32) -> bool {
    p > 0.0 && rng.random::<f32>() < p
}
