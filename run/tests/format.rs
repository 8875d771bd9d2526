//! The run directory without a GPU: manifest versions (N and N − 1 read, others refused),
//! append-only events a reader never sees torn, typed kinds and roles, the writer lock,
//! checkpoint folders that verify themselves, and resume falling back past a damaged one.

use std::path::Path;

use s5_run::architecture::{SegmentorConfig, VitConfig};
use s5_run::checkpoint::{
    CHECKSUMS_FILE, CheckpointWriter, MODEL_FILE, Verified, newest_intact, read_card, verify,
};
use s5_run::lock::read_holder;
use s5_run::{
    DatasetCard, Event, EventKind, EventLog, FORMAT_VERSION, Manifest, ModelCard,
    OLDEST_READABLE_VERSION, RunDir, RunError, RunKind, RunLock, SampleIndex, SampleKind,
    SampleRole, TrainState, read_events,
};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn manifest_round_trips_and_refuses_other_versions() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let m = Manifest::new(RunKind::Train);
    m.save(&run).unwrap();
    assert_eq!(Manifest::load(&run).unwrap(), m);
    assert!(
        std::fs::read_to_string(run.manifest())
            .unwrap()
            .contains(r#""kind": "train""#)
    );
    for version in [FORMAT_VERSION + 1, OLDEST_READABLE_VERSION - 1] {
        let other = Manifest {
            format_version: version,
            ..m.clone()
        };
        other.save(&run).unwrap();
        let err = Manifest::load(&run).unwrap_err();
        assert!(
            matches!(err, RunError::Version { found, .. } if found == version),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("manifest.json") && text.contains("version"),
            "{text}"
        );
    }
    let err = Manifest::load(&RunDir::new(dir.path().join("nope"))).unwrap_err();
    assert!(err.to_string().contains("not an s5 run directory"), "{err}");
    std::fs::write(
        run.manifest(),
        r#"{"format_version": 2, "kind": "dreaming"}"#,
    )
    .unwrap();
    let err = Manifest::load(&run).unwrap_err().to_string();
    assert!(
        err.contains("not a valid run manifest") && err.contains("dreaming"),
        "{err}"
    );
}

/// A run written by s5 with format version 1 (before checksums and the lock), kept as
/// files: this build must read all of it.
#[test]
fn a_version_1_run_is_read() {
    let run = RunDir::new(fixture("run-v1"));
    let manifest = Manifest::load(&run).unwrap();
    assert_eq!(manifest.format_version, 1);
    assert_eq!(manifest.kind, RunKind::Pretrain);
    let events = read_events(&run.events()).unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Train,
            EventKind::Train,
            EventKind::Val,
            EventKind::Checkpoint
        ]
    );
    assert_eq!(events[1].extra_f64(&s5_run::keys::MASK_RATIO), Some(0.25));
    assert_eq!(events[2].metrics["urban/mIoU"], 0.5);
    let index = SampleIndex::load(&run.sample_step(2)).unwrap();
    assert_eq!(index.entries[0].kind, SampleKind::Unlabeled);
    assert_eq!(
        index.entries[0].files[&SampleRole::PseudoLabel],
        "000-pseudo_label.png"
    );
    let (step, dir) = run.latest_checkpoint().unwrap().unwrap();
    assert_eq!(step, 2);
    // No checksums in version 1: loads unchecked, and is where a resume starts.
    assert_eq!(verify(&dir).unwrap(), Verified::Unchecked);
    assert_eq!(read_card(&dir).unwrap().datasets[0].name, "urban");
    let point = newest_intact(&run).unwrap().unwrap();
    assert_eq!((point.step, point.skipped.len()), (2, 0));
}

#[test]
fn events_append_whole_lines_and_readers_skip_a_partial_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let mut log = EventLog::open(&run.events()).unwrap();
    for step in 1..=3 {
        let mut e = Event {
            lr: Some(1e-4),
            ..Event::new(step, step as f64 * 0.5, EventKind::Train)
        };
        e.losses.insert(s5_run::keys::LOSS, 1.0 / step as f64);
        log.append(&e).unwrap();
    }
    drop(log);
    // Reopening appends; nothing is lost.
    let mut log = EventLog::open(&run.events()).unwrap();
    let mut val = Event::new(3, 2.0, EventKind::Val);
    val.metrics.insert("miou".parse().unwrap(), 0.42);
    log.append(&val).unwrap();
    let events = read_events(&run.events()).unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(events[3], val);
    assert_eq!(events[1].losses["loss"], 0.5);
    // A writer caught mid-line: the torn record is not returned.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(run.events())
        .unwrap();
    f.write_all(br#"{"step": 4, "wall_s": 2.5, "ki"#).unwrap();
    assert_eq!(read_events(&run.events()).unwrap().len(), 4);
    // A malformed complete line is an error naming the file and the line.
    f.write_all(b"\n").unwrap();
    let err = read_events(&run.events()).unwrap_err().to_string();
    assert!(
        err.contains("events.jsonl") && err.contains("line 5"),
        "{err}"
    );
    assert!(!err.contains("dataset spec"), "{err}");
}

