//! Typed checks of configuration values: [`ConfigError`] names the field (its path in the
//! config, as a user writes it) and the values it allows, and the range helpers build it.
//! Every config is checked whole before anything is written.

use std::fmt::Display;

/// A configuration value outside what can work.
///
/// Its message is one line: the field's path, what it allows, and what it got
/// (`` `model.head_dropout` must be in [0, 1) (got 1) ``).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {reason}")]
pub struct ConfigError {
    /// The field's path, e.g. `datasets[1].crop_px` or `recipe.FixMatch.threshold`.
    pub field: String,
    /// What the field allows and what it holds.
    pub reason: String,
}

/// Shorthand for a check's outcome.
pub type Checked = Result<(), ConfigError>;

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// `value` must hold, else `field` is wrong for `reason`.
pub fn ensure(ok: bool, field: &str, reason: impl FnOnce() -> String) -> Checked {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(field, reason()))
    }
}

/// A count or size of at least 1.
pub fn at_least_one(field: &str, value: impl Into<u64> + Copy + Display) -> Checked {
    ensure(value.into() >= 1, field, || {
        format!("must be at least 1 (got {value})")
    })
}

/// A finite number in `[lo, hi]`.
pub fn within(field: &str, value: f64, lo: f64, hi: f64) -> Checked {
    ensure(
        value.is_finite() && value >= lo && value <= hi,
        field,
        || format!("must be a number in [{lo}, {hi}] (got {value})"),
    )
}

/// A probability or share: a finite number in `[0, 1]`.
pub fn probability(field: &str, value: f64) -> Checked {
    within(field, value, 0.0, 1.0)
}

/// A dropout rate: a finite number in `[0, 1)` (1 would drop everything).
pub fn dropout(field: &str, value: f64) -> Checked {
    ensure(
        value.is_finite() && (0.0..1.0).contains(&value),
        field,
        || format!("must be a number in [0, 1) (got {value})"),
    )
}

/// A finite number ≥ 0.
pub fn non_negative(field: &str, value: f64) -> Checked {
    ensure(value.is_finite() && value >= 0.0, field, || {
        format!("must be a finite number ≥ 0 (got {value})")
    })
}

/// A finite number > 0.
pub fn positive(field: &str, value: f64) -> Checked {
    ensure(value.is_finite() && value > 0.0, field, || {
        format!("must be a finite number > 0 (got {value})")
    })
}

/// A range `(lo, hi)` of finite numbers with `min < lo ≤ hi` (≤ `max` where given).
pub fn range(field: &str, (lo, hi): (f64, f64), min: f64, max: Option<f64>) -> Checked {
    ensure(
        lo.is_finite() && hi.is_finite() && lo > min && lo <= hi && max.is_none_or(|m| hi <= m),
        field,
        || {
            let top = max.map(|m| format!(" ≤ {m}")).unwrap_or_default();
            format!("must be (low, high) with {min} < low ≤ high{top} (got ({lo}, {hi}))")
        },
    )
}

/// A side in pixels that is a positive multiple of `of`.
pub fn multiple_of(field: &str, value: u64, of: u64, why: &str) -> Checked {
    ensure(value >= of && value.is_multiple_of(of), field, || {
        format!("must be a positive multiple of {of} ({why}) (got {value})")
    })
}
