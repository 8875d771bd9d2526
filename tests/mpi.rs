//! Under MPI: `s5` started by `mpirun` as several ranks. `.ci/run` builds the `mpi` feature
//! and runs these (`cargo test --release -p s5 --features mpi mpi::`); they need OpenMPI's
//! `mpirun` on the PATH.

use std::process::Command;

/// `mpirun -n ranks` of the real binary; as root (CI) with OpenMPI's consent, and with more
/// ranks than cores allowed.
fn mpirun(ranks: usize) -> Command {
    let mut command = Command::new("mpirun");
    command
        .args(["-n", &ranks.to_string(), "--oversubscribe"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .arg(env!("CARGO_BIN_EXE_s5"));
    command
}

/// The sum over 2 and 3 ranks of buffers that do not divide evenly (and one smaller than the
/// ranks) equals, on every rank and bit for bit, the rank-order sum each rank computes
/// alone; rank 0 alone prints the report.
#[test]
fn the_sum_over_ranks_is_the_rank_order_sum_on_every_rank() {
    for ranks in [2, 3] {
        let out = mpirun(ranks)
            .args([
                "bench",
                "allreduce",
                "--values",
                "1,2,1000003",
                "--reps",
                "2",
                "--json",
            ])
            .output()
            .expect("mpirun on the PATH (apt-get install openmpi-bin)");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let report: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: one report: {stdout}"));
        assert_eq!(report["ranks"], ranks);
        assert!(
            report["library"].as_str().is_some_and(|l| !l.is_empty()),
            "{report}"
        );
        let rows = report["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        for row in rows {
            assert_eq!(row["exact"], true, "{row}");
            let median = row["median_s"].as_f64().unwrap();
            assert!(median.is_finite() && median >= 0.0, "{row}");
        }
    }
}
