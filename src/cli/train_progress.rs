//! The progress of a training on the terminal: a bar fed by the training loop's reports.

use indicatif::{ProgressBar, ProgressStyle};
use s5::run::keys::{self, KeyKind, Score};
use s5::train::Report;

/// The progress bar on stderr, fed by the training loop's reports; validation results and
/// warnings are printed as lines (also when stderr is not a terminal, where the bar hides).
pub(super) struct TrainProgress {
    bar: ProgressBar,
    /// `--quiet`: no bar and no validation lines (warnings still).
    quiet: bool,
    /// Images per second, smoothed over steps.
    smoothed_ips: Option<f64>,
}

impl TrainProgress {
    pub(super) fn new(enabled: bool) -> Self {
        let bar = if enabled {
            ProgressBar::new(0).with_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} steps  {msg}  ({elapsed} / eta {eta})",
                )
                .expect("a valid template"),
            )
        } else {
            ProgressBar::hidden()
        };
        Self {
            bar,
            quiet: !enabled,
            smoothed_ips: None,
        }
    }

    pub(super) fn show(&mut self, report: Report<'_>) {
        match report {
            Report::Begin {
                first_step,
                total_steps,
            } => {
                self.bar.set_length(total_steps);
                self.bar.set_position(first_step);
                self.bar.reset_eta();
            }
            Report::Step(event) => {
                let ips = event.images_per_s.unwrap_or(0.0);
                let smooth = self.smoothed_ips.map_or(ips, |s| 0.9 * s + 0.1 * ips);
                self.smoothed_ips = Some(smooth);
                let loss = event.losses.get(&keys::LOSS).copied().unwrap_or(f64::NAN);
                let ratio = event
                    .extra_f64(&keys::MASK_RATIO)
                    .map_or(String::new(), |r| format!("  mask {:.0}%", 100.0 * r));
                let lr = event.lr.unwrap_or(0.0);
                self.bar.set_position(event.step);
                self.bar.set_message(format!(
                    "loss {loss:.4}{ratio}  lr {lr:.2e}  {smooth:.1} img/s"
                ));
            }
            Report::Validated {
                step,
                metrics,
                seconds,
            } => {
                let line = metrics
                    .iter()
                    .filter(|(k, _)| {
                        matches!(
                            k.kind(),
                            KeyKind::Score {
                                score: Score::MIoU,
                                ..
                            }
                        )
                    })
                    .map(|(k, v)| format!("{k} {:.2}", 100.0 * v))
                    .collect::<Vec<_>>()
                    .join("  ");
                if !self.quiet {
                    self.bar
                        .suspend(|| eprintln!("step {step}: {line}  (validation {seconds:.1} s)"));
                }
            }
            Report::Warning(text) => self.bar.suspend(|| eprintln!("warning: {text}")),
        }
    }

    /// Clears the bar.
    pub(super) fn finish(self) {
        self.bar.finish_and_clear();
    }

    /// Clears the bar after a run, or leaves it where it stopped after an error.
    pub(super) fn end<T>(self, result: s5::Result<T>) -> s5::Result<T> {
        match &result {
            Ok(_) => self.bar.finish_and_clear(),
            Err(_) => self.bar.abandon(),
        }
        result
    }
}
