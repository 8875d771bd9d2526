//! Which GPUs of its node an MPI rank takes when a launcher starts several ranks per node.
//!
//! Vulkan, Metal and DX12 show every process every GPU of its machine
//! (`CUDA_VISIBLE_DEVICES` and `ROCR_VISIBLE_DEVICES` do not reach them), so ranks on one node
//! would all open the same first GPU. Launchers tell each rank its place on its node (its
//! local rank of the node's local size); local rank r then takes the r-th group of the node's
//! GPUs, in PCI bus order, so the ranks of a node never share a GPU while there are enough.

use crate::error::{Error, Result};

/// A rank's place among the ranks of its node, as its launcher announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalPlace {
    /// 0-based, below `size`.
    pub rank: usize,
    /// Ranks on this node.
    pub size: usize,
    /// The variable the place was read from (for messages).
    pub source: &'static str,
}

/// The variables by which launchers announce a rank's place on its node: OpenMPI's `mpirun`,
/// then MPICH's Hydra `mpiexec` (and Intel MPI). Slurm's `srun` is read after them
/// (`SLURM_LOCALID`, the step's tasks per node at `SLURM_NODEID`).
pub const LOCAL_VARS: [(&str, &str); 2] = [
    ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
];

/// Set (e.g. `DiscreteGpu(1)`) to pick the adapter yourself: s5 then places no rank.
pub const PINNED_DEVICE_VAR: &str = "CUBECL_WGPU_DEFAULT_DEVICE";

/// Set to count software adapters as the node's GPUs, so that the placed path (each rank
/// opening its own GPU) runs where there is no other (the tests on lavapipe).
pub const PLACE_ON_SOFTWARE_VAR: &str = "S5_PLACE_ON_SOFTWARE_ADAPTERS";

/// This rank's place on its node, if a launcher started several ranks on it (`None` for one
/// rank per node, outside a launcher, or when [`PINNED_DEVICE_VAR`] pins the adapter); an
/// error naming the variable where a launcher's value cannot be read.
pub fn local_place(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<LocalPlace>> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if set(PINNED_DEVICE_VAR).is_some() {
        return Ok(None);
    }
    let place = if let Some((rank_var, size_var)) =
        LOCAL_VARS.iter().find(|(rank, _)| set(rank).is_some())
    {
        let size =
            set(size_var).ok_or_else(|| bad(format!("{rank_var} is set but {size_var} is not")))?;
        LocalPlace {
            rank: number(rank_var, &set(rank_var).unwrap_or_default())?,
            size: number(size_var, &size)?,
            source: rank_var,
        }
    } else if let (Some(id), Some(tasks)) = (set("SLURM_LOCALID"), set("SLURM_STEP_TASKS_PER_NODE"))
    {
        let node = set("SLURM_NODEID").map_or(Ok(0), |n| number("SLURM_NODEID", &n))?;
        LocalPlace {
            rank: number("SLURM_LOCALID", &id)?,
            size: tasks_on_node(&tasks, node)?,
            source: "SLURM_LOCALID",
        }
    } else {
        return Ok(None);
    };
    if place.size == 0 || place.rank >= place.size {
        return Err(bad(format!(
            "{} = {} is not a place among {} ranks on this node",
            place.source, place.rank, place.size
        )));
    }
    Ok((place.size > 1).then_some(place))
}

/// The tasks Slurm starts on node `node` of a step, from `SLURM_STEP_TASKS_PER_NODE`
/// (`4(x2),3`: 4 tasks on each of the first two nodes, 3 on the third).
pub fn tasks_on_node(text: &str, node: usize) -> Result<usize> {
    let mut first = 0;
    for item in text.split(',') {
        let item = item.trim();
        let (count, repeat) = match item.split_once("(x") {
            Some((count, rest)) => {
                let repeat = rest.strip_suffix(')').unwrap_or("");
                (count, number("SLURM_STEP_TASKS_PER_NODE", repeat)?)
            }
            None => (item, 1),
        };
        let count = number("SLURM_STEP_TASKS_PER_NODE", count)?;
        if node < first + repeat {
            return Ok(count);
        }
        first += repeat;
    }
    Err(bad(format!(
        "SLURM_STEP_TASKS_PER_NODE = `{text}` names {first} nodes, but SLURM_NODEID is {node}"
    )))
}

/// What [`node_gpus`] needs to know of an adapter.
#[derive(Debug, Clone, Copy)]
pub struct NodeAdapter<'a> {
    pub discrete: bool,
    /// A software adapter (lavapipe, WARP, llvmpipe).
    pub software: bool,
    /// `domain:bus:device.function` where the driver says (may be empty).
    pub bus_id: &'a str,
}

/// The node's GPUs among `adapters` (one graphics API's, in the driver's order), as indices
/// into it: the discrete GPUs where there are any, else every hardware adapter; in PCI bus
/// order (ties and unknown buses keep the driver's order), the same in every process.
/// Empty where the node has only software adapters.
pub fn node_gpus(adapters: &[NodeAdapter]) -> Vec<usize> {
    let any_discrete = adapters.iter().any(|a| a.discrete);
    let mut gpus: Vec<usize> = (0..adapters.len())
        .filter(|&i| !adapters[i].software && (adapters[i].discrete || !any_discrete))
        .collect();
    gpus.sort_by(|&a, &b| adapters[a].bus_id.cmp(adapters[b].bus_id));
    gpus
}

/// The GPUs one rank takes: positions `first .. first + count` of the node's GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankGpus {
    pub first: usize,
    pub count: usize,
    /// Whether other ranks of the node take the same GPU (more ranks than GPUs).
    pub shared: bool,
}

/// The GPUs local rank `place.rank` takes of a node's `gpus` when every rank asks for
/// `per_rank` (`None`: an equal share, at least one). Rank r takes GPUs r·k .. r·k + k; with
/// more ranks than GPUs, each rank one GPU, rank r the (r mod `gpus`)-th. A rank asking for
/// several GPUs where the node has too few is an error naming the numbers.
pub fn rank_gpus(gpus: usize, place: LocalPlace, per_rank: Option<usize>) -> Result<RankGpus> {
    if gpus == 0 {
        return Err(bad("this node has no GPU to place ranks on".into()));
    }
    let k = per_rank.unwrap_or(gpus / place.size).max(1);
    if place.size * k <= gpus {
        return Ok(RankGpus {
            first: place.rank * k,
            count: k,
            shared: false,
        });
    }
    if k == 1 {
        return Ok(RankGpus {
            first: place.rank % gpus,
            count: 1,
            shared: true,
        });
    }
    Err(bad(format!(
        "{} ranks on this node ({} = {}) each asking for {k} GPUs need {} GPUs; the node has \
         {gpus}. Start fewer ranks per node (e.g. `--ntasks-per-node`, `--map-by ppr:1:node`) \
         or ask each for fewer (`--gpus`)",
        place.size,
        place.source,
        place.rank,
        place.size * k
    )))
}

fn number(name: &str, text: &str) -> Result<usize> {
    text.trim()
        .parse::<usize>()
        .map_err(|_| bad(format!("{name} = `{text}` is not a whole number ≥ 0")))
}

fn bad(what: String) -> Error {
    Error::Config {
        reason: format!(
            "placing this MPI rank on its node's GPUs: {what}. The launcher sets these \
             variables; set {PINNED_DEVICE_VAR} (e.g. `DiscreteGpu(0)`) to pick the GPU yourself"
        ),
    }
}
