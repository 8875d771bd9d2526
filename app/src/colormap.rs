//! Colours: a perceptually ordered map for confidence heatmaps (a 5-stop approximation of
//! viridis) and distinct colours for clusters.

use egui::Color32;

const VIRIDIS: [[f32; 3]; 5] = [
    [68.0, 1.0, 84.0],
    [59.0, 82.0, 139.0],
    [33.0, 145.0, 140.0],
    [94.0, 201.0, 98.0],
    [253.0, 231.0, 37.0],
];

/// The colour of `t` in `[0, 1]` (clamped).
pub fn viridis(t: f32) -> Color32 {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let c: Vec<u8> = (0..3)
        .map(|k| (VIRIDIS[i][k] + (VIRIDIS[i + 1][k] - VIRIDIS[i][k]) * f).round() as u8)
        .collect();
    Color32::from_rgb(c[0], c[1], c[2])
}

/// Tableau's ten categorical colours.
const TABLEAU10: [[u8; 3]; 10] = [
    [78, 121, 167],
    [242, 142, 43],
    [225, 87, 89],
    [118, 183, 178],
    [89, 161, 79],
    [237, 201, 72],
    [176, 122, 161],
    [255, 157, 167],
    [156, 117, 95],
    [186, 176, 172],
];

/// A distinct colour per category: Tableau 10, then golden-angle hues.
pub fn category(index: usize) -> Color32 {
    if let Some([r, g, b]) = TABLEAU10.get(index) {
        return Color32::from_rgb(*r, *g, *b);
    }
    let hue = (index as f32 * 0.381_966) % 1.0;
    egui::ecolor::Hsva::new(hue, 0.75, 0.9, 1.0).into()
}
