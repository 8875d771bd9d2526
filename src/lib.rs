//! # s5: S5-style semi-supervised segmentation for remote sensing, on any GPU
//!
//! s5 trains remote-sensing segmentation models the S5 way (data curation by entropy,
//! FixMatch pre-training, MoE multi-dataset fine-tuning) with burn on wgpu, so the same code
//! runs on Vulkan, Metal and DX12 GPUs. Hot spots are custom WGSL compute shaders in
//! `shaders/`, each with a reference in plain tensor ops.
//!
//! `ARCHITECTURE.md` at the repository root has the crate and module tables, the data flow,
//! the invariants and the run-directory format with its compatibility rule.
//!
//! ## Code map
//! - [`kernels`]: the custom GPU ops (`pixel_stats`, `moe_ffn`); the only module that names
//!   cubecl types and burn-wgpu's kernel API.
//! - [`curate`]: the paper's data curation as a run type: plan, prototypes, similarity
//!   floor, sharded scoring, the bounded selection under Eq. 3's quotas, the report.
//! - [`data`]: dataset specs, readers, tiling, augmentation, the batch loader, synthetic scenes.
//! - [`device`]: adapter enumeration and the one place that picks a GPU backend; the only
//!   other module that names wgpu and burn-wgpu (device setup).
//! - [`eval`]: confusion-matrix metrics, prediction of whole images (whole, resized, sliding
//!   windows streamed by row bands), split scoring, `s5 predict`'s files.
//! - [`model`]: ViT (dense or FFN-MoE) + simple-FPN + UperNet per dataset; parameter counts.
//! - [`pipeline`]: the demo (every stage of the method on synthetic data) with its presets
//!   and typed stage results and events.
//! - [`run`]: the run directory, the contract between trainer, `s5 curate` and viewer: the
//!   `s5-run` crate (no burn), re-exported.
//! - [`train`]: one training loop and the recipes of its steps (supervised, FixMatch / S4P
//!   on unlabeled images), its config, loss, optimizer groups, schedule, validation and
//!   checkpoint folders.
//! - [`apportion`]: whole units shared in proportion to weights (largest remainder).
//! - [`bench`]: timings of each op against its reference.
//! - [`error`]: the library's error type.
//! - [`fsutil`]: atomic file writes (from `s5-run`).
//! - [`memory`]: peak memory of the process.
//! - [`reduce`]: whole-tensor sums that are bit-reproducible (no float atomics).
//! - `cli` (binary only): one file per subcommand.
//!
//! ## Invariants
//! - Every shader has one binding in [`kernels`], one entry in [`kernels::shader::SHADERS`]
//!   and one parity test against its reference (forward and gradients).
//! - Everything a run shows the world goes through [`run`] (the `s5-run` crate), written
//!   atomically, by one writer at a time (the run's lock).
//! - Imports inside [`train`] and [`kernels`] run one way (see each module's docs).
//! - Whole-tensor sums in training go through [`reduce::total`], never `Tensor::sum`
//!   (float atomics make its last bit vary from run to run).
//! - Never enable burn's `vulkan` or `metal` features: they make those GPUs reject WGSL.

pub mod apportion;
pub mod bench;
pub mod check;
pub mod curate;
pub mod data;
pub mod device;
pub mod distributed;
pub mod error;
pub mod eval;
pub mod kernels;
pub mod memory;
pub mod model;
pub mod pipeline;
pub mod reduce;
pub mod train;

pub use error::{Error, Result};
pub use s5_run as run;
pub use s5_run::fsutil;
