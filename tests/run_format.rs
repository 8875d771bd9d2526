//! The run directory: manifest versioning, append-only events that a reader never sees torn,
//! the latest-checkpoint pointer.

use s5::run::{Event, EventLog, Manifest, RUN_FORMAT_VERSION, RunDir, read_events};

#[test]
fn manifest_round_trips_and_refuses_other_versions() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let m = Manifest::new("train");
    m.save(&run).unwrap();
    assert_eq!(Manifest::load(&run).unwrap(), m);
    let future = Manifest {
        format_version: RUN_FORMAT_VERSION + 1,
        ..m
    };
    future.save(&run).unwrap();
    let err = Manifest::load(&run).unwrap_err();
    assert!(
        err.to_string().contains("manifest.json") && err.to_string().contains("version"),
        "{err}"
    );
    let err = Manifest::load(&RunDir::new(dir.path().join("nope"))).unwrap_err();
    assert!(err.to_string().contains("not an s5 run directory"), "{err}");
}

#[test]
fn events_append_whole_lines_and_readers_skip_a_partial_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let mut log = EventLog::open(&run.events()).unwrap();
    for step in 1..=3 {
        let mut e = Event {
            step,
            wall_s: step as f64 * 0.5,
            kind: "train".into(),
            lr: Some(1e-4),
            ..Event::default()
        };
        e.losses.insert("loss".into(), 1.0 / step as f64);
        log.append(&e).unwrap();
    }
    drop(log);
    // Reopening appends; nothing is lost.
    let mut log = EventLog::open(&run.events()).unwrap();
    let mut val = Event {
        step: 3,
        wall_s: 2.0,
        kind: "val".into(),
        ..Event::default()
    };
    val.metrics.insert("miou".into(), 0.42);
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
    // A malformed complete line is an error naming the line.
    f.write_all(b"\n").unwrap();
    let err = read_events(&run.events()).unwrap_err();
    assert!(err.to_string().contains("line 5"), "{err}");
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
