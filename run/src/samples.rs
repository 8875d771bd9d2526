//! `samples/step-<n>/`: pictures a trainer leaves for the viewer, with an `index.ron` naming
//! them. A step's folder is built as `.step-<n>.tmp` and renamed when complete, so a reader
//! sees a whole folder or none; old steps are thinned so disk use stays bounded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::{GrayImage, ImageBuffer, Luma, RgbImage};
use serde::{Deserialize, Serialize};

use crate::card::DatasetCard;
use crate::error::{Result, RunError};
use crate::fsutil::{save_png_atomic, write_atomic};
use crate::layout::{RunDir, publish_folder, step_folders, step_tmp_name};

/// Step folders a run keeps unless its config says otherwise (older ones are thinned).
pub const DEFAULT_KEEP: usize = 24;

/// Declares a string-valued enum: serialised as its name (the same text in RON and JSON,
/// version 1 included), parsed back strictly.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(into = "&'static str", try_from = "String")]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl From<$name> for &'static str {
            fn from(value: $name) -> Self {
                value.as_str()
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(text: String) -> std::result::Result<Self, String> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| format!("unknown {} `{text}`", stringify!($name)))
            }
        }

        /// Ordered by name, so maps keyed by it list (and write) their keys alphabetically,
        /// as version 1 did.
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.as_str().cmp(other.as_str())
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        /// Compares with the name written in the file.
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// Where a sampled image comes from.
    #[derive(Default)]
    SampleKind {
        /// A validation image with its truth and the model's prediction.
        #[default]
        Val = "val",
        /// A FixMatch unlabeled crop with its views, pseudo-label and masks.
        Unlabeled = "unlabeled",
    }
}

named_enum! {
    /// What one picture of a sample shows.
    SampleRole {
        /// The validation image.
        Image = "image",
        /// Its ground truth (palette colours).
        Truth = "truth",
        /// The model's prediction (palette colours).
        Prediction = "prediction",
        /// The weak view of an unlabeled crop.
        Weak = "weak",
        /// The teacher's pseudo-label on the weak view (palette colours).
        PseudoLabel = "pseudo_label",
        /// The teacher's confidence: a 16-bit grey PNG of [`confidence_level`]s (format 1:
        /// 8-bit RGB, 0–255).
        Confidence = "confidence",
        /// The τ-mask: white where confidence ≥ τ on a valid pixel.
        Mask = "mask",
        /// Where the crop holds image (white) rather than padding (black).
        Valid = "valid",
        /// The cut-mixed strong view the student sees.
        Strong = "strong",
        /// The student's prediction on the strong view.
        Student = "student",
    }
}

/// One sampled image and its pictures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SampleEntry {
    /// Which image (file stem, or `<stem>@<x>,<y>` for a pool patch).
    pub image_id: String,
    pub dataset: String,
    pub kind: SampleKind,
    /// Role → file name in the step folder.
    pub files: BTreeMap<SampleRole, String>,
    /// Numbers about it (keys: [`crate::keys`], e.g. `mask_ratio`, `mean_entropy`).
    #[serde(default)]
    pub stats: BTreeMap<crate::keys::MetricKey, f64>,
}

/// `index.ron` of a step folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SampleIndex {
    pub step: u64,
    pub entries: Vec<SampleEntry>,
    /// The datasets of the entries: class names and palette, for legends and per-class
    /// toggles (empty in runs written before format 2 added it).
    #[serde(default)]
    pub datasets: Vec<DatasetCard>,
}

/// Levels of a stored confidence (16-bit).
const LEVELS: f32 = 65_535.0;

/// The lowest stored level that passes threshold `tau`.
pub fn tau_level(tau: f32) -> u16 {
    (tau.clamp(0.0, 1.0) * LEVELS).ceil() as u16
}

/// The 16-bit level a confidence in `[0, 1]` is stored as, for a run whose threshold is
/// `tau`: the nearest level, kept on the same side of [`tau_level`] as the confidence is of
/// τ, so that [`passes`] at that τ gives the trainer's mask exactly (at any other τ, to
/// within 1/65 535).
pub fn confidence_level(confidence: f32, tau: f32) -> u16 {
    let level = (confidence.clamp(0.0, 1.0) * LEVELS).round() as u16;
    let t = tau_level(tau);
    if confidence >= tau {
        level.max(t)
    } else {
        level.min(t.saturating_sub(1))
    }
}

