//! Work across processes without MPI: the fixed-order sum's pieces, a job of one, and the
//! clear error of a build without the `mpi` feature started by an MPI launcher.

use s5::distributed::{chunks, launched_size, sum_in_rank_order};

use crate::common::{json_of, s5};

#[test]
fn chunks_cover_the_buffer_and_sums_run_in_rank_order() {
    for (len, parts) in [(0, 3), (2, 3), (10, 3), (7, 1), (1_000_003, 8)] {
        let cut = chunks(len, parts);
        assert_eq!(cut.len(), parts);
        assert_eq!(cut.first().map(|c| c.start), Some(0));
        assert_eq!(cut.last().map(|c| c.end), Some(len));
        assert!(cut.windows(2).all(|w| w[0].end == w[1].start));
        let sizes: Vec<usize> = cut.iter().map(|c| c.len()).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
    }
    // ((a + b) + c), not (a + (b + c)): 1 + 1e8 − 1e8 is 0 in the first order, 1 in the other.
    let parts = [1.0f32, 0.5, 1e8, 0.25, -1e8, 0.125];
    let sum = sum_in_rank_order(&parts, 2);
    assert_eq!(sum, [0.0, 0.875]);
    assert_ne!(sum[0], 1.0f32 + (1e8 + -1e8), "the order is the rank order");
    assert!(sum_in_rank_order(&[], 0).is_empty());
}

#[test]
fn a_launcher_is_known_by_its_variables() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let size = |vars| launched_size(&env(vars)).expect("a valid world size");
    assert_eq!(size(&[]), None);
    assert_eq!(size(&[("OMPI_COMM_WORLD_SIZE", "4")]), Some(4));
    assert_eq!(size(&[("PMI_SIZE", " 2\n")]), Some(2));
    assert_eq!(size(&[("SLURM_NTASKS", "8")]), None);
    assert_eq!(size(&[("PMI_SIZE", " ")]), None);
    for bad in [
        &[("PMI_SIZE", "two")],
        &[("PMI_SIZE", "0")],
        &[("PMI_SIZE", "-1")],
    ] {
        let message = launched_size(&env(bad)).expect_err(bad[0].1).to_string();
        assert!(
            message.contains(&format!("PMI_SIZE = `{}`", bad[0].1)),
            "{message}"
        );
    }
}

/// `s5 bench allreduce` alone is a job of one: the sum is the buffer itself, exact. A build
/// without the `mpi` feature that a launcher started as one of several ranks says how to
/// build one with it.
#[test]
fn the_allreduce_bench_runs_alone_and_a_build_without_mpi_says_so() {
    let report = json_of(s5().args([
        "bench",
        "allreduce",
        "--values",
        "3,100",
        "--reps",
        "1",
        "--json",
    ]));
    assert_eq!(report["ranks"], 1);
    assert!(report["library"].is_null());
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["exact"] == true), "{report}");
    assert_eq!(rows[1]["values"], 100);
    assert_eq!(rows[1]["bytes"], 400);
    if cfg!(feature = "mpi") {
        return;
    }
    let err = refused(
        s5().args(["bench", "allreduce", "--values", "3"]),
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    );
    assert!(
        err.contains("one of 2 MPI ranks") && err.contains("--features mpi"),
        "{err}"
    );
}

/// Runs `command` as rank 1 of 2 by a launcher's `(rank, size)` variables, expects it to
/// fail, and returns what it printed on stderr.
fn refused(command: &mut std::process::Command, (rank, size): (&str, &str)) -> String {
    let out = command.env(rank, "1").env(size, "2").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    err
}

/// The demo runs as one process: started as one of several MPI ranks it refuses before it
/// writes anything, saying what runs under MPI instead. Training under a launcher, in a
/// build without the `mpi` feature, says how to build one and writes nothing either.
#[test]
fn the_demo_refuses_ranks_and_training_without_mpi_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let err = refused(
        s5().args(["demo", "--quiet", "--out"]).arg(&demo),
        ("PMI_RANK", "PMI_SIZE"),
    );
    assert!(
        err.contains("`s5 demo` runs as one process")
            && err.contains("one of 2 MPI ranks")
            && err.contains("`s5 pretrain`"),
        "{err}"
    );
    assert!(!demo.exists(), "a refused demo writes nothing");
    if cfg!(feature = "mpi") {
        return;
    }
    let run = dir.path().join("run");
    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/configs/train-synth.ron");
    let err = refused(
        s5().args(["train", "--quiet", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&run),
        ("PMI_RANK", "PMI_SIZE"),
    );
    assert!(
        err.contains("one of 2 MPI ranks") && err.contains("--features mpi"),
        "{err}"
    );
    assert!(!run.exists(), "a refused run writes nothing");
}

/// A step's share numbers (what ranks exchange) come back from their bytes bit for bit.
#[test]
fn share_numbers_survive_their_bytes() {
    use s5::train::ranks::{ShareNumbers, decode, encode};
    use std::collections::BTreeMap;
    let shares = vec![
        ShareNumbers {
            sums: BTreeMap::from([("loss".into(), 0.1 + 0.2), ("px/valid".into(), 4096.0)]),
            per_image: vec![1.5, f64::MIN_POSITIVE, -0.0],
        },
        ShareNumbers::default(),
        ShareNumbers {
            sums: BTreeMap::from([("loss/é".into(), f64::MAX)]),
            per_image: vec![],
        },
    ];
    let back = decode(&encode(&shares));
    assert_eq!(back.len(), 3);
    assert_eq!(back[0].sums["loss"].to_bits(), (0.1f64 + 0.2).to_bits());
    assert_eq!(back[0].per_image[2].to_bits(), (-0.0f64).to_bits());
    assert_eq!(back, shares);
}
