//! s5-viewer: watches an s5 run directory through the run contract (`s5-run`, no burn).
//! For now it shows what kind of run a folder holds and how far it got; the training views
//! (pseudo-labels, confidence, curves, curation clusters) build on the same reader.
//!
//! Usage: `s5-viewer [RUN_DIR]`.

use s5_run::{EventKind, Manifest, RunDir, read_events};

fn main() -> eframe::Result {
    let run = std::env::args_os().nth(1).map(RunDir::new);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size([480.0, 240.0]),
        ..Default::default()
    };
    let summary = run.as_ref().map(RunSummary::read);
    eframe::run_native(
        "s5 viewer",
        options,
        Box::new(|_cc| Ok(Box::new(Viewer { run, summary }))),
    )
}

/// What the window shows of a run, read from its files (never written).
#[derive(Debug, Clone, PartialEq)]
enum RunSummary {
    Read {
        kind: String,
        format_version: u32,
        train_steps: usize,
        last_step: u64,
    },
    /// The folder is not a readable run: the reader's message, which names the file.
    Unreadable(String),
}

impl RunSummary {
    fn read(run: &RunDir) -> Self {
        let read = || -> s5_run::Result<Self> {
            let manifest = Manifest::load(run)?;
            let events = read_events(&run.events())?;
            Ok(Self::Read {
                kind: manifest.kind.to_string(),
                format_version: manifest.format_version,
                train_steps: events.iter().filter(|e| e.kind == EventKind::Train).count(),
                last_step: events.iter().map(|e| e.step).max().unwrap_or(0),
            })
        };
        read().unwrap_or_else(|e| Self::Unreadable(e.to_string()))
    }
}

struct Viewer {
    run: Option<RunDir>,
    summary: Option<RunSummary>,
}

impl eframe::App for Viewer {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, |ui| {
            if draw(ui, self.summary.as_ref())
                && let Some(run) = &self.run
            {
                self.summary = Some(RunSummary::read(run));
            }
        });
    }
}

/// The window's contents; returns whether "Reload" was clicked.
fn draw(ui: &mut egui::Ui, summary: Option<&RunSummary>) -> bool {
    ui.heading("s5 viewer");
    ui.label(format!("version {}", env!("CARGO_PKG_VERSION")));
    match summary {
        None => {
            ui.label("Open a run: s5-viewer RUN_DIR");
            false
        }
        Some(RunSummary::Read {
            kind,
            format_version,
            train_steps,
            last_step,
        }) => {
            ui.label(format!("{kind} run, format {format_version}"));
            ui.label(format!(
                "{train_steps} training steps logged, last step {last_step}"
            ));
            ui.button("Reload").clicked()
        }
        Some(RunSummary::Unreadable(message)) => {
            ui.colored_label(ui.visuals().error_fg_color, message);
            ui.button("Reload").clicked()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays the window out headlessly and returns the texts it paints.
    fn painted(summary: Option<&RunSummary>) -> Vec<String> {
        let ctx = egui::Context::default();
        let output = ctx.run_ui(egui::RawInput::default(), |ui| {
            egui::CentralPanel::default().show(ui, |ui| draw(ui, summary));
        });
        output
            .shapes
            .iter()
            .filter_map(|clipped| match &clipped.shape {
                egui::Shape::Text(text) => Some(text.galley.text().to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn window_shows_the_version() {
        let texts = painted(None);
        let version = format!("version {}", env!("CARGO_PKG_VERSION"));
        assert!(texts.contains(&version), "painted texts: {texts:?}");
    }

    /// A run written by an older s5 (format 1, kept as files beside the run contract).
    #[test]
    fn a_run_is_read_through_the_contract() {
        let fixture =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../run/tests/fixtures/run-v1");
        let summary = RunSummary::read(&RunDir::new(fixture));
        let texts = painted(Some(&summary));
        assert!(
            texts.contains(&"pretrain run, format 1".to_string()),
            "{texts:?}"
        );
        assert!(
            texts.contains(&"2 training steps logged, last step 2".to_string()),
            "{texts:?}"
        );
        let missing = RunSummary::read(&RunDir::new("/nonexistent/run"));
        let texts = painted(Some(&missing));
        assert!(
            texts
                .iter()
                .any(|t| t.contains("manifest.json") && t.contains("not an s5 run")),
            "{texts:?}"
        );
    }
}
