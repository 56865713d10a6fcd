//! What this thread has recorded and submitted: dispatches, compute passes, buffer copies,
//! submits. Benchmarks report it per training step, and tests pin it, so a change that adds
//! a dispatch to a step shows. Counting is a thread-local increment: free next to a dispatch.

use std::cell::Cell;

/// Work recorded by this thread since it started (differences of two readings count a step).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkCounts {
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Compute passes begun.
    pub passes: u64,
    /// Buffer-to-buffer copies recorded.
    pub copies: u64,
    /// Queue submits.
    pub submits: u64,
}

impl std::ops::Sub for WorkCounts {
    type Output = WorkCounts;
    fn sub(self, o: WorkCounts) -> WorkCounts {
        WorkCounts {
            dispatches: self.dispatches - o.dispatches,
            passes: self.passes - o.passes,
            copies: self.copies - o.copies,
            submits: self.submits - o.submits,
        }
    }
}

thread_local! {
    static COUNTS: Cell<WorkCounts> = Cell::new(WorkCounts::default());
}

/// What this thread has recorded so far.
pub fn recorded_work() -> WorkCounts {
    COUNTS.with(Cell::get)
}

fn add(f: impl FnOnce(&mut WorkCounts)) {
    COUNTS.with(|c| {
        let mut v = c.get();
        f(&mut v);
        c.set(v);
    });
}

pub(crate) fn dispatch() {
    add(|c| c.dispatches += 1);
}

pub(crate) fn pass() {
    add(|c| c.passes += 1);
}

pub(crate) fn copy() {
    add(|c| c.copies += 1);
}

pub(crate) fn submit() {
    add(|c| c.submits += 1);
}
