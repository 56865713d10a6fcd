//! Image data sets, NHWC with values in [0, 1]: the embedded 8×8 handwritten digits, MNIST and
//! Fashion-MNIST IDX files (`*-images-idx3-ubyte[.gz]`), CIFAR-10 binary batches, and `.npy`
//! arrays `[N, H, W, C]`. Every header is checked against the bytes that back it before
//! anything is allocated.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::{DataError, Dataset};

/// The digits, as `data/digits/extract.py` wrote them (CC BY 4.0, see `data/digits/README.md`).
const DIGITS_IMAGES: &[u8] = include_bytes!("../../../data/digits/digits-images-idx3-ubyte.gz");
const DIGITS_LABELS: &[u8] = include_bytes!("../../../data/digits/digits-labels-idx1-ubyte.gz");

/// CIFAR-10: a label byte, then a 32×32 image as three planes (R, G, B).
const CIFAR_SIDE: usize = 32;
const CIFAR_RECORD: usize = 1 + 3 * CIFAR_SIDE * CIFAR_SIDE;

impl Dataset {
    /// The 8×8 handwritten digits (1,797 images `[8, 8, 1]`, 10 classes; UCI "Optical
    /// Recognition of Handwritten Digits", CC BY 4.0), pixels 0..16 scaled to [0, 1].
    pub fn digits() -> Dataset {
        let read = |bytes: &[u8]| read_idx("<embedded digits>", GzDecoder::new(bytes), None);
        // The embedded files are fixed and tested: failing here is a build defect.
        let ((shape, images), (_, labels)) = read(DIGITS_IMAGES)
            .and_then(|i| Ok((i, read(DIGITS_LABELS)?)))
            .expect("the embedded digits are valid IDX files");
        let x = images.iter().map(|&v| v as f32 / 16.0).collect();
        let labels = labels.iter().map(|&l| l as u32).collect();
        Dataset::checked("<embedded digits>", x, labels, shape[1] * shape[2], 10)
            .and_then(|d| d.with_image_shape([shape[1], shape[2], 1]))
            .expect("the embedded digits are a valid data set")
    }

    /// MNIST-style IDX files: images `[N, H, W]` of unsigned bytes (scaled to [0, 1]) and
    /// labels `[N]`; either may be gzip-compressed (`.gz`, recognized by its magic bytes).
    /// The classes are 1 + the largest label.
    pub fn from_idx(images: &Path, labels: &Path) -> Result<Dataset, DataError> {
        let (ishape, pixels) = read_idx_file(images)?;
        let (lshape, classes) = read_idx_file(labels)?;
        let iname = images.display().to_string();
        let lname = labels.display().to_string();
        if ishape.len() != 3 {
            return Err(malformed(
                &iname,
                format!("images must be [N, H, W], got {ishape:?}"),
            ));
        }
        if lshape.len() != 1 || lshape[0] != ishape[0] {
            return Err(malformed(
                &lname,
                format!("labels must be [{}], got {lshape:?}", ishape[0]),
            ));
        }
        let x = pixels.iter().map(|&v| v as f32 / 255.0).collect();
        let labels: Vec<u32> = classes.iter().map(|&l| l as u32).collect();
        let k = labels.iter().max().map_or(1, |&m| m as usize + 1);
        Dataset::checked(&iname, x, labels, ishape[1] * ishape[2], k)?
            .with_image_shape([ishape[1], ishape[2], 1])
    }

    /// CIFAR-10 binary batches (`data_batch_1.bin`...: records of a label byte and a 32×32
    /// RGB image stored as planes), concatenated in order, as `[32, 32, 3]` images in [0, 1].
    pub fn from_cifar10(files: &[&Path]) -> Result<Dataset, DataError> {
        let mut x = Vec::new();
        let mut labels = Vec::new();
        let plane = CIFAR_SIDE * CIFAR_SIDE;
        for path in files {
            let name = path.display().to_string();
            let bytes = read_all(path)?;
            if bytes.is_empty() || bytes.len() % CIFAR_RECORD != 0 {
                return Err(malformed(
                    &name,
                    format!(
                        "{} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records",
                        bytes.len()
                    ),
                ));
            }
            for (r, rec) in bytes.chunks_exact(CIFAR_RECORD).enumerate() {
                if rec[0] >= 10 {
                    return Err(DataError::LabelOutOfRange {
                        path: name,
                        row: r,
                        label: rec[0] as f64,
                        classes: 10,
                    });
                }
                labels.push(rec[0] as u32);
                let px = &rec[1..];
                // Planes to channels-last.
                for i in 0..plane {
                    for c in 0..3 {
                        x.push(px[c * plane + i] as f32 / 255.0);
                    }
                }
            }
        }
        let name = files
            .first()
            .map_or("<no files>".into(), |p| p.display().to_string());
        Dataset::checked(&name, x, labels, 3 * plane, 10)?
            .with_image_shape([CIFAR_SIDE, CIFAR_SIDE, 3])
    }

