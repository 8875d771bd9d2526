//! # s5-viewer: watch s5 runs while they train
//!
//! Reads run directories through the run contract (`s5-run`, never burn) and shows, for
//! one run or many: curves, the FixMatch gallery with a τ slider, the curation explorer and
//! the runs themselves. One reader thread per run polls its files and sends typed updates;
//! the UI never waits on the disk.
//!
//! - [`tail`]: `events.jsonl` read from a byte offset, whole lines only;
//! - [`reader`]: the polling thread and its [`reader::Update`]s;
//! - [`decoded`]: sample steps and reports decoded off the UI thread;
//! - [`store`]: the UI's copy of a run (curves, steps, report, diagnostics, state);
//! - [`smooth`], [`tau`], [`colormap`]: the arithmetic behind the views;
//! - [`textures`]: a bounded texture cache;
//! - [`views`]: runs, curves, gallery, curation;
//! - [`app`]: the viewer (cursor, views, readers);
//! - [`screenshot`]: headless frames and window screenshots.

pub mod app;
pub mod bounded;
pub mod colormap;
pub mod decoded;
pub mod reader;
pub mod screenshot;
pub mod smooth;
pub mod store;
pub mod tail;
pub mod tau;
pub mod textures;
pub mod views;

pub use app::{View, Viewer};
