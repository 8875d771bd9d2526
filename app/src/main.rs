//! s5-viewer: watches an s5 training run. For now it opens a window and shows its version;
//! the training views (pseudo-labels, confidence, curation clusters) come with training.

fn main() -> eframe::Result {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size([480.0, 240.0]),
        ..Default::default()
    };
    eframe::run_native("s5 viewer", options, Box::new(|_cc| Ok(Box::new(Viewer))))
}

struct Viewer;

impl eframe::App for Viewer {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, draw);
    }
}

/// The window's contents.
fn draw(ui: &mut egui::Ui) {
    ui.heading("s5 viewer");
    ui.label(format!("version {}", env!("CARGO_PKG_VERSION")));
    ui.label("Training-run views (pseudo-labels, confidence, curation) arrive with training.");
}

#[cfg(test)]
mod tests {
    /// Lays the window out headlessly and reads back the text it paints.
    #[test]
    fn window_shows_the_version() {
        let ctx = egui::Context::default();
        let output = ctx.run_ui(egui::RawInput::default(), |ui| {
            egui::CentralPanel::default().show(ui, super::draw);
        });
        let texts: Vec<String> = output
            .shapes
            .iter()
            .filter_map(|clipped| match &clipped.shape {
                egui::Shape::Text(text) => Some(text.galley.text().to_string()),
                _ => None,
            })
            .collect();
        let version = format!("version {}", env!("CARGO_PKG_VERSION"));
        assert!(texts.contains(&version), "painted texts: {texts:?}");
    }
}
