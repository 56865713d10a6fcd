//! Host memory: allocations that fail with an error instead of aborting the process, and a
//! check of large requests against the memory the machine has (Linux over-commits, so a
//! reservation that succeeds can still end in the OOM killer once it is touched).

use crate::error::{Error, Result};

/// Bytes that can be allocated: what the OS says is available without swapping
/// (`MemAvailable` on Linux), and no more than the process's address-space limit
/// (`ulimit -v`) leaves, if either is known. Past the limit an allocation fails, and a
/// failed allocation in Rust aborts the process: requests are checked against it first.
pub fn available_host_bytes() -> Option<u64> {
    let meminfo = || -> Option<u64> {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    };
    match (meminfo(), address_space_left()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What the soft address-space limit leaves above the process's current size (`None` when
/// there is no limit or it cannot be read).
fn address_space_left() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    // "Max address space  <soft>  <hard>  bytes"; "unlimited" does not parse.
    let soft: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let size = status
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib.saturating_mul(1024));
    Some(soft.saturating_sub(size))
}

/// Refuses a request for `bytes` of host memory that exceeds what is available.
pub fn check_host_bytes(what: &'static str, bytes: u64) -> Result<()> {
    match available_host_bytes() {
        Some(available) if bytes > available => Err(Error::HostMemory {
            what,
            needed: bytes,
            available: Some(available),
        }),
        _ => Ok(()),
    }
}

/// `len` copies of `value`, or [`Error::HostMemory`] when the memory cannot be had (checked
/// against what is available, then reserved fallibly: an address-space limit gives an error,
/// not an abort).
pub fn try_filled<T: Clone>(what: &'static str, len: usize, value: T) -> Result<Vec<T>> {
    let bytes = (len as u64).saturating_mul(std::mem::size_of::<T>() as u64);
    check_host_bytes(what, bytes)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::HostMemory {
        what,
        needed: bytes,
        available: available_host_bytes(),
    })?;
    v.resize(len, value);
    Ok(v)
}
