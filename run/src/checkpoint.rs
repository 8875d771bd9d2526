//! Checkpoint folders: written whole, pointed to by `checkpoints/latest`, and verified by
//! the checksums they carry.
//!
//! ```text
//! checkpoints/step-<n>/model.bpk        parameters and BatchNorm statistics (burnpack; s5 writes it)
//! checkpoints/step-<n>/optimizer.bpk    AdamW moments and step counts (s5 writes it)
//! checkpoints/step-<n>/model.ron        the model card (crate::card::ModelCard)
//! checkpoints/step-<n>/state.ron        step and wall time (crate::card::TrainState)
//! checkpoints/step-<n>/checksums.json   size and SHA-256 of every other file (format 2)
//! checkpoints/latest                    the newest complete step, as text
//! ```
//! A folder is built as `.step-<n>.tmp` and renamed when complete, so a folder named
//! `step-<n>` is always whole; a file damaged afterwards (a truncated copy, a bad disk) is
//! caught by its checksum.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::card::{ModelCard, TrainState};
use crate::error::{Result, RunError};
use crate::fsutil::write_atomic;
use crate::layout::{RunDir, publish_folder, step_folders, step_tmp_name};

/// The model's parameters (burnpack).
pub const MODEL_FILE: &str = "model.bpk";
/// The optimizer's state (burnpack).
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// The model card.
pub const CARD_FILE: &str = "model.ron";
/// The training state.
pub const STATE_FILE: &str = "state.ron";
/// Sizes and hashes of the folder's other files.
pub const CHECKSUMS_FILE: &str = "checksums.json";

impl RunDir {
    /// Records `step` as the newest complete checkpoint (call after its folder is in place).
    pub fn mark_latest_checkpoint(&self, step: u64) -> Result<()> {
        write_atomic(&self.latest_pointer(), format!("{step}\n").as_bytes())
    }

    /// The newest complete checkpoint the pointer names, if any: its step and folder.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, PathBuf)>> {
        let path = self.latest_pointer();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(RunError::io(&path)(source)),
        };
        let step: u64 = text.trim().parse().map_err(|_| RunError::Format {
            path: path.clone(),
            what: "checkpoint pointer",
            reason: format!("expected a step number, found `{}`", text.trim()),
        })?;
        Ok(Some((step, self.checkpoint(step))))
    }
}

/// Steps of the complete checkpoint folders of a run, ascending.
pub fn checkpoint_steps(run: &RunDir) -> Result<Vec<u64>> {
    step_folders(&run.checkpoints())
}

/// One file's recorded size and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    pub bytes: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// `checksums.json`: every other file of a checkpoint folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    pub files: BTreeMap<String, FileSum>,
}

/// The size and SHA-256 of a file, read in 1 MiB blocks.
pub fn file_sum(path: &Path) -> Result<FileSum> {
    let mut file =
        std::fs::File::open(path).map_err(|e| RunError::reading(path, e, "checkpoint file"))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(RunError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(FileSum { bytes, sha256 })
}

/// Records the checksums of every file in `dir` (but the checksum file itself).
pub fn write_checksums(dir: &Path) -> Result<()> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(RunError::io(dir))? {
        let entry = entry.map_err(RunError::io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == CHECKSUMS_FILE || !entry.path().is_file() {
            continue;
        }
        files.insert(name, file_sum(&entry.path())?);
    }
    let text = serde_json::to_string_pretty(&Checksums { files }).expect("checksums serialise");
    write_atomic(&dir.join(CHECKSUMS_FILE), text.as_bytes())
}

/// How a checkpoint folder checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Every file has its recorded size and hash.
    Intact,
    /// A format-1 folder: no checksums were recorded, so nothing could be checked.
    Unchecked,
}

/// Checks every file of a checkpoint folder against `checksums.json`. A missing, truncated or
/// altered file is an error naming it. A folder without checksums (format 1) is `Unchecked`.
pub fn verify(dir: &Path) -> Result<Verified> {
    let path = dir.join(CHECKSUMS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !dir.join(CARD_FILE).is_file() {
                return Err(RunError::Missing {
                    path: dir.join(CARD_FILE),
                    context: "a checkpoint folder has a model card".into(),
                });
            }
            return Ok(Verified::Unchecked);
        }
        Err(source) => return Err(RunError::io(&path)(source)),
    };
    let sums: Checksums = serde_json::from_str(&text).map_err(|e| RunError::Format {
        path: path.clone(),
        what: "checksum list",
        reason: e.to_string(),
    })?;
    for (name, want) in &sums.files {
        let file = dir.join(name);
        let got = match std::fs::metadata(&file) {
            Ok(m) => m.len(),
            Err(e) => {
                return Err(RunError::Checksum {
                    path: file,
                    reason: format!("cannot be read ({e})"),
                });
            }
        };
        if got != want.bytes {
            return Err(RunError::Checksum {
                path: file,
                reason: format!("{got} bytes, but {} were written", want.bytes),
            });
        }
        if file_sum(&file)?.sha256 != want.sha256 {
            return Err(RunError::Checksum {
                path: file,
                reason: "its SHA-256 differs from the one recorded when it was written".into(),
            });
        }
    }
    Ok(Verified::Intact)
}

