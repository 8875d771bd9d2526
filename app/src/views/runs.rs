//! The runs panel: every run found, its kind, state, progress, manifest and config.

use std::path::{Path, PathBuf};

use s5_run::demo::{DemoStage, DemoState};

use crate::app::RunEntry;
use crate::store::RunState;

/// A curation run's selection in words, from its report.
fn curation_text(store: &crate::store::RunStore) -> Option<String> {
    let report = &store.report.as_ref()?.report;
    let selected: u64 = report.clusters.iter().map(|c| c.filled).sum();
    let mut text = format!(
        "{} of {} patches scored, {selected} selected",
        report.patches_scored, report.patches_planned
    );
    if let Some((pool, kept)) = report.ood_shares() {
        text += &format!(
            " · out of distribution: pool {:.1} %, selection {:.1} %",
            100.0 * pool,
            100.0 * kept
        );
    }
    Some(text)
}

/// A demo folder's `demo.json` as last read: the state, or why it could not be read.
pub type DemoSeen = Result<DemoState, String>;

/// One line per demo folder: its preset, and the stage running, or how far it came.
fn demo_line(ui: &mut egui::Ui, root: &Path, demo: &DemoSeen, runs: &[RunEntry]) {
    let name = root.display();
    let state = match demo {
        Ok(state) => state,
        Err(e) => {
            ui.colored_label(ui.visuals().error_fg_color, format!("demo {name}: {e}"));
            return;
        }
    };
    let of = DemoStage::ALL.len();
    // `tiny`, or `tiny`, mixed precision, seed 1
    let preset = format!("`{}`{}", state.preset, state.training.describe());
    let text = match &state.running {
        Some(running) => {
            let run = runs
                .iter()
                .find(|r| r.store.path == root.join(running.stage.folder()));
            let alive = run.is_none_or(|r| r.store.locked);
            let how = if alive {
                "running"
            } else {
                "stopped (run `s5 demo` again to continue)"
            };
            format!(
                "demo {preset} in {name}: stage {}/{of} {}: {how}",
                running.stage.number(),
                running.stage.title()
            )
        }
        None if state.stages.len() == of => {
            format!("demo {preset} in {name}: finished, {of} stages (summary.md)")
        }
        None => format!(
            "demo {preset} in {name}: {} of {of} stages done, not running",
            state.stages.len()
        ),
    };
    ui.strong(text);
    ui.separator();
}

pub fn show(ui: &mut egui::Ui, runs: &[RunEntry], demos: &[(PathBuf, DemoSeen)]) {
    for (root, demo) in demos {
        demo_line(ui, root, demo, runs);
    }
    if runs.is_empty() {
        ui.label("No run: start the viewer with a run folder or a folder of runs.");
        return;
    }
    egui::ScrollArea::vertical().show(ui, |ui| {
        egui::Grid::new("runs")
            .striped(true)
            .num_columns(8)
            .show(ui, |ui| {
                for title in [
                    "run",
                    "kind",
                    "state",
                    "events",
                    "last step",
                    "sample steps",
                    "restarts",
                    "latest validation",
                ] {
                    ui.strong(title);
                }
                ui.end_row();
                for run in runs {
                    let s = &run.store;
                    ui.label(&s.name)
                        .on_hover_text(s.path.display().to_string());
                    ui.label(s.kind().map_or("?".to_string(), |k| k.to_string()));
                    let state = s.state();
                    let colour = match state {
                        RunState::Running => egui::Color32::from_rgb(80, 180, 80),
                        RunState::Stalled | RunState::Deleted => ui.visuals().warn_fg_color,
                        RunState::Diverged => ui.visuals().error_fg_color,
                        _ => ui.visuals().text_color(),
                    };
                    ui.colored_label(colour, state.label());
                    ui.label(s.events.to_string());
                    ui.label(s.last_step.map_or("-".into(), |x| x.to_string()));
                    ui.label(s.steps.len().to_string());
                    ui.label(s.restarts.to_string());
                    let result = s.last_val_text().or_else(|| curation_text(s));
                    ui.label(result.unwrap_or_else(|| "-".into()));
                    ui.end_row();
                }
            });
        for run in runs {
            let s = &run.store;
            egui::CollapsingHeader::new(format!("{}: manifest and config", s.name))
                .id_salt(("run-details", &s.path))
                .show(ui, |ui| {
                    match &s.manifest {
                        Some(Ok(m)) => {
                            ui.label(format!(
                                "format {}, kind {}, s5 {}, created at unix time {} s",
                                m.format_version, m.kind, m.s5_version, m.created_unix_s
                            ));
                        }
                        Some(Err(e)) => {
                            ui.colored_label(ui.visuals().error_fg_color, e);
                        }
                        None => {
                            ui.label("no manifest yet");
                        }
                    }
                    if let Some(config) = &s.config {
                        ui.add(
                            egui::TextEdit::multiline(&mut config.as_str())
                                .code_editor()
                                .desired_rows(12),
                        );
                    }
                });
        }
    });
}
