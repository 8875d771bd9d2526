//! `s5 synth`: procedural aerial scenes with pixel labels, standing in for the benchmarks that
//! cannot be shipped. Two domains with different styles, ground sampling distances, palettes
//! and label spaces, plus an unlabeled pool mixing in-domain tiles with out-of-distribution
//! ones (cloud, haze, open sea, sensor noise, the other domain), the truth of each recorded
//! for evaluating curation. Everything is written in a real dataset layout with its RON spec,
//! and the same seed gives the same bytes.
//!
//! - `urban/`: Potsdam-like, 0.1 m-ish. `img_dir/{train,val}/*.png` and index masks in
//!   `ann_dir/`; impervious surfaces, building, low vegetation, tree, car, clutter. Splits
//!   `labeled-5pct` / `unlabeled-95pct` (`splits/*.txt`) divide the training tiles for
//!   semi-supervised runs.
//! - `rural/`: LoveDA-like, 0.3 m-ish. `{Train,Val}/Rural/{images_png,masks_png}/*.png`,
//!   masks in LoveDA's encoding (0 = no-data, class + 1); background, building, road,
//!   water, barren, forest, agriculture; some tiles have a no-data border.
//! - `pool/`: `images/*.png` (larger than a patch, to be tiled), `masks/*.png` for the urban
//!   ones, `unlabeled.txt` (the split), `truth.ron` (what each image really is), `pool.ron`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::spec::{DatasetSpec, LabelEncoding, MaskRule, SplitSource};
use crate::error::Result;
use crate::fsutil::{save_png_atomic, write_atomic};

/// How much to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SynthConfig {
    pub seed: u64,
    /// Side of the labeled tiles.
    pub tile_px: u32,
    pub train_per_domain: usize,
    pub val_per_domain: usize,
    /// Unlabeled pool: urban scenes, and out-of-distribution images of each kind.
    pub pool_in_domain: usize,
    pub pool_ood_per_kind: usize,
    /// Pool images are this wide (× `tile_px` high), so tiling has something to cut.
    pub pool_width_px: u32,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            tile_px: 256,
            train_per_domain: 24,
            val_per_domain: 8,
            pool_in_domain: 24,
            pool_ood_per_kind: 3,
            pool_width_px: 384,
        }
    }
}

/// What a pool image really is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolKind {
    InDomain,
    Cloud,
    Haze,
    Sea,
    SensorNoise,
    OtherDomain,
}

impl PoolKind {
    pub const OOD: [PoolKind; 5] = [
        Self::Cloud,
        Self::Haze,
        Self::Sea,
        Self::SensorNoise,
        Self::OtherDomain,
    ];
}

/// One line of `pool/truth.ron`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolTruth {
    pub image: String,
    pub kind: PoolKind,
}

/// Where `generate` put the specs.
#[derive(Debug, Clone)]
pub struct SynthOutput {
    pub urban_spec: PathBuf,
    pub rural_spec: PathBuf,
    pub pool_spec: PathBuf,
    pub files: usize,
}

const ISPRS_CLASSES: [&str; 6] = [
    "impervious_surface",
    "building",
    "low_vegetation",
    "tree",
    "car",
    "clutter",
];
const ISPRS_PALETTE: [[u8; 3]; 6] = [
    [255, 255, 255],
    [0, 0, 255],
    [0, 255, 255],
    [0, 255, 0],
    [255, 255, 0],
    [255, 0, 0],
];
const LOVEDA_CLASSES: [&str; 7] = [
    "background",
    "building",
    "road",
    "water",
    "barren",
    "forest",
    "agriculture",
];
const LOVEDA_PALETTE: [[u8; 3]; 7] = [
    [255, 255, 255],
    [255, 0, 0],
    [255, 255, 0],
    [0, 0, 255],
    [159, 129, 183],
    [0, 255, 0],
    [255, 195, 128],
];

