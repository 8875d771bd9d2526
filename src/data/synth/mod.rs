//! `s5 synth`: procedural aerial scenes with pixel labels, standing in for the benchmarks that
//! cannot be shipped. Three domains with different styles, ground sampling distances, palettes
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
//! - `suburb/`: Vaihingen-like, the urban scenes' kind under a warmer, drier light, whose
//!   label space conflicts with urban's: buildings split by roof (flat, tiled), low
//!   vegetation and trees merged; impervious surfaces, flat roof, tiled roof, vegetation,
//!   car, clutter. Urban's layout.
//! - `pool/`: `images/*.png` (larger than a patch, to be tiled), `masks/*.png` for the urban
//!   ones, `unlabeled.txt` (the split), `truth.ron` (what each image really is), `pool.ron`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::palette::colorize;
use super::spec::{DatasetSpec, LabelEncoding, MaskRule, SplitSource};
use crate::check::{Checked, at_least_one, ensure, within};
use crate::error::Result;
use crate::fsutil::{save_png_atomic, write_atomic};

mod canvas;
mod pool;
mod rural;
mod urban;

use pool::pool_scene;
use rural::rural_scene;
use urban::{urban_scene, urban_scene_with_roofs};

pub use urban::urban_tile;

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
    /// A pool of exactly this many images instead, its kinds in the proportion of
    /// `pool_in_domain` to `pool_ood_per_kind` of each out-of-distribution kind (rounded by
    /// largest remainder), for measuring curation at scale.
    pub pool_images: Option<usize>,
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
            pool_images: None,
        }
    }
}

impl SynthConfig {
    /// The pool images' width for tiles of `tile_px`: one and a half tiles, at least 384 px
    /// (the width at the default 256-px tiles).
    pub fn pool_width_for(tile_px: u32) -> u32 {
        (tile_px.saturating_mul(3) / 2).max(384)
    }

    /// How many pool images of each kind: in-domain first, then [`PoolKind::OOD`] in order.
    pub fn pool_counts(&self) -> Vec<(PoolKind, usize)> {
        let kinds = std::iter::once(PoolKind::InDomain).chain(PoolKind::OOD);
        let per_kind = std::iter::once(self.pool_in_domain).chain(std::iter::repeat_n(
            self.pool_ood_per_kind,
            PoolKind::OOD.len(),
        ));
        let counts: Vec<usize> = match self.pool_images {
            None => per_kind.collect(),
            Some(total) => {
                let weights: Vec<u64> = per_kind.map(|n| n as u64).collect();
                crate::apportion::apportion(total as u64, &weights)
                    .into_iter()
                    .map(|n| n as usize)
                    .collect()
            }
        };
        kinds.zip(counts).collect()
    }

    /// Images in the pool.
    pub fn pool_total(&self) -> usize {
        self.pool_counts().iter().map(|(_, n)| n).sum()
    }

    /// Checks every field before anything is written: tiles of 32 to 4096 px (the scenes'
    /// smallest objects need 32), pool images at least a tile wide, at least one training
    /// and one validation image per domain, and a pool share to split `pool_images` by.
    pub fn validate(&self) -> Checked {
        within("tile_px", self.tile_px.into(), 32.0, 4096.0)?;
        ensure(
            self.pool_width_px >= self.tile_px && self.pool_width_px <= 4 * 4096,
            "pool_width_px",
            || {
                format!(
                    "must be at least tile_px {} and at most 16384 (got {})",
                    self.tile_px, self.pool_width_px
                )
            },
        )?;
        at_least_one("train_per_domain", self.train_per_domain as u64)?;
        at_least_one("val_per_domain", self.val_per_domain as u64)?;
        if self.pool_images.is_some() {
            ensure(
                self.pool_in_domain + self.pool_ood_per_kind > 0,
                "pool_in_domain",
                || {
                    "and pool_ood_per_kind are both 0: pool_images is shared in their \
                     proportion, so give one of them a share"
                        .into()
                },
            )?;
        }
        Ok(())
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
    pub suburb_spec: PathBuf,
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
/// A building with a tiled roof, inside the generator (urban writes it as [`BUILDING`]).
const TILED_ROOF: u8 = 6;
// Suburb class indices.
const S_IMPERVIOUS: u8 = 0;
const S_FLAT_ROOF: u8 = 1;
const S_TILED_ROOF: u8 = 2;
const S_VEGETATION: u8 = 3;
const S_CAR: u8 = 4;
const S_CLUTTER: u8 = 5;
const SUBURB_CLASSES: [&str; 6] = [
    "impervious_surface",
    "flat_roof",
    "tiled_roof",
    "vegetation",
    "car",
    "clutter",
];
const SUBURB_PALETTE: [[u8; 3]; 6] = [
    [255, 255, 255],
    [0, 0, 255],
    [200, 90, 40],
    [0, 200, 0],
    [255, 255, 0],
    [255, 0, 0],
];
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
        imaging: Default::default(),
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
        imaging: Default::default(),
    }
}

