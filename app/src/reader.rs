//! The reader: one thread per run that polls its files (polling works on network file
//! systems, where change notification does not), decodes what changed and sends typed
//! [`Update`]s to the UI, which never touches the disk.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::{Duration, SystemTime};

use egui::ColorImage;
use s5_run::curation::{CurationReport, Plan};
use s5_run::samples::sample_steps;
use s5_run::{Manifest, RunDir};

use crate::decoded::{DecodedReport, StepSamples, color_image};
use crate::tail::{EventTail, TailRead};

/// What the reader found.
#[derive(Debug)]
pub enum Update {
    Manifest(Result<Manifest, String>),
    /// `config.ron`, as text.
    Config(String),
    Events(TailRead),
    /// The step folders there now (thinning removes some).
    Steps(Vec<u64>),
    Samples(Arc<StepSamples>),
    /// A step folder that could not be read.
    SamplesError {
        step: u64,
        message: String,
    },
    Report(Arc<DecodedReport>),
    /// A file that could not be read (the events, the report), named, for the diagnostics.
    Problem(String),
    /// Pictures of pool patches asked for by [`Request::Crops`].
    Crops(Vec<(u64, ColorImage)>),
    /// Whether a writer holds the run, and how long ago the events last changed.
    Status {
        locked: bool,
        events_age_s: Option<f64>,
    },
    /// The run folder disappeared (true) or came back (false).
    Deleted(bool),
    /// The first poll is complete (sent once).
    FirstLook,
}

/// A patch of the curation pool to picture: plan image index and window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropRequest {
    pub patch: u64,
    pub image: u32,
    pub x_px: u32,
    pub y_px: u32,
    pub size_px: u32,
}

/// What the UI asks of the reader.
#[derive(Debug)]
pub enum Request {
    /// Decode this step's folder (the cursor moved to it).
    Step(u64),
    Crops(Vec<CropRequest>),
}

/// The longest side of a crop sent to the UI.
const CROP_PX: u32 = 96;

/// The polling state of one run.
pub struct Reader {
    run: RunDir,
    tail: EventTail,
    manifest_read: bool,
    config_modified: Option<SystemTime>,
    steps: Option<Vec<u64>>,
    newest_sent: Option<u64>,
    report_modified: Option<SystemTime>,
    deleted: bool,
    plan: Option<Vec<PathBuf>>,
    /// The last status sent.
    status: Option<(bool, Option<f64>)>,
    first_look: bool,
}

