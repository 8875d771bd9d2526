//! Curves: every logged quantity, each in its own plot, every run overlaid; x axes linked
//! (step or wall time); bias-corrected EMA smoothing with the raw line faint; the cursor as
//! a vertical line (a click in a plot moves it).

use std::collections::HashMap;

use egui_plot::{Legend, Line, Plot, PlotPoints, VLine};

use crate::app::{Cursor, RunEntry};
use crate::colormap::category;
use crate::smooth::ema;
use crate::store::Series;
use s5_run::MetricKey;

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
    /// Drawn points by (run, key): recomputed only when the series grows or the settings
    /// change, so a long run costs its frames nothing.
    drawn: HashMap<(usize, String), Drawn>,
}

/// One series as drawn: raw and smoothed points, thinned.
#[derive(Debug, Clone)]
struct Drawn {
    /// (points, x axis, smoothing) it was made for.
    made_for: (usize, XAxis, u64),
    raw: Vec<[f64; 2]>,
    smooth: Vec<[f64; 2]>,
}

impl Default for CurvesState {
    fn default() -> Self {
        Self {
            x_axis: XAxis::Step,
            smoothing: 0.6,
            columns: 3,
            drawn: HashMap::new(),
        }
    }
}

impl CurvesState {
    fn drawn(&mut self, run: usize, key: &str, series: &Series) -> &Drawn {
        let made_for = (series.values.len(), self.x_axis, self.smoothing.to_bits());
        let (axis, smoothing) = (self.x_axis, self.smoothing);
        let entry = self
            .drawn
            .entry((run, key.to_string()))
            .or_insert_with(|| Drawn {
                made_for: (usize::MAX, axis, 0),
                raw: Vec::new(),
                smooth: Vec::new(),
            });
        if entry.made_for != made_for {
            let xs = x_of(series, axis);
            entry.raw = thinned(xs, &series.values);
            entry.smooth = if smoothing > 0.0 {
                thinned(xs, &ema(&series.values, smoothing))
            } else {
                Vec::new()
            };
            entry.made_for = made_for;
        }
        entry
    }
}

/// Every key of every run, in display order ([`MetricKey::display_rank`]: the method's
/// quantities first, then each dataset's scores, then the rest).
pub fn keys(runs: &[RunEntry]) -> Vec<MetricKey> {
    let mut keys: Vec<MetricKey> = runs
        .iter()
        .flat_map(|r| r.store.series.keys().cloned())
        .collect();
    keys.sort_by(|a, b| a.display_rank().cmp(&b.display_rank()).then(a.cmp(b)));
    keys.dedup();
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
                        ui.label(egui::RichText::new(key.as_str()).strong());
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
    state: &mut CurvesState,
    runs: &[RunEntry],
    cursor: &mut Cursor,
    key: &MetricKey,
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
    let lines: Vec<(String, egui::Color32, bool, Drawn)> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, run)| {
            let series = run.store.series.get(key)?;
            let drawn = state.drawn(i, key.as_str(), series).clone();
            Some((
                run.store.name.clone(),
                category(i),
                series.values.len() < SMOOTHED_FROM,
                drawn,
            ))
        })
        .collect();
    // A flat series gets a range around its value (an empty range draws nothing useful).
    let (lo, hi) = lines
        .iter()
        .flat_map(|l| l.3.raw.iter().map(|p| p[1]))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
    let pad = if hi - lo < 1e-12 * hi.abs().max(1e-12) {
        hi.abs().max(1e-3) * 0.5
    } else {
        0.0
    };
    let mut chart = Plot::new(("curve", key));
    if lo.is_finite() && pad > 0.0 {
        chart = chart.include_y(lo - pad).include_y(hi + pad);
    }
    let response = chart
        .width(width)
        .height(height)
        .link_axis(link, [true, false])
        .link_cursor(link, [true, false])
        .legend(Legend::default())
        .allow_scroll(false)
        .show(ui, |plot| {
            for (name, colour, sparse, drawn) in lines {
                // Sparse series (validations) are drawn as they are, with markers.
                if sparse {
                    plot.line(Line::new(name, PlotPoints::from(drawn.raw.clone())).color(colour));
                    plot.add(
                        egui_plot::Points::new("", PlotPoints::from(drawn.raw))
                            .color(colour)
                            .radius(2.5),
                    );
                } else if !drawn.smooth.is_empty() {
                    plot.line(
                        Line::new("", PlotPoints::from(drawn.raw))
                            .color(colour.gamma_multiply(0.25))
                            .allow_hover(false),
                    );
                    plot.line(Line::new(name, PlotPoints::from(drawn.smooth)).color(colour));
                } else {
                    plot.line(Line::new(name, PlotPoints::from(drawn.raw)).color(colour));
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
