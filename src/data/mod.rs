//! Data: dataset specs for the real benchmarks, image and label reading, lazy tiling of
//! unlabeled imagery, the S5 augmentations, a prefetching batch loader, and a generator of
//! synthetic aerial scenes.
//!
//! Labels inside s5 are always `u8` class indices with [`IGNORE`] for pixels that count in no
//! class; each dataset's own encoding is translated once, when its mask is read.

pub mod augment;
pub mod check;
pub mod geotiff;
pub mod io;
pub mod loader;
pub mod palette;
pub mod raster;
pub mod source;
pub mod spec;
pub mod synth;
pub mod throughput;

/// The label of a pixel that belongs to no class (padding, no-data, the dataset's ignore value).
pub const IGNORE: u8 = 255;

pub use spec::{DatasetSpec, LabelEncoding, MaskRule, SampleRef, SplitSource};
