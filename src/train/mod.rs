//! Training: one loop ([`trainer`]) and the recipes of its steps ([`recipe`]: supervised,
//! FixMatch), with the config, named batches, the loss, AdamW with its groups, the
//! learning-rate schedule, mixed precision's loss scaler, data parallelism, validation and checkpoint folders.
//!
//! Imports run one way: `trainer` → `recipe` → (`fixmatch`, `batch`, `parallel`, `loss`) →
//! `config`; nothing below imports `trainer`.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod export;
pub mod fixmatch;
pub mod loss;
pub mod loss_scale;
pub mod optimizer;
pub mod overlap;
pub mod parallel;
pub mod rank_start;
pub mod ranks;
pub mod recipe;
pub mod sampling;
pub mod schedule;
pub mod trainer;
pub mod validate;

pub use checkpoint::load_model;
pub use config::TrainConfig;
pub use optimizer::Optimizer;
pub use schedule::CosineSchedule;
pub use trainer::{Report, Start, TrainOptions, TrainOutcome, train};
