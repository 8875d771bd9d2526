//! Training: the config, the loss, AdamW with its groups, the learning-rate schedule,
//! checkpoint folders, and the supervised loop (`s5 train`).

pub mod card;
pub mod config;
pub mod loss;
pub mod optimizer;
pub mod schedule;
pub mod supervised;

pub use card::{ModelCard, load_model};
pub use config::TrainConfig;
pub use optimizer::Optimizer;
pub use schedule::CosineSchedule;
pub use supervised::{TrainOptions, TrainOutcome, train};
