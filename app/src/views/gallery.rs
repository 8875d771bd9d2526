//! The FixMatch gallery: per sampled image of the cursor's step, its pictures side by side
//! (weak view, pseudo-label, confidence with a colour bar, τ-mask, cut-mixed strong view,
//! student prediction, truth), an overlay mode (labels over the image, opacity, per-class
//! toggles with the dataset's palette and names), hover readouts, zoom (ctrl + wheel) and
//! pan (drag) shared across a row, and the τ slider: the τ-mask and mask ratio recomputed from the stored confidence,
//! and pseudo-label accuracy against coverage as τ varies, where truth is known.

use std::collections::BTreeSet;

use crate::bounded::Bounded;

use egui::{Color32, ColorImage, Rect, Sense, Vec2, pos2, vec2};
use egui_plot::{Line, Plot, PlotPoints, Points};
use s5_run::{DatasetCard, SampleKind, SampleRole};

use crate::app::{Cursor, RunEntry};
use crate::colormap::viridis;
use crate::decoded::{DecodedEntry, StepSamples};
use crate::textures::TextureCache;

/// The order pictures are shown in.
const ORDER: [SampleRole; 10] = [
    SampleRole::Image,
    SampleRole::Weak,
    SampleRole::PseudoLabel,
    SampleRole::Confidence,
    SampleRole::Mask,
    SampleRole::Strong,
    SampleRole::Student,
    SampleRole::Prediction,
    SampleRole::Truth,
    SampleRole::Valid,
];

/// A point of the accuracy–coverage curve: `(τ, coverage, accuracy)`.
type CurvePoint = (f32, f64, Option<f64>);

/// τ values of the accuracy–coverage curve.
const TAU_STEPS: usize = 41;

/// A row's zoom and the picture point at its centre (0–1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowView {
    pub zoom: f32,
    pub centre: Vec2,
}

impl Default for RowView {
    fn default() -> Self {
        Self {
            zoom: 1.0,
            centre: vec2(0.5, 0.5),
        }
    }
}

impl RowView {
    fn uv(&self) -> Rect {
        let half = 0.5 / self.zoom;
        let c = vec2(
            self.centre.x.clamp(half, 1.0 - half),
            self.centre.y.clamp(half, 1.0 - half),
        );
        Rect::from_min_max(pos2(c.x - half, c.y - half), pos2(c.x + half, c.y + half))
    }
}

/// What the labels are drawn over the image with, in overlay mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    Off,
    On(SampleRole),
}

#[derive(Debug, Clone)]
pub struct GalleryState {
    /// Which run (index into the runs).
    pub run: usize,
    pub kind: Option<SampleKind>,
    /// τ of the slider; `None` follows the trainer's.
    pub tau: Option<f32>,
    pub overlay: Overlay,
    pub opacity: f32,
    /// Classes hidden in overlays.
    pub hidden: BTreeSet<u8>,
    pub size_px: f32,
    /// Rows zoomed or panned away from the whole picture (at most [`ROWS_KEPT`]).
    pub rows: Bounded<String, RowView, ROWS_KEPT>,
    /// Accuracy–coverage curves, by (run, step, entry) (at most [`CURVES_KEPT`]).
    pub curves: Bounded<(usize, u64, usize), Vec<CurvePoint>, CURVES_KEPT>,
}

/// Row views kept: a row zoomed long ago falls back to the whole picture.
pub const ROWS_KEPT: usize = 256;
/// Accuracy–coverage curves kept (each is recomputed when needed again).
pub const CURVES_KEPT: usize = 256;

impl Default for GalleryState {
    fn default() -> Self {
        Self {
            run: 0,
            kind: None,
            tau: None,
            overlay: Overlay::Off,
            opacity: 0.5,
            hidden: BTreeSet::new(),
            size_px: 128.0,
            rows: Bounded::default(),
            curves: Bounded::default(),
        }
    }
}

/// The trainer's τ of a step's samples (the first unlabeled entry that names one).
fn trainer_tau(samples: &StepSamples) -> Option<f32> {
    samples
        .entries
        .iter()
        .find_map(|e| e.entry.stats.get(&s5_run::keys::TAU).map(|&t| t as f32))
}

