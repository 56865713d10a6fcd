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
        // The line of each row: errors about a row name its line, as the parse errors do.
        let mut lines: Vec<usize> = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| csv_error(&name, e))?;
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
            lines.push(line);
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
        let x: Vec<f32> = rows
            .iter()
            .flat_map(|r| r[..features].iter().map(|&v| v as f32))
            .collect();
        let y: Vec<f64> = rows
            .iter()
            .flat_map(|r| r[features..].iter().copied())
            .collect();
        Self::assemble((&name, x), features, (&name, &y), one_hot, classes)
            .map_err(|e| at_line(e, &lines))
    }

    /// A data set from features `x` (`features` per row) read from `x_path` and labels `y`
    /// read from `label_path` (integers, or rows of `one_hot` columns), each error naming
    /// the file it is about.
    pub(super) fn assemble(
        (x_path, x): (&str, Vec<f32>),
        features: usize,
        (label_path, y): (&str, &[f64]),
        one_hot: Option<usize>,
        classes: Option<usize>,
    ) -> Result<Dataset, DataError> {
        if x.len() / features.max(1) == 0 {
            return Err(DataError::Empty(x_path.into()));
        }
        let (labels, classes) = super::labels::labels(label_path, y, one_hot, classes)?;
        Self::checked(x_path, label_path, x, labels, features, classes)
    }
}

/// A parse error of the csv crate, in one line with its 1-based line number.
fn csv_error(name: &str, e: ::csv::Error) -> DataError {
    let line = e.position().map_or(0, |p| p.line() as usize);
    let why = match e.kind() {
        ::csv::ErrorKind::Utf8 { err, .. } => {
            format!("field {} is not valid UTF-8 text", err.field() + 1)
        }
        ::csv::ErrorKind::Io(io) => io.to_string(),
        _ => e.to_string(),
    };
    DataError::Csv {
        path: name.into(),
        line,
        why,
    }
}

/// An error about a row (0-based) as one about its line in the file (1-based), so that every
/// CSV error counts the same way.
fn at_line(e: DataError, lines: &[usize]) -> DataError {
    use super::error::Shown;
    let line = |row: usize| lines.get(row).copied().unwrap_or(0);
    let (path, line, why) = match e {
        DataError::LabelOutOfRange {
            path,
            row,
            label,
            classes,
        } => (
            path,
            line(row),
            format!(
                "label {} is out of range for {} (labels 0 to {})",
                Shown(label),
                super::error::counted(classes, "class", "classes"),
                classes.saturating_sub(1)
            ),
        ),
        DataError::LabelNotInteger { path, row, label } => (
            path,
            line(row),
            format!(
                "label {} is not a non-negative integer class index",
                Shown(label)
            ),
        ),
        DataError::TooManyClasses { path, row, label } => (
            path,
            line(row),
            format!(
                "label {} is out of range: at most {} classes are supported",
                Shown(label),
                super::error::MAX_CLASSES
            ),
        ),
        DataError::BadOneHot { path, row } => (
            path,
            line(row),
            "the one-hot label is not one 1 among 0s".into(),
        ),
        DataError::NonFinite {
            path,
            row,
            column,
            value,
        } => (
            path,
            line(row),
            format!("column {}: {value} is not a finite number", column + 1),
        ),
        e => return e,
    };
    DataError::Csv { path, line, why }
}