// Urban class indices.
const IMPERVIOUS: u8 = 0;
const BUILDING: u8 = 1;
const LOW_VEG: u8 = 2;
const TREE: u8 = 3;
const CAR: u8 = 4;
const CLUTTER: u8 = 5;
// Rural class indices.
const R_BACKGROUND: u8 = 0;
const R_BUILDING: u8 = 1;
const R_ROAD: u8 = 2;
const R_WATER: u8 = 3;
const R_BARREN: u8 = 4;
const R_FOREST: u8 = 5;
const R_AGRICULTURE: u8 = 6;
/// Rural label of a no-data pixel (written as raw 0).
const R_NODATA: u8 = 255;

/// The urban split with 5 % of the training tiles (at least one), labeled.
pub const FEW_LABELED: &str = "labeled-5pct";
/// The other 95 % of the urban training tiles, for semi-supervised training.
pub const FEW_UNLABELED: &str = "unlabeled-95pct";

/// The urban domain's spec (as `s5 synth` writes it).
pub fn urban_spec() -> DatasetSpec {
    let mut splits = BTreeMap::new();
    for split in ["train", "val"] {
        splits.insert(
            split.to_string(),
            SplitSource::Glob {
                images: format!("img_dir/{split}/*.png"),
                masks: Some(MaskRule {
                    dir: ("img_dir".into(), "ann_dir".into()),
                    suffix: (".png".into(), ".png".into()),
                }),
            },
        );
    }
    // Few labels (S4P's setting): the first 5 % of the training tiles labeled, the rest
    // unlabeled (their masks listed only so pseudo-label accuracy can be measured).
    for (split, file) in [
        (FEW_LABELED, "splits/labeled-5pct.txt"),
        (FEW_UNLABELED, "splits/unlabeled-95pct.txt"),
    ] {
        splits.insert(
            split.to_string(),
            SplitSource::List {
                file: file.into(),
                masks: None,
            },
        );
    }
    DatasetSpec {
        name: "synth-urban".into(),
        root: None,
        classes: ISPRS_CLASSES.map(String::from).to_vec(),
        palette: ISPRS_PALETTE.to_vec(),
        encoding: LabelEncoding::Index { ignore: 255 },
        background: Some(CLUTTER),
        splits,
    }
}

/// The rural domain's spec.
pub fn rural_spec() -> DatasetSpec {
    let mut splits = BTreeMap::new();
    for (split, folder) in [("train", "Train"), ("val", "Val")] {
        splits.insert(
            split.to_string(),
            SplitSource::Glob {
                images: format!("{folder}/*/images_png/*.png"),
                masks: Some(MaskRule {
                    dir: ("images_png".into(), "masks_png".into()),
                    suffix: (".png".into(), ".png".into()),
                }),
            },
        );
    }
    DatasetSpec {
        name: "synth-rural".into(),
        root: None,
        classes: LOVEDA_CLASSES.map(String::from).to_vec(),
        palette: LOVEDA_PALETTE.to_vec(),
        encoding: LabelEncoding::MinusOne,
        background: Some(R_BACKGROUND),
        splits,
    }
}

/// The unlabeled pool's spec: urban classes, one `unlabeled` split from a list.
pub fn pool_spec() -> DatasetSpec {
    let mut spec = urban_spec();
    spec.name = "synth-pool".into();
    spec.splits = BTreeMap::from([(
        "unlabeled".to_string(),
        SplitSource::List {
            file: "unlabeled.txt".into(),
            masks: None,
        },
    )]);
    spec
}

