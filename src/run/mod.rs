//! The run directory: the one contract between a training process and whoever watches it
//! (the viewer, scripts, a resumed run). Plain files, versioned, serde only:
//!
//! ```text
//! <run>/manifest.json     format version, kind, s5 version, creation time   (rewritten atomically)
//! <run>/config.ron        the resolved configuration                        (rewritten atomically)
//! <run>/events.jsonl      one JSON object per line, append-only            (whole lines only)
//! <run>/checkpoints/      step-<n>/{model.bpk, optimizer.bpk, model.ron, state.ron}, and
//!                         `latest` naming the newest (see `train::card`)
//! <run>/samples/          step-<n>/ pictures and their index.ron (see `run::samples`)
//! ```
//!
//! A reader never sees a torn file: rewritten files go through a temporary file and a
//! rename, the events file only grows by whole lines, and a reader ignores a last line that
//! has no newline yet.

pub mod events;
pub mod layout;
pub mod manifest;
pub mod samples;

pub use events::{Event, EventLog, read_events};
pub use layout::RunDir;
pub use manifest::{Manifest, RUN_FORMAT_VERSION};