fn read_ron<T: for<'de> Deserialize<'de>>(path: &Path, what: &'static str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| RunError::reading(path, e, what))?;
    ron::from_str(&text).map_err(|e| RunError::Format {
        path: path.to_path_buf(),
        what,
        reason: e.to_string(),
    })
}

fn ron_text<T: Serialize>(value: &T) -> String {
    ron::ser::to_string_pretty(value, ron::ser::PrettyConfig::default()).expect("cards serialise")
}

/// A checkpoint folder's model card.
pub fn read_card(dir: &Path) -> Result<ModelCard> {
    read_ron(&dir.join(CARD_FILE), "model card")
}

/// A checkpoint folder's training state.
pub fn read_state(dir: &Path) -> Result<TrainState> {
    read_ron(&dir.join(STATE_FILE), "checkpoint state")
}

/// The checkpoint folder that `path` names: a checkpoint folder itself, or a run directory
/// (the checkpoint its `latest` pointer names).
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf> {
    if path.join(CARD_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    let run = RunDir::new(path);
    match run.latest_checkpoint()? {
        Some((_, dir)) if dir.join(CARD_FILE).is_file() => Ok(dir),
        Some((_, dir)) => Err(RunError::Missing {
            path: dir.join(CARD_FILE),
            context: "the run's newest checkpoint is incomplete".into(),
        }),
        None => Err(RunError::Missing {
            path: run.latest_pointer(),
            context: "expected a checkpoint folder (with model.ron) or a run directory with \
                      checkpoints"
                .into(),
        }),
    }
}

/// The checkpoint a run resumes from, and the newer ones passed over because they failed
/// verification (for the caller to warn about).
#[derive(Debug)]
pub struct ResumePoint {
    pub step: u64,
    pub dir: PathBuf,
    pub skipped: Vec<RunError>,
}

/// The newest checkpoint of `run` that verifies: the one `latest` names, else the newest
/// older folder that is intact. `None` when the run has no checkpoint at all; an error when
/// every checkpoint is damaged (naming the newest one's problem).
pub fn newest_intact(run: &RunDir) -> Result<Option<ResumePoint>> {
    let latest = run.latest_checkpoint()?.map(|(s, _)| s);
    let mut steps = checkpoint_steps(run)?;
    steps.retain(|&s| latest.is_none_or(|l| s <= l));
    if let Some(l) = latest
        && !steps.contains(&l)
    {
        steps.push(l);
    }
    if steps.is_empty() {
        return Ok(None);
    }
    let mut skipped = Vec::new();
    for &step in steps.iter().rev() {
        let dir = run.checkpoint(step);
        match verify(&dir).and_then(|_| read_state(&dir).map(|_| ())) {
            Ok(()) => return Ok(Some(ResumePoint { step, dir, skipped })),
            Err(e) => skipped.push(e),
        }
    }
    Err(skipped.swap_remove(0))
}

/// An empty folder at `tmp`: one left by an unfinished writer is cleared first.
fn fresh_folder(tmp: &Path) -> Result<()> {
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(RunError::io(tmp))?;
    }
    std::fs::create_dir_all(tmp).map_err(RunError::io(tmp))
}

/// Builds one checkpoint folder: the caller writes the model and optimizer files into
/// [`CheckpointWriter::dir`], then [`CheckpointWriter::finish`] adds the cards and checksums,
/// puts the folder in place, points `latest` at it and prunes older ones.
#[derive(Debug)]
pub struct CheckpointWriter {
    run: RunDir,
    step: u64,
    tmp: PathBuf,
}

impl CheckpointWriter {
    /// Starts the folder of the checkpoint after `step` steps (an old unfinished one is
    /// cleared).
    pub fn begin(run: &RunDir, step: u64) -> Result<Self> {
        let tmp = run.checkpoints().join(step_tmp_name(step));
        fresh_folder(&tmp)?;
        Ok(Self {
            run: run.clone(),
            step,
            tmp,
        })
    }

