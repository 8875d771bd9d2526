//! `s5 bench data`: how many images per second the augmentations produce on this CPU, where
//! the time goes stage by stage, and the same pipeline against its plain reference (and,
//! given its script, the authors' PIL recipe) in one run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::{GrayImage, RgbImage};
use rand::Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::augment::{
    AugmentConfig, CutMixBox, Probe, Stages, normalize, reference, strong_probed, weak, weak_probed,
};
use super::loader::item_rng;
use crate::error::{Error, Result};

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

/// Time per sample of one stage of the full pipeline, on one thread.
#[derive(Debug, Clone, Serialize)]
pub struct StageTiming {
    pub stage: &'static str,
    pub ms_per_image: f64,
    /// Share of the pipeline's time.
    pub share: f64,
}

/// The authors' recipe in PIL (`assets/peers/augment_pil.py` or another script printing
/// `<number> images/s`), run once in the middle of the single-thread measurements.
#[derive(Debug, Clone, Serialize)]
pub struct PeerTiming {
    pub script: String,
    pub images_per_s: f64,
    /// s5's full pipeline on one thread ÷ the peer's rate.
    pub s5_ratio: f64,
}

/// Everything `s5 bench data` measures.
#[derive(Debug, Clone, Serialize)]
pub struct DataBench {
    /// Side of the square source image (noise, like the peer script's).
    pub source_px: u32,
    pub rows: Vec<DataTiming>,
    pub stages: Vec<StageTiming>,
    /// Full pipeline on one thread: s5 ÷ the reference implementation.
    pub reference_ratio: f64,
    pub peer: Option<PeerTiming>,
}

/// The peer of `s5 bench data --peer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// The authors' recipe in PIL + numpy as s5 ships it ([`BUNDLED_PEER`]).
    Bundled,
    /// A Python script of one's own that prints `<number> images/s`.
    Script(PathBuf),
}

/// `assets/peers/augment_pil.py`, in the binary so that an installed `s5` has it too.
pub const BUNDLED_PEER: &str = include_str!("../../assets/peers/augment_pil.py");

/// [`augment_throughput`] with `peer` run between the single-thread rounds; the bundled one
/// runs from a temporary copy and is named as s5 ships it.
pub fn augment_against(
    crop_px: u32,
    source_px: u32,
    images: usize,
    peer: Option<&Peer>,
) -> Result<DataBench> {
    let script = match peer {
        None => return augment_throughput(crop_px, source_px, images, None),
        Some(Peer::Script(path)) => {
            return augment_throughput(crop_px, source_px, images, Some(path));
        }
        Some(Peer::Bundled) => {
            let io = |source| Error::Io {
                path: std::env::temp_dir(),
                source,
            };
            let file = tempfile::Builder::new()
                .prefix("s5-augment-peer-")
                .suffix(".py")
                .tempfile()
                .map_err(io)?;
            std::fs::write(file.path(), BUNDLED_PEER).map_err(io)?;
            file
        }
    };
    let mut bench = augment_throughput(crop_px, source_px, images, Some(script.path()))?;
    if let Some(peer) = &mut bench.peer {
        peer.script = "assets/peers/augment_pil.py, bundled".into();
    }
    Ok(bench)
}

const FULL: &str = "weak + strong + cutmix + normalise";
const REFERENCE: &str = "reference (image crate), same pipeline";

/// A source like the peer script's: uniform noise and labels 0..6.
fn noise_source(side_px: u32) -> (RgbImage, GrayImage) {
    let mut rng = item_rng(0, 0);
    let image = RgbImage::from_fn(side_px, side_px, |_, _| image::Rgb(rng.random()));
    let labels = GrayImage::from_fn(side_px, side_px, |_, _| {
        image::Luma([rng.random_range(0..6)])
    });
    (image, labels)
}

/// One sample of the full pipeline (weak view, strong view, CutMix box, both views
/// normalised), reporting its stages to `probe`.
fn full_sample<P: Probe>(
    scene: &(RgbImage, GrayImage),
    cfg: &AugmentConfig,
    i: usize,
    probe: &mut P,
) -> usize {
    let mut rng = item_rng(1, i as u64);
    let view = weak_probed(&scene.0, Some(&scene.1), cfg, &mut rng, probe);
    let s = strong_probed(&view.image, cfg, &mut rng, probe);
    let b = CutMixBox::sample(cfg.crop_px, cfg, &mut rng);
    probe.mark("cutmix box");
    let n = normalize(&s).len() + normalize(&view.image).len();
    probe.mark("normalise (both views)");
    n + usize::from(b.is_some()) + view.labels.len()
}

fn reference_sample(scene: &(RgbImage, GrayImage), cfg: &AugmentConfig, i: usize) -> usize {
    let mut rng = item_rng(1, i as u64);
    let view = reference::weak(&scene.0, Some(&scene.1), cfg, &mut rng);
    let s = reference::strong(&view.image, cfg, &mut rng);
    let b = CutMixBox::sample(cfg.crop_px, cfg, &mut rng);
    reference::normalize(&s).len()
        + reference::normalize(&view.image).len()
        + usize::from(b.is_some())
        + view.labels.len()
}

