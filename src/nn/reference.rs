//! The CPU network: the same layers (each layer's CPU twin), loss and optimizers as
//! [`Sequential`](crate::nn::Sequential), in f64 ([`CpuModel`], the reference: the oracle of
//! the GPU training stack, for gradient checks and step-by-step comparisons) or in f32
//! ([`CpuModelF32`], the fast CPU path of `bnorm train --device cpu`: the GPU's arithmetic on
//! the CPU's cores, multi-threaded and vectorized).

use std::path::Path;

use crate::nn::data::Dataset;
use crate::nn::error::{Error, Result};
use crate::nn::layer::{BackIo, CpuLayer, LayerDef};
use crate::nn::loss_cpu::{softmax, softmax_xent};
use crate::nn::optimizer::Optimizer;
use crate::nn::optimizer_cpu;
use crate::nn::real::Real;
use crate::nn::registry::{self, LayerSpec};
use crate::nn::shape::Shape;
use crate::nn::spec::{run_epochs, Callbacks, EpochFn, EpochMetrics, FitOptions, History, Weight};
use crate::nn::weights::{load_checked, save_weights};

/// One layer's tensors and optimizer state, in `LayerDef::params` order.
#[derive(Debug)]
struct Tensors<T> {
    values: Vec<Vec<T>>,
    trainable: Vec<bool>,
    m: Vec<Vec<T>>,
    v: Vec<Vec<T>>,
}

/// The CPU twin of `Sequential`, in `T`: see [`CpuModel`] (f64) and [`CpuModelF32`].
#[derive(Debug)]
pub struct CpuNetwork<T: Float> {
    defs: Vec<Box<dyn LayerDef>>,
    layers: Vec<Box<dyn CpuLayer<T>>>,
    tensors: Vec<Tensors<T>>,
    input: usize,
    steps: u64,
    optimizer: Optimizer,
}

/// The f64 reference network: the oracle of the GPU path.
pub type CpuModel = CpuNetwork<f64>;

/// The fast CPU network: f32 as on the GPU, multi-threaded and vectorized.
pub type CpuModelF32 = CpuNetwork<f32>;

/// The float type of a [`CpuNetwork`]: `f32` or `f64`. Sealed: its supertrait and the
/// layers' CPU twins are the crate's own, so no other type can implement it.
#[allow(private_bounds, private_interfaces)]
pub trait Float: Real {
    /// Each layer's CPU twin in this type.
    #[doc(hidden)]
    fn twin(def: &dyn LayerDef) -> Result<Box<dyn CpuLayer<Self>>>;
}

#[allow(private_interfaces)]
impl Float for f64 {
    fn twin(def: &dyn LayerDef) -> Result<Box<dyn CpuLayer<f64>>> {
        Ok(def.cpu())
    }
}

#[allow(private_interfaces)]
impl Float for f32 {
    fn twin(def: &dyn LayerDef) -> Result<Box<dyn CpuLayer<f32>>> {
        def.cpu_f32()
    }
}

impl<T: Float> CpuNetwork<T> {
    /// Refuses, before anything is allocated, a network whose parameters and one batch of
    /// `rows` activations would not fit in the host memory available (what `new` and `fit`
    /// allocate, checked at once).
    pub fn check_memory(input: impl Into<Shape>, layers: &[LayerSpec], rows: usize) -> Result<()> {
        let input = input.into();
        let defs = registry::resolve(input, layers)?;
        crate::memory::check_host_bytes(
            "the model's parameters and one batch's activations",
            Self::param_bytes(&defs).saturating_add(Self::activation_bytes(
                input.len(),
                &defs,
                rows,
            )),
        )?;
        Ok(())
    }

    /// Parameters, gradients and Adam's two moments, and the transposed copy of the largest
    /// tensor that a dense layer's backward pass makes.
    fn param_bytes(defs: &[Box<dyn LayerDef>]) -> u64 {
        let lens = || defs.iter().flat_map(|d| d.params()).map(|p| p.len());
        let values: usize = lens().fold(0, usize::saturating_add);
        let largest = lens().max().unwrap_or(0);
        (values as u64)
            .saturating_mul(4)
            .saturating_add(largest as u64)
            .saturating_mul(std::mem::size_of::<T>() as u64)
    }

    /// Activations, caches and gradients of one batch.
    fn activation_bytes(input: usize, defs: &[Box<dyn LayerDef>], rows: usize) -> u64 {
        let widths = defs
            .iter()
            .map(|d| d.output_width())
            .fold(input, usize::saturating_add);
        (rows as u64)
            .saturating_mul(widths as u64)
            .saturating_mul(4 * std::mem::size_of::<T>() as u64)
    }

