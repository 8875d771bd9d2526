//! s5-viewer on its sample runs (`tests/fixtures/runs`, made with the real s5 by
//! `tests/fixtures/make-fixture.sh`): a snapshot of every view, the live behaviour of item 8
//! of the viewer's design (half lines, new and thinned steps, deleted and restarted runs),
//! the τ slider against the trainer's mask, bounded memory, and a real window under Xvfb.

use std::path::{Path, PathBuf};
use std::time::Duration;

use s5_run::{SampleKind, SampleRole};
use s5_viewer::app::{View, Viewer};
use s5_viewer::decoded::StepSamples;
use s5_viewer::screenshot::{harness, settle};
use s5_viewer::views::gallery::Overlay;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/runs")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

const SIZE: [f32; 2] = [1200.0, 800.0];

fn viewer(paths: &[PathBuf]) -> Viewer {
    Viewer::new(paths, Duration::from_millis(30))
}

/// Steps the harness (sleeping between frames, so the reader can poll) until `done` holds;
/// panics naming `what` after `frames` frames.
fn frames_until(
    h: &mut egui_kittest::Harness<'_, Viewer>,
    frames: usize,
    what: &str,
    done: impl Fn(&Viewer) -> bool,
) {
    for _ in 0..frames {
        h.step();
        if done(h.state()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    panic!("{what}: not within {frames} frames");
}

#[test]
fn every_view_matches_its_snapshot() {
    let runs = [fixture("s4p"), fixture("curation")];
    let mut h = harness(viewer(&runs), SIZE.into());
    settle(&mut h).unwrap();
    let mut results = Vec::new();
    for view in View::ALL {
        h.state_mut().view = view;
        settle(&mut h).unwrap();
        results.push(h.try_snapshot(view.label().to_lowercase()));
    }
    // The gallery with labels over the image and τ moved off the trainer's.
    let v = h.state_mut();
    v.view = View::Gallery;
    v.gallery.overlay = Overlay::On(SampleRole::PseudoLabel);
    v.gallery.tau = Some(0.2);
    settle(&mut h).unwrap();
    results.push(h.try_snapshot("gallery-overlay-tau"));
    for r in results {
        r.unwrap();
    }
}

/// Zooming one picture of a gallery row zooms the whole row; dragging pans it.
#[test]
fn zoom_and_pan_are_shared_across_a_row() {
    let mut h = harness(viewer(&[fixture("s4p")]), SIZE.into());
    h.state_mut().view = View::Gallery;
    settle(&mut h).unwrap();
    // The first row's pictures (the validation image) start under the controls, at the left.
    let at = egui::pos2(80.0, 220.0);
    h.input_mut().events.push(egui::Event::PointerMoved(at));
    h.step();
    h.input_mut().events.push(egui::Event::Zoom(2.0));
    h.step();
    h.step();
    let rows = &h.state().gallery.rows;
    let (row, view) = rows.iter().next().expect("a row was zoomed");
    assert!(view.zoom > 1.5, "{row}: zoom {}", view.zoom);
    let before = view.centre;
    let press = |pos, pressed| egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: egui::Modifiers::NONE,
    };
    h.input_mut().events.push(press(at, true));
    h.step();
    for k in 1..=5 {
        h.input_mut().events.push(egui::Event::PointerMoved(
            at + egui::vec2(6.0 * k as f32, 0.0),
        ));
        h.step();
    }
    h.input_mut()
        .events
        .push(press(at + egui::vec2(30.0, 0.0), false));
    h.step();
    let after = h.state().gallery.rows.values().next().unwrap().centre;
    assert!(
        after.x < before.x,
        "dragging right moves the view left: {before:?} → {after:?}"
    );
}

#[test]
fn the_tau_slider_gives_back_the_trainers_mask_pixel_for_pixel() {
    let run = fixture("s4p");
    let mut checked = 0;
    for step in s5_run::samples::sample_steps(&s5_run::RunDir::new(&run)).unwrap() {
        let samples = StepSamples::read(&run.join(format!("samples/step-{step:08}"))).unwrap();
        for e in samples
            .entries
            .iter()
            .filter(|e| e.entry.kind == SampleKind::Unlabeled)
        {
            let tau = e.entry.stats["tau"] as f32;
            let c = e
                .confidence
                .as_ref()
                .expect("unlabeled entries store confidence");
            let mask = &e.images[&SampleRole::Mask];
            let recomputed = c.mask(tau);
            assert_eq!(recomputed.len(), mask.pixels.len());
            for (r, m) in recomputed.iter().zip(&mask.pixels) {
                assert_eq!(*r, m.r() > 127, "step {step}, {}", e.entry.image_id);
            }
            let ratio = e.entry.stats["mask_ratio"];
            assert!(
                (c.ratio(tau) - ratio).abs() < 1e-12,
                "{} vs {ratio}",
                c.ratio(tau)
            );
            // Accuracy against coverage: coverage falls as τ rises, all pixels at τ = 0.
            let pseudo: Vec<u8> = e.classes[&SampleRole::PseudoLabel]
                .iter()
                .map(|p| p.unwrap())
                .collect();
            let curve =
                c.accuracy_coverage(&pseudo, &e.classes[&SampleRole::Truth], &[0.0, 0.5, 1.0]);
            assert!((curve[0].1 - 1.0).abs() < 1e-12, "{curve:?}");
            assert!(
                curve[0].1 >= curve[1].1 && curve[1].1 >= curve[2].1,
                "{curve:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked} entries checked");
}

#[test]
fn a_live_run_half_lines_new_and_thinned_steps_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("s4p");
    copy_dir(&fixture("s4p"), &run);
    let mut h = harness(viewer(std::slice::from_ref(&run)), SIZE.into());
    h.state_mut().view = View::Gallery;
    settle(&mut h).unwrap();
    let events = h.state().runs[0].store.events;
    assert!(events > 0);
    let append = |text: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(run.join("events.jsonl"))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    // Half a line: no new point, however many frames pass.
    append(r#"{"step": 9, "wall_s": 99.0, "kind": "train", "losses": {"loss": 0.25"#);
    for _ in 0..15 {
        h.step();
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(
        h.state().runs[0].store.events,
        events,
        "half a line was read"
    );
    // Completed: the point appears.
    append("}}\n");
    frames_until(&mut h, 100, "the completed line", |v| {
        v.runs[0].store.events == events + 1
    });
    let loss = &h.state().runs[0].store.series["loss"];
    assert_eq!(
        (*loss.steps.last().unwrap(), *loss.values.last().unwrap()),
        (9.0, 0.25)
    );
    // A corrupt whole line is skipped and shown.
    append("not an event\n");
    frames_until(&mut h, 100, "the corrupt line's diagnostic", |v| {
        v.runs[0]
            .store
            .diagnostics
            .iter()
            .any(|d| d.contains("line") && d.contains("not an event"))
    });
    // A new sample step: it appears, and the live cursor follows it.
    let samples = run.join("samples");
    copy_dir(
        &samples.join("step-00000008"),
        &samples.join(".step-00000010.tmp"),
    );
    let index = samples.join(".step-00000010.tmp/index.ron");
    let text = std::fs::read_to_string(&index)
        .unwrap()
        .replacen("step: 8,", "step: 10,", 1);
    std::fs::write(&index, text).unwrap();
    std::fs::rename(
        samples.join(".step-00000010.tmp"),
        samples.join("step-00000010"),
    )
    .unwrap();
    frames_until(&mut h, 100, "the new sample step", |v| {
        v.cursor.step == 10 && v.runs[0].store.decoded_steps().contains(&10)
    });
    // A step folder thinned away under the cursor: the views snap to the nearest survivor.
    {
        let v = h.state_mut();
        v.cursor.live = false;
        v.cursor.step = 6;
    }
    frames_until(&mut h, 100, "step 6 shown", |v| {
        v.runs[0].store.decoded_steps().contains(&6)
    });
    std::fs::remove_dir_all(samples.join("step-00000006")).unwrap();
    frames_until(&mut h, 100, "step 6 gone", |v| {
        !v.runs[0].store.steps.contains(&6)
    });
    let nearest = h.state().runs[0].store.nearest_step(6).unwrap();
    assert!([2, 8].contains(&nearest), "{nearest}");
    frames_until(&mut h, 100, "the nearest step shown", |v| {
        v.runs[0].store.decoded_steps().contains(&nearest)
    });
    // Steps going back (a restart from an earlier checkpoint): later points are dropped.
    append("{\"step\": 3, \"wall_s\": 120.0, \"kind\": \"train\", \"losses\": {\"loss\": 0.75}}\n");
    frames_until(&mut h, 100, "the restart", |v| {
        v.runs[0].store.restarts == 1
    });
    let loss = &h.state().runs[0].store.series["loss"];
    assert_eq!(*loss.steps.last().unwrap(), 3.0);
    assert!(loss.steps.iter().all(|&s| s <= 3.0), "{:?}", loss.steps);
    // The run deleted: a banner, and what was read stays.
    std::fs::remove_dir_all(&run).unwrap();
    frames_until(&mut h, 100, "the deletion", |v| {
        v.runs[0].store.state() == s5_viewer::store::RunState::Deleted
    });
    let v = h.state();
    assert!(!v.runs[0].store.series.is_empty());
    assert!(
        v.runs[0]
            .store
            .diagnostics
            .iter()
            .any(|d| d.contains("was deleted"))
    );
}

#[test]
fn a_folder_of_runs_shows_new_runs_as_they_start() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("s4p"), &dir.path().join("a"));
    std::fs::create_dir(dir.path().join("not-a-run")).unwrap();
    let mut h = harness(viewer(&[dir.path().to_path_buf()]), SIZE.into());
    h.state_mut().view = View::Runs;
    settle(&mut h).unwrap();
    assert_eq!(h.state().runs.len(), 1, "one run, the other folder is none");
    copy_dir(&fixture("curation"), &dir.path().join("b"));
    frames_until(&mut h, 300, "the new run", |v| v.runs.len() == 2);
    frames_until(&mut h, 100, "the new run read", |v| {
        v.runs[1].store.report.is_some()
    });
}

/// Box selection in the curation explorer: dragging over the projection picks the patches
/// inside, and the reader crops them from the pool's images.
#[test]
fn box_selection_shows_the_patches_inside() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("curation");
    copy_dir(&fixture("curation"), &run);
    // The fixture keeps no pool: make images of the plan's size for the crops.
    let report = s5_run::curation::CurationReport::load(&s5_run::RunDir::new(&run)).unwrap();
    let images = report
        .projection
        .points
        .iter()
        .map(|p| p.image)
        .max()
        .unwrap()
        + 1;
    let mut plan_images = Vec::new();
    for i in 0..images {
        let path = dir.path().join(format!("pool-{i}.png"));
        image::RgbImage::from_pixel(64, 64, image::Rgb([i as u8 * 5, 90, 200]))
            .save(&path)
            .unwrap();
        plan_images.push(s5_run::curation::PlanImage {
            path,
            width_px: 64,
            height_px: 64,
            kind: None,
        });
    }
    let plan = s5_run::curation::Plan {
        spec: "pool.ron".into(),
        split: "unlabeled".into(),
        patch_px: 32,
        stride_px: 32,
        images: plan_images,
        skipped: Vec::new(),
        patches: report.patches_planned,
        in_distribution_kind: None,
        imaging: Default::default(),
    };
    plan.save(&s5_run::RunDir::new(&run)).unwrap();
    let mut h = harness(viewer(std::slice::from_ref(&run)), SIZE.into());
    h.state_mut().view = View::Curation;
    h.state_mut().curation.boxing = true;
    settle(&mut h).unwrap();
    // Drag across most of the projection (the left part of the window).
    let (from, to) = (egui::pos2(150.0, 200.0), egui::pos2(600.0, 540.0));
    let press = |pos, pressed| egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: egui::Modifiers::NONE,
    };
    h.input_mut().events.push(egui::Event::PointerMoved(from));
    h.step();
    h.input_mut().events.push(press(from, true));
    h.step();
    for k in 1..=10 {
        let t = k as f32 / 10.0;
        h.input_mut()
            .events
            .push(egui::Event::PointerMoved(from + (to - from) * t));
        h.step();
    }
    h.input_mut().events.push(press(to, false));
    h.step();
    let chosen = h.state().curation.chosen.len();
    assert!(chosen > 0, "nothing chosen by the box");
    assert!(h.state().curation.selection.is_some());
    frames_until(&mut h, 200, "the crops of the chosen patches", |v| {
        !v.runs[0].store.crops.is_empty()
    });
}

