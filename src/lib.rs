//! # s5: S5-style semi-supervised segmentation for remote sensing, on any GPU
//!
//! s5 trains remote-sensing segmentation models the S5 way (data curation by entropy,
//! FixMatch pre-training, MoE multi-dataset fine-tuning) with burn on wgpu, so the same code
//! runs on Vulkan, Metal and DX12 GPUs. Hot spots are custom WGSL compute shaders in
//! `shaders/`, each with a reference in plain tensor ops.
//!
//! ## Code map
//! - [`kernels`]: the custom GPU ops (`pixel_stats`, `moe_ffn`); the only module that names
//!   cubecl / burn-wgpu internals.
//! - [`data`]: dataset specs, readers, tiling, augmentation, the batch loader, synthetic scenes.
//! - [`device`]: adapter enumeration and the one place that picks a GPU backend.
//! - [`eval`]: confusion-matrix metrics, prediction of whole images (whole, resized, sliding
//!   windows streamed by row bands), split scoring, `s5 predict`'s files.
//! - [`model`]: ViT (dense or FFN-MoE) + simple-FPN + UperNet per dataset; parameter counts.
//! - [`run`]: the run directory, the contract between trainer and viewer.
//! - [`train`]: the training loop (supervised, and FixMatch / S4P on unlabeled images), its
//!   config, loss, optimizer groups, schedule and self-describing checkpoint folders.
//! - [`bench`]: timings of each op against its reference.
//! - [`error`]: the library's error type.
//! - [`fsutil`]: atomic file writes.
//! - [`memory`]: peak memory of the process.
//! - [`reduce`]: whole-tensor sums that are bit-reproducible (no float atomics).
//! - `cli` (binary only): one file per subcommand.
//!
//! ## Invariants
//! - Every shader has one binding in [`kernels`], one entry in [`kernels::shader::SHADERS`]
//!   and one parity test against its reference (forward and gradients).
//! - Whole-tensor sums in training go through [`reduce::total`], never `Tensor::sum`
//!   (float atomics make its last bit vary from run to run).
//! - Never enable burn's `vulkan` or `metal` features: they make those GPUs reject WGSL.

pub mod bench;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod kernels;
pub mod memory;
pub mod model;
pub mod reduce;
pub mod run;
pub mod train;

pub use error::{Error, Result};
