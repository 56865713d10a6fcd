//! What is wrong with a data set or a data file, with where.

use thiserror::Error;

/// The most classes a data set may have: a label is an exact integer in f32 up to 2^24, and a
/// label past it is far more likely a corrupt value than a class.
pub(super) const MAX_CLASSES: usize = 1 << 24;

/// A label as the user would write it: an integer when it is one of moderate size, otherwise
/// the shortest float form (`1e300`, `0.5`), never a 300-digit expansion.
pub(super) struct Shown(pub f64);

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        let a = v.abs();
        if v.is_finite() && a != 0.0 && !(1e-4..1e16).contains(&a) {
            write!(f, "{v:e}")
        } else {
            write!(f, "{v}")
        }
    }
}

/// `n` and the noun in its number: "1 class", "2 classes".
pub(super) fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
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
    #[error("{path}: row {row}: label {} is out of range for {} (labels 0 to {})", Shown(*.label), counted(*.classes, "class", "classes"), .classes.saturating_sub(1))]
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
    /// A malformed IDX or CIFAR-10 file.
    #[error("{path}: {why}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// No rows.
    #[error("{0}: no data rows")]
    Empty(String),
    /// The label columns leave no feature column.
    #[error("{path}: rows have {} and {label_columns} of them are the label, which leaves no features", counted(*.columns, "column", "columns"))]
    NoFeatureColumns {
        /// The file.
        path: String,
        /// Columns per row.
        columns: usize,
        /// Columns taken by the label.
        label_columns: usize,
    },
    /// A label that is not a non-negative integer.
    #[error("{path}: row {row}: label {} is not a non-negative integer class index", Shown(*.label))]
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
    /// A label past the most classes supported, with no class count given to check it against.
    #[error("{path}: row {row}: label {} is out of range: at most {} classes are supported", Shown(*.label), MAX_CLASSES)]
    TooManyClasses {
        /// The file.
        path: String,
        /// 0-based row.
        row: usize,
        /// The label as read.
        label: f64,
    },
    /// A file's data does not fit in the host memory available.
    #[error("{path}: {source}")]
    HostMemory {
        /// The file.
        path: String,
        /// The allocation refused ([`crate::Error::HostMemory`]).
        source: crate::Error,
    },
    /// A CSV line that cannot be read (not UTF-8, a bad label).
    #[error("{path}:{line}: {why}")]
    Csv {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// Arguments that cannot form a data set.
    #[error("invalid data set: {0}")]
    Invalid(String),
}