#[test]
fn memory_stays_bounded_on_a_long_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("long");
    std::fs::create_dir_all(run.join("samples")).unwrap();
    std::fs::copy(
        fixture("s4p").join("manifest.json"),
        run.join("manifest.json"),
    )
    .unwrap();
    let mut text = String::new();
    for step in 1..=100_000u64 {
        text.push_str(&format!(
            "{{\"step\":{step},\"wall_s\":{},\"kind\":\"train\",\"losses\":{{\"loss\":{},\"L_s\":0.5,\"L_u\":0.25}},\"lr\":0.001,\"mask_ratio\":0.5}}\n",
            step as f64 * 0.1,
            1.0 / step as f64
        ));
    }
    std::fs::write(run.join("events.jsonl"), text).unwrap();
    let source = fixture("s4p").join("samples/step-00000008");
    for k in 1..=100u64 {
        let step = k * 1000;
        let to = run.join(format!("samples/step-{step:08}"));
        copy_dir(&source, &to);
        let index = to.join("index.ron");
        let t = std::fs::read_to_string(&index).unwrap().replacen(
            "step: 8,",
            &format!("step: {step},"),
            1,
        );
        std::fs::write(index, t).unwrap();
    }
    let mut h = harness(viewer(std::slice::from_ref(&run)), SIZE.into());
    h.state_mut().view = View::Gallery;
    settle(&mut h).unwrap();
    assert_eq!(h.state().runs[0].store.events, 100_000);
    assert_eq!(h.state().runs[0].store.steps.len(), 100);
    // Visit every tenth step with the cursor.
    for k in (10..=100u64).step_by(10) {
        {
            let v = h.state_mut();
            v.cursor.live = false;
            v.cursor.step = k * 1000;
        }
        frames_until(&mut h, 200, "the visited step", |v| {
            v.runs[0].store.decoded_steps().contains(&(k * 1000))
        });
        h.step();
    }
    let v = h.state();
    assert!(v.runs[0].store.decoded_steps().len() <= s5_viewer::store::DECODED_STEPS_KEPT);
    assert!(
        v.textures.len() <= s5_viewer::textures::TEXTURES_KEPT + 64,
        "{}",
        v.textures.len()
    );
    h.state_mut().view = View::Curves;
    settle(&mut h).unwrap();
}

