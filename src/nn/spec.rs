//! What a network is made of and how it is trained: layer specs, optimizers, fit options and
//! the history `fit` returns. Shared by the GPU model and its CPU reference.

use crate::error::{Error, Result};
use crate::nn::rng::Rng;

/// A layer as the user lists it (Keras `Sequential` style). The final Dense layer's outputs
/// are logits: softmax is fused into the categorical cross-entropy loss.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSpec {
    /// `Dense(units)`: glorot-uniform kernel `[in, units]`, zero bias.
    Dense(usize),
    /// `BatchNormalization()` with Keras defaults.
    BatchNorm,
    /// `Activation('relu')`: fused into the Dense or BatchNorm layer before it.
    Relu,
    /// `Dropout(rate)`.
    Dropout(f32),
}

/// A layer after fusion: what actually runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Block {
    Dense { inp: usize, out: usize, relu: bool },
    Norm { channels: usize, relu: bool },
    Dropout { width: usize, rate: f32, seed: u32 },
}

impl Block {
    pub(crate) fn width(&self) -> usize {
        match *self {
            Block::Dense { out, .. } => out,
            Block::Norm { channels, .. } => channels,
            Block::Dropout { width, .. } => width,
        }
    }
}

/// Largest tensor of a network, in elements: the GPU indexes f32 buffers with u32 byte
/// offsets, and both models accept exactly the same networks.
pub const MAX_TENSOR_ELEMENTS: usize = (u32::MAX / 4) as usize;

/// Fuses ReLUs into the layer before them and checks the stack: one place for both models,
/// so they accept and refuse the same networks.
pub(crate) fn blocks(input: usize, layers: &[LayerSpec]) -> Result<Vec<Block>> {
    if input == 0 {
        return Err(Error::Model(
            "the network needs at least one input feature".into(),
        ));
    }
    let mut out: Vec<Block> = Vec::new();
    let mut width = input;
    for (i, l) in layers.iter().enumerate() {
        match *l {
            LayerSpec::Dense(units) if units > 0 => {
                let params = width
                    .checked_mul(units)
                    .filter(|&p| p <= MAX_TENSOR_ELEMENTS);
                if params.is_none() || units > MAX_TENSOR_ELEMENTS {
                    return Err(Error::Model(format!(
                        "layer {i}: Dense({units}) after {width} features needs a kernel of {width} x {units} values; at most {MAX_TENSOR_ELEMENTS} fit in one tensor"
                    )));
                }
                out.push(Block::Dense {
                    inp: width,
                    out: units,
                    relu: false,
                });
                width = units;
            }
            LayerSpec::BatchNorm => out.push(Block::Norm {
                channels: width,
                relu: false,
            }),
            LayerSpec::Dropout(rate) if (0.0..1.0).contains(&rate) => out.push(Block::Dropout {
                width,
                rate,
                seed: i as u32,
            }),
            LayerSpec::Relu => match out.last_mut() {
                Some(Block::Dense { relu, .. } | Block::Norm { relu, .. }) if !*relu => {
                    *relu = true
                }
                _ => {
                    return Err(Error::Model(format!(
                        "layer {i}: ReLU must follow a Dense or BatchNorm layer"
                    )))
                }
            },
            ref other => return Err(Error::Model(format!("layer {i}: invalid {other:?}"))),
        }
    }
    match out.last() {
        Some(Block::Dense { relu: false, out: classes, .. }) if *classes >= 2 => Ok(out),
        _ => Err(Error::Model(
            "the last layer must be a Dense layer without activation (its outputs are the softmax logits), with >= 2 units".into(),
        )),
    }
}

/// The optimizer of a model. Hyperparameters are kept as the user wrote them (f64, like
/// Keras' Python floats) and rounded to f32 where Keras rounds them, so the GPU does Keras'
/// arithmetic: `1 - beta` is formed before rounding, `beta^t` from the rounded beta.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// Keras `Adam`.
    Adam {
        /// Learning rate (Keras 1e-3).
        lr: f64,
        /// β1 (0.9).
        beta1: f64,
        /// β2 (0.999).
        beta2: f64,
        /// ε (1e-7).
        epsilon: f64,
    },
    /// Keras `SGD`.
    Sgd {
        /// Learning rate (Keras 1e-2).
        lr: f64,
        /// Momentum (0).
        momentum: f64,
    },
}

