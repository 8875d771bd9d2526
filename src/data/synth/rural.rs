//! Rural scenes (LoveDA-like): field patchworks, forest, lakes and rivers, roads, small
//! buildings, barren land, no-data borders.

use image::{GrayImage, RgbImage};
use rand::Rng;

use super::canvas::{Canvas, jitter};
use super::*;

/// A rural scene (LoveDA-like, coarser resolution): fields, forest, a lake or river, a road,
/// small buildings, barren land, and sometimes a no-data border.
pub(super) fn rural_scene<R: Rng>(w: u32, h: u32, rng: &mut R) -> (RgbImage, GrayImage) {
    let mut c = Canvas::new(w, h, R_BACKGROUND, rng);
    let (wf, hf) = (w as f32, h as f32);
    c.rect(
        (0.0, 0.0, wf, hf),
        jitter(rng, [150.0, 140.0, 105.0], 0.1),
        (30.0, 0.2),
        Some(R_BACKGROUND),
    );
    // Fields: a patchwork of striped rectangles.
    let crops = [
        [120.0, 150.0, 60.0],
        [190.0, 170.0, 90.0],
        [90.0, 130.0, 50.0],
        [160.0, 120.0, 80.0],
    ];
    let cell = rng.random_range(40.0..80.0);
    let mut y = rng.random_range(-cell..0.0);
    while y < hf {
        let mut x = rng.random_range(-cell..0.0);
        while x < wf {
            if rng.random_bool(0.55) {
                let colour = {
                    let pick = crops[rng.random_range(0..crops.len())];
                    jitter(rng, pick, 0.1)
                };
                let (fw, fh) = (
                    cell * rng.random_range(0.7..1.0),
                    cell * rng.random_range(0.7..1.0),
                );
                c.rect(
                    (x, y, x + fw, y + fh),
                    colour,
                    (3.0, 0.12),
                    Some(R_AGRICULTURE),
                );
            }
            x += cell;
        }
        y += cell;
    }
    // Forest.
    for _ in 0..rng.random_range(1..4) {
        let (x, y) = (rng.random_range(0.0..wf), rng.random_range(0.0..hf));
        c.blob(
            (x, y),
            rng.random_range(20.0..50.0),
            0.35,
            jitter(rng, [35.0, 70.0, 35.0], 0.15),
            (3.0, 0.4),
            Some(R_FOREST),
        );
    }
    // Barren land.
    for _ in 0..rng.random_range(0..3) {
        let (x, y) = (rng.random_range(0.0..wf), rng.random_range(0.0..hf));
        c.blob(
            (x, y),
            rng.random_range(10.0..30.0),
            0.4,
            jitter(rng, [200.0, 185.0, 160.0], 0.08),
            (10.0, 0.15),
            Some(R_BARREN),
        );
    }
    // Water: a lake or a river.
    let water = jitter(rng, [40.0, 70.0, 100.0], 0.15);
    if rng.random_bool(0.5) {
        let (x, y) = (rng.random_range(0.0..wf), rng.random_range(0.0..hf));
        c.blob(
            (x, y),
            rng.random_range(15.0..40.0),
            0.3,
            water,
            (20.0, 0.08),
            Some(R_WATER),
        );
    } else {
        let a = (rng.random_range(0.0..wf), 0.0);
        let b = (rng.random_range(0.0..wf), hf);
        c.band(
            a,
            b,
            rng.random_range(8.0..20.0),
            water,
            (20.0, 0.08),
            Some(R_WATER),
        );
    }
    // A road, and a hamlet of small buildings near it.
    let a = (0.0, rng.random_range(0.0..hf));
    let b = (wf, rng.random_range(0.0..hf));
    c.band(
        a,
        b,
        rng.random_range(4.0..7.0),
        jitter(rng, [175.0, 170.0, 160.0], 0.08),
        (10.0, 0.05),
        Some(R_ROAD),
    );
    for _ in 0..rng.random_range(2..10) {
        let t = rng.random_range(0.0..1.0);
        let (x, y) = (
            a.0 + t * (b.0 - a.0) + rng.random_range(-25.0..25.0),
            a.1 + t * (b.1 - a.1) + rng.random_range(-25.0..25.0),
        );
        let (bw, bh) = (rng.random_range(6.0..14.0), rng.random_range(6.0..14.0));
        if c.label_at(x, y) == Some(R_ROAD) {
            continue;
        }
        c.shade(x + 2.0, y + 2.0, x + bw + 2.0, y + bh + 2.0, 0.6);
        c.rect(
            (x, y, x + bw, y + bh),
            jitter(rng, [185.0, 90.0, 70.0], 0.2),
            (4.0, 0.1),
            Some(R_BUILDING),
        );
    }
    // No-data border (LoveDA raw 0), black in the image.
    if rng.random_bool(0.25) {
        let edge = rng.random_range(10.0..40.0);
        c.rect(
            (wf - edge, 0.0, wf, hf),
            [0.0; 3],
            (1.0, 0.0),
            Some(R_NODATA),
        );
    }
    c.finish(5.0, rng)
}
