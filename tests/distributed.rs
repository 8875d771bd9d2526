//! Work across processes without MPI: the fixed-order sum's pieces, a job of one, and the
//! clear error of a build without the `mpi` feature started by an MPI launcher.

use s5::distributed::node::{
    LocalPlace, NodeAdapter, local_place, node_gpus, rank_gpus, tasks_on_node,
};
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

/// An environment that holds `vars` and nothing else.
fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn a_launcher_is_known_by_its_variables() {
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

/// A rank's place on its node comes from OpenMPI's, Hydra's or Slurm's variables; one rank
/// per node, or an adapter pinned by hand, places nothing; a value that is not a place is an
/// error naming its variable.
#[test]
fn a_ranks_place_on_its_node_is_read_from_its_launcher() {
    let place = |vars| local_place(&env(vars)).expect("a valid place");
    let at = |p: Option<LocalPlace>| p.map(|p| (p.rank, p.size, p.source));
    assert_eq!(at(place(&[])), None);
    assert_eq!(
        at(place(&[
            ("OMPI_COMM_WORLD_LOCAL_RANK", "3"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "4")
        ])),
        Some((3, 4, "OMPI_COMM_WORLD_LOCAL_RANK"))
    );
    assert_eq!(
        at(place(&[("MPI_LOCALRANKID", "1"), ("MPI_LOCALNRANKS", "2")])),
        Some((1, 2, "MPI_LOCALRANKID"))
    );
    // Slurm: the step's tasks on this node (the third of `4(x2),3`).
    assert_eq!(
        at(place(&[
            ("SLURM_LOCALID", "2"),
            ("SLURM_STEP_TASKS_PER_NODE", "4(x2),3"),
            ("SLURM_NODEID", "2")
        ])),
        Some((2, 3, "SLURM_LOCALID"))
    );
    // A batch script's own process (no step) and one rank per node place nothing.
    assert_eq!(at(place(&[("SLURM_LOCALID", "0")])), None);
    assert_eq!(
        at(place(&[
            ("OMPI_COMM_WORLD_LOCAL_RANK", "0"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "1")
        ])),
        None
    );
    // An adapter picked by hand wins.
    assert_eq!(
        at(place(&[
            ("MPI_LOCALRANKID", "1"),
            ("MPI_LOCALNRANKS", "2"),
            ("CUBECL_WGPU_DEFAULT_DEVICE", "DiscreteGpu(0)")
        ])),
        None
    );
    for (tasks, node, count) in [
        ("8", 0, Some(8)),
        ("2(x3),1", 2, Some(2)),
        ("2(x3),1", 3, Some(1)),
    ] {
        assert_eq!(tasks_on_node(tasks, node).ok(), count, "{tasks} at {node}");
    }
    for (bad, names) in [
        (
            &[
                ("OMPI_COMM_WORLD_LOCAL_RANK", "2"),
                ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
            ][..],
            "OMPI_COMM_WORLD_LOCAL_RANK = 2",
        ),
        (&[("MPI_LOCALRANKID", "1")][..], "MPI_LOCALNRANKS is not"),
        (
            &[("MPI_LOCALRANKID", "one"), ("MPI_LOCALNRANKS", "2")][..],
            "MPI_LOCALRANKID = `one`",
        ),
        (
            &[("SLURM_LOCALID", "0"), ("SLURM_STEP_TASKS_PER_NODE", "4(x")][..],
            "SLURM_STEP_TASKS_PER_NODE",
        ),
        (
            &[
                ("SLURM_LOCALID", "0"),
                ("SLURM_STEP_TASKS_PER_NODE", "4"),
                ("SLURM_NODEID", "1"),
            ][..],
            "SLURM_NODEID is 1",
        ),
    ] {
        let message = local_place(&env(bad)).expect_err(names).to_string();
        assert!(
            message.contains(names) && message.contains("CUBECL_WGPU_DEFAULT_DEVICE"),
            "{message}"
        );
    }
}

/// The ranks of a node take disjoint groups of its GPUs while there are enough, an equal
/// share each by default; with more ranks than GPUs they share them one each; a rank asking
/// for more GPUs than the node has for every rank is refused with the numbers.
#[test]
fn the_ranks_of_a_node_take_disjoint_gpus() {
    // Discrete GPUs in PCI bus order; the integrated GPU and the software adapter are left out.
    let node = [
        NodeAdapter {
            discrete: true,
            software: false,
            bus_id: "0000:c1:00.0",
        },
        NodeAdapter {
            discrete: false,
            software: true,
            bus_id: "",
        },
        NodeAdapter {
            discrete: true,
            software: false,
            bus_id: "0000:41:00.0",
        },
        NodeAdapter {
            discrete: false,
            software: false,
            bus_id: "0000:00:02.0",
        },
    ];
    assert_eq!(node_gpus(&node), [2, 0]);
    assert_eq!(node_gpus(&node[1..2]), Vec::<usize>::new());
    assert_eq!(node_gpus(&node[1..]), [1]);
    assert_eq!(
        node_gpus(&[node[1], node[3]]),
        [1],
        "no discrete GPU: the integrated one"
    );
    for gpus in 1..=8 {
        for size in 2..=8 {
            for per_rank in [None, Some(1), Some(2), Some(3)] {
                let picks: Vec<_> = (0..size)
                    .map(|rank| {
                        rank_gpus(
                            gpus,
                            LocalPlace {
                                rank,
                                size,
                                source: "test",
                            },
                            per_rank,
                        )
                    })
                    .collect();
                let k = per_rank.unwrap_or((gpus / size).max(1));
                if size * k > gpus && k > 1 {
                    for pick in &picks {
                        let message = pick.as_ref().expect_err("too few GPUs").to_string();
                        assert!(
                            message
                                .contains(&format!("need {} GPUs; the node has {gpus}", size * k)),
                            "{message}"
                        );
                    }
                    continue;
                }
                let picks: Vec<_> = picks.into_iter().map(|p| p.expect("a placement")).collect();
                let mut taken = vec![0; gpus];
                for pick in &picks {
                    assert_eq!(pick.count, k, "{gpus} GPUs, {size} ranks, {per_rank:?}");
                    assert_eq!(pick.shared, size > gpus);
                    // Out of the node's GPUs panics here.
                    for taken in &mut taken[pick.first..pick.first + pick.count] {
                        *taken += 1;
                    }
                }
                let most = taken.iter().max().copied().unwrap_or(0);
                assert_eq!(
                    most,
                    size.div_ceil(gpus).max(1),
                    "{gpus} GPUs, {size} ranks: {taken:?}"
                );
                if per_rank.is_none() && size <= gpus {
                    assert!(
                        gpus - taken.iter().sum::<usize>() < size,
                        "an equal share: {taken:?}"
                    );
                }
            }
        }
    }
}

/// `s5 info` under a launcher says which GPUs this rank takes; here (a software adapter) the
/// node's ranks share it. A launcher's value that is not a place stops it, naming the variable.
#[test]
fn info_says_which_gpus_a_rank_of_a_node_takes() {
    let out = s5()
        .arg("info")
        .env("OMPI_COMM_WORLD_LOCAL_RANK", "1")
        .env("OMPI_COMM_WORLD_LOCAL_SIZE", "2")
        .output()
        .unwrap();
    crate::train::ok(&out, "s5 info as local rank 1 of 2");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("this MPI rank"))
        .unwrap_or_else(|| panic!("no placement line in:\n{text}"));
    assert!(line.contains("local rank 1 of 2"), "{line}");
    let selected = json_of(s5().args(["info", "--json"]));
    let hardware = selected["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["backend"] == selected["selected"]["backend"] && a["device_type"] != "Cpu");
    if hardware {
        // Rank 1 of 2 takes the node's second GPU, or shares its only one.
        assert!(line.contains("of the node's"), "{line}");
    } else {
        assert!(line.contains("share the adapter"), "{line}");
    }
    let err = failed(
        s5().arg("info")
            .env("MPI_LOCALRANKID", "2")
            .env("MPI_LOCALNRANKS", "2"),
    );
    assert!(
        err.contains("MPI_LOCALRANKID = 2 is not a place among 2 ranks"),
        "{err}"
    );
}

/// `--gpus k` is what each rank of a node takes: 2 ranks asking for 2 GPUs each on a node of
/// one (the software adapter counted as a GPU) are refused with the numbers, before the run
/// directory exists; with one each they share it and train.
#[test]
fn gpus_per_rank_must_fit_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::train::pretrain_config(dir.path(), 1);
    let run = dir.path().join("run");
    let pretrain = |gpus: &str| {
        let mut command = s5();
        command
            .args(["pretrain", "--quiet", "--gpus", gpus, "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&run)
            .env(s5::distributed::node::PLACE_ON_SOFTWARE_VAR, "1")
            .env("OMPI_COMM_WORLD_LOCAL_RANK", "1")
            .env("OMPI_COMM_WORLD_LOCAL_SIZE", "2");
        command
    };
    let err = failed(&mut pretrain("2"));
    assert!(
        err.contains("2 ranks on this node") && err.contains("need 4 GPUs; the node has 1"),
        "{err}"
    );
    assert!(!run.exists(), "a refused run writes nothing");
    crate::train::ok(
        &pretrain("1").output().unwrap(),
        "s5 pretrain as local rank 1 of 2, sharing the GPU",
    );
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
    failed(command.env(rank, "1").env(size, "2"))
}

/// Runs `command`, expects it to fail, and returns what it printed on stderr.
fn failed(command: &mut std::process::Command) -> String {
    let out = command.output().unwrap();
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

/// Each recomputed ViT block hands its gradients over as its backward pass finishes, the
/// top block first, and `during_backward` sums them while the backward pass goes on (in a job
/// of one the sum is the identity, so the sums are the gradients): every block parameter's sum
/// is the backward pass's gradient bit for bit, the other parameters stay in the returned
/// gradients untouched. Without recomputation no block hands anything over, and the blocks'
/// sums are read from the returned gradients after the backward pass: the same bits.
#[test]
fn block_gradients_are_summed_as_each_block_finishes_its_backward_pass() {
    use burn::module::{Module, ModuleVisitor, Param, ParamId};
    use burn::optim::GradientsParams;
    use burn::tensor::Tensor;
    use s5::distributed::World;
    use s5::model::{Segmentor, SegmentorConfig, VitConfig};

    /// Every float parameter's id and flattened gradient (if any), in visit order.
    fn flat(model: &Segmentor, grads: &GradientsParams) -> Vec<(ParamId, Option<Vec<f32>>)> {
        struct Read<'a>(&'a GradientsParams, Vec<(ParamId, Option<Vec<f32>>)>);
        impl ModuleVisitor for Read<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let grad = self.0.get::<D>(param.id).map(|g| {
                    g.into_data()
                        .convert::<f32>()
                        .try_to_vec::<f32>()
                        .expect("f32")
                });
                self.1.push((param.id, grad));
            }
        }
        let mut read = Read(grads, Vec::new());
        model.visit(&mut read);
        read.1
    }
    /// Asserts `got` equals `want` bit for bit, saying how many values differ and by how much.
    fn same_bits(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        assert!(
            want.iter().all(|v| v.is_finite()),
            "{what}: finite gradients"
        );
        let differ: Vec<f32> = got
            .iter()
            .zip(want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .map(|(a, b)| (a - b).abs())
            .collect();
        assert!(
            differ.is_empty(),
            "{what}: {} of {} values differ, by up to {}",
            differ.len(),
            want.len(),
            differ
                .iter()
                .fold(0.0f32, |m, d| if d.is_nan() || *d > m { *d } else { m })
        );
    }

    let train = crate::common::device().autodiff();
    let mut vit = VitConfig::vit_tiny();
    vit.depth = 3;
    vit.feature_blocks = [0, 1, 2, 2];
    // No random draws: the reference and the summed backward passes must compute alike.
    vit.drop_path = 0.0;
    let mut cfg = SegmentorConfig::new(vit, vec![5]);
    cfg.decoder_channels = 16;
    cfg.head_dropout = 0.0;
    let model = Segmentor::new(&cfg, &train);
    let mut rng = crate::common::Rng::fresh("block gradients");
    let images = rng.tensor([2, 3, 48, 80], 1.0, &train);
    let backward = |model: &Segmentor| {
        let logits = model.forward(images.clone(), 0);
        let loss = (logits.clone() * logits).mean();
        GradientsParams::from_grads(loss.backward(), model)
    };
    let block_ids: Vec<ParamId> = {
        struct Ids(Vec<ParamId>);
        impl ModuleVisitor for Ids {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push(param.id);
            }
        }
        let mut ids = Ids(Vec::new());
        for block in &model.backbone.blocks {
            block.visit(&mut ids);
        }
        ids.0
    };
    for recomputed in [true, false] {
        let model = model.clone().with_block_recomputation(recomputed);
        // The first passes pick their kernels (autotune), whose bits may differ from the
        // chosen ones': the compared passes come after.
        for _ in 0..2 {
            drop(backward(&model));
        }
        let reference = flat(&model, &backward(&model));
        let again = flat(&model, &backward(&model));
        for ((_, a), (_, b)) in reference.iter().zip(&again) {
            match (a, b) {
                (Some(a), Some(b)) => same_bits(a, b, "twice"),
                (a, b) => assert_eq!(a.is_some(), b.is_some()),
            }
        }
        let (rest, (), early) = s5::train::overlap::during_backward(World::alone(), &model, || {
            Ok((backward(&model), ()))
        })
        .expect("the sums run");
        let expected = if recomputed { cfg.backbone.depth } else { 0 };
        assert_eq!(early.in_backward, expected, "recomputed: {recomputed}");
        let rest = flat(&model, &rest);
        let mut blocks_seen = 0;
        for ((id, want), (rest_id, left)) in reference.iter().zip(&rest) {
            assert_eq!(id, rest_id);
            if block_ids.contains(id) {
                blocks_seen += 1;
                assert!(left.is_none(), "a block parameter left in the rest");
                let want = want
                    .as_deref()
                    .expect("every block parameter has a gradient");
                let summed = early.summed[id].as_deref().expect("a summed gradient");
                same_bits(summed, want, &format!("block, recomputed: {recomputed}"));
            } else {
                assert!(
                    !early.summed.contains_key(id),
                    "only the blocks are summed early"
                );
                match (left, want) {
                    (Some(left), Some(want)) => {
                        same_bits(left, want, &format!("rest, recomputed: {recomputed}"));
                    }
                    (left, want) => assert_eq!(left.is_some(), want.is_some(), "rest"),
                }
            }
        }
        assert_eq!(blocks_seen, block_ids.len());
        assert_eq!(early.summed.len(), block_ids.len());
    }
}
