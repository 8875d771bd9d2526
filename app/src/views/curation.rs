//! The curation explorer, from a run's `curation/report.json`: the 2-D projection of the
//! sampled patches coloured by cluster, entropy, selected or true kind, with box selection
//! showing the chosen patches' pictures; the entropy histograms of pool and selection with
//! the cut; per-cluster bars of labeled count, quota and filled; the out-of-distribution
//! share where truth is known. A report written while scoring runs is shown as it is.

use egui::Color32;
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoint, PlotPoints, Points, Polygon, VLine};
use s5_run::curation::{ReportStage, ThumbnailRole};

use crate::app::RunEntry;
use crate::colormap::{category, viridis};
use crate::decoded::DecodedReport;
use crate::reader::{CropRequest, Request};
use crate::store::RunStore;
use crate::textures::TextureCache;

/// Pictures shown for a box selection at most.
const PICTURES_SHOWN: usize = 48;
/// Entropy colours are drawn in this many bands.
const ENTROPY_BANDS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColourBy {
    #[default]
    Cluster,
    Entropy,
    Selected,
    Kind,
}

#[derive(Debug, Clone, Default)]
pub struct CurationState {
    pub run: usize,
    pub colour_by: ColourBy,
    /// Box selection mode (dragging draws a box instead of panning).
    pub boxing: bool,
    drag_from: Option<PlotPoint>,
    /// The selected box, in projection coordinates.
    pub selection: Option<[PlotPoint; 2]>,
    /// Patches inside it.
    pub chosen: Vec<u64>,
}

pub fn show(
    ui: &mut egui::Ui,
    state: &mut CurationState,
    runs: &mut [RunEntry],
    textures: &mut TextureCache,
) {
    let with_report: Vec<usize> = (0..runs.len())
        .filter(|&i| runs[i].store.report.is_some())
        .collect();
    if with_report.is_empty() {
        ui.label("No curation report: `s5 curate score` writes one when a shard finishes.");
        return;
    }
    if !with_report.contains(&state.run) {
        state.run = with_report[0];
    }
    let run_index = state.run;
    let Some(decoded) = runs[run_index].store.report.clone() else {
        return;
    };
    let report = &decoded.report;
    ui.horizontal(|ui| {
        egui::ComboBox::from_label("run")
            .selected_text(runs[run_index].store.name.clone())
            .show_ui(ui, |ui| {
                for &i in &with_report {
                    ui.selectable_value(&mut state.run, i, runs[i].store.name.clone());
                }
            });
        let stage = match report.stage {
            ReportStage::Scoring => format!(
                "scoring: {} of {} shards, {} of {} patches",
                report.shards_finished,
                report.shards,
                report.patches_scored,
                report.patches_planned
            ),
            ReportStage::Selected => format!(
                "selected {} of {} patches (budget {})",
                report.clusters.iter().map(|c| c.filled).sum::<u64>(),
                report.patches_scored,
                report.budget.unwrap_or(0)
            ),
        };
        ui.label(stage);
        if let Some((pool, selected)) = report.ood_shares() {
            ui.separator();
            ui.label(format!(
                "out-of-distribution share: pool {:.1} %, selection {:.1} %",
                100.0 * pool,
                100.0 * selected
            ));
        }
    });
    ui.horizontal(|ui| {
        ui.label("colour by:");
        ui.selectable_value(&mut state.colour_by, ColourBy::Cluster, "cluster");
        ui.selectable_value(&mut state.colour_by, ColourBy::Entropy, "entropy");
        ui.selectable_value(&mut state.colour_by, ColourBy::Selected, "selected");
        if !report.kinds.is_empty() {
            ui.selectable_value(&mut state.colour_by, ColourBy::Kind, "true kind");
        }
        ui.separator();
        ui.toggle_value(&mut state.boxing, "box select")
            .on_hover_text("Drag in the projection to pick patches");
        if state.selection.is_some() && ui.button("clear selection").clicked() {
            state.selection = None;
            state.chosen.clear();
        }
    });
    let width = ui.available_width();
    let left = (width * 0.55).max(240.0);
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.set_width(left);
            scatter(ui, state, report, left, &mut runs[run_index]);
        });
        ui.vertical(|ui| {
            let right = (width - left - 16.0).max(200.0);
            histogram(ui, report, right);
            cluster_bars(ui, report, right);
            floor_table(ui, report);
        });
    });
    ui.separator();
    picture_lists(
        ui,
        state,
        report,
        &decoded,
        run_index,
        &runs[run_index].store,
        textures,
    );
}

