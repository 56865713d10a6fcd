//! Data sets: the embedded synthetic 3-class set (the tutorial's 1000 × 20), and the user's
//! own CSV or `.npy` files, with errors that say what is wrong and where.

use std::path::Path;

use thiserror::Error;

use crate::nn::rng::Rng;

/// Features and integer class labels. Built only through [`Dataset::new`] (or the loaders,
/// which call it), so its invariants always hold: at least one row and one feature,
/// `x.len() == rows * features`, every feature finite, every label in `0..classes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    x: Vec<f32>,
    labels: Vec<u32>,
    features: usize,
    classes: usize,
}

/// What is wrong with a data file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A row with a different number of cells than the first.
    #[error("{path}:{line}: {got} cells, the first row has {expected}")]
    RaggedRow {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// Cells expected.
        expected: usize,
        /// Cells found.
        got: usize,
    },
    /// A cell that is not a number.
    #[error("{path}:{line}: column {column}: {cell:?} is not a number")]
    NotANumber {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The cell's text.
        cell: String,
    },
    /// A label outside `0..classes` or not an integer.
    #[error("{path}: row {row}: label {label} is not a class in 0..{classes}")]
    LabelOutOfRange {
        /// The file.
        path: String,
        /// 0-based row.
        row: usize,
        /// The label as read.
        label: f64,
        /// Number of classes.
        classes: usize,
    },
    /// A one-hot row that is not exactly one 1 and zeros.
    #[error("{path}: row {row}: the one-hot label is not one 1 among 0s")]
    BadOneHot {
        /// The file.
        path: String,
        /// 0-based row.
        row: usize,
    },
    /// The features do not match the model's input.
    #[error("{path}: {got} features per row, the model takes {expected}")]
    FeatureMismatch {
        /// The file.
        path: String,
        /// Features the model takes.
        expected: usize,
        /// Features in the file.
        got: usize,
    },
    /// A malformed or unsupported `.npy` file.
    #[error("{path}: {why}")]
    Npy {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// No rows.
    #[error("{0}: no data rows")]
    Empty(String),
    /// The label columns leave no feature column.
    #[error("{path}: rows have {columns} columns and {label_columns} of them are the label, which leaves no features")]
    NoFeatureColumns {
        /// The file.
        path: String,
        /// Columns per row.
        columns: usize,
        /// Columns taken by the label.
        label_columns: usize,
    },
    /// A label that is not a non-negative integer.
    #[error("{path}: row {row}: label {label} is not a non-negative integer class index")]
    LabelNotInteger {
        /// The file.
        path: String,
        /// 0-based row.
        row: usize,
        /// The label as read.
        label: f64,
    },
    /// A feature that is NaN or infinite.
    #[error("{path}: row {row}, feature {column}: {value} is not a finite number")]
    NonFinite {
        /// The file (or `<memory>`).
        path: String,
        /// 0-based row.
        row: usize,
        /// 0-based feature.
        column: usize,
        /// The value.
        value: f32,
    },
    /// Arguments that cannot form a data set.
    #[error("invalid data set: {0}")]
    Invalid(String),
}

/// The name errors give to data built in memory.
const MEMORY: &str = "<memory>";

impl Dataset {
    /// Builds a data set from row-major features `[rows, features]` and one label per row,
    /// checking every invariant.
    pub fn new(
        x: Vec<f32>,
        labels: Vec<u32>,
        features: usize,
        classes: usize,
    ) -> Result<Dataset, DataError> {
        Self::checked(MEMORY, x, labels, features, classes)
    }

    fn checked(
        path: &str,
        x: Vec<f32>,
        labels: Vec<u32>,
        features: usize,
        classes: usize,
    ) -> Result<Dataset, DataError> {
        if features == 0 {
            return Err(DataError::Invalid(
                "a data set needs at least one feature".into(),
            ));
        }
        if labels.is_empty() {
            return Err(DataError::Empty(path.into()));
        }
        if classes == 0 {
            return Err(DataError::Invalid(
                "a data set needs at least one class".into(),
            ));
        }
        let expected = labels.len().checked_mul(features);
        if expected != Some(x.len()) {
            return Err(DataError::Invalid(format!(
                "{} rows x {features} features need {} values, got {}",
                labels.len(),
                expected.map_or_else(|| "more than usize::MAX".into(), |e| e.to_string()),
                x.len()
            )));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(DataError::NonFinite {
                path: path.into(),
                row: i / features,
                column: i % features,
                value: x[i],
            });
        }
        if let Some(row) = labels.iter().position(|&l| l as usize >= classes) {
            return Err(DataError::LabelOutOfRange {
                path: path.into(),
                row,
                label: labels[row] as f64,
                classes,
            });
        }
        Ok(Dataset {
            x,
            labels,
            features,
            classes,
        })
    }

