//! s5-viewer: watches an s5 training run. For now it opens a window and shows its version.

fn main() -> eframe::Result {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size([480.0, 240.0]),
        ..Default::default()
    };
    eframe::run_native(
        "s5 viewer",
        options,
        Box::new(|_cc| Ok(Box::new(Viewer))),
    )
}

struct Viewer;

impl eframe::App for Viewer {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, |ui| {
            ui.heading("s5 viewer");
            ui.label(format!("version {}", env!("CARGO_PKG_VERSION")));
            ui.label("Training-run views (pseudo-labels, confidence, curation) arrive with the training issues.");
        });
    }
}
