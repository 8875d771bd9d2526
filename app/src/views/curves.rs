//! Curves: every logged quantity, each in its own plot, every run overlaid; x axes linked
//! (step or wall time); bias-corrected EMA smoothing with the raw line faint; the cursor as
//! a vertical line (a click in a plot moves it).

use egui_plot::{Legend, Line, Plot, PlotPoints, VLine};

use crate::app::{Cursor, RunEntry};
use crate::colormap::category;
use crate::smooth::ema;
use crate::store::Series;

/// Points drawn per line at most (longer series are thinned evenly).
const POINTS_DRAWN: usize = 4000;
/// Series with fewer points are not smoothed.
const SMOOTHED_FROM: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XAxis {
    #[default]
    Step,
    WallTime,
}

#[derive(Debug, Clone)]
pub struct CurvesState {
    pub x_axis: XAxis,
    /// EMA weight, 0 (none) to 0.99.
    pub smoothing: f64,
    pub columns: usize,
}

impl Default for CurvesState {
    fn default() -> Self {
        Self {
            x_axis: XAxis::Step,
            smoothing: 0.6,
            columns: 3,
        }
    }
}

/// The order keys are shown in: the method's quantities first, then the rest by name.
const PREFERRED: [&str; 9] = [
    "loss",
    "L_s",
    "L_u",
    "mask_ratio",
    "mean_entropy",
    "pseudo_label_acc_confident",
    "pseudo_label_acc_all",
    "lr",
    "images_per_s",
];

/// Every key of every run, in display order.
pub fn keys(runs: &[RunEntry]) -> Vec<String> {
    let mut keys: Vec<String> = runs
        .iter()
        .flat_map(|r| r.store.series.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys.sort_by_key(|k| {
        (
            PREFERRED
                .iter()
                .position(|p| p == k)
                .unwrap_or(PREFERRED.len()),
            k.clone(),
        )
    });
    keys
}

fn thinned(xs: &[f64], ys: &[f64]) -> Vec<[f64; 2]> {
    let stride = xs.len().div_ceil(POINTS_DRAWN).max(1);
    xs.iter()
        .zip(ys)
        .step_by(stride)
        .map(|(&x, &y)| [x, y])
        .collect()
}

fn x_of(series: &Series, axis: XAxis) -> &[f64] {
    match axis {
        XAxis::Step => &series.steps,
        XAxis::WallTime => &series.wall_s,
    }
}

pub fn show(ui: &mut egui::Ui, state: &mut CurvesState, runs: &[RunEntry], cursor: &mut Cursor) {
    ui.horizontal(|ui| {
        ui.label("x:");
        ui.selectable_value(&mut state.x_axis, XAxis::Step, "step");
        ui.selectable_value(&mut state.x_axis, XAxis::WallTime, "wall time (s)");
        ui.separator();
        ui.add(egui::Slider::new(&mut state.smoothing, 0.0..=0.99).text("smoothing (EMA)"));
        ui.separator();
        ui.add(egui::Slider::new(&mut state.columns, 1..=4).text("columns"));
    });
    let keys = keys(runs);
    if keys.is_empty() {
        ui.label("No events yet.");
        return;
    }
    let link = egui::Id::unique("s5-curves-x");
    let columns = state.columns.max(1);
    let width = (ui.available_width() / columns as f32 - 8.0).max(120.0);
    let height = (width * 0.55).clamp(110.0, 260.0);
    egui::ScrollArea::vertical().show(ui, |ui| {
        for row in keys.chunks(columns) {
            ui.horizontal(|ui| {
                for key in row {
                    ui.vertical(|ui| {
                        ui.set_width(width);
                        ui.label(egui::RichText::new(key).strong());
                        plot(ui, state, runs, cursor, key, link, width, height);
                    });
                }
            });
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn plot(
    ui: &mut egui::Ui,
    state: &CurvesState,
    runs: &[RunEntry],
    cursor: &mut Cursor,
    key: &str,
    link: egui::Id,
    width: f32,
    height: f32,
) {
    let cursor_x = match state.x_axis {
        XAxis::Step => Some(cursor.step as f64),
        // The wall time of the cursor's step, from the first run that logged it.
        XAxis::WallTime => runs.iter().find_map(|r| {
            let s = r.store.series.get(key)?;
            let i = s.steps.partition_point(|&x| x < cursor.step as f64);
            s.wall_s
                .get(i.min(s.wall_s.len().saturating_sub(1)))
                .copied()
        }),
    };
    let response = Plot::new(("curve", key))
        .width(width)
        .height(height)
        .link_axis(link, [true, false])
        .link_cursor(link, [true, false])
        .legend(Legend::default())
        .allow_scroll(false)
        .show(ui, |plot| {
            for (i, run) in runs.iter().enumerate() {
                let Some(series) = run.store.series.get(key) else {
                    continue;
                };
                let colour = category(i);
                let xs = x_of(series, state.x_axis);
                // Sparse series (validations) are drawn as they are, with markers.
                if series.values.len() < SMOOTHED_FROM {
                    plot.line(
                        Line::new(
                            run.store.name.clone(),
                            PlotPoints::from(thinned(xs, &series.values)),
                        )
                        .color(colour),
                    );
                    plot.add(
                        egui_plot::Points::new("", PlotPoints::from(thinned(xs, &series.values)))
                            .color(colour)
                            .radius(2.5),
                    );
                } else if state.smoothing > 0.0 {
                    plot.line(
                        Line::new("", PlotPoints::from(thinned(xs, &series.values)))
                            .color(colour.gamma_multiply(0.25))
                            .allow_hover(false),
                    );
                    let smooth = ema(&series.values, state.smoothing);
                    plot.line(
                        Line::new(
                            run.store.name.clone(),
                            PlotPoints::from(thinned(xs, &smooth)),
                        )
                        .color(colour),
                    );
                } else {
                    plot.line(
                        Line::new(
                            run.store.name.clone(),
                            PlotPoints::from(thinned(xs, &series.values)),
                        )
                        .color(colour),
                    );
                }
            }
            if let Some(x) = cursor_x {
                plot.add(VLine::new("", x).color(egui::Color32::from_gray(160)));
            }
            plot.pointer_coordinate()
        });
    if response.response.clicked()
        && state.x_axis == XAxis::Step
        && let Some(p) = response.inner
    {
        cursor.step = p.x.max(0.0).round() as u64;
        cursor.live = false;
    }
}
