//! The one registry: a [`LayerSpec`] as the user lists it becomes a layer definition, with the
//! fusion rule (a ReLU joins the layer before it) applied here once. This is the only place
//! that matches on layer kinds; names, summaries and weight lists work on any definition.

use std::collections::HashMap;

use crate::nn::error::{Error, Result};
use crate::nn::layer::LayerDef;
use crate::nn::layers::activation::{Activation, ActivationLayer};
use crate::nn::layers::batch_norm::Norm;
use crate::nn::layers::dense::Dense;
use crate::nn::layers::dropout::Dropout;
use crate::BatchNormConfig;

/// Largest tensor of a network, in elements: the GPU indexes f32 buffers with u32 byte
/// offsets, and both models accept exactly the same networks.
pub const MAX_TENSOR_ELEMENTS: usize = (u32::MAX / 4) as usize;

/// A layer as the user lists it (Keras `Sequential` style). The final Dense layer's outputs
/// are logits: softmax is fused into the categorical cross-entropy loss.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSpec {
    /// `Dense(units)`: glorot-uniform kernel `[in, units]`, zero bias.
    Dense(usize),
    /// `BatchNormalization()` with Keras defaults.
    BatchNorm,
    /// Batch normalization with any configuration (PyTorch's convention, other epsilon or
    /// momentum...); its `channels` is taken from the layer before.
    BatchNormWith(BatchNormConfig),
    /// `Activation('relu')`: fused into the Dense or BatchNorm layer before it.
    Relu,
    /// `Activation('sigmoid')` or `Activation('tanh')`.
    Activation(Activation),
    /// `Dropout(rate)`.
    Dropout(f32),
}

/// Checks the stack and builds its definitions, fusing each ReLU into the layer before it.
pub(crate) fn resolve(input: usize, layers: &[LayerSpec]) -> Result<Vec<Box<dyn LayerDef>>> {
    if input == 0 {
        return Err(Error::Model(
            "the network needs at least one input feature".into(),
        ));
    }
    let mut out: Vec<Box<dyn LayerDef>> = Vec::new();
    let mut width = input;
    for (i, l) in layers.iter().enumerate() {
        let def: Box<dyn LayerDef> = match l {
            LayerSpec::Dense(units) if *units > 0 => {
                let fits = width
                    .checked_mul(*units)
                    .is_some_and(|p| p <= MAX_TENSOR_ELEMENTS);
                if !fits {
                    return Err(Error::Model(format!(
                        "layer {i}: Dense({units}) after {width} features needs a kernel of {width} x {units} values; at most {MAX_TENSOR_ELEMENTS} fit in one tensor"
                    )));
                }
                Box::new(Dense {
                    inp: width,
                    out: *units,
                    relu: false,
                })
            }
            LayerSpec::BatchNorm => Box::new(Norm {
                config: BatchNormConfig::keras(width),
            }),
            LayerSpec::BatchNormWith(config) => {
                let config = BatchNormConfig {
                    channels: width,
                    ..config.clone()
                };
                config.validate()?;
                Box::new(Norm { config })
            }
            LayerSpec::Dropout(rate) if (0.0..1.0).contains(rate) => Box::new(Dropout {
                width,
                rate: *rate,
                seed: i as u32,
            }),
            LayerSpec::Activation(function) => Box::new(ActivationLayer {
                width,
                function: *function,
            }),
            LayerSpec::Relu => {
                if !out.last_mut().is_some_and(|last| last.fuse_relu()) {
                    return Err(Error::Model(format!(
                        "layer {i}: ReLU must follow a Dense or BatchNorm layer"
                    )));
                }
                continue;
            }
            other => return Err(Error::Model(format!("layer {i}: invalid {other:?}"))),
        };
        width = def.output_width();
        out.push(def);
    }
    match out.last() {
        Some(last) if last.gives_logits() && last.output_width() >= 2 => Ok(out),
        _ => Err(Error::Model(
            "the last layer must be a Dense layer without activation (its outputs are the softmax logits), with >= 2 units".into(),
        )),
    }
}

/// Keras' layer names: `dense`, `dense_1`, `batch_normalization`... one counter per kind.
/// Returns each layer's name and its ordinal among its kind.
pub(crate) fn names(defs: &[Box<dyn LayerDef>]) -> Vec<(String, usize)> {
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    defs.iter()
        .map(|d| {
            let k = seen.entry(d.keras_name()).or_insert(0);
            let ordinal = *k;
            *k += 1;
            let name = if ordinal == 0 {
                d.keras_name().to_string()
            } else {
                format!("{}_{ordinal}", d.keras_name())
            };
            (name, ordinal)
        })
        .collect()
}

/// Keras-style names of every weight: (name, shape, trainable), in model order.
pub(crate) fn weight_names(defs: &[Box<dyn LayerDef>]) -> Vec<(String, Vec<usize>, bool)> {
    defs.iter()
        .zip(names(defs))
        .flat_map(|(d, (layer, _))| {
            d.params()
                .into_iter()
                .map(move |p| (format!("{layer}/{}", p.name), p.shape, p.trainable))
        })
        .collect()
}

/// A Keras-like summary table.
pub(crate) fn summary(defs: &[Box<dyn LayerDef>]) -> String {
    let mut s = format!(
        "{:<34} {:<14} {:>8}\n",
        "Layer (type)", "Output Shape", "Param #"
    );
    s.push_str(&"=".repeat(58));
    s.push('\n');
    let (mut total, mut trainable) = (0usize, 0usize);
    for (d, (name, _)) in defs.iter().zip(names(defs)) {
        let params = d.params();
        let count: usize = params.iter().map(|p| p.len()).sum();
        total += count;
        trainable += params
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.len())
            .sum::<usize>();
        s.push_str(&format!(
            "{:<34} {:<14} {:>8}\n",
            format!("{name} ({})", d.describe()),
            format!("(None, {})", d.output_width()),
            count
        ));
    }
    s.push_str(&"=".repeat(58));
    s.push_str(&format!(
        "\nTotal params: {total}\nTrainable params: {trainable}\nNon-trainable params: {}\n(softmax is fused into the categorical cross-entropy loss)\n",
        total - trainable
    ));
    s
}