/// The patches chosen in the box, then the best and worst of each cluster.
fn picture_lists(
    ui: &mut egui::Ui,
    state: &CurationState,
    report: &s5_run::curation::CurationReport,
    decoded: &DecodedReport,
    run_index: usize,
    store: &RunStore,
    textures: &mut TextureCache,
) {
    egui::ScrollArea::vertical()
        .id_salt("curation-pictures")
        .show(ui, |ui| {
            if !state.chosen.is_empty() {
                ui.label(format!(
                    "{} patches in the box (first {PICTURES_SHOWN} shown)",
                    state.chosen.len()
                ));
                pictures(
                    ui,
                    textures,
                    run_index,
                    state.chosen.iter().take(PICTURES_SHOWN).filter_map(|p| {
                        let point = report.projection.points.iter().find(|q| q.patch == *p)?;
                        Some((
                            *p,
                            format!(
                                "cluster {} · H {:.3}{}",
                                point.cluster,
                                point.entropy,
                                if point.selected { " · selected" } else { "" }
                            ),
                            store.crops.peek(p),
                        ))
                    }),
                );
            }
            for role in [ThumbnailRole::Best, ThumbnailRole::Worst] {
                ui.label(match role {
                    ThumbnailRole::Best => "best per cluster (lowest entropy)",
                    ThumbnailRole::Worst => "worst per cluster (highest entropy, not selected)",
                });
                pictures(
                    ui,
                    textures,
                    run_index,
                    report
                        .thumbnails
                        .iter()
                        .filter(|t| t.role == role)
                        .map(|t| {
                            (
                                t.patch,
                                format!("cluster {} · H {:.3}", t.cluster, t.entropy),
                                decoded.thumbnails.get(&t.patch),
                            )
                        }),
                );
            }
        });
}

fn pictures<'a>(
    ui: &mut egui::Ui,
    textures: &mut TextureCache,
    run: usize,
    items: impl Iterator<Item = (u64, String, Option<&'a egui::ColorImage>)>,
) {
    let ctx = ui.ctx().clone();
    ui.horizontal_wrapped(|ui| {
        for (patch, caption, image) in items {
            ui.vertical(|ui| {
                match image {
                    Some(image) => {
                        let t =
                            textures.get(&ctx, &format!("{run}/patch/{patch}"), || image.clone());
                        ui.add(
                            egui::Image::from_texture(&t).fit_to_exact_size(egui::vec2(80.0, 80.0)),
                        );
                    }
                    None => {
                        ui.add_sized([80.0, 80.0], egui::Spinner::new());
                    }
                }
                ui.label(egui::RichText::new(caption).small());
            });
        }
    });
}

fn scatter(
    ui: &mut egui::Ui,
    state: &mut CurationState,
    report: &s5_run::curation::CurationReport,
    width: f32,
    run: &mut RunEntry,
) {
    let points = &report.projection.points;
    let groups = point_groups(state.colour_by, report);
    let boxing = state.boxing;
    let response = Plot::new("curation-projection")
        .width(width)
        .height(width * 0.8)
        .legend(Legend::default())
        .data_aspect(1.0)
        .allow_drag(!boxing)
        .allow_boxed_zoom(!boxing)
        .x_axis_label(format!(
            "PC 1 ({:.0} %)",
            100.0 * report.projection.explained[0]
        ))
        .y_axis_label(format!(
            "PC 2 ({:.0} %)",
            100.0 * report.projection.explained[1]
        ))
        .show(ui, |plot| {
            for (name, colour, pts) in groups {
                plot.add(Points::new(name, pts).color(colour).radius(2.0));
            }
            let centroids: Vec<[f64; 2]> = report
                .projection
                .centroids
                .iter()
                .map(|c| [f64::from(c[0]), f64::from(c[1])])
                .collect();
            plot.add(
                Points::new("prototypes", centroids)
                    .shape(egui_plot::MarkerShape::Diamond)
                    .radius(6.0)
                    .color(Color32::WHITE),
            );
            if let Some([a, b]) = state.selection {
                plot.add(
                    Polygon::new("box", vec![[a.x, a.y], [b.x, a.y], [b.x, b.y], [a.x, b.y]])
                        .fill_color(Color32::from_rgba_unmultiplied(230, 90, 60, 30)),
                );
            }
            (
                plot.pointer_coordinate(),
                plot.response().drag_started(),
                plot.response().dragged(),
                plot.response().drag_stopped(),
            )
        });
    let (pointer, started, dragging, stopped) = response.inner;
    if boxing {
        drag_box(state, points, run, pointer, (started, dragging, stopped));
    }
}

