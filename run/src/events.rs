//! `events.jsonl`: the append-only log of a run, one JSON object per line.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RunError};
use crate::keys::MetricKey;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An optimiser step: losses, lr, images/s, statistics.
    #[default]
    Train,
    /// A validation: `<dataset>/mIoU`, `/mF1`, `/OA` in `metrics`.
    Val,
    /// A checkpoint folder was completed for `step`.
    Checkpoint,
    /// The run stopped on request (Ctrl-C) after `step`.
    Stop,
    /// The loss stopped being a number at `step`; nothing was updated.
    Diverged,
}

impl EventKind {
    /// The name written in `events.jsonl`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Val => "val",
            Self::Checkpoint => "checkpoint",
            Self::Stop => "stop",
            Self::Diverged => "diverged",
        }
    }
}

/// One record. Unknown fields are kept in `extra`, so a reader round-trips them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Event {
    pub step: u64,
    /// Seconds since the run started (its earlier sessions included).
    pub wall_s: f64,
    pub kind: EventKind,
    /// Keys: [`crate::keys::LOSS`], FixMatch's [`crate::keys::L_S`] and [`crate::keys::L_U`],
    /// [`MetricKey::dataset_loss`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub losses: BTreeMap<MetricKey, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_per_s: Option<f64>,
    /// Keys: [`MetricKey::score`], [`crate::keys::VAL_MEAN`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<MetricKey, f64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Event {
    /// An event with nothing but its step, time and kind.
    pub fn new(step: u64, wall_s: f64, kind: EventKind) -> Self {
        Self {
            step,
            wall_s,
            kind,
            ..Self::default()
        }
    }

    /// A number among the extra fields (e.g. [`crate::keys::MASK_RATIO`]).
    pub fn extra_f64(&self, key: &MetricKey) -> Option<f64> {
        self.extra
            .get(key.as_str())
            .and_then(serde_json::Value::as_f64)
    }
}

/// The writer side: appends whole lines and flushes each.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    file: File,
}

impl EventLog {
    /// Opens (creating if needed) the log for appending; existing events are kept.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(RunError::io(dir))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(RunError::io(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one event as one line, in a single write.
    pub fn append(&mut self, event: &Event) -> Result<()> {
        let mut line = serde_json::to_vec(event).expect("events serialise");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .map_err(RunError::io(&self.path))
    }
}

/// Every complete event of a log. A last line without its newline (being written right now)
/// is left for the next read; a malformed complete line is an error naming its number.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(RunError::io(path)(source)),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| RunError::Format {
                path: path.to_path_buf(),
                what: "event log",
                reason: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}