pub fn show(
    ui: &mut egui::Ui,
    state: &mut GalleryState,
    runs: &mut [RunEntry],
    cursor: &Cursor,
    textures: &mut TextureCache,
) {
    let with_samples: Vec<usize> = (0..runs.len())
        .filter(|&i| !runs[i].store.steps.is_empty())
        .collect();
    if with_samples.is_empty() {
        ui.label("No sample steps yet (a run writes them every `samples.every_steps`).");
        return;
    }
    if !with_samples.contains(&state.run) {
        state.run = with_samples[0];
    }
    ui.horizontal(|ui| {
        egui::ComboBox::from_label("run")
            .selected_text(runs[state.run].store.name.clone())
            .show_ui(ui, |ui| {
                for &i in &with_samples {
                    ui.selectable_value(&mut state.run, i, runs[i].store.name.clone());
                }
            });
        ui.selectable_value(&mut state.kind, None, "all");
        ui.selectable_value(&mut state.kind, Some(SampleKind::Unlabeled), "unlabeled");
        ui.selectable_value(&mut state.kind, Some(SampleKind::Val), "validation");
        ui.separator();
        ui.add(egui::Slider::new(&mut state.size_px, 64.0..=384.0).text("size"));
    });
    let run_index = state.run;
    let run = &mut runs[run_index];
    let Some(step) = run.store.nearest_step(cursor.step) else {
        return;
    };
    let Some(samples) = run.store.decoded(step) else {
        run.request_step(step);
        ui.label(format!("reading step {step}…"));
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(100));
        return;
    };
    let trainer = trainer_tau(&samples);
    ui.horizontal(|ui| {
        ui.label(if step == cursor.step {
            format!("step {step}")
        } else {
            format!(
                "step {step} (the surviving step nearest to {})",
                cursor.step
            )
        });
        ui.separator();
        if let Some(trainer) = trainer {
            let mut tau = state.tau.unwrap_or(trainer);
            if ui
                .add(
                    egui::Slider::new(&mut tau, 0.0..=1.0)
                        .text("τ")
                        .fixed_decimals(3),
                )
                .changed()
            {
                state.tau = Some(tau);
            }
            ui.label(format!("trainer's τ = {trainer:.3}"));
            if state.tau.is_some() && ui.button("reset τ").clicked() {
                state.tau = None;
            }
        }
    });
    let dataset = samples
        .entries
        .first()
        .and_then(|e| samples.dataset(&e.entry.dataset))
        .cloned();
    overlay_controls(ui, state, dataset.as_ref());
    let tau = state.tau.or(trainer);
    egui::ScrollArea::both().show(ui, |ui| {
        for (k, entry) in samples.entries.iter().enumerate() {
            if state.kind.is_some_and(|kind| kind != entry.entry.kind) {
                continue;
            }
            let legend = samples.dataset(&entry.entry.dataset);
            row(
                ui,
                state,
                textures,
                (run_index, step, k),
                entry,
                legend,
                tau,
                trainer,
            );
            ui.separator();
        }
    });
}

