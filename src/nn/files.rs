//! Writing output files so that a failure leaves nothing behind: the bytes go to a temporary
//! file beside the target, are synced, and replace the target in one rename.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why an output path cannot be written, in words. The caller names the file (as std's I/O
/// errors, so that it is named once: "weights file x: the directory d does not exist").
fn refuse(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, why)
}

/// The file a write to `path` really replaces: the target of a symlink (so the link stays a
/// link), the path itself otherwise. Directories and special files (devices, pipes) are
/// refused rather than replaced by a regular file.
pub fn output_target(path: &Path) -> std::io::Result<PathBuf> {
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(path) {
            Ok(t) => t,
            // A dangling link: create what it points to.
            Err(_) => {
                let link = std::fs::read_link(path)?;
                match path.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                }
            }
        },
        _ => path.to_path_buf(),
    };
    match std::fs::metadata(&target) {
        Ok(m) if m.is_dir() => return Err(refuse("is a directory")),
        Ok(m) if !m.is_file() => return Err(refuse("is not a regular file (a device or a pipe)")),
        _ => {}
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(target),
        Ok(_) => Err(refuse("its parent is not a directory")),
        Err(_) => Err(refuse(&format!(
            "the directory {} does not exist",
            dir.display()
        ))),
    }
}

/// Checks, before any work, that `path` can be written: a regular file (or nothing yet) in a
/// directory that exists and accepts new files. Creates and removes a probe file. The error
/// says why without repeating `path`: the caller names the file.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    let target = output_target(path)?;
    let probe = temporary_beside(&target, "probe");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| refuse(&format!("cannot create files in its directory: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn temporary_beside(target: &Path, what: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.{}.{what}", std::process::id()))
}

/// Writes `bytes` to `path` atomically: a complete new file or, on any error, the old state
/// (no partial or empty file, no temporary left behind). The error does not repeat `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let target = output_target(path)?;
    let tmp = temporary_beside(&target, "partial");
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
