//! Work across processes: the ranks of an MPI job (`mpirun`, `srun`), each with its own GPUs,
//! and the few collectives s5 needs. Sums run in a fixed order (rank 0's values, plus rank
//! 1's, plus rank 2's, ...), never in whatever order `MPI_Allreduce` picks, so two runs of
//! the same world size give the same bits.
//!
//! A process outside an MPI launcher, or built without the `mpi` feature, is the one rank of
//! a job of one: every collective is then the identity, and no MPI library is needed.

pub mod node;
mod reduce;
#[cfg(feature = "mpi")]
mod transport;

use std::sync::OnceLock;

pub use reduce::{all_reduce_sum, chunks, sum_in_rank_order};

use crate::error::Result;

/// What the collectives need from the transport (MPI). Every rank makes every call, in the
/// same order.
pub trait Comm: Send + Sync {
    /// This process's rank, 0-based.
    fn rank(&self) -> usize;
    /// Ranks in the job.
    fn size(&self) -> usize;
    /// `send` is cut into consecutive parts of `send_counts[j]` values, part j going to rank
    /// j; returns what every rank sent this one (`recv_counts[i]` values from rank i), in rank
    /// order.
    fn all_to_all_f32(
        &self,
        send: &[f32],
        send_counts: &[usize],
        recv_counts: &[usize],
    ) -> Vec<f32>;
    /// Every rank's `mine` (`counts[i]` values from rank i), concatenated in rank order.
    fn all_gather_f32(&self, mine: &[f32], counts: &[usize]) -> Vec<f32>;
    /// Every rank's bytes, in rank order (lengths may differ).
    fn all_gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>>;
    /// Replaces `values` (the same length on every rank, at most 2^31 values) with rank 0's:
    /// MPI's broadcast, a tree or pipeline, so rank 0 does not send to every rank in turn.
    fn broadcast_f32(&self, values: &mut [f32]);
    /// Ends every process of the job (a rank that cannot go on would leave the others
    /// waiting in their next collective).
    fn abort(&self, code: i32) -> !;
    /// The MPI library, as it names itself.
    fn library(&self) -> String;
}

/// This process's place in its job.
pub struct World {
    comm: Option<Box<dyn Comm>>,
}

static WORLD: OnceLock<World> = OnceLock::new();

/// The environment variables by which MPI launchers tell a process its rank and world size:
/// OpenMPI's `mpirun`, then the PMI of MPICH's `mpiexec` (Hydra), Intel MPI, and Cray MPICH
/// or MPICH under `srun --mpi=pmi2`. (PMIx puts no world size in the environment: under
/// `srun --mpi=pmix` use `mpirun` inside the allocation.)
pub const LAUNCHER_VARS: [(&str, &str); 2] = [
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("PMI_RANK", "PMI_SIZE"),
];

