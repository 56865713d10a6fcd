//! How ranks talk (synchronized batch norm, data-parallel training): one operation, an
//! all-gather of f64 values in rank order, from which every rank computes the same merge in
//! the same order (so the results are bit-identical on every rank and do not depend on
//! timing). Two transports: [`ThreadGroup`], ranks as threads of one process (one `Context`
//! each: several GPUs of one machine, or the Vulkan and GL adapters), and, with the `mpi`
//! feature, [`MpiCollective`] over any MPI communicator (processes on one machine or many).

use std::sync::{Arc, Condvar, Mutex};

use crate::error::{Error, Result};

/// A group of ranks that can all-gather.
pub trait Collective {
    /// This rank, in `0..ranks()`.
    fn rank(&self) -> usize;
    /// How many ranks take part.
    fn ranks(&self) -> usize;
    /// Every rank's `local`, concatenated in rank order. Every rank calls it the same number
    /// of times; lengths that differ are an error on every rank (never a transport abort).
    /// Synchronized batch norm and data-parallel training go through [`crate::Exchange`],
    /// which adds a status header, so a rank that failed cannot leave the others waiting.
    fn all_gather(&mut self, local: &[f64]) -> Result<Vec<f64>>;
}

/// One rank of a group of threads in one process. A member that is dropped (its thread
/// finished, or panicked and unwound) leaves the group: the others' exchanges then fail with
/// an error instead of waiting for it forever.
#[derive(Debug)]
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    ranks: usize,
    round: Mutex<Round>,
    changed: Condvar,
}

/// One exchange in progress: the slots filled so far; a completed round's result stays until
/// every rank has read it, so a fast rank cannot start the next round over a slow one.
#[derive(Debug)]
struct Round {
    slots: Vec<Option<Vec<f64>>>,
    /// The completed round's result (or what went wrong), kept until every rank has read it.
    done: Option<Arc<std::result::Result<Vec<f64>, String>>>,
    unread: usize,
    /// Ranks that left the group.
    left: Vec<usize>,
}

impl ThreadGroup {
    /// A group of `ranks` members, to hand one to each thread (refused: zero ranks).
    pub fn new(ranks: usize) -> Result<Vec<ThreadGroup>> {
        if ranks == 0 {
            return Err(Error::Collective("a group needs at least one rank".into()));
        }
        let shared = Arc::new(Shared {
            ranks,
            round: Mutex::new(Round {
                slots: vec![None; ranks],
                done: None,
                unread: 0,
                left: Vec::new(),
            }),
            changed: Condvar::new(),
        });
        Ok((0..ranks)
            .map(|rank| ThreadGroup {
                rank,
                shared: shared.clone(),
            })
            .collect())
    }
}

/// The same words on every rank: each rank's length.
fn different_lengths(lengths: impl Iterator<Item = usize>) -> String {
    let each: Vec<String> = lengths
        .enumerate()
        .map(|(r, n)| format!("rank {r} sends {n} values"))
        .collect();
    format!(
        "ranks exchange payloads of different lengths: {}",
        each.join(", ")
    )
}

fn broken() -> Error {
    Error::Collective("a rank's thread panicked during an exchange".into())
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn ranks(&self) -> usize {
        self.shared.ranks
    }

    fn all_gather(&mut self, local: &[f64]) -> Result<Vec<f64>> {
        let sh = &*self.shared;
        let mut round = sh.round.lock().map_err(|_| broken())?;
        // Wait until the previous round's result has been read by everyone.
        while round.done.is_some() {
            round = sh.changed.wait(round).map_err(|_| broken())?;
        }
        round.slots[self.rank] = Some(local.to_vec());
        loop {
            if round.done.is_none() && round.slots.iter().all(Option::is_some) {
                let slots: Vec<Vec<f64>> =
                    round.slots.iter_mut().filter_map(Option::take).collect();
                let result = if slots.iter().any(|s| s.len() != local.len()) {
                    Err(different_lengths(slots.iter().map(Vec::len)))
                } else {
                    Ok(slots.concat())
                };
                round.done = Some(Arc::new(result));
                round.unread = sh.ranks;
                sh.changed.notify_all();
            }
            // A completed round is read even if a rank has left since.
            if let Some(done) = round.done.clone() {
                round.unread -= 1;
                if round.unread == 0 {
                    round.done = None;
                    sh.changed.notify_all();
                }
                return match &*done {
                    Ok(v) => Ok(v.clone()),
                    Err(why) => Err(Error::Collective(why.clone())),
                };
            }
            if let Some(&gone) = round.left.first() {
                round.slots[self.rank] = None;
                return Err(Error::Collective(format!(
                    "rank {gone} left the group before this exchange completed"
                )));
            }
            round = sh.changed.wait(round).map_err(|_| broken())?;
        }
    }
}

impl Drop for ThreadGroup {
    fn drop(&mut self) {
        if let Ok(mut round) = self.shared.round.lock() {
            round.left.push(self.rank);
            self.shared.changed.notify_all();
        }
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
        // The lengths first: MPI aborts the whole job on a receive buffer of the wrong size
        // ("Message truncated"), so unequal lengths must be seen before the payload moves.
        let mut lengths = vec![0u64; self.ranks()];
        self.comm
            .all_gather_into(&(local.len() as u64), &mut lengths[..]);
        if lengths.iter().any(|&n| n != local.len() as u64) {
            return Err(Error::Collective(different_lengths(
                lengths.iter().map(|&n| n as usize),
            )));
        }
        let total = local.len().checked_mul(self.ranks()).ok_or_else(|| {
            Error::Collective(format!(
                "{} ranks of {} values overflow this machine's sizes",
                self.ranks(),
                local.len()
            ))
        })?;
        let mut all = vec![0.0f64; total];
        self.comm.all_gather_into(local, &mut all[..]);
        Ok(all)
    }
}
