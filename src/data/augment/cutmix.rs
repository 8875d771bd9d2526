//! CutMix boxes (FixMatch with CutMix, as the authors' S4P code applies it).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{AugmentConfig, chance, uniform};

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
