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

/// Fuses ReLUs into the layer before them and checks the stack.
pub(crate) fn blocks(input: usize, layers: &[LayerSpec]) -> Result<Vec<Block>> {
    let mut out: Vec<Block> = Vec::new();
    let mut width = input;
    for (i, l) in layers.iter().enumerate() {
        match *l {
            LayerSpec::Dense(units) if units > 0 => {
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

/// The optimizer of a model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// Keras `Adam`.
    Adam {
        /// Learning rate (Keras 1e-3).
        lr: f32,
        /// β1 (0.9).
        beta1: f32,
        /// β2 (0.999).
        beta2: f32,
        /// ε (1e-7).
        epsilon: f32,
    },
    /// Keras `SGD`.
    Sgd {
        /// Learning rate (Keras 1e-2).
        lr: f32,
        /// Momentum (0).
        momentum: f32,
    },
}

impl Optimizer {
    /// Keras' Adam defaults with a learning rate.
    pub fn adam(lr: f32) -> Self {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }

    /// SGD with momentum.
    pub fn sgd(lr: f32, momentum: f32) -> Self {
        Optimizer::Sgd { lr, momentum }
    }
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
    /// The epoch loop both models share: checks the batch size, hands each epoch's row order
    /// to `epoch`, which trains and returns (loss, accuracy, validation loss and accuracy),
    /// records the history and reports it to `on_epoch`.
    pub(crate) fn run_epochs(
        &self,
        rows: usize,
        mut epoch: impl FnMut(&[u32]) -> Result<(f64, f64, Option<(f64, f64)>)>,
        mut on_epoch: impl FnMut(usize, &History),
    ) -> Result<History> {
        if self.batch_size == 0 {
            return Err(Error::Model("batch size must be > 0".into()));
        }
        let mut history = History::default();
        for e in 0..self.epochs {
            let (loss, accuracy, val) = epoch(&self.order(rows, e))?;
            history.loss.push(loss);
            history.accuracy.push(accuracy);
            if let Some((l, a)) = val {
                history.val_loss.push(l);
                history.val_accuracy.push(a);
            }
            on_epoch(e, &history);
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