#[test]
fn the_latest_checkpoint_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    assert_eq!(run.latest_checkpoint().unwrap(), None);
    run.mark_latest_checkpoint(200).unwrap();
    assert_eq!(
        run.latest_checkpoint().unwrap(),
        Some((200, run.checkpoint(200)))
    );
    assert!(run.checkpoint(200).ends_with("step-00000200"));
}

#[test]
fn a_second_writer_is_refused_and_a_stale_lock_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path().join("run"));
    let (lock, taken) = RunLock::acquire(&run).unwrap();
    assert_eq!(taken, None);
    let holder = read_holder(&run.lock()).unwrap().unwrap();
    assert_eq!(holder.pid, std::process::id());
    let err = RunLock::acquire(&run).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RunError::Locked { pid, .. } if pid == std::process::id()));
    assert!(
        text.contains(&format!("process {}", std::process::id())),
        "{text}"
    );
    assert!(
        text.contains(&holder.host) && text.contains("lock"),
        "{text}"
    );
    drop(lock);
    assert!(!run.lock().exists(), "dropping the lock releases the run");

    // A lock left behind by a process of this host that has exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = s5_run::LockHolder {
        pid: dead,
        ..s5_run::LockHolder::me()
    };
    std::fs::write(run.lock(), serde_json::to_string(&stale).unwrap()).unwrap();
    let (lock, taken) = RunLock::acquire(&run).unwrap();
    assert_eq!(taken, Some(stale));
    assert_eq!(
        read_holder(&run.lock()).unwrap().as_ref(),
        Some(lock.holder())
    );

    // A lock from another host is never taken over: its process cannot be checked.
    drop(lock);
    let remote = s5_run::LockHolder {
        pid: dead,
        host: "another-host.example".into(),
        since_unix_s: 1,
    };
    std::fs::write(run.lock(), serde_json::to_string(&remote).unwrap()).unwrap();
    let err = RunLock::acquire(&run).unwrap_err().to_string();
    assert!(err.contains("another-host.example"), "{err}");
}

fn card() -> ModelCard {
    ModelCard {
        segmentor: SegmentorConfig::new(VitConfig::vit_tiny(), vec![6]),
        datasets: vec![DatasetCard {
            name: "urban".into(),
            classes: (0..6).map(|c| format!("c{c}")).collect(),
            palette: vec![[0, 0, 0]; 6],
            background: None,
            spec: "urban.ron".into(),
            imaging: Default::default(),
        }],
    }
}

/// A checkpoint folder as the trainer writes it, with `bytes` as its model file.
fn write_checkpoint(run: &RunDir, step: u64, bytes: &[u8]) -> std::path::PathBuf {
    let writer = CheckpointWriter::begin(run, step).unwrap();
    std::fs::write(writer.dir().join(MODEL_FILE), bytes).unwrap();
    let state = TrainState {
        step,
        wall_s: step as f64,
        loss_scale: None,
    };
    writer.finish(&card(), &state, 5).unwrap()
}

#[test]
fn a_damaged_checkpoint_is_refused_and_resume_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    write_checkpoint(&run, 10, &[7u8; 5000]);
    let newest = write_checkpoint(&run, 20, &[9u8; 5000]);
    assert!(newest.join(CHECKSUMS_FILE).is_file());
    assert_eq!(verify(&newest).unwrap(), Verified::Intact);
    assert_eq!(newest_intact(&run).unwrap().unwrap().step, 20);

    // Truncated: the size says so, naming the file.
    let model = newest.join(MODEL_FILE);
    std::fs::write(&model, [9u8; 4000]).unwrap();
    let err = verify(&newest).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RunError::Checksum { .. }), "{text}");
    assert!(
        text.contains("step-00000020") && text.contains("model.bpk"),
        "{text}"
    );
    assert!(
        text.contains("4000 bytes") && text.contains("5000"),
        "{text}"
    );
    // Same size, one byte altered: the hash says so.
    let mut altered = vec![9u8; 5000];
    altered[1234] = 8;
    std::fs::write(&model, &altered).unwrap();
    let text = verify(&newest).unwrap_err().to_string();
    assert!(
        text.contains("model.bpk") && text.contains("SHA-256"),
        "{text}"
    );

    // Resume takes the newest intact one and names the one it passed over.
    let point = newest_intact(&run).unwrap().unwrap();
    assert_eq!(point.step, 10);
    assert_eq!(point.skipped.len(), 1);
    assert!(point.skipped[0].to_string().contains("model.bpk"));

    // Every checkpoint damaged: an error, not a silent fresh start.
    std::fs::remove_file(run.checkpoint(10).join(MODEL_FILE)).unwrap();
    let err = newest_intact(&run).unwrap_err().to_string();
    assert!(err.contains("step-00000020"), "{err}");
}

#[test]
fn checkpoints_are_pruned_to_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let writer = |step| {
        let w = CheckpointWriter::begin(&run, step).unwrap();
        std::fs::write(w.dir().join(MODEL_FILE), b"m").unwrap();
        w.finish(
            &card(),
            &TrainState {
                step,
                wall_s: 0.0,
                loss_scale: None,
            },
            1,
        )
        .unwrap();
    };
    for step in [1, 2, 3, 4] {
        writer(step);
    }
    assert_eq!(s5_run::checkpoint::checkpoint_steps(&run).unwrap(), [3, 4]);
    assert_eq!(run.latest_checkpoint().unwrap().unwrap().0, 4);
}

