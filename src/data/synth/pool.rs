//! Pool images: in-domain urban scenes and the out-of-distribution kinds that curation must
//! reject (cloud, haze, open sea, sensor noise, the other domain).

use image::{GrayImage, RgbImage};
use rand::Rng;

use super::canvas::{Canvas, fractal, hash, jitter};
use super::rural::rural_scene;
use super::urban::urban_scene;
use super::*;

/// One pool image of the given kind, with the urban labels of its scene (meaningful only
/// for in-domain images).
pub(super) fn pool_scene<R: Rng>(
    kind: PoolKind,
    w: u32,
    h: u32,
    rng: &mut R,
) -> (RgbImage, GrayImage) {
    match kind {
        PoolKind::InDomain => urban_scene(w, h, rng),
        PoolKind::OtherDomain => rural_scene(w, h, rng),
        PoolKind::Cloud | PoolKind::Haze => {
            let (mut rgb, labels) = urban_scene(w, h, rng);
            let seed: u32 = rng.random();
            let (scale, cover) = (rng.random_range(40.0..90.0), rng.random_range(0.6..0.95));
            for (x, y, p) in rgb.enumerate_pixels_mut() {
                let a = if kind == PoolKind::Cloud {
                    let n = fractal(x as f32 / scale, y as f32 / scale, seed);
                    ((n - (1.0 - cover)) * 4.0).clamp(0.0, 1.0)
                } else {
                    cover
                };
                let veil = if kind == PoolKind::Cloud {
                    [245.0, 245.0, 250.0]
                } else {
                    [205.0, 205.0, 215.0]
                };
                for ch in 0..3 {
                    p[ch] = (f32::from(p[ch]) * (1.0 - a) + veil[ch] * a).round() as u8;
                }
            }
            (rgb, labels)
        }
        PoolKind::Sea => {
            let mut c = Canvas::new(w, h, IMPERVIOUS, rng);
            c.rect(
                (0.0, 0.0, w as f32, h as f32),
                jitter(rng, [25.0, 60.0, 95.0], 0.15),
                (60.0, 0.12),
                None,
            );
            c.finish(4.0, rng)
        }
        PoolKind::SensorNoise => {
            let mut c = Canvas::new(w, h, IMPERVIOUS, rng);
            let base = rng.random_range(60.0..160.0);
            c.rect((0.0, 0.0, w as f32, h as f32), [base; 3], (1.0, 0.0), None);
            // Striping of a failing detector line.
            for y in 0..h {
                if hash(0, y as i32, c.seed) < 0.3 {
                    c.shade(0.0, y as f32, w as f32, y as f32 + 1.0, 1.6);
                }
            }
            c.finish(60.0, rng)
        }
    }
}
