//! How the ranks of a synchronized batch norm talk: one operation, an all-gather of f64
//! values in rank order, from which every rank computes the same merge in the same order
//! (so the results are bit-identical on every rank and do not depend on timing). Two
//! transports: [`ThreadGroup`], ranks as threads of one process (one `Context` each: several
//! GPUs of one machine, or the Vulkan and GL adapters), and, with the `mpi` feature,
//! [`MpiCollective`] over any MPI communicator (processes on one machine or many).

use std::sync::{Arc, Barrier, Mutex};

use crate::error::{Error, Result};

/// A group of ranks that can all-gather.
pub trait Collective {
    /// This rank, in `0..ranks()`.
    fn rank(&self) -> usize;
    /// How many ranks take part.
    fn ranks(&self) -> usize;
    /// Every rank's `local`, concatenated in rank order. Every rank calls it the same number
    /// of times with the same length (the synchronized layer exchanges a header first, so a
    /// disagreement is an error on every rank rather than a hang).
    fn all_gather(&mut self, local: &[f64]) -> Result<Vec<f64>>;
}

/// One rank of a group of threads in one process.
#[derive(Debug, Clone)]
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    ranks: usize,
    slots: Mutex<Vec<Vec<f64>>>,
    barrier: Barrier,
}

impl ThreadGroup {
    /// A group of `ranks` members, to hand one to each thread (refused: zero ranks).
    pub fn new(ranks: usize) -> Result<Vec<ThreadGroup>> {
        if ranks == 0 {
            return Err(Error::Collective("a group needs at least one rank".into()));
        }
        let shared = Arc::new(Shared {
            ranks,
            slots: Mutex::new(vec![Vec::new(); ranks]),
            barrier: Barrier::new(ranks),
        });
        Ok((0..ranks)
            .map(|rank| ThreadGroup {
                rank,
                shared: shared.clone(),
            })
            .collect())
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn ranks(&self) -> usize {
        self.shared.ranks
    }

    fn all_gather(&mut self, local: &[f64]) -> Result<Vec<f64>> {
        let poisoned = || Error::Collective("a rank's thread panicked during an exchange".into());
        self.shared.slots.lock().map_err(|_| poisoned())?[self.rank] = local.to_vec();
        self.shared.barrier.wait();
        let all = {
            let slots = self.shared.slots.lock().map_err(|_| poisoned())?;
            if slots.iter().any(|s| s.len() != local.len()) {
                Err(Error::Collective(
                    "ranks exchanged payloads of different lengths".into(),
                ))
            } else {
                Ok(slots.concat())
            }
        };
        // Nobody writes the next round's slot before everyone has read this one.
        self.shared.barrier.wait();
        all
    }
}

/// A rank of an MPI communicator (`mpi` feature): `MpiCollective::new(universe.world())`.
#[cfg(feature = "mpi")]
pub struct MpiCollective<C: mpi::topology::Communicator> {
    comm: C,
}

#[cfg(feature = "mpi")]
impl<C: mpi::topology::Communicator> MpiCollective<C> {
    /// Wraps a communicator (the world, or a split of it).
    pub fn new(comm: C) -> Self {
        MpiCollective { comm }
    }

    /// The communicator.
    pub fn communicator(&self) -> &C {
        &self.comm
    }
}

#[cfg(feature = "mpi")]
impl<C: mpi::topology::Communicator> Collective for MpiCollective<C> {
    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    fn ranks(&self) -> usize {
        self.comm.size() as usize
    }

    fn all_gather(&mut self, local: &[f64]) -> Result<Vec<f64>> {
        use mpi::collective::CommunicatorCollectives;
        let mut all = vec![0.0f64; local.len() * self.ranks()];
        self.comm.all_gather_into(local, &mut all[..]);
        Ok(all)
    }
}
