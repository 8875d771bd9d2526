//! How `s5 curate` shows a curation's [`Progress`]: one bar per counted stage, stage lines,
//! warnings above the bar; and the evaluation's table.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use s5::curate::evaluate::Evaluation;
use s5::curate::run::{Progress, Stage};

/// The bar of the counted work under way.
pub struct Bars {
    bar: Mutex<Option<(&'static str, ProgressBar)>>,
    /// `--abort-after-patches`: die by SIGKILL once this many patches are scored.
    abort_after_patches: Option<u64>,
}

impl Bars {
    pub fn new(abort_after_patches: Option<u64>) -> Self {
        Self {
            bar: Mutex::new(None),
            abort_after_patches,
        }
    }

    pub fn show(&self, progress: Progress) {
        let mut slot = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        let (unit, done, total) = match progress {
            Progress::Stage {
                stage,
                reused,
                detail,
            } => {
                if let Some((_, bar)) = slot.take() {
                    bar.finish_and_clear();
                }
                let how = match (reused, detail.is_empty()) {
                    (true, true) => ": there".to_string(),
                    (true, false) => format!(": there ({detail})"),
                    (false, true) => String::new(),
                    (false, false) => format!(" ({detail})"),
                };
                eprintln!("[{}/{}] {stage}{how}", stage.number(), Stage::ALL.len());
                return;
            }
            Progress::Warning(text) => {
                match slot.as_ref() {
                    Some((_, bar)) => bar.println(format!("warning: {text}")),
                    None => eprintln!("warning: {text}"),
                }
                return;
            }
            Progress::Embedding { done, total } => ("labeled images", done, total),
            Progress::Calibrating { done, total } => ("labeled patches", done, total),
            Progress::Scoring { done, total } => {
                if self.abort_after_patches.is_some_and(|limit| done >= limit) {
                    kill_self();
                }
                ("patches", done, total)
            }
        };
        if slot.as_ref().is_none_or(|(u, _)| *u != unit) {
            if let Some((_, bar)) = slot.take() {
                bar.finish_and_clear();
            }
            let style = ProgressStyle::with_template(&format!(
                "{{bar:30}} {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            *slot = Some((unit, ProgressBar::new(total).with_style(style)));
        }
        if let Some((_, bar)) = slot.as_ref() {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    pub fn finish(&self) {
        if let Some((_, bar)) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

/// `s5 curate evaluate`'s table.
pub fn print_evaluation(report: &Evaluation) {
    println!(
        "{:<12} {:>8} {:>9} {:>13} {:>11} {:>15}",
        "kind", "pool", "selected", "mean entropy", "foreground", "AUROC vs in"
    );
    for k in &report.kinds {
        println!(
            "{:<12} {:>8} {:>9} {:>13.3} {:>11.2} {:>15}",
            k.kind,
            k.pool_patches,
            k.selected_patches,
            k.mean_entropy,
            k.mean_foreground,
            k.auroc_vs_in_domain
                .map_or("-".to_string(), |a| format!("{a:.3}"))
        );
    }
    println!(
        "out-of-distribution share: pool (= a random selection's, on average) {:.1} %, \
         selection {:.1} %",
        100.0 * report.pool_ood_share,
        100.0 * report.selected_ood_share
    );
}

/// Ends this process as a killed cluster node's would end: SIGKILL, nothing cleaned up
/// (`abort` where there are no signals).
fn kill_self() -> ! {
    #[cfg(unix)]
    // SAFETY: sends a signal to this very process; nothing is read or written.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}
