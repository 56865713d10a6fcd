//! CSV files: features, then an integer label or a one-hot label.

use std::path::Path;

use super::{DataError, Dataset};

impl Dataset {
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
        let file = std::fs::File::open(path).map_err(|source| DataError::Io {
            path: name.clone(),
            source,
        })?;
        // The csv crate: quoted fields, a UTF-8 byte-order mark, \n or \r\n, `#` comments.
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .comment(Some(b'#'))
            .trim(::csv::Trim::All)
            .from_reader(std::io::BufReader::new(file));
        let mut rows: Vec<Vec<f64>> = Vec::new();
        let mut width = None;
        for record in reader.records() {
            let record = record.map_err(|e| DataError::Invalid(format!("{name}: {e}")))?;
            let line = record.position().map_or(0, |p| p.line() as usize);
            if record.iter().all(str::is_empty) {
                continue;
            }
            let parsed: Result<Vec<f64>, usize> = record
                .iter()
                .enumerate()
                .map(|(j, c)| c.parse::<f64>().map_err(|_| j))
                .collect();
            let values = match parsed {
                Ok(v) => v,
                // A header: the first record, with no number in it.
                Err(_)
                    if rows.is_empty()
                        && width.is_none()
                        && record.iter().all(|c| c.parse::<f64>().is_err()) =>
                {
                    width = Some(record.len());
                    continue;
                }
                Err(j) => {
                    return Err(DataError::NotANumber {
                        path: name,
                        line,
                        column: j + 1,
                        cell: record[j].into(),
                    })
                }
            };
            let expected = *width.get_or_insert(values.len());
            if values.len() != expected {
                return Err(DataError::RaggedRow {
                    path: name,
                    line,
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

    pub(super) fn assemble(
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
}
