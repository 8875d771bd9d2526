//! The S5 segmentation model (paper §3, S5-REFERENCE §3–§4): a plain ViT backbone whose
//! FFNs are dense or FFN-MoE (shared expert + one expert per dataset, the custom `moe_ffn`
//! op), a simple-FPN neck to strides 4/8/16/32, and one UperNet decoder + 1×1 head per
//! dataset. `model/` does no I/O.

pub mod checkpoint;
pub mod config;
pub mod count;
pub mod drop_path;
pub mod ffn;
pub mod import;
pub mod neck;
pub mod resize;
pub mod segmentor;
pub mod upernet;
pub mod vit;

pub use config::{Activation, FfnKind, SegmentorConfig, VitConfig};
pub use count::{ParamCount, count_params};
pub use segmentor::Segmentor;
