//! Frames without a person at the screen: headless (rendered through egui_kittest's wgpu
//! renderer, no window or display needed) for CI and docs, or a real window that takes its
//! own screenshot (for checking the windowed path, e.g. under Xvfb).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::app::Viewer;

/// How long a screenshot waits for the readers to deliver what the view needs.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Frames in a row without news from the readers before the picture is taken.
const QUIET_FRAMES: usize = 8;
/// Frames timed for the frame-time report.
const TIMED_FRAMES: usize = 10;

/// What a headless screenshot measured.
#[derive(Debug, Clone, Copy)]
pub struct FrameReport {
    /// Mean CPU time of one frame (layout and painting, no disk I/O), in milliseconds.
    pub frame_ms: f64,
    pub frames_waited: usize,
}

/// A headless harness around `viewer` at `size` (points), rendering through wgpu.
pub fn harness<'a>(viewer: Viewer, size: egui::Vec2) -> egui_kittest::Harness<'a, Viewer> {
    egui_kittest::Harness::builder()
        .with_size(size)
        .wgpu()
        .build_ui_state(|ui, viewer: &mut Viewer| viewer.ui(ui), viewer)
}

/// Steps `harness` until its readers have delivered everything the view asked for and
/// nothing changed for a few frames; returns the frames it took.
pub fn settle(harness: &mut egui_kittest::Harness<'_, Viewer>) -> Result<usize, String> {
    let started = Instant::now();
    let mut quiet = 0;
    let mut frames = 0;
    let mut last = None;
    while quiet < QUIET_FRAMES {
        if started.elapsed() > SETTLE_TIMEOUT {
            return Err(format!(
                "the run was not read within {} s",
                SETTLE_TIMEOUT.as_secs()
            ));
        }
        harness.step();
        frames += 1;
        let v = harness.state();
        let now = (
            v.runs.iter().map(|r| r.store.events).sum::<u64>(),
            v.runs
                .iter()
                .map(|r| r.store.decoded_steps().len())
                .sum::<usize>(),
            v.runs.iter().filter(|r| r.store.report.is_some()).count(),
            v.runs.iter().map(|r| r.store.crops.len()).sum::<usize>(),
        );
        if v.settled() && last == Some(now) {
            quiet += 1;
        } else {
            quiet = 0;
        }
        last = Some(now);
        std::thread::sleep(Duration::from_millis(40));
    }
    Ok(frames)
}

/// Renders `viewer` headless at `size` (points) once its readers have settled, and writes
/// the picture to `out` (PNG).
pub fn headless(viewer: Viewer, size: egui::Vec2, out: &Path) -> Result<FrameReport, String> {
    let mut harness = harness(viewer, size);
    let frames = settle(&mut harness)?;
    let timer = Instant::now();
    for _ in 0..TIMED_FRAMES {
        harness.step();
    }
    let frame_ms = timer.elapsed().as_secs_f64() * 1000.0 / TIMED_FRAMES as f64;
    let image = harness.render().map_err(|e| {
        format!(
            "cannot render headless: {e}. A Vulkan, Metal or DX12 adapter is needed; on Linux \
             without a GPU install the lavapipe software driver (Debian/Ubuntu: \
             `apt install mesa-vulkan-drivers`)"
        )
    })?;
    image
        .save(out)
        .map_err(|e| format!("{}: cannot write the screenshot: {e}", out.display()))?;
    Ok(FrameReport {
        frame_ms,
        frames_waited: frames,
    })
}

/// A real window that takes its own screenshot once settled, writes it and closes.
pub struct WindowShot {
    pub viewer: Viewer,
    pub out: PathBuf,
    frames: usize,
    asked: bool,
    started: Instant,
    /// Set when done: `Ok` or the reason it failed.
    pub result: std::sync::Arc<std::sync::Mutex<Option<Result<(), String>>>>,
    /// The screenshot, once the integration delivers it.
    shot: std::sync::Arc<std::sync::Mutex<Option<std::sync::Arc<egui::ColorImage>>>>,
}

impl WindowShot {
    pub fn new(viewer: Viewer, out: PathBuf) -> Self {
        Self {
            viewer,
            out,
            frames: 0,
            asked: false,
            started: Instant::now(),
            result: Default::default(),
            shot: Default::default(),
        }
    }
}

impl eframe::App for WindowShot {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.viewer.ui(ui);
        self.frames += 1;
        let ctx = ui.ctx().clone();
        let shot = self.shot.lock().expect("not poisoned").take();
        if let Some(shot) = shot {
            let [w, h] = shot.size;
            let rgba: Vec<u8> = shot.pixels.iter().flat_map(|c| c.to_array()).collect();
            let saved = image::RgbaImage::from_raw(w as u32, h as u32, rgba)
                .ok_or_else(|| "the screenshot has the wrong size".to_string())
                .and_then(|i| {
                    i.save(&self.out)
                        .map_err(|e| format!("{}: {e}", self.out.display()))
                });
            *self.result.lock().expect("not poisoned") = Some(saved);
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        if self.started.elapsed() > SETTLE_TIMEOUT {
            *self.result.lock().expect("not poisoned") =
                Some(Err("the run was not read in time".into()));
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        if !self.asked && self.viewer.settled() && self.frames > 30 {
            self.asked = true;
            let into = self.shot.clone();
            let wake = ctx.clone();
            ctx.request_screenshot(move |image| {
                *into.lock().expect("not poisoned") = Some(image);
                wake.request_repaint();
            });
        }
        ctx.request_repaint_after(Duration::from_millis(30));
    }
}
