//! Evaluation: confusion-matrix metrics (and, with the training milestone, whole-image and
//! sliding-window prediction).

pub mod compare;
pub mod metrics;

pub use metrics::{ClassMetrics, ConfusionMatrix, MetricsSummary};
