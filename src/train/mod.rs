//! Training (arriving piece by piece): the learning-rate schedule so far.

pub mod schedule;

pub use schedule::CosineSchedule;
