//! How a network is trained, shared by the GPU model and its CPU twin: fit options, the
//! history `fit` returns, callbacks, the epoch loop, initial weights, named weights.

use crate::nn::error::{Error, Result};
use crate::nn::layer::LayerDef;
use crate::nn::limits::MAX_TENSOR_ELEMENTS;
use crate::nn::registry;
use crate::nn::rng::Rng;

/// Options of `fit`.
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    /// Rows per step; the last partial batch is kept.
    pub batch_size: usize,
    /// Passes over the data.
    pub epochs: usize,
    /// Shuffle the rows every epoch.
    pub shuffle: bool,
    /// Seed of the shuffles.
    pub seed: u64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            batch_size: 32,
            epochs: 5,
            shuffle: true,
            seed: 0,
        }
    }
}

impl FitOptions {
    /// Checks the options (both models call this before any work).
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::Model("batch size must be > 0".into()));
        }
        if self.batch_size > MAX_TENSOR_ELEMENTS {
            return Err(Error::Model(format!(
                "batch size {} exceeds {MAX_TENSOR_ELEMENTS}",
                self.batch_size
            )));
        }
        Ok(())
    }

    /// Refuses a number of epochs whose [`History`] (a loss, an accuracy, their validation
    /// twins and each batch's loss, per epoch) could not be held in host memory: the epoch
    /// count is the user's, and `fit` must fail in words, not abort allocating it.
    pub fn check_history(&self, rows: usize) -> Result<()> {
        let bytes = history_bytes(self.epochs, rows.div_ceil(self.batch_size.max(1)));
        let needed = u64::try_from(bytes).unwrap_or(u64::MAX);
        let refused = crate::Error::HostMemory {
            what: "the training history (per-epoch losses and accuracies)",
            needed,
            available: crate::memory::available_host_bytes(),
        };
        if bytes > u128::from(u64::MAX) || usize::try_from(bytes).is_err() {
            return Err(refused.into());
        }
        crate::memory::check_host_bytes(
            "the training history (per-epoch losses and accuracies)",
            needed,
        )?;
        Ok(())
    }

    /// The row order of one epoch.
    pub fn order(&self, rows: usize, epoch: usize) -> Vec<u32> {
        if self.shuffle {
            Rng::new(self.seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407))
                .permutation(rows)
        } else {
            (0..rows as u32).collect()
        }
    }
}

/// Per-epoch metrics, as Keras' `History.history`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Mean training loss per epoch (over the epoch's samples, as Keras averages batches
    /// weighted by their size).
    pub loss: Vec<f64>,
    /// Training accuracy per epoch.
    pub accuracy: Vec<f64>,
    /// Validation loss per epoch, when validation data was given.
    pub val_loss: Vec<f64>,
    /// Validation accuracy per epoch.
    pub val_accuracy: Vec<f64>,
    /// Mean loss of every batch, per epoch (what Keras' `on_train_batch_end` sees, before
    /// its running average over the epoch).
    pub batch_loss: Vec<Vec<f64>>,
}

/// Bytes of a [`History`] of `epochs` epochs of `batches` batches each (in u128: no overflow).
fn history_bytes(epochs: usize, batches: usize) -> u128 {
    let f = std::mem::size_of::<f64>() as u128;
    let per_epoch = 4 * f + std::mem::size_of::<Vec<f64>>() as u128 + batches as u128 * f;
    epochs as u128 * per_epoch
}

/// Hooks into `fit_with`, as Keras' callbacks: each sees the model (`weights()`,
/// `gradients()` are readable from inside). (`fit` takes a plain per-epoch closure.)
pub trait Callbacks<M: ?Sized> {
    /// Whether `on_train_batch_end` should run. On the GPU model it costs one small readback
    /// per batch (the batch's loss); without it, batch losses are read once per epoch.
    fn wants_batches(&self) -> bool {
        false
    }
    /// After every training batch (0-based epoch and batch) with the batch's mean loss.
    fn on_train_batch_end(&mut self, _model: &M, _epoch: usize, _batch: usize, _loss: f64) {}
    /// After every epoch (0-based) with the history so far.
    fn on_epoch_end(&mut self, _model: &M, _epoch: usize, _history: &History) {}
}

/// A per-epoch closure as callbacks (what `fit` takes).
pub(crate) struct EpochFn<F>(pub F);

impl<M: ?Sized, F: FnMut(usize, &History)> Callbacks<M> for EpochFn<F> {
    fn on_epoch_end(&mut self, _model: &M, epoch: usize, history: &History) {
        (self.0)(epoch, history)
    }
}

/// What one epoch of training measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EpochMetrics {
    pub loss: f64,
    pub accuracy: f64,
    /// Mean loss of each batch, in order.
    pub batch_loss: Vec<f64>,
    pub validation: Option<(f64, f64)>,
}

/// The epoch loop both models share (they have validated `options`: they size their work
/// by the batch before this runs): hands each epoch's row order to
/// `epoch` (which trains, calling the per-batch hook itself, and returns its metrics),
/// records the history and reports it. A non-finite training loss ends training with
/// [`Error::NonFiniteLoss`], as Keras' `TerminateOnNaN` would.
pub(crate) fn run_epochs<M: ?Sized>(
    model: &mut M,
    options: &FitOptions,
    rows: usize,
    mut epoch: impl FnMut(&mut M, &[u32], usize, &mut dyn Callbacks<M>) -> Result<EpochMetrics>,
    callbacks: &mut dyn Callbacks<M>,
) -> Result<History> {
    let mut history = History::default();
    for e in 0..options.epochs {
        let m = epoch(model, &options.order(rows, e), e, callbacks)?;
        // The first batch whose loss is NaN or infinite, if any (the epoch's mean then is too).
        let bad_batch = m.batch_loss.iter().position(|l| !l.is_finite());
        let diverged = !m.loss.is_finite() || bad_batch.is_some();
        history.loss.push(m.loss);
        history.accuracy.push(m.accuracy);
        history.batch_loss.push(m.batch_loss);
        if let Some((l, a)) = m.validation {
            history.val_loss.push(l);
            history.val_accuracy.push(a);
        }
        callbacks.on_epoch_end(model, e, &history);
        if diverged {
            return Err(Error::NonFiniteLoss {
                epoch: e + 1,
                batch: bad_batch.map(|b| b + 1),
            });
        }
    }
    Ok(history)
}

/// One layer's output for one sample (see `Sequential::trace`).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTrace {
    /// Keras' layer name: `conv2d`, `batch_normalization_1`...
    pub name: String,
    /// What the layer is (`Conv2D 3x3+ReLU`).
    pub kind: String,
    /// Its per-sample output shape.
    pub shape: crate::nn::Shape,
    /// The output values (a softmax-fused last layer gives logits).
    pub values: Vec<f32>,
}

/// One named tensor of a model, in Keras layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    /// Keras-style path: `dense/kernel`, `dense_1/bias`, `batch_normalization/gamma`, ...
    pub name: String,
    /// Shape (Dense kernel `[in, out]`).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

/// Names, shapes and values of each layer's output (both models' `trace`).
pub(crate) fn layer_traces(defs: &[Box<dyn LayerDef>], outputs: Vec<Vec<f32>>) -> Vec<LayerTrace> {
    defs.iter()
        .zip(registry::names(defs))
        .zip(outputs)
        .map(|((d, (name, _)), values)| LayerTrace {
            name,
            kind: d.describe(),
            shape: d.output_shape(),
            values,
        })
        .collect()
}
