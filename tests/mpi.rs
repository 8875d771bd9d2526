//! Under MPI: `s5` started by `mpirun` as several ranks. `.ci/run` builds the `mpi` feature
//! and runs these (`cargo test --release -p s5 --features mpi mpi::`); they need OpenMPI's
//! `mpirun` on the PATH.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use s5::run::EventKind;

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

/// [`crate::train::pretrain_config`] without dropout and drop path: in one process burn's
/// generator is shared by its devices' threads (see `s5::train::parallel`), so only a step
/// without random draws can be compared with one across processes.
fn pretrain_without_dropout(dir: &Path, steps: u64) -> PathBuf {
    let config = crate::train::pretrain_config(dir, steps);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "head_dropout: 0.1, drop_path: 0.1",
        "head_dropout: 0.0, drop_path: 0.0",
    );
    assert!(text.contains("head_dropout: 0.0, drop_path: 0.0"), "{text}");
    std::fs::write(&config, text).unwrap();
    config
}

/// The `train` events' losses of a run, by step (the last logged for a step re-run after a
/// resume).
fn losses(run: &Path) -> BTreeMap<u64, BTreeMap<String, f64>> {
    s5::run::read_events(&run.join("events.jsonl"))
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::Train)
        .map(|e| {
            let losses = e.losses.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            (e.step, losses)
        })
        .collect()
}

/// The float parameters of a run's newest checkpoint, and its BatchNorm statistics (the
/// values of paths ending in `running_*`), each in visit order.
fn weights_and_statistics(run: &Path) -> (Vec<f32>, Vec<f32>) {
    let (model, _, _) = s5::train::load_model(run, &crate::common::device()).unwrap();
    let (mut weights, mut statistics) = (Vec::new(), Vec::new());
    for (path, values) in crate::train::weights(&model) {
        if path
            .rsplit('.')
            .next()
            .is_some_and(|n| n.starts_with("running_"))
        {
            statistics.extend(values);
        } else {
            weights.extend(values);
        }
    }
    assert!(!statistics.is_empty(), "the decoder's BatchNorm statistics");
    (weights, statistics)
}

/// Everything a checkpoint holds, weights and statistics.
fn weights(run: &Path) -> Vec<f32> {
    let (mut weights, statistics) = weights_and_statistics(run);
    weights.extend(statistics);
    weights
}

/// Two runs of `steps` logged steps with the same losses, every one finite, and the same
/// weights and statistics, bit for bit.
fn assert_bit_identical(a: &Path, b: &Path, steps: usize) {
    let (la, lb) = (losses(a), losses(b));
    assert_eq!(la.len(), steps);
    for (step, losses) in &la {
        for (key, value) in losses {
            assert!(value.is_finite(), "step {step} {key}: {value}");
            assert_eq!(
                value.to_bits(),
                lb[step][key].to_bits(),
                "step {step} {key}"
            );
        }
    }
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len());
    let differ = wa
        .iter()
        .zip(&wb)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(differ, 0, "{differ} of {} weights differ", wa.len());
}

