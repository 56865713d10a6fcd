//! Output paths checked against the inputs and each other before anything runs: an output
//! that is an input would destroy it, and two outputs on one path would leave only the last.

use std::path::{Path, PathBuf};

/// A path as the file system resolves it: canonical where it exists, else its canonical
/// folder joined with its name (an output not yet written), else as given.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (parent.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// Refuses an output (flag, path) on the path of an input or of an earlier output.
pub fn check_distinct(inputs: &[(&str, &Path)], outputs: &[(&str, &Path)]) -> Result<(), String> {
    let inputs: Vec<(&str, &Path, PathBuf)> =
        inputs.iter().map(|&(f, p)| (f, p, resolved(p))).collect();
    let mut taken: Vec<(&str, &Path, PathBuf)> = Vec::new();
    for &(flag, path) in outputs {
        let here = resolved(path);
        if let Some((other, _, _)) = inputs.iter().find(|(_, _, p)| *p == here) {
            return Err(format!(
                "{flag} {} is the input {other}: writing it would destroy the input; save elsewhere",
                path.display()
            ));
        }
        if let Some((other, _, _)) = taken.iter().find(|(_, _, p)| *p == here) {
            return Err(format!(
                "{flag} {} is also the path of {other}: one would overwrite the other; give two paths",
                path.display()
            ));
        }
        taken.push((flag, path, here));
    }
    Ok(())
}