    /// `.npy` images `[N, H, W, C]` (or `[N, H, W]`, one channel): unsigned bytes are scaled
    /// to [0, 1], floats kept; labels `[N]` of integers. The classes are `classes` or 1 + the
    /// largest label.
    pub fn from_npy_images(
        images: &Path,
        labels: &Path,
        classes: Option<usize>,
    ) -> Result<Dataset, DataError> {
        let (shape, values, bytes) = super::npy::read_npy_typed(images)?;
        let iname = images.display().to_string();
        let [n, h, w, c] = match shape[..] {
            [n, h, w] => [n, h, w, 1],
            [n, h, w, c] => [n, h, w, c],
            _ => {
                return Err(DataError::Npy {
                    path: iname,
                    why: format!("images must be [N, H, W, C] or [N, H, W], got {shape:?}"),
                })
            }
        };
        let (lshape, y) = super::npy::read_npy(labels)?;
        if lshape != [n] {
            return Err(DataError::Npy {
                path: labels.display().to_string(),
                why: format!("labels must be [{n}] integers, got shape {lshape:?}"),
            });
        }
        let scale = if bytes { 1.0 / 255.0 } else { 1.0 };
        let x: Vec<f64> = values.into_iter().map(|v| v * scale).collect();
        let features = h * w * c;
        Self::assemble(&labels.display().to_string(), x, features, y, None, classes)?
            .with_image_shape([h, w, c])
    }
}

fn malformed(path: &str, why: String) -> DataError {
    DataError::Malformed {
        path: path.into(),
        why,
    }
}

fn read_all(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// An IDX file from disk, compressed or not.
fn read_idx_file(path: &Path) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: name.clone(),
        source,
    })?;
    let size = file.metadata().map(|m| m.len()).ok();
    let mut head = [0u8; 2];
    let mut reader = std::io::BufReader::new(file);
    let peeked = {
        use std::io::BufRead;
        let buf = reader.fill_buf().map_err(|source| DataError::Io {
            path: name.clone(),
            source,
        })?;
        let n = buf.len().min(2);
        head[..n].copy_from_slice(&buf[..n]);
        n
    };
    if peeked == 2 && head == [0x1f, 0x8b] {
        read_idx(&name, GzDecoder::new(reader), None)
    } else {
        read_idx(&name, reader, size)
    }
}

/// An IDX array of unsigned bytes: magic `00 00 08 ndim`, big-endian u32 dimensions, data.
/// `size` (the file's length, when known) bounds the data before it is allocated; a
/// compressed stream is read no further than its header says.
fn read_idx(
    name: &str,
    mut r: impl Read,
    size: Option<u64>,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let io = |source| DataError::Io {
        path: name.into(),
        source,
    };
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)
        .map_err(|_| malformed(name, "too short for an IDX header".into()))?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(malformed(name, "not an IDX file (bad magic)".into()));
    }
    if magic[2] != 0x08 {
        return Err(malformed(
            name,
            format!(
                "IDX type 0x{:02x} is not supported (unsigned bytes, 0x08, are)",
                magic[2]
            ),
        ));
    }
    let ndim = magic[3] as usize;
    if ndim == 0 {
        return Err(malformed(
            name,
            "an IDX array needs at least one dimension".into(),
        ));
    }
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        let mut d = [0u8; 4];
        r.read_exact(&mut d)
            .map_err(|_| malformed(name, "truncated IDX header".into()))?;
        dims.push(u32::from_be_bytes(d) as usize);
    }
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| malformed(name, format!("dimensions {dims:?} overflow")))?;
    let header = 4 + 4 * ndim as u64;
    if let Some(size) = size {
        if size.saturating_sub(header) < count as u64 {
            return Err(malformed(
                name,
                format!(
                    "dimensions {dims:?} need {count} bytes, the file has {}",
                    size.saturating_sub(header)
                ),
            ));
        }
    }
    crate::memory::check_host_bytes("an IDX file's data", count as u64)
        .map_err(|e| malformed(name, e.to_string()))?;
    let mut data = Vec::new();
    r.take(count as u64).read_to_end(&mut data).map_err(io)?;
    if data.len() != count {
        return Err(malformed(
            name,
            format!(
                "dimensions {dims:?} need {count} bytes, the data has {}",
                data.len()
            ),
        ));
    }
    Ok((dims, data))
}