/// A run on two ranks (`ranks`) against one process over two GPUs (`one`): the same steps,
/// step 1's losses exactly (same weights, same summed gradients), then each step's loss
/// within 1e-2 (relative; FixMatch's L_u alone, a sum over the pixels past τ, moves more
/// when one pixel crosses τ), the weights within 1e-3 (relative L2). BatchNorm's running
/// statistics differ by design: on two ranks they are rank 0's share's, in one process every
/// device's share feeds them in turn.
fn assert_like_one_process(one: &Path, ranks: &Path, what: &str) {
    let (single, theirs) = (losses(one), losses(ranks));
    assert_eq!(
        single.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (key, value) in &single[&1] {
        assert_eq!(value.to_bits(), theirs[&1][key].to_bits(), "step 1 {key}");
    }
    let mut worst = 0.0f64;
    for (step, losses) in &single {
        let (value, other) = (losses["loss"], theirs[step]["loss"]);
        assert!(value.is_finite() && other.is_finite(), "step {step}");
        let relative = (value - other).abs() / value.abs().max(1e-6);
        worst = worst.max(relative);
        assert!(
            relative <= 1e-2,
            "step {step}: loss {value} in one process, {other} on two ranks"
        );
    }
    eprintln!("{what}: two ranks against one process over two GPUs: losses within {worst:.2e}");
    let (ws, _) = weights_and_statistics(one);
    let (wr, _) = weights_and_statistics(ranks);
    assert_eq!(ws.len(), wr.len());
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (x, y) in ws.iter().zip(&wr) {
        assert!(x.is_finite() && y.is_finite());
        diff += f64::from(x - y).powi(2);
        norm += f64::from(*x).powi(2);
    }
    let relative = (diff / norm).sqrt();
    eprintln!("{what}: weights' relative L2 {relative:.2e}");
    assert!(relative < 1e-3, "weights' relative L2 {relative}");
}

/// The files of a run directory, relative to it, sorted.
fn listing(run: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(run, run, &mut out);
    out.sort();
    out
}

/// `s5 pretrain --quiet --config config --out run` and `extra` under `mpirun -n 2`.
fn pretrain_on_two_ranks(config: &Path, run: &Path, extra: &[&str]) -> Command {
    let mut command = mpirun(2);
    command
        .args(["pretrain", "--quiet", "--config"])
        .arg(config)
        .arg("--out")
        .arg(run)
        .args(extra);
    command
}

/// Two ranks of one GPU each train as one process over two GPUs does: the same losses step
/// by step and the same final weights within float tolerance (the update runs in other
/// kernels: rank 0 updates from the summed gradients read back to the host); two 2-rank
/// runs are bit-identical; rank 0 alone writes (the run directory holds what a one-process
/// run writes, each event once). A rank killed with SIGKILL ends the job within 60 s, and
/// `--resume` continues from the newest intact checkpoint with the uninterrupted run's
/// losses and weights, bit for bit.
#[test]
fn two_ranks_train_as_one_process_over_two_gpus_and_resume_after_a_killed_rank() {
    let dir = tempfile::tempdir().unwrap();
    let config = pretrain_without_dropout(dir.path(), 4);
    let (one, first, second) = (
        dir.path().join("one"),
        dir.path().join("first"),
        dir.path().join("second"),
    );
    let out = crate::common::s5()
        .args([
            "pretrain",
            "--quiet",
            "--gpus-on-one-adapter",
            "2",
            "--config",
        ])
        .arg(&config)
        .arg("--out")
        .arg(&one)
        .output()
        .unwrap();
    crate::train::ok(&out, "s5 pretrain over two devices of one process");
    for run in [&first, &second] {
        let out = pretrain_on_two_ranks(&config, run, &[]).output().unwrap();
        crate::train::ok(&out, "mpirun -n 2 s5 pretrain");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.matches("done: 4 steps").count(),
            1,
            "rank 0 alone reports: {stdout}"
        );
    }
    assert_bit_identical(&first, &second, 4);
    assert_like_one_process(&one, &first, "S4P");
    // One writer: what the one-process run writes, each event once.
    assert_eq!(listing(&first), listing(&one));
    let events = s5::run::read_events(&first.join("events.jsonl")).unwrap();
    let steps: Vec<u64> = events
        .iter()
        .filter(|e| e.kind == EventKind::Train)
        .map(|e| e.step)
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);

    // A rank killed after step 3 ends the job; the resumed job continues from step 2.
    let killed = dir.path().join("killed");
    let mut job = pretrain_on_two_ranks(&config, &killed, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_step(&mut job, &killed, 3);
    let rank1 = rank_pid(&killed, 1).expect("rank 1's process");
    let status = Command::new("kill")
        .args(["-9", &rank1.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = exit_within(&mut job, &killed, 60, "rank 1 was killed");
    assert!(!status.success(), "a job with a killed rank failed");
    let out = pretrain_on_two_ranks(&config, &killed, &["--resume"])
        .output()
        .unwrap();
    crate::train::ok(&out, "mpirun -n 2 s5 pretrain --resume");
    // The uninterrupted trajectory, bit for bit.
    assert_bit_identical(&first, &killed, 4);
}

/// Waits until `run`'s events log a training step `step` or later (at most 10 minutes),
/// failing if `job` ends first.
fn wait_for_step(job: &mut std::process::Child, run: &Path, step: u64) {
    let events = run.join("events.jsonl");
    let started = Instant::now();
    while !s5::run::read_events(&events)
        .map(|e| {
            e.iter()
                .any(|e| e.kind == EventKind::Train && e.step >= step)
        })
        .unwrap_or(false)
    {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no step {step} within 10 minutes"
        );
        assert!(
            job.try_wait().unwrap().is_none(),
            "the job ended before step {step}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `job`'s exit status, failing if it still runs `limit_s` seconds after `after` happened
/// (now): then it says where each rank of `run` was, and kills them and `mpirun`.
fn exit_within(
    job: &mut std::process::Child,
    run: &Path,
    limit_s: u64,
    after: &str,
) -> std::process::ExitStatus {
    let since = Instant::now();
    loop {
        if let Some(status) = job.try_wait().unwrap() {
            return status;
        }
        if since.elapsed() >= Duration::from_secs(limit_s) {
            // End the job: left running, it would slow every later test.
            let state = kill_ranks(run);
            job.kill().ok();
            panic!("the job still runs {limit_s} s after {after}\n{state}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills the ranks of `run` still alive and says where each was (`/proc` state and wait
/// channel) and what the run logged last.
fn kill_ranks(run: &Path) -> String {
    let mut state = String::new();
    for rank in 0..2 {
        let Some(pid) = rank_pid(run, rank) else {
            state += &format!("rank {rank}: exited\n");
            continue;
        };
        let proc = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}"));
        let (stat, wchan) = (
            proc("stat").unwrap_or_default(),
            proc("wchan").unwrap_or_default(),
        );
        state += &format!("rank {rank}: pid {pid}, stat {stat}, wchan {wchan}\n");
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .ok();
    }
    let last: Vec<String> = s5::run::read_events(&run.join("events.jsonl"))
        .unwrap_or_default()
        .iter()
        .rev()
        .take(3)
        .map(|e| format!("{:?} at step {}", e.kind, e.step))
        .collect();
    state + &format!("last events: {last:?}")
}

/// The pid of the process with `OMPI_COMM_WORLD_RANK=rank` whose command line names `run`.
fn rank_pid(run: &Path, rank: usize) -> Option<u32> {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    let run = run.display().to_string();
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let environ = std::fs::read(entry.path().join("environ")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let is_rank = environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes());
        (is_rank && cmdline.contains(&run) && !cmdline.contains("mpirun")).then_some(pid)
    })
}

/// `s5 train` on two datasets (the second gated until step 2, each step's crops shared by
/// `Ratios`) over two ranks, each decoding only its crops of each step, trains as one
/// process over two GPUs: step 1's losses exactly, each step's loss within 1e-2 (relative),
/// the weights within 1e-3 (relative L2), as the pretrain comparison above.
#[test]
fn two_ranks_train_gated_datasets_as_one_process_over_two_gpus() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::train::tiny_config(dir.path(), 4, 1e-3);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "head_dropout: 0.1, drop_path: 0.1",
            "head_dropout: 0.0, drop_path: 0.0",
        )
        .replace("seed: 7,", "seed: 7, sampling: Ratios([1.0, 3.0]),");
    let text = crate::train::with_rural_second(&text, "start_step: 2");
    assert!(
        text.contains("Ratios") && text.contains("drop_path: 0.0"),
        "{text}"
    );
    std::fs::write(&config, text).unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let out = crate::common::s5()
        .args(["train", "--quiet", "--gpus-on-one-adapter", "2", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&one)
        .output()
        .unwrap();
    crate::train::ok(&out, "s5 train over two devices of one process");
    let out = mpirun(2)
        .args(["train", "--quiet", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&two)
        .output()
        .unwrap();
    crate::train::ok(&out, "mpirun -n 2 s5 train");
    assert_eq!(losses(&one).len(), 4);
    assert_like_one_process(&one, &two, "two gated datasets");
}

/// With `activation_checkpointing: Blocks` each rank hands every ViT block's gradients to the
/// sums over the ranks while its backward pass runs (each step's `sums_in_backward` is the
/// model's block count, against 0 with `--sum-after-backward`), and the job trains bit for
/// bit as the one that sums after the backward pass: the same losses and final weights.
#[test]
fn sums_during_the_backward_pass_train_as_sums_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let plain = crate::train::pretrain_config(dir.path(), 3);
    let text = std::fs::read_to_string(&plain).unwrap().replace(
        "seed: 7,",
        "seed: 7,\n    activation_checkpointing: Blocks,",
    );
    assert!(text.contains("activation_checkpointing: Blocks"), "{text}");
    let config = dir.path().join("blocks.ron");
    std::fs::write(&config, text).unwrap();
    let (during, after) = (dir.path().join("during"), dir.path().join("after"));
    for (run, extra) in [(&during, &[][..]), (&after, &["--sum-after-backward"][..])] {
        let out = pretrain_on_two_ranks(&config, run, extra).output().unwrap();
        crate::train::ok(&out, &format!("mpirun -n 2 s5 pretrain {extra:?}"));
    }
    let (model, _, _) = s5::train::load_model(&during, &crate::common::device()).unwrap();
    let blocks = model.backbone.blocks.len();
    assert!(blocks >= 2, "a model with blocks to overlap");
    for (run, handed) in [(&during, blocks), (&after, 0)] {
        let events = s5::run::read_events(&run.join("events.jsonl")).unwrap();
        let steps: Vec<_> = events
            .iter()
            .filter(|e| e.kind == EventKind::Train)
            .collect();
        assert_eq!(steps.len(), 3);
        for event in steps {
            let count = event.extra_f64(&s5::run::keys::SUMS_IN_BACKWARD);
            assert_eq!(
                count,
                Some(handed as f64),
                "{}: step {}",
                run.display(),
                event.step
            );
            let wait_s = event
                .extra_f64(&s5::run::keys::SUM_WAIT_S)
                .expect("sum_wait_s");
            assert!(wait_s.is_finite() && wait_s >= 0.0, "sum_wait_s {wait_s}");
        }
    }
    assert_bit_identical(&during, &after, 3);
}

/// Ranks that open their node's GPUs themselves (each its share, by its local rank: here the
/// software adapter counted as the node's one GPU, which the two ranks then share) train bit
/// for bit as ranks that let wgpu choose; `s5 info` under `mpirun` says where each rank is.
#[test]
fn ranks_placed_on_their_nodes_gpus_train_as_unplaced_ranks() {
    let place = s5::distributed::node::PLACE_ON_SOFTWARE_VAR;
    let out = mpirun(2).arg("info").env(place, "1").output().unwrap();
    crate::train::ok(&out, "mpirun -n 2 s5 info, ranks placed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for rank in 0..2 {
        let line =
            format!("local rank {rank} of 2 on this node (OMPI_COMM_WORLD_LOCAL_RANK): GPU 0 (");
        assert_eq!(stdout.matches(&line).count(), 1, "{line} in:\n{stdout}");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = pretrain_without_dropout(dir.path(), 3);
    let (placed, unplaced) = (dir.path().join("placed"), dir.path().join("unplaced"));
    let mut command = pretrain_on_two_ranks(&config, &placed, &[]);
    let out = command.env(place, "1").output().unwrap();
    crate::train::ok(&out, "mpirun -n 2 s5 pretrain, ranks placed");
    let out = pretrain_on_two_ranks(&config, &unplaced, &[])
        .output()
        .unwrap();
    crate::train::ok(&out, "mpirun -n 2 s5 pretrain");
    assert_bit_identical(&placed, &unplaced, 3);
}

/// A rank started with another config (here another seed) stops the job before anything is
/// written, with a message naming the rank and what differs.
#[test]
fn a_rank_with_another_config_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = pretrain_without_dropout(dir.path(), 2);
    let run = dir.path().join("run");
    let rank = |seed: &str| -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "-n".into(),
            "1".into(),
            env!("CARGO_BIN_EXE_s5").into(),
            "pretrain".into(),
            "--quiet".into(),
            "--config".into(),
            config.clone().into(),
            "--out".into(),
            run.clone().into(),
        ];
        if !seed.is_empty() {
            args.extend(["--seed".into(), seed.into()]);
        }
        args
    };
    let out = Command::new("mpirun")
        .arg("--oversubscribe")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(rank(""))
        .arg(":")
        .args(rank("8"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("rank 1 differs from rank 0 in its config (seed)"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("rank 1 differs").count(),
        1,
        "said once, by rank 0: {stderr}"
    );
    assert!(
        !run.exists(),
        "nothing written: {:?}",
        std::fs::read_dir(&run).ok()
    );
}

/// Ctrl-C at `mpirun` stops the job as it stops one process: every rank finishes its step,
/// rank 0 writes a checkpoint of that step and a `stop` event, and says how to resume, once.
/// OpenMPI 4 answers the `SIGINT` with `SIGTERM` to every rank `odls_base_sigkill_timeout`
/// seconds later and `SIGKILL` as many seconds after that (measured on 4.1.4), so the test
/// gives a step and a checkpoint 20 s.
#[cfg(unix)]
#[test]
fn ctrl_c_at_mpirun_finishes_the_step_on_every_rank_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let config = pretrain_without_dropout(dir.path(), 100_000);
    let run = dir.path().join("run");
    let mut job = pretrain_on_two_ranks(&config, &run, &[]);
    job.env("OMPI_MCA_odls_base_sigkill_timeout", "20")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut job = job.spawn().unwrap();
    wait_for_step(&mut job, &run, 2);
    // SAFETY: sends SIGINT to the mpirun process this test started; nothing else is touched.
    unsafe { libc::kill(job.id() as libc::pid_t, libc::SIGINT) };
    let status = exit_within(&mut job, &run, 120, "Ctrl-C");
    let events = run.join("events.jsonl");
    let out = job.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // mpirun itself exits 1 after a signal, whatever its ranks returned.
    eprintln!("mpirun exited with {status} after Ctrl-C");
    let events = s5::run::read_events(&events).unwrap();
    let last = events.last().expect("events");
    assert_eq!(last.kind, EventKind::Stop, "{stdout}\n{stderr}");
    let trained = events
        .iter()
        .filter(|e| e.kind == EventKind::Train)
        .map(|e| e.step)
        .max()
        .unwrap();
    assert_eq!(
        last.step, trained,
        "the stop follows the last finished step"
    );
    assert!(trained < 100_000);
    let (step, _) = s5::run::RunDir::new(&run)
        .latest_checkpoint()
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(step, trained, "the stop step is checkpointed");
    assert_eq!(
        stdout
            .matches(&format!("stopped after step {trained}"))
            .count(),
        1,
        "rank 0 alone reports: {stdout}"
    );
    assert!(stdout.contains("s5 pretrain --resume"), "{stdout}");
    assert_eq!(
        stderr.matches("stop requested").count(),
        1,
        "said once, by rank 0: {stderr}"
    );
}
