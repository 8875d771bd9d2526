//! The one integration-test binary: naga validation of every shader, parity of every kernel
//! with its reference (forward and gradients) on the GPU, data loading and augmentation, and
//! the real `s5` binary.

mod architecture;
mod augment;
mod bench;
mod cli;
mod common;
mod curate;
mod curation_run;
mod data;
mod demo;
mod distributed;
mod fixmatch;
mod geotiff;
mod half;
mod memory;
mod metrics;
mod mixed_run;
mod model;
mod moe_ffn;
// Run under `mpirun` (`.ci/run`: `cargo test --release -p s5 --features mpi mpi::`).
#[cfg(feature = "mpi")]
mod mpi;
mod parallel;
mod pipeline;
mod pixel_stats;
mod reduce;
mod shaders;
mod train;
mod widened;