#[test]
fn kinds_and_roles_are_typed_but_written_as_before() {
    let roles: Vec<&str> = SampleRole::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        roles,
        [
            "image",
            "truth",
            "prediction",
            "weak",
            "pseudo_label",
            "confidence",
            "mask",
            "valid",
            "strong",
            "student"
        ]
    );
    let text = serde_json::to_string(&Event::new(1, 0.0, EventKind::Diverged)).unwrap();
    assert!(text.contains(r#""kind":"diverged""#), "{text}");
    let err = serde_json::from_str::<Event>(r#"{"step":1,"wall_s":0,"kind":"party"}"#);
    assert!(err.is_err());
    let err = ron::from_str::<SampleRole>(r#""selfie""#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("selfie"), "{err}");
}

/// Metric keys: each constructor's name reads back as what it names; known names parse to
/// their constants; maps keyed by them sort, serialise and index as the names do; a name this
/// version does not know is kept as written.
#[test]
fn metric_keys_read_back_as_what_they_name() {
    use s5_run::keys::{self, KeyKind, Known, MetricKey, Score};
    for known in Known::ALL {
        let key = known.key();
        assert_eq!(key.kind(), KeyKind::Known(known));
        assert_eq!(key.to_string().parse::<MetricKey>().unwrap(), key);
    }
    let score = MetricKey::score("synth-urban", Score::MF1);
    assert_eq!(score.as_str(), "synth-urban/mF1");
    assert_eq!(
        score.kind(),
        KeyKind::Score {
            dataset: "synth-urban",
            score: Score::MF1
        }
    );
    assert_eq!(
        MetricKey::dataset_loss("a/b").kind(),
        KeyKind::DatasetLoss("a/b")
    );
    assert_eq!(
        MetricKey::dataset_gate("x").kind(),
        KeyKind::DatasetGate("x")
    );
    assert_eq!(
        MetricKey::dataset_passes("x").kind(),
        KeyKind::DatasetPasses("x")
    );
    for other in ["px/valid", "urban/mIoU2", "gate/", "/mIoU", "my metric"] {
        let key: MetricKey = other.parse().unwrap();
        assert_eq!((key.as_str(), key.kind()), (other, KeyKind::Other));
    }
    assert!("".parse::<MetricKey>().is_err());

    // The viewer's order: the method's quantities in `Known` order, then scores, then the rest.
    let mut shown = [
        "zeta".parse::<MetricKey>().unwrap(),
        MetricKey::score("b", Score::MIoU),
        keys::LR,
        MetricKey::dataset_loss("b"),
        MetricKey::score("a", Score::MIoU),
        keys::L_U,
        keys::LOSS,
    ];
    shown.sort_by(|a, b| a.display_rank().cmp(&b.display_rank()));
    let names: Vec<&str> = shown.iter().map(MetricKey::as_str).collect();
    assert_eq!(
        names,
        ["loss", "L_u", "lr", "a/mIoU", "b/mIoU", "loss/b", "zeta"]
    );

    let mut event = Event::new(3, 1.5, EventKind::Val);
    event
        .metrics
        .insert(MetricKey::score("urban", Score::MIoU), 0.5);
    event.metrics.insert(keys::VAL_MEAN, 0.25);
    let line = serde_json::to_string(&event).unwrap();
    assert!(
        line.contains(r#""metrics":{"urban/mIoU":0.5,"val_mean":0.25}"#),
        "{line}"
    );
    let back: Event = serde_json::from_str(&line).unwrap();
    assert_eq!(back, event);
    assert_eq!(back.metrics["urban/mIoU"], 0.5, "maps index with the name");
}

#[test]
fn a_demo_states_its_training_only_where_it_is_not_the_default() {
    use s5_run::demo::{DemoState, DemoTraining};
    let dir = tempfile::tempdir().unwrap();
    // The README's demo: f32, seed 0, written as before (a demo.json of an earlier s5 has no
    // `training` and reads as that).
    DemoState::new("tiny", DemoTraining::default())
        .save(dir.path())
        .unwrap();
    let text = std::fs::read_to_string(DemoState::path(dir.path())).unwrap();
    assert!(!text.contains("training"), "{text}");
    let read = DemoState::load(dir.path()).unwrap().unwrap();
    assert!(read.training.is_default());
    assert_eq!(read.training.flags(), "--precision f32 --seed 0");
    assert_eq!(read.training.describe(), "");

    let mixed = DemoTraining {
        mixed_precision: true,
        seed: 2,
    };
    DemoState::new("tiny", mixed).save(dir.path()).unwrap();
    let read = DemoState::load(dir.path()).unwrap().unwrap();
    assert_eq!(read.training, mixed);
    assert_eq!(read.training.flags(), "--precision mixed --seed 2");
    assert_eq!(read.training.describe(), ", mixed precision, seed 2");
}