    /// The same network and initial weights as `Sequential::new` with the same arguments.
    pub fn new(
        input: impl Into<Shape>,
        layers: &[LayerSpec],
        seed: u64,
        optimizer: Optimizer,
    ) -> Result<Self> {
        let input_shape = input.into();
        let defs = registry::resolve(input_shape, layers)?;
        let input = input_shape.len();
        optimizer.validate()?;
        crate::memory::check_host_bytes("the model's parameters", Self::param_bytes(&defs))?;
        let tensors = defs
            .iter()
            .zip(registry::names(&defs))
            .map(|(d, (_, ordinal))| {
                let params = d.params();
                let values: Vec<Vec<T>> = params
                    .iter()
                    .map(|p| {
                        p.initial(seed, ordinal)
                            .iter()
                            .map(|&v| T::of_f32(v))
                            .collect()
                    })
                    .collect();
                let zeros: Vec<Vec<T>> = values.iter().map(|v| vec![T::ZERO; v.len()]).collect();
                Tensors {
                    trainable: params.iter().map(|p| p.trainable).collect(),
                    m: zeros.clone(),
                    v: zeros,
                    values,
                }
            })
            .collect();
        Ok(CpuNetwork {
            layers: defs
                .iter()
                .map(|d| T::twin(d.as_ref()))
                .collect::<Result<_>>()?,
            defs,
            tensors,
            input,
            steps: 0,
            optimizer,
        })
    }

    /// Output classes.
    pub fn classes(&self) -> usize {
        self.defs.last().map_or(0, |d| d.output_width())
    }

    /// Forward over `rows` rows; returns the logits.
    fn forward(&mut self, x: &[f32], rows: usize, training: bool) -> Result<Vec<T>> {
        let mut a: Vec<T> = x.iter().map(|&v| T::of_f32(v)).collect();
        for (layer, t) in self.layers.iter_mut().zip(&mut self.tensors) {
            a = layer.forward(&mut t.values, a, rows, training, self.steps)?;
        }
        Ok(a)
    }

    fn check(&self, data: &Dataset) -> Result<()> {
        crate::nn::registry::check_outputs(self.classes(), data)?;
        data.check_for(self.input, self.classes())
    }

    /// Gradients of every trainable tensor for one batch (forward in training mode); returns
    /// (loss, accuracy, gradients in weight order). Running statistics advance as in a step.
    pub fn gradients(&mut self, batch: &Dataset) -> Result<(f64, f64, Vec<Vec<T>>)> {
        let per_layer = self.layer_gradients(batch)?;
        let (loss, acc, grads) = per_layer;
        let flat = grads
            .into_iter()
            .zip(&self.tensors)
            .flat_map(|(g, t)| {
                g.into_iter()
                    .zip(&t.trainable)
                    .filter(|(_, &train)| train)
                    .map(|(g, _)| g)
            })
            .collect();
        Ok((loss, acc, flat))
    }

    /// Gradients per layer, every tensor (zeros for non-trainable ones).
    #[allow(clippy::type_complexity)]
    fn layer_gradients(&mut self, batch: &Dataset) -> Result<(f64, f64, Vec<Vec<Vec<T>>>)> {
        self.check(batch)?;
        let rows = batch.rows();
        let logits = self.forward(batch.x(), rows, true)?;
        let (loss, acc, mut d) = softmax_xent(&logits, batch.labels(), self.classes());
        let mut grads: Vec<Vec<Vec<T>>> = self
            .tensors
            .iter()
            .map(|t| t.values.iter().map(|v| vec![T::ZERO; v.len()]).collect())
            .collect();
        let layers = self.layers.iter_mut().zip(&self.tensors).zip(&mut grads);
        for (i, ((layer, t), g)) in layers.enumerate().rev() {
            let io = BackIo {
                rows,
                step: self.steps,
                first: i == 0,
            };
            d = layer.backward(&t.values, d, io, g)?;
        }
        Ok((loss, acc, grads))
    }

