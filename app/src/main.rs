//! `s5-viewer [RUN_DIR | FOLDER_OF_RUNS]...`: watch s5 runs while they train.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use s5_run::SampleRole;
use s5_viewer::decoded::LABEL_ROLES;
use s5_viewer::screenshot::{WindowShot, headless};
use s5_viewer::views::curation::ColourBy;
use s5_viewer::views::gallery::Overlay;
use s5_viewer::{View, Viewer};

/// Watch s5 runs: curves, the FixMatch gallery with its τ slider, the curation explorer.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Run folders, or folders of runs (new runs in them appear as they start).
    paths: Vec<PathBuf>,
    /// Render one frame to this PNG and exit (headless: no window or display needed).
    #[arg(long)]
    screenshot: Option<PathBuf>,
    /// With --screenshot: take it from a real window instead (needs a display, e.g. Xvfb).
    #[arg(long, requires = "screenshot")]
    window: bool,
    /// The view to open: runs, curves, gallery or curation.
    #[arg(long, default_value = "curves", value_parser = parse_view)]
    view: View,
    /// The step to show (default: the newest, following the run live).
    #[arg(long)]
    step: Option<u64>,
    /// Gallery: draw these labels over the image (pseudo_label, prediction, student, truth).
    #[arg(long, value_parser = parse_overlay)]
    overlay: Option<SampleRole>,
    /// Gallery: the τ of the slider (default: the trainer's).
    #[arg(long)]
    tau: Option<f32>,
    /// Curation: colour the projection by cluster, entropy, selected or kind.
    #[arg(long, default_value = "cluster", value_parser = parse_colour)]
    colour_by: ColourBy,
    /// Window (or screenshot) size in points, WIDTHxHEIGHT.
    #[arg(long, default_value = "1400x900", value_parser = parse_size)]
    size: (f32, f32),
    /// How often the run folders are polled, in milliseconds.
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
}

fn parse_view(text: &str) -> Result<View, String> {
    View::parse(text).ok_or_else(|| format!("`{text}`: choose runs, curves, gallery or curation"))
}

fn parse_overlay(text: &str) -> Result<SampleRole, String> {
    SampleRole::try_from(text.to_string())
        .ok()
        .filter(|r| LABEL_ROLES.contains(r))
        .ok_or_else(|| format!("`{text}`: choose pseudo_label, prediction, student or truth"))
}

fn parse_colour(text: &str) -> Result<ColourBy, String> {
    match text {
        "cluster" => Ok(ColourBy::Cluster),
        "entropy" => Ok(ColourBy::Entropy),
        "selected" => Ok(ColourBy::Selected),
        "kind" => Ok(ColourBy::Kind),
        _ => Err(format!(
            "`{text}`: choose cluster, entropy, selected or kind"
        )),
    }
}

fn parse_size(text: &str) -> Result<(f32, f32), String> {
    let (w, h) = text
        .split_once('x')
        .ok_or_else(|| format!("`{text}`: write WIDTHxHEIGHT, e.g. 1400x900"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<f32>()
            .ok()
            .filter(|v| *v >= 100.0)
            .ok_or_else(|| format!("`{text}`: sides are numbers of at least 100"))
    };
    Ok((parse(w)?, parse(h)?))
}

fn main() -> ExitCode {
    quiet_device_select();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("s5-viewer: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Mesa's Vulkan device-select layer probes Wayland while wgpu lists adapters and, without a
/// usable `XDG_RUNTIME_DIR` (headless screenshots on servers and CI, Xvfb), prints "error:
/// XDG_RUNTIME_DIR is invalid or not set" although nothing is wrong. In exactly that case the
/// layer is turned off for this process (`NODEVICE_SELECT=1`), unless the user set
/// `NODEVICE_SELECT` either way: the rule `s5` applies to itself. The viewer's renderer picks
/// its adapter by wgpu's preference, not by the layer's order.
fn quiet_device_select() {
    if !cfg!(target_os = "linux") || std::env::var_os("NODEVICE_SELECT").is_some() {
        return;
    }
    let runtime_dir_ok = std::env::var_os("XDG_RUNTIME_DIR")
        .is_some_and(|dir| !dir.is_empty() && std::path::Path::new(&dir).is_dir());
    if !runtime_dir_ok {
        // SAFETY: called first thing in `main`, before any thread exists, so nothing reads
        // the environment concurrently.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

fn run(args: Args) -> Result<(), String> {
    for path in &args.paths {
        if !path.exists() {
            return Err(format!(
                "{}: no such folder (give a run folder, e.g. runs/synth, or a folder of runs)",
                path.display()
            ));
        }
    }
    let mut viewer = Viewer::new(&args.paths, Duration::from_millis(args.poll_ms.max(20)));
    viewer.view = args.view;
    if let Some(step) = args.step {
        viewer.cursor.step = step;
        viewer.cursor.live = false;
    }
    if let Some(role) = args.overlay {
        viewer.gallery.overlay = Overlay::On(role);
    }
    if let Some(tau) = args.tau {
        if !(0.0..=1.0).contains(&tau) {
            return Err(format!("--tau {tau}: τ is a confidence, between 0 and 1"));
        }
        viewer.gallery.tau = Some(tau);
    }
    viewer.curation.colour_by = args.colour_by;
    let size = egui::vec2(args.size.0, args.size.1);
    match (&args.screenshot, args.window) {
        (Some(out), false) => {
            let report = headless(viewer, size, out)?;
            println!(
                "{}: {} view, frame time {:.1} ms (mean of 10 frames, after {} frames reading the run)",
                out.display(),
                args.view.label().to_lowercase(),
                report.frame_ms,
                report.frames_waited
            );
            Ok(())
        }
        (Some(out), true) => {
            let shot = WindowShot::new(viewer, out.clone());
            let result = shot.result.clone();
            eframe::run_native(
                "s5 viewer",
                native_options(size),
                Box::new(|_cc| Ok(Box::new(shot))),
            )
            .map_err(|e| format!("cannot open a window: {e}"))?;
            let outcome = result.lock().map_err(|_| "poisoned".to_string())?.take();
            match outcome {
                Some(Ok(())) => {
                    println!("{}: window screenshot", out.display());
                    Ok(())
                }
                Some(Err(e)) => Err(e),
                None => Err("the window closed before its screenshot".into()),
            }
        }
        (None, _) => eframe::run_native(
            "s5 viewer",
            native_options(size),
            Box::new(|_cc| Ok(Box::new(viewer))),
        )
        .map_err(|e| {
            format!(
                "cannot open a window: {e}. Without a display, use --screenshot OUT.png; \
                 without a GPU on Linux, install lavapipe (`apt install mesa-vulkan-drivers`)"
            )
        }),
    }
}

fn native_options(size: egui::Vec2) -> eframe::NativeOptions {
    eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_inner_size(size)
            .with_title("s5 viewer"),
        ..Default::default()
    }
}
