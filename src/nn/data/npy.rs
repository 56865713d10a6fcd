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

/// As [`read_npy`], and whether the file held unsigned bytes (pixels to scale). Parsed by
/// npyz (every byte order; bool, signed and unsigned integers, f4, f8); the header's shape is
/// checked against the bytes that back it before anything is allocated.
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
    let mut data = &bytes[..];
    let header = npyz::NpyHeader::from_reader(&mut data)
        .map_err(|e| bad(format!("not a .npy file: {e}")))?;
    let data_bytes = data.len();
    let npy = npyz::NpyFile::with_header(header, data);
    if npy.order() == npyz::Order::Fortran && npy.shape().len() > 1 {
        return Err(bad("Fortran-order arrays are not supported".into()));
    }
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err(bad("structured arrays are not supported".into()));
    };
    use npyz::TypeChar::{Bool, Float, Int, Uint};
    let size = ts.size_field();
    // The dtypes read, each with its reader (to f64): choosing one is the check.
    fn all<T: npyz::Deserialize + Into<f64>>(
        npy: npyz::NpyFile<&[u8]>,
    ) -> std::io::Result<Vec<f64>> {
        Ok(npy.into_vec::<T>()?.into_iter().map(Into::into).collect())
    }
    type Reader = fn(npyz::NpyFile<&[u8]>) -> std::io::Result<Vec<f64>>;
    let reader: Reader = match (ts.type_char(), size) {
        (Bool, 1) => |npy| {
            Ok(npy
                .into_vec::<bool>()?
                .into_iter()
                .map(|b| b as u8 as f64)
                .collect())
        },
        (Float, 4) => all::<f32>,
        (Float, 8) => all::<f64>,
        (Int, 1) => all::<i8>,
        (Int, 2) => all::<i16>,
        (Int, 4) => all::<i32>,
        (Int, 8) => |npy| {
            Ok(npy
                .into_vec::<i64>()?
                .into_iter()
                .map(|x| x as f64)
                .collect())
        },
        (Uint, 1) => all::<u8>,
        (Uint, 2) => all::<u16>,
        (Uint, 4) => all::<u32>,
        (Uint, 8) => |npy| {
            Ok(npy
                .into_vec::<u64>()?
                .into_iter()
                .map(|x| x as f64)
                .collect())
        },
        _ => {
            return Err(bad(format!(
                "unsupported dtype {ts} (use a float, integer or bool array)"
            )))
        }
    };
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()
        .ok_or_else(|| bad(format!("shape {:?} is too large", npy.shape())))?;
    // Checked: a header may claim any shape; nothing is allocated before the file backs it.
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count
        .and_then(|c| c.checked_mul(size as usize))
        .is_none_or(|n| n > data_bytes)
    {
        return Err(bad(format!(
            "{data_bytes} data bytes cannot hold shape {shape:?} of {ts}"
        )));
    }
    let values = reader(npy).map_err(|e| bad(format!("unreadable data: {e}")))?;
    Ok((shape, values, ts.type_char() == Uint && size == 1))
}

/// A little-endian C-order f4 `.npy` file's bytes (for tests and examples); refuses a shape
/// that does not hold `data`.
pub fn write_npy_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>, DataError> {
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count != Some(data.len()) {
        return Err(DataError::Invalid(format!(
            "shape {shape:?} does not hold {} values",
            data.len()
        )));
    }
    use npyz::WriterBuilder;
    let mut out = Vec::new();
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let written = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut out)
        .begin_nd()
        .and_then(|mut w| {
            w.extend(data.iter().copied())?;
            w.finish()
        });
    written.map_err(|e| DataError::Invalid(format!("writing .npy: {e}")))?;
    Ok(out)
}
