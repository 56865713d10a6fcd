//! Data sets: the embedded synthetic 3-class set (the tutorial's 1000 × 20), the embedded
//! 8×8 handwritten digits, and the user's own CSV, `.npy`, IDX (MNIST) or CIFAR-10 files, with errors that say what is wrong and where.

use crate::nn::rng::Rng;
use crate::nn::shape::Shape;

mod csv;
mod error;
mod format;
mod gzip;
mod images;
mod labels;
mod npy;

pub use error::DataError;
pub use format::FileFormat;
pub use npy::write_npy_f32;

/// Features and integer class labels. Built only through [`Dataset::new`] (or the loaders,
/// which call it), so its invariants always hold: at least one row and one feature,
/// `x.len() == rows * features`, every feature finite, every label in `0..classes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    x: Vec<f32>,
    labels: Vec<u32>,
    features: usize,
    classes: usize,
    /// The per-sample shape: a vector, or an image `[h, w, c]` of `features` values.
    shape: Shape,
}

/// The name errors give to data built in memory.
const MEMORY: &str = "<memory>";

/// An empty buffer with room for `len` values of `what` in `path`: checked against the host
/// memory available, then reserved fallibly (an address-space limit gives an error, not an
/// abort).
fn buffer<T>(path: &str, what: &'static str, len: usize) -> Result<Vec<T>, DataError> {
    let needed = (len as u64).saturating_mul(std::mem::size_of::<T>() as u64);
    let fail = |source| DataError::HostMemory {
        path: path.into(),
        source,
    };
    crate::memory::check_host_bytes(what, needed).map_err(fail)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        fail(crate::Error::HostMemory {
            what,
            needed,
            available: crate::memory::available_host_bytes(),
        })
    })?;
    Ok(v)
}

impl Dataset {
    /// Builds a data set from row-major features `[rows, features]` and one label per row,
    /// checking every invariant.
    pub fn new(
        x: Vec<f32>,
        labels: Vec<u32>,
        features: usize,
        classes: usize,
    ) -> Result<Dataset, DataError> {
        Self::checked(MEMORY, MEMORY, x, labels, features, classes)
    }

    /// As [`Dataset::new`], naming `x_path` in an error about the features and `label_path`
    /// in one about the labels.
    pub(super) fn checked(
        x_path: &str,
        label_path: &str,
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
            return Err(DataError::Empty(label_path.into()));
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
                path: x_path.into(),
                row: i / features,
                column: i % features,
                value: x[i],
            });
        }
        if let Some(row) = labels.iter().position(|&l| l as usize >= classes) {
            return Err(DataError::LabelOutOfRange {
                path: label_path.into(),
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
            shape: Shape::Flat(features),
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
            shape: Shape::Flat(features),
        }
    }

    /// The same data with each row read as an NHWC image `[h, w, c]` (`h * w * c` must be
    /// the number of features).
    pub fn with_image_shape(mut self, [h, w, c]: [usize; 3]) -> Result<Dataset, DataError> {
        let len = h.checked_mul(w).and_then(|n| n.checked_mul(c));
        if len != Some(self.features) {
            return Err(DataError::Invalid(format!(
                "an image of {h} x {w} x {c} does not hold the {} features of a row",
                self.features
            )));
        }
        self.shape = Shape::image(h, w, c);
        Ok(self)
    }

    /// The same data with `classes` classes (more than its labels need, e.g. to match a
    /// model), refusing a count below 1 + its largest label or past the most supported.
    pub fn with_classes(mut self, classes: usize) -> Result<Dataset, DataError> {
        labels::checked_classes(Some(classes))?;
        let needed = self.labels.iter().max().map_or(1, |&m| m as usize + 1);
        if classes < needed {
            return Err(DataError::Invalid(format!(
                "{} classes are asked for, but the labels go up to {}",
                classes,
                needed - 1
            )));
        }
        self.classes = classes;
        Ok(self)
    }

    /// The per-sample shape: a vector of features, or an NHWC image.
    pub fn shape(&self) -> Shape {
        self.shape
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
            shape: self.shape,
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
            shape: self.shape,
        };
        Some((part(0..n), part(n..self.rows())))
    }

    /// Splits off the last `fraction` of the rows for validation (Keras' `validation_split`),
    /// refusing a fraction outside (0, 1) or one that leaves either part empty.
    pub fn split_validation(&self, fraction: f64) -> Result<(Dataset, Dataset), DataError> {
        let train = self.training_rows(fraction)?;
        self.split(train)
            .ok_or_else(|| DataError::Invalid("the split leaves a part empty".into()))
    }

    /// As [`Dataset::split_validation`], reusing this data set's memory for the training
    /// rows: only the validation rows are copied (a large data set is not held twice).
    pub fn into_validation_split(mut self, fraction: f64) -> Result<(Dataset, Dataset), DataError> {
        let train = self.training_rows(fraction)?;
        let at = train * self.features;
        let mut x = buffer::<f32>(MEMORY, "the validation rows", self.x.len() - at)?;
        x.extend_from_slice(&self.x[at..]);
        self.x.truncate(at);
        let labels = self.labels.split_off(train);
        let validation = Dataset {
            x,
            labels,
            features: self.features,
            classes: self.classes,
            shape: self.shape,
        };
        Ok((self, validation))
    }

    /// The rows a validation split of `fraction` leaves for training, refusing a fraction
    /// outside (0, 1) or one that leaves either part empty.
    fn training_rows(&self, fraction: f64) -> Result<usize, DataError> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(DataError::Invalid(format!(
                "the validation split must lie strictly between 0 and 1, got {fraction}"
            )));
        }
        let rows = self.rows();
        let train = ((1.0 - fraction) * rows as f64).round() as usize;
        if train == 0 || train >= rows {
            return Err(DataError::Invalid(format!(
                "a validation split of {fraction} of {rows} rows leaves {} training and {} validation rows; both need at least one",
                train.min(rows),
                rows - train.min(rows)
            )));
        }
        Ok(train)
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
            shape: Shape::Flat(features),
        }
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