impl Optimizer {
    /// Checks every hyperparameter; both models call it, so they refuse the same things.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64, range: &str| {
            Err(Error::Model(format!("{what} must be {range}, got {v}")))
        };
        let lr = match *self {
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
            } => {
                if !(0.0..1.0).contains(&beta1) {
                    return bad("Adam beta1", beta1, "within [0, 1)");
                }
                if !(0.0..1.0).contains(&beta2) {
                    return bad("Adam beta2", beta2, "within [0, 1)");
                }
                if !(epsilon.is_finite() && epsilon as f32 > 0.0) {
                    return bad("Adam epsilon", epsilon, "finite and > 0");
                }
                lr
            }
            Optimizer::Sgd { lr, momentum } => {
                if !(0.0..=1.0).contains(&momentum) {
                    return bad("SGD momentum", momentum, "within [0, 1]");
                }
                lr
            }
        };
        // Rounded to f32 on the GPU: a value that rounds to 0 or infinity is refused too.
        if !(lr.is_finite() && lr > 0.0 && (lr as f32).is_finite() && lr as f32 > 0.0) {
            return bad("the learning rate", lr, "finite and > 0 (as an f32)");
        }
        Ok(())
    }

    /// Keras' Adam defaults with a learning rate.
    pub fn adam(lr: f64) -> Self {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }

    /// SGD with momentum.
    pub fn sgd(lr: f64, momentum: f64) -> Self {
        Optimizer::Sgd { lr, momentum }
    }
}

