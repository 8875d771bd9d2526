//! The views. Each reads the runs' stores (never the disk) and the shared cursor.

pub mod curation;
pub mod curves;
pub mod gallery;
pub mod runs;

use crate::app::{Cursor, RunEntry};

/// The step cursor: a slider over every run's steps, and the Live toggle.
pub fn timeline(ui: &mut egui::Ui, cursor: &mut Cursor, newest: u64) {
    ui.checkbox(&mut cursor.live, "Live")
        .on_hover_text("Follow the newest step");
    let mut step = cursor.step;
    let slider = ui.add(
        egui::Slider::new(&mut step, 0..=newest.max(1))
            .text("step")
            .clamping(egui::SliderClamping::Always),
    );
    if slider.changed() {
        cursor.step = step;
        cursor.live = false;
    }
}

/// The diagnostics strip: the newest problems of every run, and deleted runs.
pub fn diagnostics(ui: &mut egui::Ui, runs: &[RunEntry]) {
    let mut shown = 0;
    for run in runs {
        if run.store.deleted {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!(
                    "{} was deleted: showing what was read before",
                    run.store.path.display()
                ),
            );
            shown += 1;
        }
        for message in run.store.diagnostics.iter().rev().take(3) {
            ui.label(
                egui::RichText::new(format!("{}: {message}", run.store.name))
                    .small()
                    .color(ui.visuals().weak_text_color()),
            );
            shown += 1;
        }
    }
    if shown == 0 {
        ui.label(
            egui::RichText::new(format!("{} run(s), no problems", runs.len()))
                .small()
                .color(ui.visuals().weak_text_color()),
        );
    }
}
