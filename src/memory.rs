//! Host memory: allocations that fail with an error instead of aborting the process, and a
//! check of large requests against the memory the machine has (Linux over-commits, so a
//! reservation that succeeds can still end in the OOM killer once it is touched).

use crate::error::{Error, Result};

/// Bytes the OS says can be allocated without swapping (`MemAvailable` on Linux), if known.
pub fn available_host_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
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
