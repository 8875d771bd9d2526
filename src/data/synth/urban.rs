//! Urban scenes (Potsdam-like): grass, a road grid, buildings with shadows, trees, cars on
//! the roads, clutter.

use image::{GrayImage, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::canvas::{Canvas, jitter};
use super::*;

/// An urban scene (Potsdam-like): grass, a road grid, buildings with shadows, trees, cars
/// on the roads, clutter.
pub(super) fn urban_scene<R: Rng>(w: u32, h: u32, rng: &mut R) -> (RgbImage, GrayImage) {
    let (rgb, mut labels) = urban_scene_with_roofs(w, h, rng);
    for l in labels.iter_mut() {
        if *l == TILED_ROOF {
            *l = BUILDING;
        }
    }
    (rgb, labels)
}

/// [`urban_scene`] with the buildings of tiled (terracotta or brown) roofs labeled
/// [`TILED_ROOF`] rather than [`BUILDING`]: the same draws, so the same image.
pub(super) fn urban_scene_with_roofs<R: Rng>(w: u32, h: u32, rng: &mut R) -> (RgbImage, GrayImage) {
    let mut c = Canvas::new(w, h, LOW_VEG, rng);
    let (wf, hf) = (w as f32, h as f32);
    let grass = jitter(rng, [96.0, 128.0, 70.0], 0.12);
    c.rect((0.0, 0.0, wf, hf), grass, (40.0, 0.25), Some(LOW_VEG));
    // Paved yards.
    for _ in 0..rng.random_range(0..3) {
        let (x, y) = (rng.random_range(0.0..wf), rng.random_range(0.0..hf));
        let (rw, rh) = (rng.random_range(20.0..70.0), rng.random_range(20.0..70.0));
        c.rect(
            (x, y, x + rw, y + rh),
            jitter(rng, [150.0, 148.0, 140.0], 0.1),
            (12.0, 0.1),
            Some(IMPERVIOUS),
        );
    }
    // Roads: a grid of one or two streets each way.
    let asphalt = jitter(rng, [105.0, 105.0, 108.0], 0.12);
    let mut roads = Vec::new();
    for vertical in [false, true] {
        for _ in 0..rng.random_range(1..=2) {
            let at = rng.random_range(0.15..0.85) * if vertical { wf } else { hf };
            let width = rng.random_range(16.0..28.0);
            roads.push((vertical, at, width));
            if vertical {
                c.rect(
                    (at - width / 2.0, 0.0, at + width / 2.0, hf),
                    asphalt,
                    (25.0, 0.08),
                    Some(IMPERVIOUS),
                );
            } else {
                c.rect(
                    (0.0, at - width / 2.0, wf, at + width / 2.0),
                    asphalt,
                    (25.0, 0.08),
                    Some(IMPERVIOUS),
                );
            }
        }
    }
    // Buildings, away from roads, each with a shadow to the south-east.
    let roofs = [
        [170.0, 80.0, 60.0],
        [120.0, 120.0, 125.0],
        [200.0, 195.0, 185.0],
        [70.0, 70.0, 80.0],
        [150.0, 110.0, 80.0],
    ];
    for _ in 0..rng.random_range(10..24) {
        let (bw, bh) = (rng.random_range(24.0..70.0), rng.random_range(24.0..70.0));
        let (x, y) = (
            rng.random_range(-10.0..wf - 10.0),
            rng.random_range(-10.0..hf - 10.0),
        );
        let clear = (0..8).all(|i| {
            let (px, py) = (x + bw * (i % 3) as f32 / 2.0, y + bh * (i / 3) as f32 / 2.0);
            c.label_at(px, py)
                .is_none_or(|l| l != IMPERVIOUS && l != BUILDING && l != TILED_ROOF)
        });
        if !clear {
            continue;
        }
        let s = rng.random_range(5.0..10.0);
        c.shade(x + s, y + s, x + bw + s, y + bh + s, 0.55);
        let kind = rng.random_range(0..roofs.len());
        let roof = jitter(rng, roofs[kind], 0.1);
        // Terracotta and brown roofs are tiles; the others flat.
        let label = if kind == 0 || kind == 4 {
            TILED_ROOF
        } else {
            BUILDING
        };
        c.rect((x, y, x + bw, y + bh), roof, (8.0, 0.12), Some(label));
        // A ridge line for pitched roofs.
        if rng.random_bool(0.5) {
            c.rect(
                (x, y + bh / 2.0 - 1.0, x + bw, y + bh / 2.0 + 1.0),
                roof.map(|v| v * 0.75),
                (8.0, 0.05),
                None,
            );
        }
    }
    // Trees: clusters of crowns with a shadow.
    for _ in 0..rng.random_range(2..6) {
        let (cx, cy) = (rng.random_range(0.0..wf), rng.random_range(0.0..hf));
        for _ in 0..rng.random_range(1..6) {
            let (x, y) = (
                cx + rng.random_range(-25.0..25.0),
                cy + rng.random_range(-25.0..25.0),
            );
            if matches!(c.label_at(x, y), Some(BUILDING | TILED_ROOF)) {
                continue;
            }
            let r = rng.random_range(6.0..14.0);
            c.shade(x - r + 4.0, y - r + 4.0, x + r + 4.0, y + r + 4.0, 0.7);
            c.blob(
                (x, y),
                r,
                0.25,
                jitter(rng, [45.0, 85.0, 40.0], 0.15),
                (5.0, 0.35),
                Some(TREE),
            );
        }
    }
    // Cars along the roads.
    let cars = [
        [200.0, 30.0, 30.0],
        [230.0, 230.0, 230.0],
        [20.0, 20.0, 25.0],
        [40.0, 60.0, 160.0],
        [160.0, 160.0, 165.0],
    ];
    for &(vertical, at, width) in &roads {
        for _ in 0..rng.random_range(0..5) {
            let along = rng.random_range(0.0..if vertical { hf } else { wf });
            let lane = at + rng.random_range(-width / 4.0..width / 4.0);
            let colour = {
                let pick = cars[rng.random_range(0..cars.len())];
                jitter(rng, pick, 0.08)
            };
            let (cw, cl) = (7.0, 15.0);
            let (x0, y0, x1, y1) = if vertical {
                (lane - cw / 2.0, along, lane + cw / 2.0, along + cl)
            } else {
                (along, lane - cw / 2.0, along + cl, lane + cw / 2.0)
            };
            c.rect((x0, y0, x1, y1), colour, (4.0, 0.05), Some(CAR));
        }
    }
    // Clutter: bare soil, containers, rubble.
    for _ in 0..rng.random_range(0..4) {
        let (x, y) = (rng.random_range(0.0..wf), rng.random_range(0.0..hf));
        if c.label_at(x, y) == Some(LOW_VEG) {
            c.blob(
                (x, y),
                rng.random_range(4.0..12.0),
                0.4,
                jitter(rng, [140.0, 105.0, 75.0], 0.15),
                (4.0, 0.3),
                Some(CLUTTER),
            );
        }
    }
    c.finish(6.0, rng)
}

/// One urban scene (image, labels) of the given size, for benchmarks and tests.
pub fn urban_tile(width_px: u32, height_px: u32, seed: u64) -> (RgbImage, GrayImage) {
    urban_scene(width_px, height_px, &mut ChaCha8Rng::seed_from_u64(seed))
}