/// Writes the whole synthetic set under `out`; `progress` is called once per image written.
pub fn generate(
    out: &Path,
    cfg: &SynthConfig,
    progress: &(dyn Fn() + Sync),
) -> Result<SynthOutput> {
    let t = cfg.tile_px;
    // (path of image, path of mask, what to render, seed)
    enum Job {
        Urban {
            img: PathBuf,
            mask: PathBuf,
        },
        Rural {
            img: PathBuf,
            mask: PathBuf,
        },
        Pool {
            img: PathBuf,
            mask: Option<PathBuf>,
            kind: PoolKind,
        },
    }
    let mut jobs = Vec::new();
    for (split, n) in [("train", cfg.train_per_domain), ("val", cfg.val_per_domain)] {
        for i in 0..n {
            let name = format!("{split}_{i:04}.png");
            jobs.push(Job::Urban {
                img: out.join(format!("urban/img_dir/{split}/{name}")),
                mask: out.join(format!("urban/ann_dir/{split}/{name}")),
            });
        }
    }
    for (folder, n) in [("Train", cfg.train_per_domain), ("Val", cfg.val_per_domain)] {
        for i in 0..n {
            let name = format!("{i}.png");
            jobs.push(Job::Rural {
                img: out.join(format!("rural/{folder}/Rural/images_png/{name}")),
                mask: out.join(format!("rural/{folder}/Rural/masks_png/{name}")),
            });
        }
    }
    let mut truth = Vec::new();
    let mut list = String::new();
    let mut pool_kinds: Vec<PoolKind> = vec![PoolKind::InDomain; cfg.pool_in_domain];
    for kind in PoolKind::OOD {
        pool_kinds.extend(std::iter::repeat_n(kind, cfg.pool_ood_per_kind));
    }
    // Shuffle the pool so its file order says nothing about the kinds.
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x9001);
    for i in (1..pool_kinds.len()).rev() {
        pool_kinds.swap(i, rng.random_range(0..=i));
    }
    for (i, kind) in pool_kinds.into_iter().enumerate() {
        let name = format!("scene_{i:05}.png");
        let mask = (kind == PoolKind::InDomain).then(|| format!("masks/{name}"));
        list.push_str(&format!("images/{name}"));
        if let Some(m) = &mask {
            list.push_str(&format!(" {m}"));
        }
        list.push('\n');
        truth.push(PoolTruth {
            image: format!("images/{name}"),
            kind,
        });
        jobs.push(Job::Pool {
            img: out.join(format!("pool/images/{name}")),
            mask: mask.map(|m| out.join("pool").join(m)),
            kind,
        });
    }

    let written: Vec<usize> = jobs
        .par_iter()
        .enumerate()
        .map(|(i, job)| -> Result<usize> {
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            rng.set_stream(i as u64 + 1);
            let n = match job {
                Job::Urban { img, mask } => {
                    let (rgb, labels) = urban_scene(t, t, &mut rng);
                    save_png_atomic(img, &rgb)?;
                    save_png_atomic(mask, &labels)?;
                    2
                }
                Job::Rural { img, mask } => {
                    let (rgb, labels) = rural_scene(t, t, &mut rng);
                    let raw = GrayImage::from_fn(t, t, |x, y| match labels.get_pixel(x, y)[0] {
                        R_NODATA => Luma([0]),
                        c => Luma([c + 1]),
                    });
                    save_png_atomic(img, &rgb)?;
                    save_png_atomic(mask, &raw)?;
                    2
                }
                Job::Pool { img, mask, kind } => {
                    let (w, h) = (cfg.pool_width_px, t);
                    let (rgb, labels) = pool_scene(*kind, w, h, &mut rng);
                    save_png_atomic(img, &rgb)?;
                    if let Some(mask) = mask {
                        save_png_atomic(mask, &labels)?;
                    }
                    1 + usize::from(mask.is_some())
                }
            };
            progress();
            Ok(n)
        })
        .collect::<Result<_>>()?;

    let urban_spec_path = out.join("urban/urban.ron");
    let rural_spec_path = out.join("rural/rural.ron");
    let pool_spec_path = out.join("pool/pool.ron");
    urban_spec().save(&urban_spec_path)?;
    rural_spec().save(&rural_spec_path)?;
    pool_spec().save(&pool_spec_path)?;
    write_atomic(&out.join("pool/unlabeled.txt"), list.as_bytes())?;
    let labeled = cfg.train_per_domain.div_ceil(20).min(cfg.train_per_domain);
    let (mut few, mut rest) = (String::new(), String::new());
    for i in 0..cfg.train_per_domain {
        let line = format!("img_dir/train/train_{i:04}.png ann_dir/train/train_{i:04}.png\n");
        if i < labeled {
            few.push_str(&line)
        } else {
            rest.push_str(&line)
        }
    }
    write_atomic(&out.join("urban/splits/labeled-5pct.txt"), few.as_bytes())?;
    write_atomic(
        &out.join("urban/splits/unlabeled-95pct.txt"),
        rest.as_bytes(),
    )?;
    let truth_text = ron::ser::to_string_pretty(&truth, ron::ser::PrettyConfig::default())
        .expect("truth serialises");
    write_atomic(&out.join("pool/truth.ron"), truth_text.as_bytes())?;
    Ok(SynthOutput {
        urban_spec: urban_spec_path,
        rural_spec: rural_spec_path,
        pool_spec: pool_spec_path,
        files: written.iter().sum::<usize>() + 7,
    })
}

