//! `.npy` files: features `[rows, features]` and labels `[rows]` or one-hot `[rows, classes]`.

use std::path::Path;

use super::{DataError, Dataset};

impl Dataset {
    /// Reads features from a 2-D `.npy` file and labels from a 1-D (integer) or 2-D (one-hot)
    /// `.npy` file.
    pub fn from_npy(
        features: &Path,
        labels: &Path,
        classes: Option<usize>,
    ) -> Result<Dataset, DataError> {
        let (xs, xv) = read_npy(features)?;
        let (ys, yv) = read_npy(labels)?;
        let fname = features.display().to_string();
        let lname = labels.display().to_string();
        if xs.len() != 2 {
            return Err(DataError::Npy {
                path: fname,
                why: format!("features must be 2-D [rows, features], got shape {xs:?}"),
            });
        }
        if ys.is_empty() || ys.len() > 2 || ys[0] != xs[0] {
            return Err(DataError::Npy {
                path: lname,
                why: format!(
                    "labels must be [{}] or [{}, classes], got shape {ys:?}",
                    xs[0], xs[0]
                ),
            });
        }
        let one_hot = (ys.len() == 2).then(|| ys[1]);
        if one_hot == Some(0) || xs[1] == 0 {
            return Err(DataError::Npy {
                path: if xs[1] == 0 { fname } else { lname },
                why: "a data set needs at least one feature and one class column".into(),
            });
        }
        Self::assemble(&lname, xv, xs[1], yv, one_hot, classes)
    }
}

/// Reads a little-endian C-order `.npy` array of f4, f8, i4, i8, u1 or u4 as f64.
pub(super) fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f64>), DataError> {
    read_npy_typed(path).map(|(shape, values, _)| (shape, values))
}

/// As [`read_npy`], and whether the file held unsigned bytes (pixels to scale).
pub(super) fn read_npy_typed(path: &Path) -> Result<(Vec<usize>, Vec<f64>, bool), DataError> {
    let name = path.display().to_string();
    let bad = |why: String| DataError::Npy {
        path: name.clone(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: name.clone(),
        source,
    })?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (bad magic)".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header".into()))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        Some(
            header[i + key.len() + 2..]
                .trim_start()
                .trim_start_matches(':')
                .trim_start(),
        )
    };
    let descr = field("descr")
        .and_then(|s| s.strip_prefix('\''))
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| bad("no descr in header".into()))?;
    if field("fortran_order").is_some_and(|s| s.starts_with("True")) {
        return Err(bad("Fortran-order arrays are not supported".into()));
    }
    let shape_text = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape in header".into()))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| bad(format!("bad shape {shape_text:?}")))
        })
        .collect::<Result<_, _>>()?;
    let data = &bytes[start + header_len..];
    let (size, conv): (usize, fn(&[u8]) -> f64) = match descr {
        "<f4" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        "<f8" => (8, |b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8]))),
        "<i4" => (4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        "<i8" => (8, |b| {
            i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64
        }),
        "<u4" => (4, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        "|u1" => (1, |b| b[0] as f64),
        other => {
            return Err(bad(format!(
                "unsupported dtype {other:?} (use f4, f8, i4, i8, u4 or u1)"
            )))
        }
    };
    // Checked: a header may claim any shape; nothing is allocated before the file backs it.
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            bad(format!(
                "shape {shape:?} has more elements than memory can hold"
            ))
        })?;
    if count.checked_mul(size).is_none_or(|n| data.len() < n) {
        return Err(bad(format!(
            "{} data bytes cannot hold shape {shape:?} of {descr}",
            data.len()
        )));
    }
    Ok((
        shape,
        data[..count * size].chunks_exact(size).map(conv).collect(),
        descr == "|u1",
    ))
}

/// Writes a little-endian C-order f4 `.npy` (for tests and examples).
pub fn write_npy_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}