/// The projection's points in the legend's groups (name, colour, points) for `colour_by`.
fn point_groups(
    colour_by: ColourBy,
    report: &s5_run::curation::CurationReport,
) -> Vec<(String, Color32, Vec<[f64; 2]>)> {
    let points = &report.projection.points;
    let mut groups: Vec<(String, Color32, Vec<[f64; 2]>)> = Vec::new();
    let xy = |p: &s5_run::curation::ProjectedPatch| [f64::from(p.xy[0]), f64::from(p.xy[1])];
    match colour_by {
        ColourBy::Cluster => {
            for (m, _) in report.clusters.iter().enumerate() {
                let pts = points
                    .iter()
                    .filter(|p| p.cluster as usize == m)
                    .map(xy)
                    .collect();
                groups.push((format!("cluster {m}"), category(m), pts));
            }
        }
        ColourBy::Entropy => {
            let max = points
                .iter()
                .map(|p| p.entropy)
                .fold(0f32, f32::max)
                .max(1e-6);
            for band in 0..ENTROPY_BANDS {
                let lo = max * band as f32 / ENTROPY_BANDS as f32;
                let hi = max * (band + 1) as f32 / ENTROPY_BANDS as f32;
                let pts = points
                    .iter()
                    .filter(|p| p.entropy >= lo && (p.entropy < hi || band == ENTROPY_BANDS - 1))
                    .map(xy)
                    .collect();
                groups.push((
                    format!("H {lo:.2}–{hi:.2}"),
                    viridis((band as f32 + 0.5) / ENTROPY_BANDS as f32),
                    pts,
                ));
            }
        }
        ColourBy::Selected => {
            groups.push((
                "not selected".into(),
                Color32::from_gray(150),
                points.iter().filter(|p| !p.selected).map(xy).collect(),
            ));
            groups.push((
                "selected".into(),
                Color32::from_rgb(230, 90, 60),
                points.iter().filter(|p| p.selected).map(xy).collect(),
            ));
        }
        ColourBy::Kind => {
            for (k, kind) in report.kinds.iter().enumerate() {
                let pts = points
                    .iter()
                    .filter(|p| p.kind == Some(k as u16))
                    .map(xy)
                    .collect();
                let name = if kind.in_distribution {
                    format!("{} (in distribution)", kind.kind)
                } else {
                    kind.kind.clone()
                };
                groups.push((name, category(k), pts));
            }
        }
    }
    groups
}

/// A box being dragged in the projection: its corners follow the pointer; when it is let go,
/// the patches inside are chosen and their pictures asked for.
fn drag_box(
    state: &mut CurationState,
    points: &[s5_run::curation::ProjectedPatch],
    run: &mut RunEntry,
    pointer: Option<egui_plot::PlotPoint>,
    (started, dragging, stopped): (bool, bool, bool),
) {
    if started {
        state.drag_from = pointer;
    }
    if (dragging || stopped)
        && let (Some(from), Some(to)) = (state.drag_from, pointer)
    {
        state.selection = Some([from, to]);
    }
    if stopped && let Some([a, b]) = state.selection {
        state.drag_from = None;
        let (x0, x1) = (a.x.min(b.x), a.x.max(b.x));
        let (y0, y1) = (a.y.min(b.y), a.y.max(b.y));
        let inside: Vec<&s5_run::curation::ProjectedPatch> = points
            .iter()
            .filter(|p| {
                let (x, y) = (f64::from(p.xy[0]), f64::from(p.xy[1]));
                x >= x0 && x <= x1 && y >= y0 && y <= y1
            })
            .collect();
        state.chosen = inside.iter().map(|p| p.patch).collect();
        let wanted: Vec<CropRequest> = inside
            .iter()
            .take(PICTURES_SHOWN)
            .filter(|p| !run.store.crops.contains_key(&p.patch))
            .map(|p| CropRequest {
                patch: p.patch,
                image: p.image,
                x_px: p.x_px,
                y_px: p.y_px,
                size_px: p.size_px,
            })
            .collect();
        if !wanted.is_empty() {
            run.request(Request::Crops(wanted));
        }
    }
}

