//! Which reader a data file needs, told from its content where it has a header, and the
//! shape its header declares, read without loading the data.

use std::io::Read;
use std::path::Path;

use super::images::Idx;
use super::npy::NpyArray;
use super::DataError;
use crate::nn::shape::Shape;

/// The kinds of data file the readers know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileFormat {
    /// Text: features, then the label ([`Dataset::from_csv`](super::Dataset::from_csv)).
    Csv,
    /// A `.npy` array: features `[N, F]` or images `[N, H, W(, C)]`, labels in another file.
    Npy,
    /// An IDX array (MNIST), plain or gzip-compressed, labels in another file.
    Idx,
    /// CIFAR-10 binary batches: records of a label byte and an image.
    Cifar10,
}

impl FileFormat {
    /// Tells a file's format from its first bytes (the `.npy` magic; IDX's `00 00`, plain or
    /// in gzip) or, for CIFAR-10 batches, which have no header, from a `.bin` name; anything
    /// else is read as CSV. A missing or empty file, and compressed data that is not IDX (a
    /// compressed CSV, `.npy` or CIFAR-10 batch), are refused in words.
    pub fn detect(path: &Path) -> Result<FileFormat, DataError> {
        let name = path.display().to_string();
        let io = |source| DataError::Io {
            path: name.clone(),
            source,
        };
        let bad = |why: &str| DataError::Malformed {
            path: name.clone(),
            why: why.into(),
        };
        let mut head = Vec::with_capacity(6);
        // Opened first, whatever the name: a missing file is reported as missing.
        std::fs::File::open(path)
            .and_then(|f| f.take(6).read_to_end(&mut head))
            .map_err(io)?;
        if head.is_empty() {
            return Err(bad("the file is empty"));
        }
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".bin") {
            return Ok(FileFormat::Cifar10);
        }
        if head.starts_with(&[0x1f, 0x8b]) {
            let mut inner = Vec::with_capacity(6);
            let file = std::fs::File::open(path).map_err(io)?;
            // A stream too corrupt to decode its first bytes is left to the IDX reader to
            // report whole (it reads the stream to its checksum).
            let _ = super::gzip::Members::new(std::io::BufReader::new(file))
                .take(6)
                .read_to_end(&mut inner);
            let compressed = |what: &str| {
                bad(&format!(
                    "gzip-compressed {what} is not read (only IDX files may be compressed): decompress it first"
                ))
            };
            return if lower.ends_with(".bin.gz") {
                Err(compressed("CIFAR-10 data"))
            } else if inner.starts_with(b"\x93NUMPY") {
                Err(compressed(".npy data"))
            } else if inner.len() >= 2 && !inner.starts_with(&[0, 0]) {
                Err(compressed("CSV or other data that is not IDX"))
            } else {
                Ok(FileFormat::Idx)
            };
        }
        Ok(if head.starts_with(b"\x93NUMPY") {
            FileFormat::Npy
        } else if head.starts_with(&[0, 0]) {
            FileFormat::Idx
        } else {
            FileFormat::Csv
        })
    }

    /// The rows and per-sample shape that the headers of `files` (one file, or CIFAR-10's
    /// batches) declare, checked against the files' lengths but without reading the data:
    /// what a model can be checked against before a large file is loaded. `None` for CSV
    /// (no header) and for a shape its reader would refuse (it says why).
    pub fn peek(self, files: &[&Path]) -> Result<Option<(usize, Shape)>, DataError> {
        let Some(&first) = files.first() else {
            return Ok(None);
        };
        Ok(match self {
            FileFormat::Csv => None,
            FileFormat::Npy => match NpyArray::open(first)?.shape[..] {
                [n, f] => Some((n, Shape::Flat(f))),
                [n, h, w] => Some((n, Shape::image(h, w, 1))),
                [n, h, w, c] => Some((n, Shape::image(h, w, c))),
                _ => None,
            },
            FileFormat::Idx => match Idx::open(first)?.dims[..] {
                [n, h, w] => Some((n, Shape::image(h, w, 1))),
                _ => None,
            },
            FileFormat::Cifar10 => {
                let mut rows = 0u64;
                for path in files {
                    let len = std::fs::metadata(path)
                        .map_err(|source| DataError::Io {
                            path: path.display().to_string(),
                            source,
                        })?
                        .len();
                    rows = rows.saturating_add(len / super::images::CIFAR_RECORD as u64);
                }
                Some((rows as usize, Shape::image(32, 32, 3)))
            }
        })
    }
}
