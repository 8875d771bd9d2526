//! The fast augmentation pipeline against its plain reference (`s5::data::augment::reference`):
//! same random draws, so the same crop, flips, jitter and blur; pixels differ by rounding only.

use image::{GrayImage, RgbImage};
use s5::data::augment::{AugmentConfig, normalize, reference, strong, weak};
use s5::data::loader::item_rng;

/// Largest and mean absolute difference of two equally sized byte buffers.
fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    (max, sum as f64 / a.len().max(1) as f64)
}

fn scenes() -> Vec<(RgbImage, GrayImage)> {
    // Odd sizes, smaller and larger than the crop, landscape and portrait.
    [(97, 61), (61, 130), (200, 201), (64, 64)]
        .into_iter()
        .enumerate()
        .map(|(i, (w, h))| s5::data::synth::urban_tile(w, h, 11 + i as u64))
        .collect()
}

/// The crop's part covered by the image (validity 1) without its outer `band` pixels: where
/// both resamplers see the same neighbourhood. (At the edge of the resampled region the
/// reference clamps to its cut-out while `fast_image_resize` reads the real neighbours.)
fn interior(valid: &GrayImage, band: u32) -> Vec<(u32, u32)> {
    let (w, h) = valid.dimensions();
    let inside = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && x < i64::from(w)
            && y < i64::from(h)
            && valid[(x as u32, y as u32)][0] == 1
    };
    let b = i64::from(band);
    valid
        .enumerate_pixels()
        .filter(|(x, y, _)| {
            let (x, y) = (i64::from(*x), i64::from(*y));
            inside(x - b, y - b)
                && inside(x + b, y + b)
                && inside(x - b, y + b)
                && inside(x + b, y - b)
        })
        .map(|(x, y, _)| (x, y))
        .collect()
}

#[test]
fn the_weak_view_matches_its_reference_up_to_rounding() {
    let configs = [
        AugmentConfig {
            crop_px: 64,
            ..AugmentConfig::default()
        },
        AugmentConfig {
            crop_px: 48,
            rot90_p: 1.0,
            ..AugmentConfig::default()
        },
        AugmentConfig {
            crop_px: 48,
            rotate_p: 1.0,
            ..AugmentConfig::default()
        },
    ];
    for (c, cfg) in configs.iter().enumerate() {
        let (mut worst, mut mean_sum, mut label_agree, mut n) = (0u8, 0.0, 0.0, 0);
        for (image, labels) in scenes() {
            for seed in 0..12 {
                let fast = weak(&image, Some(&labels), cfg, &mut item_rng(seed, 1));
                let slow = reference::weak(&image, Some(&labels), cfg, &mut item_rng(seed, 1));
                assert_eq!(
                    fast.valid, slow.valid,
                    "config {c} seed {seed}: the same window"
                );
                for (x, y) in interior(&fast.valid, 2) {
                    let (a, b) = (fast.image[(x, y)], slow.image[(x, y)]);
                    worst = worst.max(
                        a.0.iter()
                            .zip(b.0)
                            .map(|(p, q)| p.abs_diff(q))
                            .max()
                            .unwrap(),
                    );
                }
                let (_, mean) = diff(&fast.image, &slow.image);
                mean_sum += mean;
                let same = fast
                    .labels
                    .iter()
                    .zip(slow.labels.iter())
                    .filter(|(a, b)| a == b);
                label_agree += same.count() as f64 / fast.labels.len() as f64;
                n += 1;
                // Unlabeled input: every label IGNORE.
                let fast = weak(&image, None, cfg, &mut item_rng(seed, 1));
                assert!(fast.labels.iter().all(|&l| l == s5::data::IGNORE));
            }
        }
        let (mean, agree) = (mean_sum / f64::from(n), label_agree / f64::from(n));
        eprintln!(
            "weak config {c}: interior max |Δ| {worst}, mean |Δ| {mean:.4}, label agreement {agree:.5}"
        );
        assert!(
            worst <= 1,
            "config {c}: inside the image, only rounding may differ: {worst}"
        );
        assert!(
            mean < 0.5,
            "config {c}: mean |Δ| {mean} over the whole crop"
        );
        assert!(
            agree >= 0.995,
            "config {c}: labels agree on {agree} of the pixels"
        );
    }
}

#[test]
fn the_strong_view_matches_its_reference_up_to_rounding() {
    let (scene, _) = s5::data::synth::urban_tile(77, 59, 3);
    let noise = RgbImage::from_fn(61, 67, |x, y| {
        image::Rgb([
            (x * 37 + y * 11) as u8,
            (x * x + 3 * y) as u8,
            (x ^ y) as u8 * 3,
        ])
    });
    let (mut worst, mut mean_sum, mut n) = (0u8, 0.0, 0);
    for image in [&scene, &noise] {
        for (jitter_p, grayscale_p, blur_p) in [
            (1.0, 0.0, 0.0),
            (1.0, 0.0, 1.0),
            (1.0, 1.0, 0.0),
            (0.0, 0.0, 1.0),
        ] {
            let cfg = AugmentConfig {
                jitter_p,
                grayscale_p,
                blur_p,
                ..AugmentConfig::default()
            };
            for seed in 0..16 {
                let fast = strong(image, &cfg, &mut item_rng(seed, 2));
                let slow = reference::strong(image, &cfg, &mut item_rng(seed, 2));
                let (max, mean) = diff(&fast, &slow);
                worst = worst.max(max);
                mean_sum += mean;
                n += 1;
            }
        }
    }
    // A blur wider than a tiny image (what libblur declines) still blurs like the reference.
    let tiny = RgbImage::from_fn(7, 5, |x, y| {
        image::Rgb([(x * 40) as u8, (y * 50) as u8, 90])
    });
    let wide = AugmentConfig {
        jitter_p: 0.0,
        blur_p: 1.0,
        blur_sigma: (6.0, 9.0),
        ..AugmentConfig::default()
    };
    for seed in 0..4 {
        let fast = strong(&tiny, &wide, &mut item_rng(seed, 3));
        let slow = reference::strong(&tiny, &wide, &mut item_rng(seed, 3));
        let (max, mean) = diff(&fast, &slow);
        worst = worst.max(max);
        mean_sum += mean;
        n += 1;
    }
    let mean = mean_sum / f64::from(n);
    eprintln!("strong: max |Δ| {worst}, mean |Δ| {mean:.4}");
    assert!(worst <= 1, "only rounding may differ: {worst}");
    assert!(mean < 0.1, "mean |Δ| {mean}");
}

#[test]
fn normalisation_equals_the_formula_bit_for_bit() {
    let (image, _) = s5::data::synth::urban_tile(33, 17, 5);
    let fast = normalize(&image);
    let slow = reference::normalize(&image);
    assert_eq!(fast.len(), 3 * 33 * 17);
    assert!(
        fast.iter()
            .zip(&slow)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}
