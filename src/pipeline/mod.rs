//! The demo as a library: the whole S5 method on synthetic data, every stage a run in one
//! folder that `s5-viewer <folder>` opens (`s5 demo` draws its events).
//!
//! 1. `data/`: synthetic data (three labeled domains and an unlabeled pool with
//!    out-of-distribution images);
//! 2. `1-seed/`: a supervised seed model on the few labeled urban tiles;
//! 3. `2-curation/`: the pool curated with the seed model;
//! 4. `3-s4p/`: S4P on the labeled tiles and the curated patches, from the seed model (the
//!    paper starts S4P from MAE weights; the demo has none, and from random weights a tiny
//!    model's teacher is too unsure for τ = 0.95 to pass many pixels);
//! 5. `4-moe-mdf/`: MoE-MDF over the three domains from the S4P model;
//! 6. `5-baseline/`: the same fine-tuning without pre-training (labels only): the
//!    supervised-only baseline at equal fine-tuning steps.
//!
//! `demo.json` ([`crate::run::demo::DemoState`]) records each finished stage with its time
//! and typed result, and the stage running now: a rerun skips what is done, a stage stopped
//! half-way resumes (training from its newest checkpoint, curation from its finished
//! stages), and the viewer shows where the demo is.
//!
//! - [`preset`]: the presets, one RON file each in `assets/demo/`;
//! - [`stages`]: what each stage runs;
//! - [`summary`]: `summary.md` from the finished stages.

pub mod preset;
pub mod stages;
pub mod summary;

pub use preset::{Preset, PresetName};
pub use stages::{DemoEnd, DemoEvent, DemoOptions, run_demo};