/// The suburb domain's spec: urban's layout, its own (conflicting) label space.
pub fn suburb_spec() -> DatasetSpec {
    let mut spec = urban_spec();
    spec.name = "synth-suburb".into();
    spec.classes = SUBURB_CLASSES.map(String::from).to_vec();
    spec.palette = SUBURB_PALETTE.to_vec();
    spec.background = Some(S_CLUTTER);
    spec.splits
        .retain(|name, _| name == "train" || name == "val");
    spec
}

/// A suburb scene: an urban scene under a warmer, drier light, labeled in the suburb space.
fn suburb_scene<R: Rng>(w: u32, h: u32, rng: &mut R) -> (RgbImage, GrayImage) {
    let (mut rgb, mut labels) = urban_scene_with_roofs(w, h, rng);
    for p in rgb.pixels_mut() {
        let [r, g, b] = p.0.map(f32::from);
        *p = Rgb([
            (r * 1.08 + 6.0).min(255.0) as u8,
            (g * 0.97 + 4.0).min(255.0) as u8,
            (b * 0.82).min(255.0) as u8,
        ]);
    }
    for l in labels.iter_mut() {
        *l = match *l {
            IMPERVIOUS => S_IMPERVIOUS,
            BUILDING => S_FLAT_ROOF,
            TILED_ROOF => S_TILED_ROOF,
            LOW_VEG | TREE => S_VEGETATION,
            CAR => S_CAR,
            CLUTTER => S_CLUTTER,
            other => other,
        };
    }
    (rgb, labels)
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
    cfg.validate()?;
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
        Suburb {
            img: PathBuf,
            mask: PathBuf,
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
    let mut pool_kinds: Vec<PoolKind> = Vec::new();
    for (kind, n) in cfg.pool_counts() {
        pool_kinds.extend(std::iter::repeat_n(kind, n));
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
    // The suburb tiles come last, so every earlier job keeps its random stream (and bytes).
    for (split, n) in [("train", cfg.train_per_domain), ("val", cfg.val_per_domain)] {
        for i in 0..n {
            let name = format!("{split}_{i:04}.png");
            jobs.push(Job::Suburb {
                img: out.join(format!("suburb/img_dir/{split}/{name}")),
                mask: out.join(format!("suburb/ann_dir/{split}/{name}")),
            });
        }
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
                Job::Suburb { img, mask } => {
                    let (rgb, labels) = suburb_scene(t, t, &mut rng);
                    save_png_atomic(img, &rgb)?;
                    save_png_atomic(mask, &labels)?;
                    2
                }
            };
            progress();
            Ok(n)
        })
        .collect::<Result<_>>()?;

    let urban_spec_path = out.join("urban/urban.ron");
    let rural_spec_path = out.join("rural/rural.ron");
    let pool_spec_path = out.join("pool/pool.ron");
    let suburb_spec_path = out.join("suburb/suburb.ron");
    suburb_spec().save(&suburb_spec_path)?;
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
        suburb_spec: suburb_spec_path,
        pool_spec: pool_spec_path,
        files: written.iter().sum::<usize>() + 8,
    })
}

/// A picture of generated data: rows of (image, coloured labels) pairs for the first
/// `per_domain` validation tiles of each domain, then pool images (out-of-distribution
/// ones included), each `thumb_px` high.
pub fn preview(out: &Path, per_domain: usize, thumb_px: u32) -> Result<RgbImage> {
    let urban = DatasetSpec::load(&out.join("urban/urban.ron"))?;
    let rural = DatasetSpec::load(&out.join("rural/rural.ron"))?;
    let suburb = DatasetSpec::load(&out.join("suburb/suburb.ron"))?;
    let mut rows: Vec<Vec<RgbImage>> = Vec::new();
    for spec in [&urban, &rural, &suburb] {
        let mut row = Vec::new();
        for sample in spec.samples("val")?.iter().take(per_domain) {
            let super::io::Sample { image, labels, .. } = super::io::read_sample(spec, sample)?;
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
