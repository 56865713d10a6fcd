//! Class labels, the one code path every reader takes: integer labels `[N]` or one-hot rows
//! `[N, k]`, each checked against the classes asked for (or the largest supported), with the
//! file and row of the first bad one.

use super::error::{counted, DataError, MAX_CLASSES};

/// The classes the caller asked for, checked: `Some(k)` with `1 <= k <= MAX_CLASSES`.
pub(super) fn checked_classes(classes: Option<usize>) -> Result<Option<usize>, DataError> {
    match classes {
        Some(k) if k == 0 || k > MAX_CLASSES => Err(DataError::Invalid(format!(
            "the number of classes must be between 1 and {MAX_CLASSES}, got {k}"
        ))),
        other => Ok(other),
    }
}

/// One integer label at `row` of `path`, checked against `classes` (or, when the classes come
/// from the labels, against [`MAX_CLASSES`]).
pub(super) fn label(
    path: &str,
    row: usize,
    value: f64,
    classes: Option<usize>,
) -> Result<u32, DataError> {
    if !(value.fract() == 0.0 && value >= 0.0) {
        return Err(DataError::LabelNotInteger {
            path: path.into(),
            row,
            label: value,
        });
    }
    match classes {
        Some(k) if value >= k as f64 => Err(DataError::LabelOutOfRange {
            path: path.into(),
            row,
            label: value,
            classes: k,
        }),
        None if value >= MAX_CLASSES as f64 => Err(DataError::TooManyClasses {
            path: path.into(),
            row,
            label: value,
        }),
        // Below 2^24 (or a class count that is): exact as u32.
        _ => Ok(value as u32),
    }
}

/// Labels from `y`: one integer per row (`one_hot: None`) or rows of `k` one-hot values;
/// returns them with the classes (`classes`, `k`, or 1 + the largest label).
pub(super) fn labels(
    path: &str,
    y: &[f64],
    one_hot: Option<usize>,
    classes: Option<usize>,
) -> Result<(Vec<u32>, usize), DataError> {
    let classes = checked_classes(classes)?;
    let labels: Vec<u32> = match one_hot {
        Some(k) => {
            if k == 0 || k > MAX_CLASSES {
                return Err(DataError::Invalid(format!(
                    "{path}: one-hot labels need 1 to {MAX_CLASSES} columns, got {k}"
                )));
            }
            if let Some(c) = classes.filter(|&c| c != k) {
                return Err(DataError::Invalid(format!(
                    "{path}: the one-hot labels have {}, but {} were asked for",
                    counted(k, "column", "columns"),
                    counted(c, "class", "classes")
                )));
            }
            y.chunks_exact(k)
                .enumerate()
                .map(|(row, r)| {
                    let mut ones = r.iter().enumerate().filter(|(_, &v)| v == 1.0);
                    let zeros = r.iter().filter(|&&v| v == 0.0).count();
                    match (ones.next(), zeros == k - 1) {
                        (Some((j, _)), true) => Ok(j as u32),
                        _ => Err(DataError::BadOneHot {
                            path: path.into(),
                            row,
                        }),
                    }
                })
                .collect::<Result<_, _>>()?
        }
        None => y
            .iter()
            .enumerate()
            .map(|(row, &v)| label(path, row, v, classes))
            .collect::<Result<_, _>>()?,
    };
    let classes = one_hot
        .or(classes)
        .unwrap_or_else(|| labels.iter().max().map_or(1, |&m| m as usize + 1));
    Ok((labels, classes))
}