    /// Inputs to predict from: no labels (all 0) and no finiteness check (NaN in, NaN out,
    /// as in the frameworks). The caller checked `x.len()` is a positive multiple of `features`.
    pub(crate) fn for_prediction(x: Vec<f32>, features: usize, classes: usize) -> Dataset {
        Dataset {
            labels: vec![0; x.len() / features],
            x,
            features,
            classes,
        }
    }

    /// Row-major features `[rows, features]`.
    pub fn x(&self) -> &[f32] {
        &self.x
    }

    /// One label per row, in `0..classes`.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Features per row.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// The rows at `order` (indices into this data set), in that order.
    pub(crate) fn gather(&self, order: &[u32]) -> Dataset {
        let f = self.features;
        Dataset {
            x: order
                .iter()
                .flat_map(|&r| self.x[r as usize * f..(r as usize + 1) * f].iter().copied())
                .collect(),
            labels: order.iter().map(|&r| self.labels[r as usize]).collect(),
            features: f,
            classes: self.classes,
        }
    }

    /// Checks the data against a model: its feature count, at least one row, and every label
    /// within the model's classes.
    pub fn check_for(&self, features: usize, classes: usize) -> crate::nn::Result<()> {
        if self.features != features {
            return Err(crate::nn::Error::Model(format!(
                "data has {} features, the model takes {features}",
                self.features
            )));
        }
        if self.rows() == 0 {
            return Err(crate::Error::EmptyTensor(vec![0, self.features]).into());
        }
        if let Some(&l) = self.labels.iter().find(|&&l| l as usize >= classes) {
            return Err(crate::nn::Error::Model(format!(
                "label {l} is out of range for {classes} classes"
            )));
        }
        Ok(())
    }

    /// Checks the feature count against a model's input.
    pub fn expect_features(&self, path: &str, expected: usize) -> Result<(), DataError> {
        if self.features != expected {
            return Err(DataError::FeatureMismatch {
                path: path.into(),
                expected,
                got: self.features,
            });
        }
        Ok(())
    }

    /// The first `n` rows and the rest; `None` when either part would be empty.
    pub fn split(&self, n: usize) -> Option<(Dataset, Dataset)> {
        if n == 0 || n >= self.rows() {
            return None;
        }
        let f = self.features;
        let part = |r: std::ops::Range<usize>| Dataset {
            x: self.x[r.start * f..r.end * f].to_vec(),
            labels: self.labels[r].to_vec(),
            features: f,
            classes: self.classes,
        };
        Some((part(0..n), part(n..self.rows())))
    }