/// Whether a stored confidence level passes threshold `tau`.
pub fn passes(level: u16, tau: f32) -> bool {
    level >= tau_level(tau)
}

/// A stored level as a confidence.
pub fn level_confidence(level: u16) -> f32 {
    f32::from(level) / LEVELS
}

/// One picture of a sample entry.
#[derive(Debug, Clone, Copy)]
pub enum Picture<'a> {
    Rgb(&'a RgbImage),
    Gray(&'a GrayImage),
    Gray16(&'a ImageBuffer<Luma<u16>, Vec<u16>>),
}

impl<'a> From<&'a RgbImage> for Picture<'a> {
    fn from(image: &'a RgbImage) -> Self {
        Self::Rgb(image)
    }
}

impl SampleIndex {
    pub fn load(step_dir: &Path) -> Result<Self> {
        let path = step_dir.join("index.ron");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| RunError::reading(&path, e, "sample index"))?;
        ron::from_str(&text).map_err(|e| RunError::Format {
            path,
            what: "sample index",
            reason: e.to_string(),
        })
    }
}

/// Builds one step's folder.
pub struct SampleWriter {
    run: RunDir,
    tmp: PathBuf,
    index: SampleIndex,
    /// Step folders kept (older ones thinned).
    keep: usize,
}

impl SampleWriter {
    pub fn new(run: &RunDir, step: u64) -> Self {
        Self {
            run: run.clone(),
            tmp: run.samples().join(step_tmp_name(step)),
            index: SampleIndex {
                step,
                ..SampleIndex::default()
            },
            keep: DEFAULT_KEEP,
        }
    }

    /// Keeps at most `keep` step folders (≥ 2).
    pub fn keep(mut self, keep: usize) -> Self {
        self.keep = keep.max(2);
        self
    }

    /// Names the datasets of the entries (class names, palette).
    pub fn datasets(mut self, datasets: Vec<DatasetCard>) -> Self {
        self.index.datasets = datasets;
        self
    }

    /// Adds an entry whose pictures are `(role, image)`; files are named
    /// `<entry number>-<role>.png`.
    pub fn add(
        &mut self,
        mut entry: SampleEntry,
        pictures: &[(SampleRole, Picture)],
    ) -> Result<()> {
        let n = self.index.entries.len();
        for (role, picture) in pictures {
            let name = format!("{n:03}-{role}.png");
            let path = self.tmp.join(&name);
            match picture {
                Picture::Rgb(image) => save_png_atomic(&path, *image)?,
                Picture::Gray(image) => save_png_atomic(&path, *image)?,
                Picture::Gray16(image) => save_png_atomic(&path, *image)?,
            }
            entry.files.insert(*role, name);
        }
        self.index.entries.push(entry);
        Ok(())
    }

    /// Publishes the folder (if anything was added) and thins old ones.
    pub fn finish(self) -> Result<()> {
        if self.index.entries.is_empty() {
            return Ok(());
        }
        let text = ron::ser::to_string_pretty(&self.index, ron::ser::PrettyConfig::default())
            .expect("a sample index serialises");
        write_atomic(&self.tmp.join("index.ron"), text.as_bytes())?;
        publish_folder(&self.tmp, &self.run.sample_step(self.index.step))?;
        thin(&self.run, self.keep)
    }
}

/// Steps that have a complete sample folder, ascending.
pub fn sample_steps(run: &RunDir) -> Result<Vec<u64>> {
    step_folders(&run.samples())
}

/// Keeps at most `keep` step folders: the first and the newest half stay; every second one
/// in between goes, repeatedly, so history gets coarser instead of disappearing.
pub fn thin(run: &RunDir, keep: usize) -> Result<()> {
    let mut steps = sample_steps(run)?;
    while steps.len() > keep.max(2) {
        let recent = keep / 2;
        let older_end = steps.len() - recent;
        let doomed: Vec<u64> = steps[1..older_end].iter().copied().step_by(2).collect();
        if doomed.is_empty() {
            break;
        }
        for step in &doomed {
            // Renamed out of the readers' sight first (they list only `step-<n>`), so no
            // reader ever finds a step folder half deleted.
            let dir = run.sample_step(*step);
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            let gone = dir.with_file_name(format!(".{}.removing", name.unwrap_or_default()));
            std::fs::rename(&dir, &gone).map_err(RunError::io(&dir))?;
            std::fs::remove_dir_all(&gone).map_err(RunError::io(&gone))?;
        }
        steps.retain(|s| !doomed.contains(s));
    }
    Ok(())
}
