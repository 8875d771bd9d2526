//! Training: the config, the loss, AdamW with its groups, the learning-rate schedule,
//! checkpoint folders, FixMatch (S4P), and the loop of `s5 train` / `s5 pretrain`.

pub mod card;
pub mod config;
pub mod fixmatch;
pub mod loss;
pub mod optimizer;
pub mod parallel;
pub mod schedule;
pub mod semi;
pub mod trainer;

pub use card::{ModelCard, load_model};
pub use config::TrainConfig;
pub use optimizer::Optimizer;
pub use schedule::CosineSchedule;
pub use trainer::{TrainOptions, TrainOutcome, train};