/// A status is sent again when the events' age moved by this much.
const STATUS_EVERY_S: f64 = 5.0;

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Reader {
    pub fn new(run: impl Into<PathBuf>) -> Self {
        Self {
            run: RunDir::new(run.into()),
            tail: EventTail::default(),
            manifest_read: false,
            config_modified: None,
            steps: None,
            newest_sent: None,
            report_modified: None,
            deleted: false,
            plan: None,
            status: None,
            first_look: false,
        }
    }

    /// One look at every file; sends what changed.
    pub fn poll(&mut self, out: &mut dyn FnMut(Update)) {
        self.look(out);
        if !self.first_look {
            self.first_look = true;
            out(Update::FirstLook);
        }
    }

    fn look(&mut self, out: &mut dyn FnMut(Update)) {
        let exists = self.run.root().is_dir();
        if exists == self.deleted {
            self.deleted = !exists;
            out(Update::Deleted(self.deleted));
        }
        if !exists {
            return;
        }
        if !self.manifest_read && self.run.manifest().exists() {
            self.manifest_read = true;
            out(Update::Manifest(
                Manifest::load(&self.run).map_err(|e| e.to_string()),
            ));
        }
        let config = modified(&self.run.config());
        if config.is_some() && config != self.config_modified {
            self.config_modified = config;
            if let Ok(text) = std::fs::read_to_string(self.run.config()) {
                out(Update::Config(text));
            }
        }
        match self.tail.poll(&self.run.events()) {
            Ok(read) => {
                if read.reset || !read.events.is_empty() || !read.corrupt.is_empty() {
                    out(Update::Events(read));
                }
            }
            Err(e) => out(Update::Problem(format!(
                "{}: {e}",
                self.run.events().display()
            ))),
        }
        let events_age_s = modified(&self.run.events())
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs_f64());
        let locked = self.run.lock().exists();
        let changed = match self.status {
            None => true,
            Some((was_locked, was_age)) => {
                was_locked != locked
                    || was_age.is_some() != events_age_s.is_some()
                    || matches!((was_age, events_age_s), (Some(a), Some(b)) if (a - b).abs() >= STATUS_EVERY_S)
            }
        };
        if changed {
            self.status = Some((locked, events_age_s));
            out(Update::Status {
                locked,
                events_age_s,
            });
        }
        let steps = sample_steps(&self.run).unwrap_or_default();
        if self.steps.as_ref() != Some(&steps) {
            out(Update::Steps(steps.clone()));
            if let Some(&newest) = steps.last()
                && self.newest_sent != Some(newest)
            {
                self.newest_sent = Some(newest);
                self.send_step(newest, out);
            }
            self.steps = Some(steps);
        }
        let report = modified(&CurationReport::path(&self.run));
        if report.is_some() && report != self.report_modified {
            self.report_modified = report;
            match DecodedReport::read(&self.run) {
                Ok(decoded) => out(Update::Report(Arc::new(decoded))),
                Err(e) => out(Update::Problem(e)),
            }
        }
    }

    fn send_step(&mut self, step: u64, out: &mut dyn FnMut(Update)) {
        match StepSamples::read(&self.run.sample_step(step)) {
            Ok(samples) => out(Update::Samples(Arc::new(samples))),
            Err(message) => out(Update::SamplesError { step, message }),
        }
    }

    /// Answers a request of the UI.
    pub fn handle(&mut self, request: Request, out: &mut dyn FnMut(Update)) {
        match request {
            Request::Step(step) => self.send_step(step, out),
            Request::Crops(crops) => {
                if self.plan.is_none() {
                    self.plan = Plan::load(&self.run)
                        .ok()
                        .map(|p| p.images.into_iter().map(|i| i.path).collect());
                }
                let Some(images) = &self.plan else {
                    return;
                };
                let mut pictures = Vec::new();
                let mut open: Option<(u32, image::RgbImage)> = None;
                for c in crops {
                    if open.as_ref().map(|(i, _)| *i) != Some(c.image) {
                        let Some(path) = images.get(c.image as usize) else {
                            continue;
                        };
                        open = image::open(path).ok().map(|i| (c.image, i.into_rgb8()));
                    }
                    let Some((_, image)) = &open else { continue };
                    let crop = image::imageops::crop_imm(
                        image,
                        c.x_px,
                        c.y_px,
                        c.size_px.min(image.width().saturating_sub(c.x_px)),
                        c.size_px.min(image.height().saturating_sub(c.y_px)),
                    )
                    .to_image();
                    let scale =
                        (CROP_PX as f32 / crop.width().max(crop.height()).max(1) as f32).min(1.0);
                    let small = image::imageops::resize(
                        &crop,
                        ((crop.width() as f32 * scale) as u32).max(1),
                        ((crop.height() as f32 * scale) as u32).max(1),
                        image::imageops::FilterType::Triangle,
                    );
                    pictures.push((
                        c.patch,
                        color_image(&image::DynamicImage::ImageRgb8(small).into_rgba8()),
                    ));
                }
                out(Update::Crops(pictures));
            }
        }
    }
}

/// The UI's end of a reader thread.
pub struct ReaderHandle {
    pub updates: Receiver<Update>,
    pub requests: Sender<Request>,
    stop: Arc<AtomicBool>,
}

impl ReaderHandle {
    /// Starts a reader thread on `run`, polling every `interval`; `wake` is called after
    /// each batch of updates (a repaint request).
    pub fn spawn(run: PathBuf, interval: Duration, wake: impl Fn() + Send + 'static) -> Self {
        let (update_tx, updates) = channel();
        let (requests, request_rx) = channel::<Request>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name(format!("s5-viewer reader {}", run.display()))
            .spawn(move || {
                let mut reader = Reader::new(run);
                while !stopped.load(Ordering::Relaxed) {
                    let mut sent = false;
                    let mut out = |u: Update| {
                        sent = true;
                        let _ = update_tx.send(u);
                    };
                    loop {
                        match request_rx.try_recv() {
                            Ok(request) => reader.handle(request, &mut out),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => return,
                        }
                    }
                    reader.poll(&mut out);
                    if sent {
                        wake();
                    }
                    // Sleep in short slices so requests are answered quickly.
                    let slices = (interval.as_millis() / 25).max(1);
                    for _ in 0..slices {
                        if stopped.load(Ordering::Relaxed) {
                            return;
                        }
                        match request_rx.recv_timeout(Duration::from_millis(25)) {
                            Ok(request) => {
                                let mut answered = false;
                                reader.handle(request, &mut |u| {
                                    answered = true;
                                    let _ = update_tx.send(u);
                                });
                                if answered {
                                    wake();
                                }
                            }
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                }
            })
            .expect("a reader thread starts");
        Self {
            updates,
            requests,
            stop,
        }
    }
}

impl Drop for ReaderHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
