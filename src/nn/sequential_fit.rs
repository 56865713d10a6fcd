//! `Sequential`'s training and inference API: `fit` (with callbacks), one step, evaluation
//! and prediction, on the recording machinery of `sequential.rs`.

use crate::nn::data::Dataset;
use crate::nn::error::Result;
use crate::nn::sequential::Sequential;
use crate::nn::spec::{layer_traces, LayerTrace};
use crate::nn::spec::{run_epochs, Callbacks, EpochFn, EpochMetrics, FitOptions, History};

impl Sequential {
    /// Trains on `train` and returns the per-epoch history; `on_epoch` sees each epoch's
    /// history as it completes (for progress bars). See [`Self::fit_with`] for callbacks.
    pub fn fit(
        &mut self,
        train: &Dataset,
        options: &FitOptions,
        validation: Option<&Dataset>,
        on_epoch: impl FnMut(usize, &History),
    ) -> Result<History> {
        self.fit_with(train, options, validation, &mut EpochFn(on_epoch))
    }

    /// Trains with Keras-style callbacks: after every epoch and, when they ask for it, after
    /// every batch with its loss; they can read the model's weights and gradients.
    pub fn fit_with(
        &mut self,
        train: &Dataset,
        options: &FitOptions,
        validation: Option<&Dataset>,
        callbacks: &mut dyn Callbacks<Self>,
    ) -> Result<History> {
        options.validate()?;
        // Before any work: the epoch count is the caller's, and so is the history's size.
        options.check_history(train.rows())?;
        let data = self.upload(train, true)?;
        let val = validation.map(|v| self.upload(v, false)).transpose()?;
        let steps = data.rows.div_ceil(options.batch_size);
        self.reserve_batch_losses(steps)?;
        let rows = data.rows;
        run_epochs(
            self,
            options,
            rows,
            |model, order, epoch, callbacks| {
                model
                    .ctx
                    .write(&data.order, 0, bytemuck::cast_slice(order))?;
                if callbacks.wants_batches() {
                    let mut hook = |m: &Self, b: usize, loss: f64| {
                        callbacks.on_train_batch_end(m, epoch, b, loss)
                    };
                    model.train_epoch(&data, options.batch_size, Some(&mut hook))?;
                } else {
                    model.train_epoch(&data, options.batch_size, None)?;
                }
                if let Some(v) = &val {
                    model.run_inference(v, None)?;
                }
                let ([loss, accuracy, vloss, vacc], batch_loss) = model.read_metrics(steps)?;
                Ok(EpochMetrics {
                    loss,
                    accuracy,
                    batch_loss,
                    validation: val.as_ref().map(|_| (vloss, vacc)),
                })
            },
            callbacks,
        )
    }

    /// Runs one training step on the given batch (rows in order): for step-by-step checks.
    pub fn train_batch(&mut self, batch: &Dataset) -> Result<()> {
        let data = self.upload(batch, true)?;
        self.train_epoch(&data, data.rows, None)
    }

    /// (loss, accuracy) with BatchNorm in inference mode.
    pub fn evaluate(&mut self, data: &Dataset) -> Result<(f64, f64)> {
        let d = self.upload(data, true)?;
        self.run_inference(&d, None)?;
        let (m, _) = self.read_metrics(0)?;
        Ok((m[2], m[3]))
    }

    /// Class probabilities `[rows, classes]` with BatchNorm in inference mode.
    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        if x.is_empty() || !x.len().is_multiple_of(self.input_features()) {
            return Err(crate::Error::LengthMismatch {
                what: "predict input",
                expected: self.input_features(),
                got: x.len(),
            }
            .into());
        }
        let data = Dataset::for_prediction(x.to_vec(), self.input_features(), self.classes());
        let d = self.upload(&data, true)?;
        let mut probs = Vec::new();
        self.run_inference(&d, Some(&mut probs))?;
        Ok(probs)
    }

    /// Every layer's output for one sample (BatchNorm in inference mode): the tutorial's
    /// "data flow" through the network.
    pub fn trace(&mut self, x: &[f32]) -> Result<Vec<LayerTrace>> {
        if x.len() != self.input_features() {
            return Err(crate::Error::LengthMismatch {
                what: "trace input (one sample)",
                expected: self.input_features(),
                got: x.len(),
            }
            .into());
        }
        self.predict(x)?;
        let outputs = self.read_activations(1)?;
        Ok(layer_traces(&self.defs, outputs))
    }
}