    /// One training step on `batch`; returns (loss, accuracy) of the batch.
    pub fn train_batch(&mut self, batch: &Dataset) -> Result<(f64, f64)> {
        let (loss, acc, grads) = self.layer_gradients(batch)?;
        self.steps += 1;
        for (t, g) in self.tensors.iter_mut().zip(&grads) {
            let slots = t.values.iter_mut().zip(&mut t.m).zip(&mut t.v);
            for ((((p, m), v), g), &train) in slots.zip(g).zip(&t.trainable) {
                if train {
                    optimizer_cpu::step(self.optimizer, self.steps, p, g, m, v);
                }
            }
        }
        Ok((loss, acc))
    }

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
        self.check(train)?;
        let rows = options.batch_size.min(train.rows());
        crate::memory::check_host_bytes(
            "one batch's activations",
            Self::activation_bytes(self.input, &self.defs, rows),
        )?;
        run_epochs(
            self,
            options,
            train.rows(),
            |model, order, epoch, callbacks| {
                let (mut loss, mut hits) = (0.0, 0.0);
                let mut batch_loss = Vec::new();
                for (b, chunk) in order.chunks(options.batch_size).enumerate() {
                    let (l, a) = model.train_batch(&train.gather(chunk))?;
                    loss += l * chunk.len() as f64;
                    hits += a * chunk.len() as f64;
                    batch_loss.push(l);
                    if callbacks.wants_batches() {
                        callbacks.on_train_batch_end(model, epoch, b, l);
                    }
                }
                let n = train.rows() as f64;
                let validation = validation.map(|v| model.evaluate(v)).transpose()?;
                Ok(EpochMetrics {
                    loss: loss / n,
                    accuracy: hits / n,
                    batch_loss,
                    validation,
                })
            },
            callbacks,
        )
    }

    /// (loss, accuracy) in inference mode.
    pub fn evaluate(&mut self, data: &Dataset) -> Result<(f64, f64)> {
        self.check(data)?;
        // Every row at once: its activations and logits checked before they are allocated.
        crate::memory::check_host_bytes(
            "the activations of the rows evaluated",
            Self::activation_bytes(self.input, &self.defs, data.rows()),
        )?;
        let logits = self.forward(data.x(), data.rows(), false)?;
        let (loss, acc, _) = softmax_xent(&logits, data.labels(), self.classes());
        Ok((loss, acc))
    }

    /// Class probabilities in inference mode.
    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        if x.is_empty() || !x.len().is_multiple_of(self.input) {
            return Err(crate::Error::LengthMismatch {
                what: "predict input",
                expected: self.input,
                got: x.len(),
            }
            .into());
        }
        let rows = x.len() / self.input;
        crate::memory::check_host_bytes(
            "the activations of the rows predicted",
            Self::activation_bytes(self.input, &self.defs, rows),
        )?;
        let logits = self.forward(x, rows, false)?;
        Ok(softmax(&logits, self.classes()))
    }

    /// Every layer's output for one sample in inference mode (see `Sequential::trace`).
    pub fn trace(&mut self, x: &[f32]) -> Result<Vec<crate::nn::LayerTrace>> {
        if x.len() != self.input {
            return Err(crate::Error::LengthMismatch {
                what: "trace input (one sample)",
                expected: self.input,
                got: x.len(),
            }
            .into());
        }
        let mut a: Vec<T> = x.iter().map(|&v| T::of_f32(v)).collect();
        let mut outputs = Vec::new();
        for (layer, t) in self.layers.iter_mut().zip(&mut self.tensors) {
            a = layer.forward(&mut t.values, a, 1, false, self.steps)?;
            outputs.push(a.iter().map(|&v| v.f32()).collect());
        }
        Ok(crate::nn::spec::layer_traces(&self.defs, outputs))
    }

    /// Every weight in Keras layout and order.
    pub fn weights(&self) -> Vec<Weight> {
        registry::weight_names(&self.defs)
            .into_iter()
            .zip(self.tensors.iter().flat_map(|t| &t.values))
            .map(|((name, shape, _), v)| Weight {
                name,
                shape,
                values: v.iter().map(|&x| x.f32()).collect(),
            })
            .collect()
    }

    /// Saves every weight to a safetensors file (atomically), as `Sequential::save` does.
    pub fn save(&self, path: &Path) -> Result<()> {
        save_weights(&self.weights(), path)
    }

    /// Loads a safetensors file; the whole file is checked before any weight changes.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        for w in load_checked(path, &registry::weight_names(&self.defs))? {
            self.set_weight(&w.name, &w.values)?;
        }
        Ok(())
    }

    /// Sets one weight by its Keras name.
    pub fn set_weight(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let names = registry::weight_names(&self.defs);
        let index = names
            .iter()
            .position(|(n, _, _)| n == name)
            .ok_or_else(|| Error::Model(format!("no weight named {name:?}")))?;
        let slot = self
            .tensors
            .iter_mut()
            .flat_map(|t| &mut t.values)
            .nth(index)
            .ok_or_else(|| Error::Model(format!("no weight named {name:?}")))?;
        if slot.len() != values.len() {
            return Err(crate::Error::LengthMismatch {
                what: "weight values",
                expected: slot.len(),
                got: values.len(),
            }
            .into());
        }
        *slot = values.iter().map(|&x| T::of_f32(x)).collect();
        Ok(())
    }

    /// Trainable tensors in weight order (for gradient checks).
    pub fn trainable(&self) -> Vec<&Vec<T>> {
        self.tensors
            .iter()
            .flat_map(|t| t.values.iter().zip(&t.trainable))
            .filter(|(_, &train)| train)
            .map(|(v, _)| v)
            .collect()
    }

    /// Mutable trainable tensors (for finite differences).
    pub fn trainable_mut(&mut self) -> Vec<&mut Vec<T>> {
        self.tensors
            .iter_mut()
            .flat_map(|t| t.values.iter_mut().zip(&t.trainable))
            .filter(|(_, &train)| train)
            .map(|(v, _)| v)
            .collect()
    }

    /// Mean loss of `batch` in training mode without updating anything (running statistics
    /// are restored): the function that finite differences differentiate.
    pub fn training_loss(&mut self, batch: &Dataset) -> Result<f64> {
        self.check(batch)?;
        let saved: Vec<Vec<Vec<T>>> = self.tensors.iter().map(|t| t.values.clone()).collect();
        let layers: Vec<Box<dyn CpuLayer<T>>> = self.layers.clone();
        let logits = self.forward(batch.x(), batch.rows(), true)?;
        for (t, s) in self.tensors.iter_mut().zip(saved) {
            t.values = s;
        }
        self.layers = layers;
        Ok(softmax_xent(&logits, batch.labels(), self.classes()).0)
    }
}
