//! The collectives over MPI (the `mpi` crate: OpenMPI, MPICH, Cray MPICH, ...). MPI is
//! initialised with `MPI_THREAD_SERIALIZED` and every call holds one lock, so calls never
//! overlap whichever thread makes them.

use std::sync::Mutex;

use mpi::Count;
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::Comm;
use crate::error::{Error, Result};

/// The universe, kept until [`finish`] finalises MPI.
static UNIVERSE: Mutex<Option<Universe>> = Mutex::new(None);

/// `MPI_COMM_WORLD` of this process.
pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// Held by every call (MPI_THREAD_SERIALIZED).
    lock: Mutex<()>,
}

// SAFETY: `SimpleCommunicator` is a handle to MPI_COMM_WORLD, valid until MPI_Finalize (which
// `finish` calls after the last collective). MPI was initialised with MPI_THREAD_SERIALIZED
// and every use of the handle holds `lock`, so no two threads ever call MPI at once.
unsafe impl Send for Mpi {}
// SAFETY: as above: all access goes through `lock`.
unsafe impl Sync for Mpi {}

impl Mpi {
    pub fn init() -> Result<Self> {
        let (universe, _provided) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| Error::Config {
                reason: "MPI was initialised twice in this process".into(),
            })?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        *UNIVERSE.lock().unwrap_or_else(|p| p.into_inner()) = Some(universe);
        Ok(Self {
            world,
            rank,
            size,
            lock: Mutex::new(()),
        })
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Finalises MPI (dropping the universe calls `MPI_Finalize`), if it was initialised.
pub fn finish() {
    let universe = UNIVERSE.lock().unwrap_or_else(|p| p.into_inner()).take();
    drop(universe);
}

/// MPI's `int` counts and their displacements.
fn layout(counts: &[usize]) -> (Vec<Count>, Vec<Count>) {
    let count = |n: usize| Count::try_from(n).expect("at most 2^31 values per part (reduce.rs)");
    let counts: Vec<Count> = counts.iter().map(|&n| count(n)).collect();
    let displs = counts
        .iter()
        .scan(0, |at: &mut Count, &n| {
            let start = *at;
            *at += n;
            Some(start)
        })
        .collect();
    (counts, displs)
}

impl Comm for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_to_all_f32(
        &self,
        send: &[f32],
        send_counts: &[usize],
        recv_counts: &[usize],
    ) -> Vec<f32> {
        let (sc, sd) = layout(send_counts);
        let (rc, rd) = layout(recv_counts);
        let mut received = vec![0f32; recv_counts.iter().sum()];
        let _guard = self.guard();
        self.world.all_to_all_varcount_into(
            &Partition::new(send, &sc[..], &sd[..]),
            &mut PartitionMut::new(&mut received[..], &rc[..], &rd[..]),
        );
        received
    }

    fn all_gather_f32(&self, mine: &[f32], counts: &[usize]) -> Vec<f32> {
        let (c, d) = layout(counts);
        let mut all = vec![0f32; counts.iter().sum()];
        let _guard = self.guard();
        self.world
            .all_gather_varcount_into(mine, &mut PartitionMut::new(&mut all[..], &c[..], &d[..]));
        all
    }

    fn all_gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        let _guard = self.guard();
        let len = mine.len() as u64;
        let mut lens = vec![0u64; self.size];
        self.world.all_gather_into(&len, &mut lens[..]);
        let sizes: Vec<usize> = lens.iter().map(|&n| n as usize).collect();
        let (c, d) = layout(&sizes);
        let mut all = vec![0u8; sizes.iter().sum()];
        self.world
            .all_gather_varcount_into(mine, &mut PartitionMut::new(&mut all[..], &c[..], &d[..]));
        let mut at = 0;
        sizes
            .iter()
            .map(|&n| {
                at += n;
                all[at - n..at].to_vec()
            })
            .collect()
    }

    fn broadcast_f32(&self, values: &mut [f32]) {
        let _guard = self.guard();
        self.world.process_at_rank(0).broadcast_into(values);
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }

    fn library(&self) -> String {
        mpi::environment::library_version()
            .map(|v| {
                let first = v.lines().next().unwrap_or_default();
                first
                    .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .to_string()
            })
            .unwrap_or_else(|_| "MPI".into())
    }
}
