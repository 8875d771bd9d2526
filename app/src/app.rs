//! The viewer: runs, their readers, one step cursor shared by every view, and the views.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use crate::reader::{ReaderHandle, Request};
use crate::store::RunStore;
use crate::textures::TextureCache;
use crate::views;

/// Which view fills the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Runs,
    Curves,
    Gallery,
    Curation,
}

impl View {
    pub const ALL: [View; 4] = [View::Runs, View::Curves, View::Gallery, View::Curation];

    pub fn label(self) -> &'static str {
        match self {
            Self::Runs => "Runs",
            Self::Curves => "Curves",
            Self::Gallery => "Gallery",
            Self::Curation => "Curation",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.label().eq_ignore_ascii_case(text))
    }
}

/// The step every view shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cursor {
    pub step: u64,
    /// Follow the newest step (turned off when the user scrubs).
    pub live: bool,
}

/// One run and its reader.
pub struct RunEntry {
    pub store: RunStore,
    reader: Option<ReaderHandle>,
    /// The step asked of the reader and not yet delivered.
    pub pending_step: Option<u64>,
}

impl RunEntry {
    /// Asks the reader to decode `step` (once until it arrives).
    pub fn request_step(&mut self, step: u64) {
        if self.pending_step != Some(step)
            && let Some(reader) = &self.reader
        {
            self.pending_step = Some(step);
            let _ = reader.requests.send(Request::Step(step));
        }
    }

    pub fn request(&self, request: Request) {
        if let Some(reader) = &self.reader {
            let _ = reader.requests.send(request);
        }
    }
}

/// The whole viewer's state.
pub struct Viewer {
    pub runs: Vec<RunEntry>,
    pub view: View,
    pub cursor: Cursor,
    pub curves: views::curves::CurvesState,
    pub gallery: views::gallery::GalleryState,
    pub curation: views::curation::CurationState,
    pub textures: TextureCache,
    /// Folders watched for new runs.
    roots: Vec<PathBuf>,
    discovered: Option<Receiver<PathBuf>>,
    /// The `demo.json` of the roots that are demo folders, as the discovery thread read it.
    demo_updates: Option<Receiver<(PathBuf, views::runs::DemoSeen)>>,
    pub demos: Vec<(PathBuf, views::runs::DemoSeen)>,
    /// Tells the discovery thread to end (set when the viewer goes).
    stop_discovery: std::sync::Arc<std::sync::atomic::AtomicBool>,
    interval: Duration,
    started: bool,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.stop_discovery
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether `path` holds a run (its manifest).
pub fn is_run(path: &std::path::Path) -> bool {
    path.join("manifest.json").is_file()
}

/// The runs in `root`: itself if it is one, else its sub-folders that are, sorted.
pub fn runs_in(root: &std::path::Path) -> Vec<PathBuf> {
    if is_run(root) {
        return vec![root.to_path_buf()];
    }
    let mut runs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_run(p))
                .collect()
        })
        .unwrap_or_default();
    runs.sort();
    runs
}

impl Viewer {
    /// A viewer of the runs given (run folders, or folders of runs), polled every
    /// `interval`. Readers start with the first frame.
    pub fn new(paths: &[PathBuf], interval: Duration) -> Self {
        let mut runs = Vec::new();
        for path in paths {
            let found = runs_in(path);
            // A folder that is no run yet (a run about to start) is watched as one.
            let found = if found.is_empty() && !path.is_dir() {
                vec![path.clone()]
            } else {
                found
            };
            for run in found {
                runs.push(RunEntry {
                    store: RunStore::new(run),
                    reader: None,
                    pending_step: None,
                });
            }
        }
        Self {
            runs,
            view: View::Curves,
            cursor: Cursor {
                step: 0,
                live: true,
            },
            curves: Default::default(),
            gallery: Default::default(),
            curation: Default::default(),
            textures: TextureCache::default(),
            roots: paths.iter().filter(|p| !is_run(p)).cloned().collect(),
            discovered: None,
            demo_updates: None,
            demos: Vec::new(),
            stop_discovery: Default::default(),
            interval,
            started: false,
        }
    }

