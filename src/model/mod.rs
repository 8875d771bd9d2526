//! The S5 segmentation model (paper §3, "Multi-Dataset Fine-Tuning with MoE"): a plain ViT
//! backbone whose FFNs are dense or FFN-MoE (shared expert + one expert per dataset, the
//! custom `moe_ffn` op), a simple-FPN neck to strides 4/8/16/32, and one UperNet decoder +
//! 1×1 head per dataset. The building blocks do no I/O; two modules read and write files:
//! [`checkpoint`] (s5's burnpack records) and [`import`] (timm, MAE and the authors'
//! checkpoints).

pub mod checkpoint;
pub mod config;
pub mod count;
pub mod drop_path;
pub mod experts;
pub mod ffn;
pub mod half;
pub mod import;
pub mod mixed;
pub mod neck;
pub mod recompute;
pub mod resize;
pub mod segmentor;
pub mod upernet;
pub mod vit;

pub use config::{Activation, FfnKind, PaperModel, SegmentorConfig, VitConfig, paper_models};
pub use count::{ParamCount, block_params, count_params};
pub use segmentor::Segmentor;
