//! # s5-run: the run directory, the one contract between s5's writers and its readers
//!
//! The trainer (`s5 train`, `s5 pretrain`) and `s5 curate` write a run directory; the viewer
//! (`s5-viewer`), scripts and a resumed run read it. Everything they share is in this crate,
//! which depends on serde and image but never on burn, so the viewer builds without it.
//!
//! ```text
//! <run>/manifest.json     format version, kind, s5 version, creation time   rewritten atomically
//! <run>/config.ron        the resolved configuration                        rewritten atomically
//! <run>/lock              the writer's pid and host, while one runs          created whole
//! <run>/events.jsonl      one JSON object per line                          append-only, whole lines
//! <run>/checkpoints/      step-<n>/ folders and `latest` (see [`checkpoint`])  folders renamed into place
//! <run>/samples/          step-<n>/ pictures and index.ron (see [`samples`])   folders renamed into place
//! ```
//!
//! A reader never sees a torn file: rewritten files go through a temporary file and a
//! rename, folders appear whole, the events file only grows by whole lines, and a reader
//! ignores a last line that has no newline yet. The format is versioned
//! ([`FORMAT_VERSION`]); a build reads its own version and the one before.

pub mod architecture;
pub mod card;
pub mod checkpoint;
pub mod curation;
pub mod demo;
pub mod error;
pub mod events;
pub mod fsutil;
pub mod imaging;
pub mod keys;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod samples;

pub use card::{DatasetCard, LossScaleState, ModelCard, TrainState};
pub use error::{Result, RunError};
pub use events::{Event, EventKind, EventLog, read_events};
pub use imaging::{Imaging, ValueRange};
pub use keys::{Known, MetricKey, Score};
pub use layout::RunDir;
pub use lock::{LockHolder, RunLock};
pub use manifest::{FORMAT_VERSION, Manifest, OLDEST_READABLE_VERSION, RunKind};
pub use samples::{Picture, SampleEntry, SampleIndex, SampleKind, SampleRole, SampleWriter};