fn overlay_controls(ui: &mut egui::Ui, state: &mut GalleryState, dataset: Option<&DatasetCard>) {
    ui.horizontal(|ui| {
        ui.label("overlay:");
        ui.selectable_value(&mut state.overlay, Overlay::Off, "off");
        for role in [
            SampleRole::PseudoLabel,
            SampleRole::Prediction,
            SampleRole::Student,
            SampleRole::Truth,
        ] {
            ui.selectable_value(&mut state.overlay, Overlay::On(role), role.as_str());
        }
        if state.overlay != Overlay::Off {
            ui.add(egui::Slider::new(&mut state.opacity, 0.0..=1.0).text("opacity"));
        }
    });
    if let Some(d) = dataset
        && state.overlay != Overlay::Off
    {
        ui.horizontal_wrapped(|ui| {
            ui.label("classes:");
            for (c, name) in d.classes.iter().enumerate() {
                let colour = d
                    .palette
                    .get(c)
                    .map_or(Color32::GRAY, |p| Color32::from_rgb(p[0], p[1], p[2]));
                let mut shown = !state.hidden.contains(&(c as u8));
                let (rect, _) = ui.allocate_exact_size(vec2(12.0, 12.0), Sense::hover());
                ui.painter().rect_filled(rect, 2.0, colour);
                if ui.checkbox(&mut shown, name).changed() {
                    if shown {
                        state.hidden.remove(&(c as u8));
                    } else {
                        state.hidden.insert(c as u8);
                    }
                }
            }
        });
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    ui: &mut egui::Ui,
    state: &mut GalleryState,
    textures: &mut TextureCache,
    key: (usize, u64, usize),
    entry: &DecodedEntry,
    legend: Option<&DatasetCard>,
    tau: Option<f32>,
    trainer: Option<f32>,
) {
    let e = &entry.entry;
    let mut title = format!("{} · {} · {}", e.image_id, e.dataset, e.kind);
    if let (Some(c), Some(tau)) = (&entry.confidence, tau) {
        let stored = e.stats.get(&s5_run::keys::MASK_RATIO).copied();
        title.push_str(&format!(" · mask ratio at τ {tau:.3}: {:.3}", c.ratio(tau)));
        if let (Some(stored), Some(trainer)) = (stored, trainer) {
            title.push_str(&format!(" (trainer, τ {trainer:.3}: {stored:.3})"));
        }
    }
    ui.label(egui::RichText::new(title).strong());
    let id = format!("{}/{}", e.dataset, e.image_id);
    let mut view = state.rows.get(&id).copied().unwrap_or_default();
    let ctx = ui.ctx().clone();
    let prefix = format!("{}/{}/{}", key.0, key.1, key.2);
    ui.horizontal(|ui| {
        let mut pictures: Vec<(String, egui::TextureHandle)> = Vec::new();
        if let Overlay::On(role) = state.overlay
            && let Some(base) = entry
                .images
                .get(&SampleRole::Weak)
                .or(entry.images.get(&SampleRole::Image))
            && let Some(labels) = entry.images.get(&role)
        {
            let hidden: Vec<u8> = state.hidden.iter().copied().collect();
            let tkey = format!(
                "{prefix}/overlay/{role}/{}/{hidden:?}",
                (state.opacity * 100.0) as u32
            );
            let classes = entry.classes.get(&role);
            let opacity = state.opacity;
            let texture = textures.get(&ctx, &tkey, || {
                blend(base, labels, classes, &state.hidden, opacity)
            });
            pictures.push((format!("overlay: {role}"), texture));
        }
        for role in ORDER {
            let Some(image) = entry.images.get(&role) else {
                continue;
            };
            if role == SampleRole::Valid {
                continue;
            }
            let texture = match (role, &entry.confidence, tau) {
                (SampleRole::Mask, Some(c), Some(tau)) => {
                    let tkey = format!("{prefix}/mask@{}", tau.to_bits());
                    textures.get(&ctx, &tkey, || {
                        let mask = c.mask(tau);
                        let pixels = mask
                            .iter()
                            .map(|&m| if m { Color32::WHITE } else { Color32::BLACK })
                            .collect();
                        ColorImage::new([c.width as usize, c.height as usize], pixels)
                    })
                }
                _ => textures.get(&ctx, &format!("{prefix}/{role}"), || image.clone()),
            };
            let label = if role == SampleRole::Mask {
                "τ-mask".to_string()
            } else {
                role.to_string()
            };
            pictures.push((label, texture));
        }
        for (label, texture) in pictures {
            ui.vertical(|ui| {
                picture(
                    ui,
                    &label,
                    &texture,
                    &mut view,
                    entry,
                    legend,
                    state.size_px,
                );
            });
        }
        if let (Some(c), Some(tau)) = (&entry.confidence, tau)
            && let (Some(pseudo), Some(truth)) = (
                entry.classes.get(&SampleRole::PseudoLabel),
                entry.classes.get(&SampleRole::Truth),
            )
        {
            let curve = state.curves.get_or_insert_with(key, || {
                let taus: Vec<f32> = (0..TAU_STEPS)
                    .map(|i| i as f32 / (TAU_STEPS - 1) as f32)
                    .collect();
                let pseudo: Vec<u8> = pseudo.iter().map(|p| p.unwrap_or(u8::MAX)).collect();
                c.accuracy_coverage(&pseudo, truth, &taus)
            });
            accuracy_plot(ui, curve, c, pseudo, truth, tau, state.size_px, &id);
        }
    });
    if view != RowView::default() || state.rows.contains_key(&id) {
        state.rows.insert(id, view);
    }
}

/// One picture of a row, zoomed and panned by `view` (shared by the row), with the readout of
/// the pixel under the pointer.
fn picture(
    ui: &mut egui::Ui,
    label: &str,
    texture: &egui::TextureHandle,
    view: &mut RowView,
    entry: &DecodedEntry,
    legend: Option<&DatasetCard>,
    size_px: f32,
) {
    let size = Vec2::splat(size_px);
    ui.label(egui::RichText::new(label).small());
    let response = ui.add(
        egui::Image::from_texture(texture)
            .uv(view.uv())
            .fit_to_exact_size(size)
            .sense(Sense::click_and_drag()),
    );
    // Ctrl + wheel (or a pinch) zooms; a plain wheel scrolls the gallery.
    if response.hovered() {
        let zoom = ui.input(|i| i.zoom_delta());
        if zoom != 1.0 {
            view.zoom = (view.zoom * zoom).clamp(1.0, 32.0);
        }
    }
    if response.dragged() {
        view.centre -= response.drag_delta() / size / view.zoom;
    }
    if response.double_clicked() {
        *view = RowView::default();
    }
    if let Some(pointer) = response.hover_pos() {
        let uv = view.uv();
        let f = (pointer - response.rect.min) / response.rect.size();
        let u = uv.min.x + f.x * uv.width();
        let v = uv.min.y + f.y * uv.height();
        response.on_hover_text(readout(entry, legend, u, v));
    }
    if label == SampleRole::Confidence.as_str() {
        colour_bar(ui, size_px);
    }
}

/// The labels over the image at `opacity`, hidden classes left out.
fn blend(
    base: &ColorImage,
    labels: &ColorImage,
    classes: Option<&Vec<Option<u8>>>,
    hidden: &BTreeSet<u8>,
    opacity: f32,
) -> ColorImage {
    let mut out = base.clone();
    if base.size != labels.size {
        return out;
    }
    for (i, (o, l)) in out.pixels.iter_mut().zip(&labels.pixels).enumerate() {
        let class = classes.and_then(|c| c.get(i).copied().flatten());
        if class.is_some_and(|c| hidden.contains(&c)) {
            continue;
        }
        let mix =
            |a: u8, b: u8| (f32::from(a) * (1.0 - opacity) + f32::from(b) * opacity).round() as u8;
        *o = Color32::from_rgb(mix(o.r(), l.r()), mix(o.g(), l.g()), mix(o.b(), l.b()));
    }
    out
}

/// What lies under the pointer at picture point (`u`, `v`) (0–1).
fn readout(entry: &DecodedEntry, legend: Option<&DatasetCard>, u: f32, v: f32) -> String {
    let Some(any) = entry.images.values().next() else {
        return String::new();
    };
    let [w, h] = any.size;
    let x = ((u * w as f32) as usize).min(w.saturating_sub(1));
    let y = ((v * h as f32) as usize).min(h.saturating_sub(1));
    let i = y * w + x;
    let mut lines = vec![format!("pixel ({x}, {y})")];
    let name = |c: Option<u8>| -> String {
        match (c, legend) {
            (Some(c), Some(l)) => l
                .classes
                .get(usize::from(c))
                .cloned()
                .unwrap_or(format!("class {c}")),
            (Some(c), None) => format!("class {c}"),
            (None, _) => "none".into(),
        }
    };
    for (role, classes) in &entry.classes {
        if let Some(c) = classes.get(i) {
            lines.push(format!("{role}: {}", name(*c)));
        }
    }
    if let Some(c) = &entry.confidence
        && i < c.levels.len()
    {
        lines.push(format!(
            "confidence {:.4} · {}",
            s5_run::samples::level_confidence(c.levels[i]),
            if c.valid.get(i).copied().unwrap_or(false) {
                "valid"
            } else {
                "padding (not valid)"
            }
        ));
    }
    lines.join("\n")
}

fn colour_bar(ui: &mut egui::Ui, width: f32) {
    let (rect, _) = ui.allocate_exact_size(vec2(width, 10.0), Sense::hover());
    let steps = 32;
    for s in 0..steps {
        let x0 = rect.min.x + rect.width() * s as f32 / steps as f32;
        let x1 = rect.min.x + rect.width() * (s + 1) as f32 / steps as f32;
        ui.painter().rect_filled(
            Rect::from_min_max(pos2(x0, rect.min.y), pos2(x1, rect.max.y)),
            0.0,
            viridis((s as f32 + 0.5) / steps as f32),
        );
    }
    ui.horizontal(|ui| {
        ui.set_width(width);
        ui.label(egui::RichText::new("0").small());
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.label(egui::RichText::new("1").small());
        });
    });
}