/// `1 - beta` formed in f64 from the f32 value and rounded once, as Keras forms
/// `1 - self.beta_1` from Python floats before it meets a float32 tensor.
pub(crate) fn complement(beta: f64) -> f32 {
    (1.0 - beta) as f32
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::adam(1e-3)
    }
}

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

    /// The epoch loop both models share: checks the options, hands each epoch's row order
    /// to `epoch`, which trains and returns its [`EpochMetrics`], records the history and
    /// reports it to `on_epoch`. A non-finite training loss ends training with
    /// [`Error::NonFiniteLoss`], as Keras' `TerminateOnNaN` would.
    pub(crate) fn run_epochs(
        &self,
        rows: usize,
        mut epoch: impl FnMut(&[u32]) -> Result<EpochMetrics>,
        mut on_epoch: impl FnMut(usize, &History),
    ) -> Result<History> {
        self.validate()?;
        let mut history = History::default();
        for e in 0..self.epochs {
            let m = epoch(&self.order(rows, e))?;
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
            on_epoch(e, &history);
            if diverged {
                return Err(Error::NonFiniteLoss {
                    epoch: e + 1,
                    batch: bad_batch.map(|b| b + 1),
                });
            }
        }
        Ok(history)
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

/// What one epoch of training measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EpochMetrics {
    pub loss: f64,
    pub accuracy: f64,
    /// Mean loss of each batch, in order.
    pub batch_loss: Vec<f64>,
    pub validation: Option<(f64, f64)>,
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

/// Glorot-uniform kernel `[fan_in, fan_out]` for Dense layer number `index` of a model seeded
/// with `seed` (each Dense layer draws from its own stream, so adding a BatchNorm layer does
/// not change any Dense layer's initial weights).
pub fn glorot_uniform(seed: u64, index: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(index as u64 + 1));
    (0..fan_in * fan_out)
        .map(|_| ((rng.uniform() * 2.0 - 1.0) * limit) as f32)
        .collect()
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

/// Values of every weight of `blocks` (trainable and not); fits in usize because
/// [`blocks`] bounds every tensor.
pub(crate) fn parameter_count(blocks: &[Block]) -> usize {
    weight_names(blocks)
        .iter()
        .map(|(_, shape, _)| shape.iter().product::<usize>())
        .fold(0usize, usize::saturating_add)
}

/// Keras-style names of the parameters of `blocks`: (name, shape, trainable).
pub(crate) fn weight_names(blocks: &[Block]) -> Vec<(String, Vec<usize>, bool)> {
    let (mut dense, mut norm) = (0, 0);
    let suffix = |i: usize| {
        if i == 0 {
            String::new()
        } else {
            format!("_{i}")
        }
    };
    let mut out = Vec::new();
    for b in blocks {
        match *b {
            Block::Dense { inp, out: o, .. } => {
                let n = format!("dense{}", suffix(dense));
                out.push((format!("{n}/kernel"), vec![inp, o], true));
                out.push((format!("{n}/bias"), vec![o], true));
                dense += 1;
            }
            Block::Norm { channels, .. } => {
                let n = format!("batch_normalization{}", suffix(norm));
                out.push((format!("{n}/gamma"), vec![channels], true));
                out.push((format!("{n}/beta"), vec![channels], true));
                out.push((format!("{n}/moving_mean"), vec![channels], false));
                out.push((format!("{n}/moving_variance"), vec![channels], false));
                norm += 1;
            }
            Block::Dropout { .. } => {}
        }
    }
    out
}

/// Checks a whole weights file against a model's weights before any is applied: every
/// expected tensor present once with exactly its shape (a Dense kernel is `[in, out]`, so
/// `[out, in]` is refused even though the count matches), and nothing else.
pub(crate) fn match_weights(
    expected: &[(String, Vec<usize>, bool)],
    file: &[Weight],
) -> std::result::Result<(), String> {
    for w in file {
        match expected.iter().find(|(n, _, _)| *n == w.name) {
            None => {
                return Err(format!(
                    "{} is not a weight of this model (it has {})",
                    w.name,
                    expected
                        .iter()
                        .map(|(n, _, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
            Some((_, shape, _)) if *shape != w.shape => {
                return Err(format!(
                    "{} has shape {:?}, the model's is {shape:?}",
                    w.name, w.shape
                ))
            }
            Some(_) if file.iter().filter(|o| o.name == w.name).count() > 1 => {
                return Err(format!("{} appears more than once", w.name))
            }
            Some(_) if w.values.len() != w.shape.iter().product::<usize>() => {
                return Err(format!("{}: values do not match its shape", w.name))
            }
            Some(_) => {}
        }
    }
    let missing: Vec<&str> = expected
        .iter()
        .filter(|(n, _, _)| !file.iter().any(|w| w.name == *n))
        .map(|(n, _, _)| n.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing {}", missing.join(", ")));
    }
    Ok(())
}

/// A Keras-like summary table.
pub(crate) fn summary(input: usize, blocks: &[Block]) -> String {
    let mut s = format!(
        "{:<34} {:<14} {:>8}\n",
        "Layer (type)", "Output Shape", "Param #"
    );
    s.push_str(&"=".repeat(58));
    s.push('\n');
    let (mut dense, mut norm, mut drop) = (0, 0, 0);
    let (mut total, mut trainable) = (0usize, 0usize);
    let suffix = |i: usize| {
        if i == 0 {
            String::new()
        } else {
            format!("_{i}")
        }
    };
    let _ = input;
    for b in blocks {
        let (name, params, train) = match *b {
            Block::Dense { inp, out, relu } => {
                dense += 1;
                let p = inp * out + out;
                (
                    format!(
                        "dense{} (Dense{})",
                        suffix(dense - 1),
                        if relu { "+ReLU" } else { "" }
                    ),
                    p,
                    p,
                )
            }
            Block::Norm { channels, relu } => {
                norm += 1;
                (
                    format!(
                        "batch_normalization{} (BN{})",
                        suffix(norm - 1),
                        if relu { "+ReLU" } else { "" }
                    ),
                    4 * channels,
                    2 * channels,
                )
            }
            Block::Dropout { rate, .. } => {
                drop += 1;
                (
                    format!("dropout{} (Dropout {rate})", suffix(drop - 1)),
                    0,
                    0,
                )
            }
        };
        total += params;
        trainable += train;
        s.push_str(&format!(
            "{:<34} {:<14} {:>8}\n",
            name,
            format!("(None, {})", b.width()),
            params
        ));
    }
    s.push_str(&"=".repeat(58));
    s.push_str(&format!(
        "\nTotal params: {total}\nTrainable params: {trainable}\nNon-trainable params: {}\n(softmax is fused into the categorical cross-entropy loss)\n",
        total - trainable
    ));
    s
}