    /// Splits off the last `fraction` of the rows for validation (Keras' `validation_split`),
    /// refusing a fraction outside (0, 1) or one that leaves either part empty.
    pub fn split_validation(&self, fraction: f64) -> Result<(Dataset, Dataset), DataError> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(DataError::Invalid(format!(
                "the validation split must lie strictly between 0 and 1, got {fraction}"
            )));
        }
        let rows = self.rows();
        let train = ((1.0 - fraction) * rows as f64).round() as usize;
        self.split(train).ok_or_else(|| {
            DataError::Invalid(format!(
                "a validation split of {fraction} of {rows} rows leaves {} training and {} validation rows; both need at least one",
                train.min(rows),
                rows - train.min(rows)
            ))
        })
    }

    /// The embedded data set: `rows` × `features`, 3 classes, deterministic for a seed.
    ///
    /// Each class is a Gaussian cloud around its own centre; the features are then put on
    /// very different scales and offsets (as raw tabular data is), which is what batch
    /// normalization after the first Dense layer is for.
    pub fn synthetic(rows: usize, features: usize, seed: u64) -> Dataset {
        let classes = 3;
        let mut rng = Rng::new(seed);
        let centres: Vec<Vec<f64>> = (0..classes)
            .map(|_| (0..features).map(|_| rng.normal() * 2.0).collect())
            .collect();
        let scales: Vec<f64> = (0..features)
            .map(|j| [0.5, 3.0, 10.0, 40.0][j % 4])
            .collect();
        let offsets: Vec<f64> = (0..features)
            .map(|j| [0.0, 5.0, -20.0, 100.0][(j / 4) % 4])
            .collect();
        let mut x = Vec::with_capacity(rows * features);
        let mut labels = Vec::with_capacity(rows);
        for _ in 0..rows {
            let c = (rng.next_u64() % classes as u64) as usize;
            for j in 0..features {
                let v = centres[c][j] + rng.normal();
                x.push((v * scales[j] + offsets[j]) as f32);
            }
            labels.push(c as u32);
        }
        Dataset {
            x,
            labels,
            features,
            classes,
        }
    }

    /// Reads a CSV file of numbers: features, then the label. With `one_hot: Some(k)` the
    /// last `k` columns are a one-hot label; otherwise the last column is an integer label and
    /// the classes are `classes` (or 1 + the largest label). Lines starting with `#` and a
    /// first line that is not numeric (a header) are skipped.
    pub fn from_csv(
        path: &Path,
        classes: Option<usize>,
        one_hot: Option<usize>,
    ) -> Result<Dataset, DataError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
            path: name.clone(),
            source,
        })?;
        let mut rows: Vec<Vec<f64>> = Vec::new();
        let mut width = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let parsed: Result<Vec<f64>, usize> = cells
                .iter()
                .enumerate()
                .map(|(j, c)| c.parse::<f64>().map_err(|_| j))
                .collect();
            let values = match parsed {
                Ok(v) => v,
                // A header: the first non-comment line, with no number in it.
                Err(_)
                    if rows.is_empty()
                        && width.is_none()
                        && cells.iter().all(|c| c.parse::<f64>().is_err()) =>
                {
                    width = Some(cells.len());
                    continue;
                }
                Err(j) => {
                    return Err(DataError::NotANumber {
                        path: name,
                        line: i + 1,
                        column: j + 1,
                        cell: cells[j].into(),
                    })
                }
            };
            let expected = *width.get_or_insert(values.len());
            if values.len() != expected {
                return Err(DataError::RaggedRow {
                    path: name,
                    line: i + 1,
                    expected,
                    got: values.len(),
                });
            }
            rows.push(values);
        }
        if rows.is_empty() {
            return Err(DataError::Empty(name));
        }
        let w = rows[0].len();
        let label_cols = one_hot.unwrap_or(1);
        if label_cols == 0 {
            return Err(DataError::Invalid(
                "a one-hot label needs at least one column (--one-hot K with K >= 1)".into(),
            ));
        }
        if w <= label_cols {
            return Err(DataError::NoFeatureColumns {
                path: name,
                columns: w,
                label_columns: label_cols,
            });
        }
        let features = w - label_cols;
        let x: Vec<f64> = rows
            .iter()
            .flat_map(|r| r[..features].iter().copied())
            .collect();
        let y: Vec<f64> = rows
            .iter()
            .flat_map(|r| r[features..].iter().copied())
            .collect();
        Self::assemble(&name, x, features, y, one_hot, classes)
    }

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

    fn assemble(
        name: &str,
        x: Vec<f64>,
        features: usize,
        y: Vec<f64>,
        one_hot: Option<usize>,
        classes: Option<usize>,
    ) -> Result<Dataset, DataError> {
        let rows = x.len() / features.max(1);
        if rows == 0 {
            return Err(DataError::Empty(name.into()));
        }
        if classes == Some(0) {
            return Err(DataError::Invalid(
                "the number of classes must be >= 1".into(),
            ));
        }
        let labels: Vec<u32> = match one_hot {
            Some(k) => y
                .chunks_exact(k)
                .enumerate()
                .map(|(row, r)| {
                    let ones: Vec<usize> = (0..k).filter(|&j| r[j] == 1.0).collect();
                    let zeros = r.iter().filter(|&&v| v == 0.0).count();
                    if ones.len() == 1 && zeros == k - 1 {
                        Ok(ones[0] as u32)
                    } else {
                        Err(DataError::BadOneHot {
                            path: name.into(),
                            row,
                        })
                    }
                })
                .collect::<Result<_, _>>()?,
            None => y
                .iter()
                .enumerate()
                .map(|(row, &l)| {
                    // Labels index classes as u32 (the GPU's index type).
                    if !(l.fract() == 0.0 && l >= 0.0 && l < u32::MAX as f64) {
                        return Err(DataError::LabelNotInteger {
                            path: name.into(),
                            row,
                            label: l,
                        });
                    }
                    match classes {
                        Some(k) if l as usize >= k => Err(DataError::LabelOutOfRange {
                            path: name.into(),
                            row,
                            label: l,
                            classes: k,
                        }),
                        _ => Ok(l as u32),
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let classes = one_hot
            .or(classes)
            .unwrap_or_else(|| labels.iter().max().map_or(1, |&m| m as usize + 1));
        Self::checked(
            name,
            x.into_iter().map(|v| v as f32).collect(),
            labels,
            features,
            classes,
        )
    }

    /// Writes a CSV (features, then the integer label): the format `from_csv` reads.
    pub fn to_csv(&self) -> String {
        let mut s = String::new();
        for (r, l) in self.labels.iter().enumerate() {
            for v in &self.x[r * self.features..(r + 1) * self.features] {
                s.push_str(&format!("{v},"));
            }
            s.push_str(&format!("{l}\n"));
        }
        s
    }
}

/// Reads a little-endian C-order `.npy` array of f4, f8, i4, i8, u1 or u4 as f64.
fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f64>), DataError> {
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