#[allow(clippy::too_many_arguments)]
fn accuracy_plot(
    ui: &mut egui::Ui,
    curve: &[CurvePoint],
    c: &crate::tau::Confidence,
    pseudo: &[Option<u8>],
    truth: &[Option<u8>],
    tau: f32,
    size: f32,
    id: &str,
) {
    let points: Vec<[f64; 2]> = curve
        .iter()
        .filter_map(|&(_, coverage, acc)| acc.map(|a| [coverage, a]))
        .collect();
    let pseudo: Vec<u8> = pseudo.iter().map(|p| p.unwrap_or(u8::MAX)).collect();
    let now = c.accuracy_coverage(&pseudo, truth, &[tau]);
    ui.vertical(|ui| {
        ui.label(egui::RichText::new("pseudo-label accuracy vs coverage").small());
        Plot::new(("accuracy-coverage", id))
            .width(size * 1.3)
            .height(size)
            .include_x(0.0)
            .include_x(1.0)
            .include_y(0.0)
            .include_y(1.0)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .x_axis_label("coverage")
            .show(ui, |plot| {
                plot.line(Line::new("accuracy", PlotPoints::from(points)));
                if let Some(&(_, coverage, Some(acc))) = now.first() {
                    plot.add(
                        Points::new(format!("τ {tau:.3}"), vec![[coverage, acc]])
                            .radius(4.0)
                            .color(Color32::from_rgb(230, 90, 60)),
                    );
                }
            });
    });
}
