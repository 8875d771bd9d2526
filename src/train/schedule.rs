//! The per-iteration learning rate: optional linear warm-up, then cosine decay to a floor
//! (the authors' S4P runs use a cosine to 0 per iteration without warm-up).

use serde::{Deserialize, Serialize};

/// `lr(step)` for `total_steps` iterations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CosineSchedule {
    pub base_lr: f64,
    pub final_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl CosineSchedule {
    /// The rate for iteration `step` (0-based): warm-up rises linearly to `base_lr` over
    /// `warmup_steps`, then a half cosine falls to `final_lr` at `total_steps`, and stays.
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        self.final_lr
            + 0.5 * (self.base_lr - self.final_lr) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}