// ---------------------------------------------------------------- rendering

/// A float RGB canvas with a label per pixel.
struct Canvas {
    w: u32,
    h: u32,
    rgb: Vec<[f32; 3]>,
    labels: Vec<u8>,
    seed: u32,
}

impl Canvas {
    fn new<R: Rng>(w: u32, h: u32, label: u8, rng: &mut R) -> Self {
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
    fn paint(
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

    fn rect(
        &mut self,
        x0: f32,
        y0: f32,
        x1: f32,
        y1: f32,
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

    /// A blob: a disc of radius `r` whose edge wobbles with noise.
    fn blob(
        &mut self,
        cx: f32,
        cy: f32,
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
    fn band(
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
    fn shade(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, factor: f32) {
        for y in (y0.max(0.0) as u32)..(y1.min(self.h as f32).max(0.0) as u32) {
            for x in (x0.max(0.0) as u32)..(x1.min(self.w as f32).max(0.0) as u32) {
                let i = (y * self.w + x) as usize;
                self.rgb[i] = self.rgb[i].map(|c| c * factor);
            }
        }
    }

    fn label_at(&self, x: f32, y: f32) -> Option<u8> {
        (x >= 0.0 && y >= 0.0 && x < self.w as f32 && y < self.h as f32)
            .then(|| self.labels[(y as u32 * self.w + x as u32) as usize])
    }

    /// Sensor noise, then 8-bit images.
    fn finish<R: Rng>(self, noise: f32, rng: &mut R) -> (RgbImage, GrayImage) {
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

fn hash(x: i32, y: i32, seed: u32) -> f32 {
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
fn value_noise(x: f32, y: f32, seed: u32) -> f32 {
    let (xi, yi) = (x.floor() as i32, y.floor() as i32);
    let (fx, fy) = (x - x.floor(), y - y.floor());
    let s = |t: f32| t * t * (3.0 - 2.0 * t);
    let (sx, sy) = (s(fx), s(fy));
    let top = hash(xi, yi, seed) * (1.0 - sx) + hash(xi + 1, yi, seed) * sx;
    let bottom = hash(xi, yi + 1, seed) * (1.0 - sx) + hash(xi + 1, yi + 1, seed) * sx;
    top * (1.0 - sy) + bottom * sy
}

/// Three octaves of value noise, in [0, 1].
fn fractal(x: f32, y: f32, seed: u32) -> f32 {
    (value_noise(x, y, seed) * 0.57
        + value_noise(x * 2.0, y * 2.0, seed ^ 1) * 0.29
        + value_noise(x * 4.0, y * 4.0, seed ^ 2) * 0.14)
        .clamp(0.0, 1.0)
}

fn jitter<R: Rng>(rng: &mut R, c: [f32; 3], amount: f32) -> [f32; 3] {
    let f = 1.0 + rng.random_range(-amount..amount);
    c.map(|v| v * f)
}

/// An urban scene (Potsdam-like): grass, a road grid, buildings with shadows, trees, cars
/// on the roads, clutter.
fn urban_scene<R: Rng>(w: u32, h: u32, rng: &mut R) -> (RgbImage, GrayImage) {
    let mut c = Canvas::new(w, h, LOW_VEG, rng);
    let (wf, hf) = (w as f32, h as f32);
    let grass = jitter(rng, [96.0, 128.0, 70.0], 0.12);
    c.rect(0.0, 0.0, wf, hf, grass, (40.0, 0.25), Some(LOW_VEG));
    // Paved yards.
    for _ in 0..rng.random_range(0..3) {
        let (x, y) = (rng.random_range(0.0..wf), rng.random_range(0.0..hf));
        let (rw, rh) = (rng.random_range(20.0..70.0), rng.random_range(20.0..70.0));
        c.rect(
            x,
            y,
            x + rw,
            y + rh,
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
                    at - width / 2.0,
                    0.0,
                    at + width / 2.0,
                    hf,
                    asphalt,
                    (25.0, 0.08),
                    Some(IMPERVIOUS),
                );
            } else {
                c.rect(
                    0.0,
                    at - width / 2.0,
                    wf,
                    at + width / 2.0,
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
                .is_none_or(|l| l != IMPERVIOUS && l != BUILDING)
        });
        if !clear {
            continue;
        }
        let s = rng.random_range(5.0..10.0);
        c.shade(x + s, y + s, x + bw + s, y + bh + s, 0.55);
        let roof = {
            let pick = roofs[rng.random_range(0..roofs.len())];
            jitter(rng, pick, 0.1)
        };
        c.rect(x, y, x + bw, y + bh, roof, (8.0, 0.12), Some(BUILDING));
        // A ridge line for pitched roofs.
        if rng.random_bool(0.5) {
            c.rect(
                x,
                y + bh / 2.0 - 1.0,
                x + bw,
                y + bh / 2.0 + 1.0,
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
            if c.label_at(x, y) == Some(BUILDING) {
                continue;
            }
            let r = rng.random_range(6.0..14.0);
            c.shade(x - r + 4.0, y - r + 4.0, x + r + 4.0, y + r + 4.0, 0.7);
            c.blob(
                x,
                y,
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
            c.rect(x0, y0, x1, y1, colour, (4.0, 0.05), Some(CAR));
        }
    }
    // Clutter: bare soil, containers, rubble.
    for _ in 0..rng.random_range(0..4) {
        let (x, y) = (rng.random_range(0.0..wf), rng.random_range(0.0..hf));
        if c.label_at(x, y) == Some(LOW_VEG) {
            c.blob(
                x,
                y,
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

/// A rural scene (LoveDA-like, coarser resolution): fields, forest, a lake or river, a road,
/// small buildings, barren land, and sometimes a no-data border.
fn rural_scene<R: Rng>(w: u32, h: u32, rng: &mut R) -> (RgbImage, GrayImage) {
    let mut c = Canvas::new(w, h, R_BACKGROUND, rng);
    let (wf, hf) = (w as f32, h as f32);
    c.rect(
        0.0,
        0.0,
        wf,
        hf,
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
                    x,
                    y,
                    x + fw,
                    y + fh,
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
            x,
            y,
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
            x,
            y,
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
            x,
            y,
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
            x,
            y,
            x + bw,
            y + bh,
            jitter(rng, [185.0, 90.0, 70.0], 0.2),
            (4.0, 0.1),
            Some(R_BUILDING),
        );
    }
    // No-data border (LoveDA raw 0), black in the image.
    if rng.random_bool(0.25) {
        let edge = rng.random_range(10.0..40.0);
        c.rect(wf - edge, 0.0, wf, hf, [0.0; 3], (1.0, 0.0), Some(R_NODATA));
    }
    c.finish(5.0, rng)
}

/// One pool image of the given kind, with the urban labels of its scene (meaningful only
/// for in-domain images).
fn pool_scene<R: Rng>(kind: PoolKind, w: u32, h: u32, rng: &mut R) -> (RgbImage, GrayImage) {
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
                0.0,
                0.0,
                w as f32,
                h as f32,
                jitter(rng, [25.0, 60.0, 95.0], 0.15),
                (60.0, 0.12),
                None,
            );
            c.finish(4.0, rng)
        }
        PoolKind::SensorNoise => {
            let mut c = Canvas::new(w, h, IMPERVIOUS, rng);
            let base = rng.random_range(60.0..160.0);
            c.rect(0.0, 0.0, w as f32, h as f32, [base; 3], (1.0, 0.0), None);
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

/// One urban scene (image, labels) of the given size, for benchmarks and tests.
pub fn urban_tile(width_px: u32, height_px: u32, seed: u64) -> (RgbImage, GrayImage) {
    urban_scene(width_px, height_px, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// Colours a label map with a palette; [`super::IGNORE`] is black.
pub fn colorize(labels: &GrayImage, palette: &[[u8; 3]]) -> RgbImage {
    RgbImage::from_fn(labels.width(), labels.height(), |x, y| {
        let l = usize::from(labels.get_pixel(x, y)[0]);
        Rgb(palette.get(l).copied().unwrap_or([0, 0, 0]))
    })
}

/// A picture of generated data: rows of (image, coloured labels) pairs for the first
/// `per_domain` validation tiles of each domain, then pool images (out-of-distribution
/// ones included), each `thumb_px` high.
pub fn preview(out: &Path, per_domain: usize, thumb_px: u32) -> Result<RgbImage> {
    let urban = DatasetSpec::load(&out.join("urban/urban.ron"))?;
    let rural = DatasetSpec::load(&out.join("rural/rural.ron"))?;
    let mut rows: Vec<Vec<RgbImage>> = Vec::new();
    for spec in [&urban, &rural] {
        let mut row = Vec::new();
        for sample in spec.samples("val")?.iter().take(per_domain) {
            let (image, labels) = super::io::read_sample(spec, sample)?;
            row.push(image);
            if let Some(l) = labels {
                row.push(colorize(&l, &spec.palette));
            }
        }
        rows.push(row);
    }
    let pool = DatasetSpec::load(&out.join("pool/pool.ron"))?;
    let mut row = Vec::new();
    for sample in pool.samples("unlabeled")?.iter().take(2 * per_domain) {
        row.push(super::io::read_rgb(&sample.image)?);
    }
    rows.push(row);
    let resize = |img: &RgbImage| {
        let w = (img.width() as f32 * thumb_px as f32 / img.height() as f32).round() as u32;
        image::imageops::resize(img, w, thumb_px, image::imageops::FilterType::Triangle)
    };
    let rows: Vec<Vec<RgbImage>> = rows
        .iter()
        .map(|r| r.iter().map(resize).collect())
        .collect();
    let gap = 4;
    let width = rows
        .iter()
        .map(|r| r.iter().map(|i| i.width() + gap).sum::<u32>())
        .max()
        .unwrap_or(0);
    let height = rows.len() as u32 * (thumb_px + gap);
    let mut canvas = RgbImage::from_pixel(width.max(1), height.max(1), Rgb([32, 32, 32]));
    for (r, row) in rows.iter().enumerate() {
        let mut x = 0;
        for img in row {
            image::imageops::replace(
                &mut canvas,
                img,
                i64::from(x),
                i64::from(r as u32 * (thumb_px + gap)),
            );
            x += img.width() + gap;
        }
    }
    Ok(canvas)
}