    fn start(&mut self, ctx: &egui::Context) {
        self.started = true;
        for run in &mut self.runs {
            let ctx = ctx.clone();
            run.reader = Some(ReaderHandle::spawn(
                run.store.path.clone(),
                self.interval,
                move || ctx.request_repaint(),
            ));
        }
        if !self.roots.is_empty() {
            let (tx, rx) = channel();
            let (demo_tx, demo_rx) = channel();
            let roots = self.roots.clone();
            let known: Vec<PathBuf> = self.runs.iter().map(|r| r.store.path.clone()).collect();
            let interval = self.interval.max(Duration::from_millis(500));
            let ctx = ctx.clone();
            let stop = self.stop_discovery.clone();
            std::thread::spawn(move || {
                let mut known = known;
                let mut demos_seen: Vec<(PathBuf, views::runs::DemoSeen)> = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for root in &roots {
                        let demo = match s5_run::demo::DemoState::load(root) {
                            Ok(Some(state)) => Some(Ok(state)),
                            Ok(None) => None,
                            Err(e) => Some(Err(e.to_string())),
                        };
                        if let Some(demo) = demo {
                            let seen = demos_seen.iter_mut().find(|(r, _)| r == root);
                            let changed = seen.as_ref().is_none_or(|(_, d)| *d != demo);
                            if changed {
                                match seen {
                                    Some((_, d)) => *d = demo.clone(),
                                    None => demos_seen.push((root.clone(), demo.clone())),
                                }
                                if demo_tx.send((root.clone(), demo)).is_err() {
                                    return;
                                }
                                ctx.request_repaint();
                            }
                        }
                        for run in runs_in(root) {
                            if !known.contains(&run) {
                                known.push(run.clone());
                                if tx.send(run).is_err() {
                                    return;
                                }
                                ctx.request_repaint();
                            }
                        }
                    }
                    std::thread::sleep(interval * 4);
                }
            });
            self.discovered = Some(rx);
            self.demo_updates = Some(demo_rx);
        }
    }

    /// Takes in what the readers sent (no disk I/O here).
    pub fn pump(&mut self, ctx: &egui::Context) {
        if !self.started {
            self.start(ctx);
        }
        if let Some(rx) = &self.discovered {
            while let Ok(path) = rx.try_recv() {
                let ctx = ctx.clone();
                self.runs.push(RunEntry {
                    reader: Some(ReaderHandle::spawn(
                        path.clone(),
                        self.interval,
                        move || ctx.request_repaint(),
                    )),
                    store: RunStore::new(path),
                    pending_step: None,
                });
            }
        }
        if let Some(rx) = &self.demo_updates {
            while let Ok((root, demo)) = rx.try_recv() {
                match self.demos.iter_mut().find(|(r, _)| *r == root) {
                    Some((_, d)) => *d = demo,
                    None => self.demos.push((root, demo)),
                }
            }
        }
        for run in &mut self.runs {
            let Some(reader) = &run.reader else { continue };
            while let Ok(update) = reader.updates.try_recv() {
                if let crate::reader::Update::Samples(s) = &update
                    && run.pending_step == Some(s.step)
                {
                    run.pending_step = None;
                }
                if let crate::reader::Update::SamplesError { step, .. } = &update
                    && run.pending_step == Some(*step)
                {
                    run.pending_step = None;
                }
                run.store.apply(update);
            }
        }
        if self.cursor.live {
            self.cursor.step = self.newest_step();
        }
    }

    /// The newest step of any run (logged or sampled).
    pub fn newest_step(&self) -> u64 {
        self.runs
            .iter()
            .flat_map(|r| {
                r.store
                    .last_step
                    .into_iter()
                    .chain(r.store.steps.last().copied())
            })
            .max()
            .unwrap_or(0)
    }

    /// Draws one frame.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.pump(&ctx);
        self.textures.next_frame();
        let newest = self.newest_step();
        egui::Panel::top("s5-viewer-top").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong("s5 viewer");
                ui.separator();
                for view in View::ALL {
                    ui.selectable_value(&mut self.view, view, view.label());
                }
                ui.separator();
                views::timeline(ui, &mut self.cursor, newest);
            });
        });
        egui::Panel::bottom("s5-viewer-diagnostics").show(ui, |ui| {
            views::diagnostics(ui, &self.runs);
        });
        egui::CentralPanel::default().show(ui, |ui| match self.view {
            View::Runs => views::runs::show(ui, &self.runs, &self.demos),
            View::Curves => views::curves::show(ui, &mut self.curves, &self.runs, &mut self.cursor),
            View::Gallery => views::gallery::show(
                ui,
                &mut self.gallery,
                &mut self.runs,
                &self.cursor,
                &mut self.textures,
            ),
            View::Curation => {
                views::curation::show(ui, &mut self.curation, &mut self.runs, &mut self.textures)
            }
        });
    }

    /// Whether every reader has delivered its first look and no step request is pending
    /// (headless screenshots wait for this).
    pub fn settled(&self) -> bool {
        self.runs.iter().all(|r| {
            r.pending_step.is_none() && r.store.first_look && r.store.events_behind_bytes == 0
        })
    }
}

impl eframe::App for Viewer {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        Viewer::ui(self, ui);
    }
}