    /// The folder being built.
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// Completes the folder, marks it the newest and keeps the `keep` newest older ones.
    /// Returns its final path.
    pub fn finish(self, card: &ModelCard, state: &TrainState, keep: usize) -> Result<PathBuf> {
        debug_assert_eq!(state.step, self.step);
        write_atomic(&self.tmp.join(CARD_FILE), ron_text(card).as_bytes())?;
        write_atomic(&self.tmp.join(STATE_FILE), ron_text(state).as_bytes())?;
        write_checksums(&self.tmp)?;
        let dir = self.run.checkpoint(self.step);
        publish_folder(&self.tmp, &dir)?;
        self.run.mark_latest_checkpoint(self.step)?;
        prune(&self.run, keep)?;
        Ok(dir)
    }
}

/// `checkpoints/best/best.ron`: why the best checkpoint is the best.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestScore {
    pub step: u64,
    /// The mean over the validated datasets of each one's metric.
    pub score: f64,
    /// The metric of each dataset, as `<dataset>/<metric>` keys.
    pub metrics: Vec<crate::keys::MetricKey>,
}

/// The file of [`BestScore`] in the best checkpoint's folder.
pub const BEST_FILE: &str = "best.ron";

/// Builds `checkpoints/best/` (the model, its card and state, [`BestScore`], checksums) in a
/// temporary folder that then replaces the previous best. It holds no optimizer state: it is
/// for inference and export, not for resuming.
#[derive(Debug)]
pub struct BestWriter {
    run: RunDir,
    tmp: PathBuf,
}

impl BestWriter {
    pub fn begin(run: &RunDir) -> Result<Self> {
        let tmp = run.checkpoints().join(".best.tmp");
        fresh_folder(&tmp)?;
        Ok(Self {
            run: run.clone(),
            tmp,
        })
    }

    /// The folder being built (the caller writes the model file into it).
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    pub fn finish(
        self,
        card: &ModelCard,
        state: &TrainState,
        score: &BestScore,
    ) -> Result<PathBuf> {
        write_atomic(&self.tmp.join(CARD_FILE), ron_text(card).as_bytes())?;
        write_atomic(&self.tmp.join(STATE_FILE), ron_text(state).as_bytes())?;
        write_atomic(&self.tmp.join(BEST_FILE), ron_text(score).as_bytes())?;
        write_checksums(&self.tmp)?;
        let dir = self.run.best_checkpoint();
        publish_folder(&self.tmp, &dir)?;
        Ok(dir)
    }
}

/// Builds a checkpoint folder outside any run (an imported model): the caller writes the
/// model file into [`FolderWriter::dir`], then [`FolderWriter::finish`] adds the card, the
/// state and the checksums and renames the folder into place. `--init`, `s5 predict` and
/// `s5 eval` take it like a run's checkpoint. An existing folder is never replaced.
#[derive(Debug)]
pub struct FolderWriter {
    target: PathBuf,
    tmp: PathBuf,
}

impl FolderWriter {
    /// Starts building `target`, which must not exist yet.
    pub fn begin(target: &Path) -> Result<Self> {
        if target.exists() {
            return Err(RunError::Format {
                path: target.to_path_buf(),
                what: "checkpoint folder",
                reason: "exists already: write the checkpoint into a new folder".into(),
            });
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".into());
        let parent = target.parent().unwrap_or(Path::new("."));
        let tmp = parent.join(format!(".{name}.tmp"));
        fresh_folder(&tmp)?;
        Ok(Self {
            target: target.to_path_buf(),
            tmp,
        })
    }

    /// The folder being built.
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// Completes the folder and puts it in place; returns its path.
    pub fn finish(self, card: &ModelCard, state: &TrainState) -> Result<PathBuf> {
        write_atomic(&self.tmp.join(CARD_FILE), ron_text(card).as_bytes())?;
        write_atomic(&self.tmp.join(STATE_FILE), ron_text(state).as_bytes())?;
        write_checksums(&self.tmp)?;
        std::fs::rename(&self.tmp, &self.target).map_err(RunError::io(&self.target))?;
        Ok(self.target)
    }
}

/// The best checkpoint's score, if the run has one.
pub fn read_best(run: &RunDir) -> Result<Option<BestScore>> {
    let path = run.best_checkpoint().join(BEST_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    read_ron(&path, "best checkpoint score").map(Some)
}

/// Deletes all but the `keep` newest checkpoints older than the newest.
fn prune(run: &RunDir, keep: usize) -> Result<()> {
    let Some((latest, _)) = run.latest_checkpoint()? else {
        return Ok(());
    };
    let mut steps = checkpoint_steps(run)?;
    steps.retain(|&s| s < latest);
    let excess = steps.len().saturating_sub(keep);
    for step in &steps[..excess] {
        let dir = run.checkpoint(*step);
        std::fs::remove_dir_all(&dir).map_err(RunError::io(&dir))?;
    }
    Ok(())
}
