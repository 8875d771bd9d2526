//! The painting primitives of the synthetic scenes: a float RGB canvas with a label per
//! pixel, and value noise.

use image::{GrayImage, Rgb, RgbImage};
use rand::Rng;

/// A float RGB canvas with a label per pixel.
pub(super) struct Canvas {
    w: u32,
    h: u32,
    rgb: Vec<[f32; 3]>,
    labels: Vec<u8>,
    pub(super) seed: u32,
}

impl Canvas {
    pub(super) fn new<R: Rng>(w: u32, h: u32, label: u8, rng: &mut R) -> Self {
        Self {
            w,
            h,
            rgb: vec![[0.0; 3]; (w * h) as usize],
            labels: vec![label; (w * h) as usize],
            seed: rng.random(),
        }
    }

    /// Paints every pixel where `inside(x, y)` with `colour` modulated by texture noise of
    /// the given scale (px) and strength, and labels it (unless `label` is `None`).
    pub(super) fn paint(
        &mut self,
        bounds: (i32, i32, i32, i32),
        inside: impl Fn(f32, f32) -> bool,
        colour: [f32; 3],
        texture: (f32, f32),
        label: Option<u8>,
    ) {
        let (x0, y0, x1, y1) = bounds;
        let seed = self
            .seed
            .wrapping_add((x0 as u32).wrapping_mul(7919) ^ (y0 as u32).wrapping_mul(104_729));
        for y in y0.max(0)..y1.min(self.h as i32) {
            for x in x0.max(0)..x1.min(self.w as i32) {
                let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                if !inside(fx, fy) {
                    continue;
                }
                let n = fractal(fx / texture.0, fy / texture.0, seed) * 2.0 - 1.0;
                let i = (y as u32 * self.w + x as u32) as usize;
                self.rgb[i] = colour.map(|c| c * (1.0 + texture.1 * n));
                if let Some(l) = label {
                    self.labels[i] = l;
                }
            }
        }
    }

    /// The rectangle `(x0, y0, x1, y1)` (px, x1 and y1 excluded).
    pub(super) fn rect(
        &mut self,
        (x0, y0, x1, y1): (f32, f32, f32, f32),
        colour: [f32; 3],
        texture: (f32, f32),
        label: Option<u8>,
    ) {
        self.paint(
            (
                x0.floor() as i32,
                y0.floor() as i32,
                x1.ceil() as i32,
                y1.ceil() as i32,
            ),
            |x, y| x >= x0 && x < x1 && y >= y0 && y < y1,
            colour,
            texture,
            label,
        );
    }

    /// A blob: a disc of radius `r` (px) around `(cx, cy)` whose edge wobbles with noise.
    pub(super) fn blob(
        &mut self,
        (cx, cy): (f32, f32),
        r: f32,
        wobble: f32,
        colour: [f32; 3],
        texture: (f32, f32),
        label: Option<u8>,
    ) {
        let seed = self.seed ^ (cx as u32).wrapping_mul(31) ^ (cy as u32).wrapping_mul(17);
        let reach = r * (1.0 + wobble);
        self.paint(
            (
                (cx - reach) as i32,
                (cy - reach) as i32,
                (cx + reach) as i32 + 1,
                (cy + reach) as i32 + 1,
            ),
            |x, y| {
                let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
                d < r * (1.0 + wobble * (fractal(x / (r * 0.6), y / (r * 0.6), seed) * 2.0 - 1.0))
            },
            colour,
            texture,
            label,
        );
    }

    /// A straight band of width `width` from (x0, y0) to (x1, y1).
    pub(super) fn band(
        &mut self,
        a: (f32, f32),
        b: (f32, f32),
        width: f32,
        colour: [f32; 3],
        texture: (f32, f32),
        label: Option<u8>,
    ) {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = (dx * dx + dy * dy).max(1e-6);
        let half = width / 2.0;
        self.paint(
            (
                (a.0.min(b.0) - half) as i32,
                (a.1.min(b.1) - half) as i32,
                (a.0.max(b.0) + half) as i32 + 1,
                (a.1.max(b.1) + half) as i32 + 1,
            ),
            |x, y| {
                let t = (((x - a.0) * dx + (y - a.1) * dy) / len2).clamp(0.0, 1.0);
                let (px, py) = (a.0 + t * dx, a.1 + t * dy);
                (x - px).powi(2) + (y - py).powi(2) <= half * half
            },
            colour,
            texture,
            label,
        );
    }

    /// Darkens pixels (a shadow) without touching labels.
    pub(super) fn shade(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, factor: f32) {
        for y in (y0.max(0.0) as u32)..(y1.min(self.h as f32).max(0.0) as u32) {
            for x in (x0.max(0.0) as u32)..(x1.min(self.w as f32).max(0.0) as u32) {
                let i = (y * self.w + x) as usize;
                self.rgb[i] = self.rgb[i].map(|c| c * factor);
            }
        }
    }

    pub(super) fn label_at(&self, x: f32, y: f32) -> Option<u8> {
        (x >= 0.0 && y >= 0.0 && x < self.w as f32 && y < self.h as f32)
            .then(|| self.labels[(y as u32 * self.w + x as u32) as usize])
    }

    /// Sensor noise, then 8-bit images.
    pub(super) fn finish<R: Rng>(self, noise: f32, rng: &mut R) -> (RgbImage, GrayImage) {
        let mut rgb = RgbImage::new(self.w, self.h);
        for (p, c) in rgb.pixels_mut().zip(&self.rgb) {
            let n: f32 = rng.random::<f32>() + rng.random::<f32>() - 1.0;
            *p = Rgb(c.map(|v| (v + noise * n).round().clamp(0.0, 255.0) as u8));
        }
        (
            rgb,
            GrayImage::from_raw(self.w, self.h, self.labels).expect("w*h labels"),
        )
    }
}

pub(super) fn hash(x: i32, y: i32, seed: u32) -> f32 {
    let mut h = (x as u32).wrapping_mul(0x27d4_eb2d)
        ^ (y as u32).wrapping_mul(0x1656_67b1)
        ^ seed.wrapping_mul(0x9e37_79b9);
    h ^= h >> 15;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h as f32 / u32::MAX as f32
}

/// Smooth value noise in [0, 1].
pub(super) fn value_noise(x: f32, y: f32, seed: u32) -> f32 {
    let (xi, yi) = (x.floor() as i32, y.floor() as i32);
    let (fx, fy) = (x - x.floor(), y - y.floor());
    let s = |t: f32| t * t * (3.0 - 2.0 * t);
    let (sx, sy) = (s(fx), s(fy));
    let top = hash(xi, yi, seed) * (1.0 - sx) + hash(xi + 1, yi, seed) * sx;
    let bottom = hash(xi, yi + 1, seed) * (1.0 - sx) + hash(xi + 1, yi + 1, seed) * sx;
    top * (1.0 - sy) + bottom * sy
}

/// Three octaves of value noise, in [0, 1].
pub(super) fn fractal(x: f32, y: f32, seed: u32) -> f32 {
    (value_noise(x, y, seed) * 0.57
        + value_noise(x * 2.0, y * 2.0, seed ^ 1) * 0.29
        + value_noise(x * 4.0, y * 4.0, seed ^ 2) * 0.14)
        .clamp(0.0, 1.0)
}

pub(super) fn jitter<R: Rng>(rng: &mut R, c: [f32; 3], amount: f32) -> [f32; 3] {
    let f = 1.0 + rng.random_range(-amount..amount);
    c.map(|v| v * f)
}
