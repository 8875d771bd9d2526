//! `samples/step-<n>/`: pictures a trainer leaves for the viewer, with an `index.ron` naming
//! them. A step's folder is built as `.step-<n>.tmp` and renamed when complete, so a reader
//! sees a whole folder or none; old steps are thinned so disk use stays bounded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::layout::RunDir;
use crate::error::{Error, Result};
use crate::fsutil::{save_png_atomic, write_atomic};

/// One sampled image and its pictures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SampleEntry {
    /// Which image (file stem or pool id).
    pub image_id: String,
    pub dataset: String,
    /// `val` (a validation prediction) or `unlabeled` (a FixMatch sample).
    pub kind: String,
    /// Role (`image`, `truth`, `prediction`, `weak`, `pseudo_label`, `confidence`, `mask`,
    /// `strong`, `student`) → file name in the step folder.
    pub files: BTreeMap<String, String>,
    /// Numbers about it (`mask_ratio`, `mean_entropy`, ...).
    #[serde(default)]
    pub stats: BTreeMap<String, f64>,
}

/// `index.ron` of a step folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SampleIndex {
    pub step: u64,
    pub entries: Vec<SampleEntry>,
}

impl SampleIndex {
    pub fn load(step_dir: &Path) -> Result<Self> {
        let path = step_dir.join("index.ron");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::reading(&path, e, Some("sample index")))?;
        ron::from_str(&text).map_err(|e| Error::Spec {
            path,
            reason: format!("not a sample index: {e}"),
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
            tmp: run.samples().join(format!(".step-{step:08}.tmp")),
            index: SampleIndex {
                step,
                entries: Vec::new(),
            },
            keep: 24,
        }
    }

    /// Keeps at most `keep` step folders (≥ 2).
    pub fn keep(mut self, keep: usize) -> Self {
        self.keep = keep.max(2);
        self
    }

    /// Adds an entry whose pictures are `(role, image)`; files are named
    /// `<entry number>-<role>.png`.
    pub fn add(&mut self, mut entry: SampleEntry, pictures: &[(&str, &RgbImage)]) -> Result<()> {
        let n = self.index.entries.len();
        for (role, picture) in pictures {
            let name = format!("{n:03}-{role}.png");
            save_png_atomic(&self.tmp.join(&name), *picture)?;
            entry.files.insert((*role).to_string(), name);
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
            .expect("sample index serialises");
        write_atomic(&self.tmp.join("index.ron"), text.as_bytes())?;
        let dir = self.run.sample_step(self.index.step);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::rename(&self.tmp, &dir).map_err(io(&dir))?;
        thin(&self.run, self.keep)
    }
}

/// Steps that have a complete sample folder, ascending.
pub fn sample_steps(run: &RunDir) -> Result<Vec<u64>> {
    super::layout::step_folders(&run.samples())
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
            let dir = run.sample_step(*step);
            std::fs::remove_dir_all(&dir).map_err(|source| Error::Io { path: dir, source })?;
        }
        steps.retain(|s| !doomed.contains(s));
    }
    Ok(())
}