/// Runs `python3 script` and reads the `<number> images/s` it prints.
fn run_peer(script: &Path) -> Result<f64> {
    let out = std::process::Command::new("python3")
        .arg(script)
        .output()
        .map_err(|e| {
            Error::Execution(format!(
                "running `python3 {}`: {e} (install Python 3)",
                script.display()
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(Error::Execution(format!(
            "`python3 {}` failed: {} (the PIL peer needs numpy and pillow: `pip install numpy \
             pillow`)",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    text.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1].starts_with("images/s"))
        .and_then(|w| w[0].parse::<f64>().ok())
        .ok_or_else(|| {
            Error::Execution(format!(
                "`python3 {}` printed no `<number> images/s`: {text}",
                script.display()
            ))
        })
}

/// Times the weak view and the full pipeline on all rayon threads and on one, the full
/// pipeline's stages, and its reference implementation, over `images` crops of `crop_px` from
/// a noise source of `source_px`. The single-thread runs of s5 and the reference alternate in
/// two rounds, with the `peer` script (if any) run between them, so all three see the same
/// machine.
pub fn augment_throughput(
    crop_px: u32,
    source_px: u32,
    images: usize,
    peer: Option<&Path>,
) -> Result<DataBench> {
    let scene = noise_source(source_px);
    let cfg = AugmentConfig {
        crop_px,
        ..AugmentConfig::default()
    };
    let images = images.max(2);
    let mut rows = Vec::new();
    let timed = |n: usize, f: &(dyn Fn(usize) -> usize + Sync), parallel: bool| {
        let start = Instant::now();
        let total: usize = if parallel {
            (0..n).into_par_iter().map(f).sum()
        } else {
            (0..n).map(f).sum()
        };
        std::hint::black_box(total);
        start.elapsed().as_secs_f64()
    };
    let row = |pipeline, n: usize, threads, seconds: f64| DataTiming {
        pipeline,
        crop_px,
        images: n,
        threads,
        seconds,
        images_per_s: n as f64 / seconds,
    };
    let weak_only = |i: usize| {
        let mut rng = item_rng(1, i as u64);
        weak(&scene.0, Some(&scene.1), &cfg, &mut rng).image.len()
    };
    let full = |i: usize| full_sample(&scene, &cfg, i, &mut ());
    let threads = rayon::current_num_threads();
    rows.push(row(
        "weak",
        images,
        threads,
        timed(images, &weak_only, true),
    ));
    rows.push(row("weak", images, 1, timed(images, &weak_only, false)));
    rows.push(row(FULL, images, threads, timed(images, &full, true)));

    // One thread: s5 (with its stage clock) and the reference alternate; the peer in between.
    let half = images / 2;
    let mut stages = Stages::default();
    let (mut s5_s, mut reference_s, mut peer_rate) = (0.0, 0.0, None);
    for round in 0..2 {
        let range = round * half..(round + 1) * half;
        let start = Instant::now();
        for i in range.clone() {
            stages.start();
            std::hint::black_box(full_sample(&scene, &cfg, i, &mut stages));
        }
        s5_s += start.elapsed().as_secs_f64();
        let start = Instant::now();
        for i in range {
            std::hint::black_box(reference_sample(&scene, &cfg, i));
        }
        reference_s += start.elapsed().as_secs_f64();
        if round == 0
            && let Some(script) = peer
        {
            peer_rate = Some(run_peer(script)?);
        }
    }
    let n = 2 * half;
    rows.push(row(FULL, n, 1, s5_s));
    rows.push(row(REFERENCE, n, 1, reference_s));
    let staged: f64 = stages.seconds.iter().map(|(_, s)| s).sum();
    let stages = stages
        .seconds
        .iter()
        .map(|&(stage, s)| StageTiming {
            stage,
            ms_per_image: s * 1e3 / n as f64,
            share: s / staged.max(f64::MIN_POSITIVE),
        })
        .collect();
    let s5_rate = n as f64 / s5_s;
    Ok(DataBench {
        source_px,
        rows,
        stages,
        reference_ratio: reference_s / s5_s,
        peer: peer.zip(peer_rate).map(|(script, rate)| PeerTiming {
            script: script.display().to_string(),
            images_per_s: rate,
            s5_ratio: s5_rate / rate,
        }),
    })
}

/// The tables of `s5 bench data`.
impl fmt::Display for DataBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<40} {:>8} {:>7} {:>8} {:>10}",
            "pipeline", "crop px", "images", "threads", "images/s"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<40} {:>8} {:>7} {:>8} {:>10.1}",
                r.pipeline, r.crop_px, r.images, r.threads, r.images_per_s
            )?;
        }
        writeln!(
            f,
            "\n{:<40} {:>12} {:>7}",
            "stage (one thread)", "ms/image", "share"
        )?;
        for s in &self.stages {
            writeln!(
                f,
                "{:<40} {:>12.2} {:>6.1}%",
                s.stage,
                s.ms_per_image,
                s.share * 100.0
            )?;
        }
        writeln!(
            f,
            "\none thread: s5 is {:.2}x the reference implementation",
            self.reference_ratio
        )?;
        if let Some(peer) = &self.peer {
            writeln!(
                f,
                "one thread: s5 is {:.2}x the peer ({}: {:.1} images/s, one process)",
                peer.s5_ratio, peer.script, peer.images_per_s
            )?;
        }
        Ok(())
    }
}