/// The world size an MPI launcher announces in `env`, if one does (an empty variable
/// announces none); an error naming the variable where it is not a whole number ≥ 1.
pub fn launched_size(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<usize>> {
    let Some((name, text)) = LAUNCHER_VARS.iter().find_map(|(_, size)| {
        env(size)
            .filter(|text| !text.trim().is_empty())
            .map(|text| (*size, text))
    }) else {
        return Ok(None);
    };
    match text.trim().parse::<usize>() {
        Ok(size) if size >= 1 => Ok(Some(size)),
        _ => Err(crate::error::Error::Config {
            reason: format!(
                "{name} = `{text}` is not a world size (a whole number ≥ 1): it is set by an \
                 MPI launcher (mpirun, srun); unset it to run one process"
            ),
        }),
    }
}

/// Refuses to run `what` (a command that runs as one process, its GPUs given by `--gpus`) as
/// one of several MPI ranks: each rank would run it whole and write the same files.
pub fn refuse_ranks(what: &str) -> Result<()> {
    match launched_size(&|name| std::env::var(name).ok())? {
        Some(size) if size > 1 => Err(crate::error::Error::Config {
            reason: format!(
                "`{what}` runs as one process (several GPUs of one machine: --gpus), but it was \
                 started as one of {size} MPI ranks, each of which would run it alone into the \
                 same folder. Start it once, without mpirun or srun (under MPI, s5 runs \
                 `s5 train`, `s5 pretrain`, `s5 finetune`, `s5 curate score` shards and \
                 `s5 bench allreduce`)"
            ),
        }),
        _ => Ok(()),
    }
}

impl World {
    /// The job of one process.
    pub const fn single() -> Self {
        Self { comm: None }
    }

    /// The job of one process, for callers that take a world by reference.
    pub fn alone() -> &'static World {
        static ALONE: World = World::single();
        &ALONE
    }

    /// The world this process was started in, joined once (MPI initialised on first call
    /// where a launcher started the process); every later call returns it.
    pub fn join() -> Result<&'static World> {
        if let Some(world) = WORLD.get() {
            return Ok(world);
        }
        let world = Self::from_env()?;
        Ok(WORLD.get_or_init(|| world))
    }

    /// The world, if [`World::join`] joined it.
    pub fn joined() -> Option<&'static World> {
        WORLD.get()
    }

    fn from_env() -> Result<Self> {
        let size = launched_size(&|name| std::env::var(name).ok())?;
        match size {
            None | Some(1) => Ok(Self::single()),
            #[cfg(feature = "mpi")]
            Some(_) => Ok(Self {
                comm: Some(Box::new(transport::Mpi::init()?)),
            }),
            #[cfg(not(feature = "mpi"))]
            Some(size) => Err(crate::error::Error::Config {
                reason: format!(
                    "this process is one of {size} MPI ranks, but this s5 was built without \
                     MPI: build it with `cargo build --release --features mpi` (it needs an \
                     MPI library, mpicc and libclang; GUIDE.md, \"Several machines\"), or run \
                     one process without mpirun"
                ),
            }),
        }
    }

    /// Finalises MPI where it was initialised: call once, after the last collective.
    pub fn finish() {
        #[cfg(feature = "mpi")]
        transport::finish();
    }

    pub fn rank(&self) -> usize {
        self.comm.as_ref().map_or(0, |c| c.rank())
    }

    pub fn size(&self) -> usize {
        self.comm.as_ref().map_or(1, |c| c.size())
    }

    /// Whether this rank writes what the job shows the world (rank 0).
    pub fn is_writer(&self) -> bool {
        self.rank() == 0
    }

    /// `values` summed over the ranks, the same bits on every rank
    /// ([`all_reduce_sum`]).
    pub fn sum_f32(&self, values: &mut [f32]) {
        if let Some(comm) = &self.comm {
            all_reduce_sum(comm.as_ref(), values);
        }
    }

    /// `values` (the same length on every rank, a few) summed over the ranks in rank order,
    /// in f64: exact for whole numbers below 2^53 (counts).
    pub fn sum_f64(&self, values: &mut [f64]) {
        let Some(comm) = &self.comm else {
            return;
        };
        let mine: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        values.iter_mut().for_each(|v| *v = 0.0);
        for bytes in comm.all_gather_bytes(&mine) {
            for (v, chunk) in values.iter_mut().zip(bytes.chunks_exact(8)) {
                let word: [u8; 8] = chunk.try_into().unwrap_or([0; 8]);
                *v += f64::from_le_bytes(word);
            }
        }
    }

    /// Every rank's bytes, in rank order.
    pub fn all_gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        match &self.comm {
            Some(comm) => comm.all_gather_bytes(mine),
            None => vec![mine.to_vec()],
        }
    }

    /// Rank 0's bytes, on every rank (what other ranks pass is ignored).
    pub fn broadcast_bytes(&self, mine: &[u8]) -> Vec<u8> {
        match &self.comm {
            Some(comm) => {
                let send: &[u8] = if comm.rank() == 0 { mine } else { &[] };
                comm.all_gather_bytes(send).swap_remove(0)
            }
            None => mine.to_vec(),
        }
    }

    /// Replaces `values` on every rank with rank 0's (the same length on every rank).
    pub fn broadcast_f32(&self, values: &mut [f32]) {
        let Some(comm) = &self.comm else {
            return;
        };
        for round in values.chunks_mut(reduce::ROUND_VALUES) {
            comm.broadcast_f32(round);
        }
    }

    /// Whether `flag` is set on any rank (the same answer on every rank).
    pub fn any(&self, flag: bool) -> bool {
        match &self.comm {
            Some(comm) => comm
                .all_gather_bytes(&[u8::from(flag)])
                .iter()
                .any(|b| b.first() == Some(&1)),
            None => flag,
        }
    }

    /// Ends every process of the job with `code`; a job of one exits.
    pub fn abort(&self, code: i32) -> ! {
        match &self.comm {
            Some(comm) => comm.abort(code),
            None => std::process::exit(code),
        }
    }

    /// The MPI library (`None` in a job of one).
    pub fn library(&self) -> Option<String> {
        self.comm.as_ref().map(|c| c.library())
    }
}