/// A plot of the right-hand column: fixed in place, with a legend.
fn side_plot(id: &'static str, width: f32) -> Plot<'static> {
    Plot::new(id)
        .width(width)
        .height(width * 0.45)
        .legend(Legend::default())
        .allow_drag(false)
        .allow_scroll(false)
}

fn histogram(ui: &mut egui::Ui, report: &s5_run::curation::CurationReport, width: f32) {
    let h = &report.entropy;
    let bins = h.pool.len().max(1);
    let bin_w = f64::from(h.range_nats) / bins as f64;
    let bars = |counts: &[u64], colour: Color32, name: &str| {
        BarChart::new(
            name,
            counts
                .iter()
                .enumerate()
                .map(|(i, &c)| Bar::new((i as f64 + 0.5) * bin_w, c as f64).width(bin_w * 0.95))
                .collect(),
        )
        .color(colour)
    };
    ui.label(egui::RichText::new("entropy (nats): pool and selection").strong());
    let cut = report
        .clusters
        .iter()
        .filter_map(|c| c.entropy_cut)
        .fold(None, |a: Option<f32>, c| Some(a.map_or(c, |a| a.max(c))));
    side_plot("curation-histogram", width).show(ui, |plot| {
        plot.add(bars(&h.pool, Color32::from_gray(160), "pool"));
        if !h.selected.is_empty() {
            plot.add(bars(
                &h.selected,
                Color32::from_rgb(230, 90, 60),
                "selection",
            ));
        }
        if let Some(cut) = cut {
            plot.add(
                VLine::new(
                    format!("highest entropy selected ({cut:.3})"),
                    f64::from(cut),
                )
                .color(Color32::from_rgb(200, 40, 40)),
            );
        }
    });
}

fn cluster_bars(ui: &mut egui::Ui, report: &s5_run::curation::CurationReport, width: f32) {
    ui.label(egui::RichText::new("per cluster: labeled, quota, filled").strong());
    let total_labeled: u64 = report
        .clusters
        .iter()
        .map(|c| c.labeled)
        .sum::<u64>()
        .max(1);
    let budget = report.budget.unwrap_or(0) as f64;
    let group = |f: &dyn Fn(&s5_run::curation::ClusterReport) -> f64,
                 offset: f64,
                 colour: Color32,
                 name: &str| {
        BarChart::new(
            name,
            report
                .clusters
                .iter()
                .enumerate()
                .map(|(m, c)| Bar::new(m as f64 + offset, f(c)).width(0.25))
                .collect(),
        )
        .color(colour)
    };
    side_plot("curation-clusters", width).show(ui, |plot| {
        // Labeled counts scaled to the budget (Eq. 3's nominal share), so the three compare.
        let scale = if budget > 0.0 {
            budget / total_labeled as f64
        } else {
            1.0
        };
        plot.add(group(
            &|c| c.labeled as f64 * scale,
            -0.27,
            Color32::from_rgb(90, 130, 200),
            "labeled (× B_u / B_l)",
        ));
        plot.add(group(
            &|c| c.quota_final.unwrap_or(0) as f64,
            0.0,
            Color32::from_rgb(240, 180, 60),
            "quota",
        ));
        plot.add(group(
            &|c| c.filled as f64,
            0.27,
            Color32::from_rgb(230, 90, 60),
            "filled",
        ));
        if report.stage == ReportStage::Scoring {
            let scored: Vec<[f64; 2]> = report
                .clusters
                .iter()
                .enumerate()
                .map(|(m, c)| [m as f64, c.scored as f64])
                .collect();
            plot.line(Line::new("scored so far", PlotPoints::from(scored)));
        }
    });
}

/// Per cluster, the similarity floor of the selection and what it kept out (a selection
/// made with floors only).
fn floor_table(ui: &mut egui::Ui, report: &s5_run::curation::CurationReport) {
    if report.clusters.iter().all(|c| c.similarity_floor.is_none()) {
        return;
    }
    ui.label(egui::RichText::new("similarity floors").strong())
        .on_hover_text(
            "A patch is a candidate for a cluster only if it is at least as similar to its \
             prototype as most of the cluster's labeled patches are",
        );
    egui::Grid::new("curation-floors")
        .striped(true)
        .show(ui, |ui| {
            for head in ["cluster", "floor", "below floor", "candidates", "filled"] {
                ui.label(head);
            }
            ui.end_row();
            let count = |v: Option<u64>| v.map_or("-".to_string(), |n| n.to_string());
            for (m, c) in report.clusters.iter().enumerate() {
                ui.label(m.to_string());
                ui.label(c.similarity_floor.map_or("-".into(), |f| format!("{f:.3}")));
                ui.label(count(c.below_floor));
                ui.label(count(c.candidates));
                ui.label(c.filled.to_string());
                ui.end_row();
            }
        });
}
