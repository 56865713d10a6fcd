//! `.npy` files: features `[rows, features]`, images `[N, H, W(, C)]` and labels `[rows]` or
//! one-hot `[rows, classes]`, each header checked against the file's length before anything is
//! allocated, and the data decoded in chunks straight into its final buffer.

use std::io::{BufReader, Read, Seek};
use std::path::Path;

use super::{DataError, Dataset};

impl Dataset {
    /// Reads features from a 2-D `.npy` file and labels from a 1-D (integer) or 2-D (one-hot)
    /// `.npy` file. The classes are `classes` (checked against every label), the one-hot
    /// columns, or 1 + the largest label.
    pub fn from_npy(
        features: &Path,
        labels: &Path,
        classes: Option<usize>,
    ) -> Result<Dataset, DataError> {
        let xa = NpyArray::open(features)?;
        let ya = NpyArray::open(labels)?;
        let xs = xa.shape.clone();
        if xs.len() != 2 {
            return Err(DataError::Npy {
                path: xa.name,
                why: format!("features must be 2-D [rows, features], got shape {xs:?}"),
            });
        }
        if xs[1] == 0 {
            return Err(DataError::Npy {
                path: xa.name,
                why: "a data set needs at least one feature column".into(),
            });
        }
        let one_hot = ya.label_columns(xs[0])?;
        let (fname, lname) = (xa.name.clone(), ya.name.clone());
        let y = ya.read("the labels", |v| v)?;
        let x = xa.read("the features", |v| v as f32)?;
        Self::assemble((&fname, x), xs[1], (&lname, &y), one_hot, classes)
    }
}

/// One element of a dtype, decoded from its bytes.
type Decode = fn(&[u8]) -> f64;

/// Bytes decoded per read: a multiple of every element size.
const CHUNK: usize = 1 << 16;

/// A `.npy` file whose header has been read and checked against the file's length: the
/// shape, and a reader positioned at the data.
pub(super) struct NpyArray {
    pub(super) name: String,
    pub(super) shape: Vec<usize>,
    /// Whether the elements are unsigned bytes (pixels, scaled to [0, 1] as images).
    pub(super) bytes: bool,
    reader: BufReader<std::fs::File>,
    count: usize,
    size: usize,
    decode: Decode,
}

impl NpyArray {
    /// Opens `path` and reads its header: a little- or big-endian C-order array of bool,
    /// signed or unsigned integers, f4 or f8, whose data fills the rest of the file exactly.
    pub(super) fn open(path: &Path) -> Result<NpyArray, DataError> {
        let name = path.display().to_string();
        let bad = |why: String| DataError::Npy {
            path: name.clone(),
            why,
        };
        let io = |source| DataError::Io {
            path: name.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let length = file.metadata().map_err(io)?.len();
        let mut reader = BufReader::new(file);
        let header = npyz::NpyHeader::from_reader(&mut reader).map_err(|e| {
            // A header dictionary that does not parse comes with the parser's multi-line
            // report; one line says it.
            let e = e.to_string();
            match e.contains('\n') {
                true => bad("not a valid .npy header (its dictionary does not parse)".into()),
                false => bad(format!("not a .npy file: {e}")),
            }
        })?;
        let start = reader.stream_position().map_err(io)?;
        let npy = npyz::NpyFile::with_header(header, std::io::empty());
        if npy.order() == npyz::Order::Fortran && npy.shape().len() > 1 {
            return Err(bad("Fortran-order arrays are not supported".into()));
        }
        let npyz::DType::Plain(ts) = npy.dtype() else {
            return Err(bad("structured arrays are not supported".into()));
        };
        let Some((size, decode)) = decoder(&ts) else {
            return Err(bad(format!(
                "unsupported dtype {ts} (use a float, integer or bool array)"
            )));
        };
        let shape: Vec<usize> = npy
            .shape()
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("shape {:?} is too large", npy.shape())))?;
        // Checked: a header may claim any shape; the file must back it exactly.
        let data_bytes = length.saturating_sub(start);
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let needed = count.and_then(|c| c.checked_mul(size));
        match needed.map(|n| n as u64) {
            Some(n) if n == data_bytes => {}
            Some(n) if n < data_bytes => {
                return Err(bad(format!(
                    "{} bytes follow the data of shape {shape:?} of {ts} ({n} bytes); the file is not one whole array",
                    data_bytes - n
                )))
            }
            _ => {
                return Err(bad(format!(
                    "{data_bytes} data bytes cannot hold shape {shape:?} of {ts}"
                )))
            }
        }
        Ok(NpyArray {
            name,
            shape,
            bytes: ts.type_char() == npyz::TypeChar::Uint && size == 1,
            reader,
            count: count.unwrap_or(0),
            size,
            decode,
        })
    }

    /// For labels of `rows` rows: `None` for integers `[rows]`, `Some(k)` for one-hot rows
    /// `[rows, k]`; any other shape is refused, naming this file.
    pub(super) fn label_columns(&self, rows: usize) -> Result<Option<usize>, DataError> {
        match self.shape[..] {
            [n] if n == rows => Ok(None),
            [n, k] if n == rows && k > 0 => Ok(Some(k)),
            _ => Err(DataError::Npy {
                path: self.name.clone(),
                why: format!(
                    "labels must be [{rows}] integers or one-hot [{rows}, classes], got shape {:?}",
                    self.shape
                ),
            }),
        }
    }

    /// Every element, through `map`, into one buffer of exactly the array's length (checked
    /// against the memory available, reserved fallibly).
    pub(super) fn read<T>(
        mut self,
        what: &'static str,
        map: impl Fn(f64) -> T,
    ) -> Result<Vec<T>, DataError> {
        let mut out = super::buffer::<T>(&self.name, what, self.count)?;
        let mut chunk = vec![0u8; CHUNK.min(self.count * self.size)];
        let mut left = self.count * self.size;
        while left > 0 {
            let n = left.min(CHUNK);
            self.reader
                .read_exact(&mut chunk[..n])
                .map_err(|source| DataError::Io {
                    path: self.name.clone(),
                    source,
                })?;
            let decode = self.decode;
            out.extend(chunk[..n].chunks_exact(self.size).map(|b| map(decode(b))));
            left -= n;
        }
        Ok(out)
    }
}

/// The element size and decoder of the dtypes read (every byte order): choosing one is the
/// check.
fn decoder(ts: &npyz::TypeStr) -> Option<(usize, Decode)> {
    use npyz::TypeChar::{Bool, Float, Int, Uint};
    let big = ts.endianness() == npyz::Endianness::Big;
    macro_rules! num {
        ($t:ty) => {
            if big {
                (|b: &[u8]| <$t>::from_be_bytes(b.try_into().unwrap_or_default()) as f64) as Decode
            } else {
                (|b: &[u8]| <$t>::from_le_bytes(b.try_into().unwrap_or_default()) as f64) as Decode
            }
        };
    }
    let size = ts.size_field();
    let decode = match (ts.type_char(), size) {
        (Bool, 1) => (|b: &[u8]| b.first().is_some_and(|&v| v != 0) as u8 as f64) as Decode,
        (Float, 4) => num!(f32),
        (Float, 8) => num!(f64),
        (Int, 1) => num!(i8),
        (Int, 2) => num!(i16),
        (Int, 4) => num!(i32),
        (Int, 8) => num!(i64),
        (Uint, 1) => num!(u8),
        (Uint, 2) => num!(u16),
        (Uint, 4) => num!(u32),
        (Uint, 8) => num!(u64),
        _ => return None,
    };
    Some((size as usize, decode))
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
