//! `s5 bench data`: how many images per second the augmentations produce on this CPU.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::augment::{AugmentConfig, CutMixBox, normalize, strong, weak};
use super::loader::item_rng;
use super::synth::urban_tile;

/// One measured pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct DataTiming {
    pub pipeline: &'static str,
    pub crop_px: u32,
    pub images: usize,
    pub threads: usize,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// Times weak, and weak + strong + CutMix box + normalisation, over `images` crops of
/// `crop_px` from a synthetic scene twice the crop's side, on all rayon threads and on one.
pub fn augment_throughput(crop_px: u32, images: usize) -> Vec<DataTiming> {
    let (scene, labels) = urban_tile(crop_px * 2, crop_px * 2, 7);
    let cfg = AugmentConfig {
        crop_px,
        ..AugmentConfig::default()
    };
    let weak_only = |i: usize| {
        let mut rng = item_rng(1, i as u64);
        weak(&scene, Some(&labels), &cfg, &mut rng).image.len()
    };
    let full = |i: usize| {
        let mut rng = item_rng(1, i as u64);
        let view = weak(&scene, Some(&labels), &cfg, &mut rng);
        let s = strong(&view.image, &cfg, &mut rng);
        let b = CutMixBox::sample(crop_px, &cfg, &mut rng);
        normalize(&s).len() + normalize(&view.image).len() + usize::from(b.is_some())
    };
    let mut out = Vec::new();
    let pipelines: [(&'static str, &(dyn Fn(usize) -> usize + Sync)); 2] = [
        ("weak", &weak_only),
        ("weak + strong + cutmix + normalise", &full),
    ];
    for (name, f) in pipelines {
        for parallel in [true, false] {
            let n = if parallel {
                images
            } else {
                images.div_ceil(4).max(1)
            };
            let start = Instant::now();
            let total: usize = if parallel {
                (0..n).into_par_iter().map(f).sum()
            } else {
                (0..n).map(f).sum()
            };
            std::hint::black_box(total);
            let seconds = start.elapsed().as_secs_f64();
            out.push(DataTiming {
                pipeline: name,
                crop_px,
                images: n,
                threads: if parallel {
                    rayon::current_num_threads()
                } else {
                    1
                },
                seconds,
                images_per_s: n as f64 / seconds,
            });
        }
    }
    out
}
