//! Evaluation: confusion-matrix metrics, a model applied to images of any size (whole,
//! resized, sliding windows), a split scored, and the reports.

pub mod compare;
pub mod evaluate;
pub mod geotiff_writer;
pub mod infer;
pub mod metrics;
pub mod predict;
pub mod report;

pub use evaluate::{evaluate_split, predict_image};
pub use infer::{Band, InferMode, predict_bands};
pub use metrics::{ClassMetrics, ConfusionMatrix, MetricsSummary};