/// A real window (winit, eframe's wgpu painter) on an X server, screenshotted by the app
/// itself: the gallery's pictures carry the dataset's palette.
#[cfg(target_os = "linux")]
#[test]
fn a_real_window_under_xvfb_screenshots_itself() {
    let xvfb = std::process::Command::new("xvfb-run")
        .arg("--help")
        .output();
    assert!(
        xvfb.is_ok(),
        "xvfb-run is missing: install it (Debian/Ubuntu: `apt install xvfb`), as .ci/run does"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("window.png");
    let run = fixture("s4p");
    let result = std::process::Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1280x1024x24"])
        .arg(env!("CARGO_BIN_EXE_s5-viewer"))
        .arg(&run)
        .args([
            "--view",
            "gallery",
            "--size",
            "1100x700",
            "--window",
            "--screenshot",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let shot = image::open(&out).unwrap().into_rgb8();
    let index = s5_run::SampleIndex::load(&run.join("samples/step-00000008")).unwrap();
    let palette = &index.datasets[0].palette;
    let coloured = shot
        .pixels()
        .filter(|p| palette.iter().any(|c| c[..] == p.0[..]))
        .count();
    assert!(
        coloured > 2_000,
        "{coloured} pixels of palette colours in the window"
    );
}

/// The binary's headless screenshot, as a user runs it on a server (no `XDG_RUNTIME_DIR`, no
/// display): the picture, one report line, and nothing on stderr (Mesa's device-select layer
/// printed "error: XDG_RUNTIME_DIR is invalid or not set" there until the viewer turned it
/// off, as `s5` does).
#[test]
fn a_headless_screenshot_from_the_binary_prints_its_report_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("runs.png");
    let result = std::process::Command::new(env!("CARGO_BIN_EXE_s5-viewer"))
        .arg(fixture("s4p"))
        .args(["--view", "runs", "--size", "900x300", "--screenshot"])
        .arg(&out)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DISPLAY")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr),
    );
    assert!(result.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "stderr: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("runs view, frame time"), "{stdout}");
    let shot = image::open(&out).unwrap();
    assert_eq!((shot.width(), shot.height()), (900, 300));
}

#[test]
fn ema_is_bias_corrected_and_the_tail_reads_whole_lines() {
    let smooth = s5_viewer::smooth::ema(&[2.0, 2.0, 2.0, f64::NAN, 4.0], 0.9);
    assert!(
        (smooth[0] - 2.0).abs() < 1e-12 && (smooth[2] - 2.0).abs() < 1e-12,
        "{smooth:?}"
    );
    assert_eq!(smooth[3], smooth[2]);
    assert!(smooth[4] > 2.0 && smooth[4] < 4.0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut tail = s5_viewer::tail::EventTail::default();
    assert!(
        tail.poll(&path).unwrap().events.is_empty(),
        "a missing file reads as empty"
    );
    std::fs::write(
        &path,
        "{\"step\":1,\"wall_s\":0.5,\"kind\":\"train\"}\n{\"step\":2,",
    )
    .unwrap();
    let read = tail.poll(&path).unwrap();
    assert_eq!(read.events.len(), 1);
    std::fs::write(&path, "{\"step\":1,\"wall_s\":0.1,\"kind\":\"val\"}\n").unwrap();
    let read = tail.poll(&path).unwrap();
    assert!(read.reset, "a shorter file was replaced");
    assert_eq!(read.events.len(), 1);
}

/// A sample whose pictures differ in size (a confidence map smaller than its weak view, a
/// validity mask of another size) is a diagnostic naming the file, never a panic: the
/// gallery with the τ slider keeps drawing it, and a mask of the wrong size is not taken
/// as "all valid".
#[test]
fn mismatched_sample_pictures_are_diagnostics_and_the_viewer_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("s4p");
    copy_dir(&fixture("s4p"), &run);
    let step = run.join("samples/step-00000008");
    let shrink = |file: &str| {
        let path = step.join(file);
        let picture = image::open(&path).unwrap();
        picture
            .resize_exact(
                picture.width() / 2,
                picture.height() / 3,
                image::imageops::FilterType::Nearest,
            )
            .save(&path)
            .unwrap();
    };
    shrink("001-confidence.png");
    shrink("002-valid.png");
    let samples = StepSamples::read(&step).unwrap();
    let first = &samples.entries[1];
    assert!(
        first
            .errors
            .iter()
            .any(|e| e.contains("001-confidence.png") && e.contains("left out")),
        "{:?}",
        first.errors
    );
    assert!(
        first.confidence.is_none(),
        "a confidence map of another size was used"
    );
    let second = &samples.entries[2];
    assert!(
        second.errors.iter().any(|e| e.contains("002-valid.png")),
        "{:?}",
        second.errors
    );
    let c = second
        .confidence
        .as_ref()
        .expect("the confidence itself is fine");
    assert!(
        c.valid.iter().all(|v| !v),
        "a validity mask of the wrong size became all valid"
    );
    assert_eq!(c.ratio(0.0), 0.0);
    // The whole viewer on it, τ slider moved, overlay on: frames render, diagnostics show.
    let mut h = harness(viewer(std::slice::from_ref(&run)), SIZE.into());
    h.state_mut().view = View::Gallery;
    h.state_mut().gallery.tau = Some(0.3);
    h.state_mut().gallery.overlay = Overlay::On(SampleRole::PseudoLabel);
    {
        let v = h.state_mut();
        v.cursor.live = false;
        v.cursor.step = 8;
    }
    frames_until(&mut h, 200, "the diagnostics of step 8", |v| {
        v.runs[0]
            .store
            .diagnostics
            .iter()
            .any(|d| d.contains("001-confidence.png"))
    });
    for _ in 0..10 {
        h.step();
    }
    settle(&mut h).unwrap();
}

/// The viewer's caches are bounded: rows zoomed, accuracy curves and pool crops keep at most
/// their bound, the least recently used dropped first.
#[test]
fn every_cache_is_bounded_and_drops_the_least_recently_used() {
    use s5_viewer::bounded::Bounded;
    let mut map: Bounded<u32, u32, 8> = Bounded::default();
    for k in 0..1000 {
        map.insert(k, k * 2);
        // Key 0 used all along stays.
        assert_eq!(map.get(&0), Some(&0));
        assert!(map.len() <= 8);
    }
    assert!(map.contains_key(&0) && map.contains_key(&999) && !map.contains_key(&990));
    assert_eq!(map.get_or_insert_with(5000, || 1), &1);
    assert_eq!(map.get_or_insert_with(5000, || 2), &1, "made once");
    // The viewer's own: box selections of ever new patches keep at most CROPS_KEPT crops.
    let mut store = s5_viewer::store::RunStore::new(PathBuf::from("/nowhere"));
    for batch in 0..40u64 {
        let crops = (0..50u64).map(|p| {
            (
                batch * 50 + p,
                egui::ColorImage::new([2, 2], vec![egui::Color32::RED; 4]),
            )
        });
        store.crops.extend(crops);
        assert!(store.crops.len() <= s5_viewer::store::CROPS_KEPT);
    }
    assert_eq!(store.crops.len(), s5_viewer::store::CROPS_KEPT);
    let gallery = s5_viewer::views::gallery::GalleryState::default();
    assert_eq!(
        gallery.rows.capacity(),
        s5_viewer::views::gallery::ROWS_KEPT
    );
    assert_eq!(
        gallery.curves.capacity(),
        s5_viewer::views::gallery::CURVES_KEPT
    );
}

/// A run whose writer holds the lock but logged nothing for longer than STALLED_AFTER_S is
/// stalled; one whose last event is `diverged` is diverged; a finished run (no lock) is
/// finished. Read from the files, as the reader sees them.
#[test]
fn stalled_diverged_and_finished_runs_are_told_apart() {
    use s5_viewer::store::{RunState, STALLED_AFTER_S};
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("s4p");
    copy_dir(&fixture("s4p"), &run);
    let mut h = harness(viewer(std::slice::from_ref(&run)), SIZE.into());
    h.state_mut().view = View::Runs;
    settle(&mut h).unwrap();
    assert_eq!(h.state().runs[0].store.state(), RunState::Finished);
    // A writer's lock, and events last written long ago: stalled.
    std::fs::write(
        run.join("lock"),
        "{\"pid\": 1, \"host\": \"here\", \"since_unix_s\": 0}",
    )
    .unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs_f64(STALLED_AFTER_S * 2.0);
    std::fs::File::options()
        .write(true)
        .open(run.join("events.jsonl"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    frames_until(&mut h, 300, "the stalled state", |v| {
        v.runs[0].store.state() == RunState::Stalled
    });
    // A fresh event: running again.
    let append = |text: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(run.join("events.jsonl"))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    append("{\"step\": 9, \"wall_s\": 99.0, \"kind\": \"train\", \"losses\": {\"loss\": 0.5}}\n");
    frames_until(&mut h, 300, "running again", |v| {
        v.runs[0].store.state() == RunState::Running
    });
    // The loss stopped being a number: diverged, lock or not.
    append("{\"step\": 10, \"wall_s\": 100.0, \"kind\": \"diverged\", \"losses\": {}}\n");
    frames_until(&mut h, 300, "the diverged state", |v| {
        v.runs[0].store.state() == RunState::Diverged
    });
    std::fs::remove_file(run.join("lock")).unwrap();
    for _ in 0..20 {
        h.step();
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(h.state().runs[0].store.state(), RunState::Diverged);
}

/// Pseudo-label accuracy against coverage on a hand-made sample: four valid pixels with
/// truth (one padded, one without truth), each value counted by hand.
#[test]
fn accuracy_against_coverage_counts_by_hand() {
    use s5_run::samples::confidence_level;
    use s5_viewer::tau::Confidence;
    // Confidences 0.9, 0.6, 0.3, 0.8 (valid, truth known), 0.95 (padding), 0.99 (no truth).
    let conf = [0.9f32, 0.6, 0.3, 0.8, 0.95, 0.99];
    let c = Confidence {
        width: 3,
        height: 2,
        levels: conf.iter().map(|&p| confidence_level(p, 0.5)).collect(),
        valid: vec![true, true, true, true, false, true],
    };
    // Pseudo-labels right on pixels 0 and 2, wrong on 1 and 3.
    let pseudo = [1u8, 2, 0, 1, 1, 1];
    let truth = [Some(1), Some(0), Some(0), Some(2), Some(1), None];
    let curve = c.accuracy_coverage(&pseudo, &truth, &[0.0, 0.5, 0.85, 0.999]);
    let expect = [
        (1.0, Some(0.5)),        // all four: 0 and 2 right
        (0.75, Some(1.0 / 3.0)), // 0.9, 0.6, 0.8: only 0 right
        (0.25, Some(1.0)),       // 0.9: right
        (0.0, None),             // none confident: undefined, not 0
    ];
    for ((tau, coverage, accuracy), (want_coverage, want_accuracy)) in curve.iter().zip(expect) {
        assert!(
            (coverage - want_coverage).abs() < 1e-12,
            "τ {tau}: coverage {coverage}"
        );
        match (accuracy, want_accuracy) {
            (Some(a), Some(w)) => assert!((a - w).abs() < 1e-12, "τ {tau}: accuracy {a}"),
            (None, None) => {}
            other => panic!("τ {tau}: {other:?}"),
        }
    }
    // The mask ratio counts valid pixels only: 0.9 and 0.99 of five (0.95 is padding).
    assert!(
        (c.ratio(0.85) - 2.0 / 5.0).abs() < 1e-12,
        "{}",
        c.ratio(0.85)
    );
    // Shorter pseudo-labels or truth than the levels: a missing pseudo-label is wrong, a
    // missing truth unknown; never a panic. Known: pixels 0, 1, 2; right: pixel 0.
    let short = c.accuracy_coverage(&pseudo[..2], &truth[..3], &[0.0]);
    assert!(
        (short[0].1 - 1.0).abs() < 1e-12
            && short[0].2.is_some_and(|a| (a - 1.0 / 3.0).abs() < 1e-12),
        "{short:?}"
    );
}

/// A mixed-precision run's `loss_scale` and `skipped_steps` are curves, placed after the
/// method's quantities and the step's gradient norm, as the run contract orders them.
#[test]
fn a_mixed_precision_runs_scale_and_skipped_steps_are_curves() {
    use s5_run::keys;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("s4p");
    copy_dir(&fixture("s4p"), &run);
    let mut text = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    for (step, scale, skipped) in [(9, 32768.0, 1), (10, 32768.0, 1), (11, 65536.0, 1)] {
        text.push_str(&format!(
            "{{\"step\":{step},\"wall_s\":{step}.0,\"kind\":\"train\",\"losses\":{{\"loss\":0.5}},\
             \"grad_norm\":1.5,\"loss_scale\":{scale},\"skipped_steps\":{skipped}}}\n"
        ));
    }
    std::fs::write(run.join("events.jsonl"), text).unwrap();
    let mut h = harness(viewer(std::slice::from_ref(&run)), SIZE.into());
    settle(&mut h).unwrap();
    let store = &h.state().runs[0].store;
    let scale = store
        .series
        .get(&keys::LOSS_SCALE)
        .expect("a loss_scale curve");
    let skipped = store
        .series
        .get(&keys::SKIPPED_STEPS)
        .expect("a skipped_steps curve");
    assert_eq!(scale.values, [32768.0, 32768.0, 65536.0]);
    assert_eq!(skipped.values, [1.0, 1.0, 1.0]);
    let mut order: Vec<&s5_run::MetricKey> = store.series.keys().collect();
    order.sort_by_key(|k| k.display_rank());
    let at = |k: &s5_run::MetricKey| order.iter().position(|o| *o == k).unwrap();
    assert!(at(&keys::LOSS) < at(&keys::GRAD_NORM));
    assert!(at(&keys::GRAD_NORM) < at(&keys::LOSS_SCALE));
    assert!(at(&keys::LOSS_SCALE) < at(&keys::SKIPPED_STEPS));
}
