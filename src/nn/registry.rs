//! The one registry: a [`LayerSpec`] as the user lists it becomes a layer definition, with the
//! fusion rule (a ReLU joins the layer before it) applied here once. This is the only place
//! that matches on layer kinds; names, summaries and weight lists work on any definition.

use std::collections::HashMap;

use crate::nn::error::{Error, Result};
use crate::nn::layer::LayerDef;
use crate::nn::layers::activation::{Activation, ActivationLayer};
use crate::nn::layers::batch_norm::Norm;
use crate::nn::layers::conv2d::{Conv, Conv2D};
use crate::nn::layers::dense::Dense;
use crate::nn::layers::dropout::Dropout;
use crate::nn::layers::flatten::Flatten;
use crate::nn::layers::pool2d::{Pool, Pool2D, PoolKind};
use crate::nn::limits::{MAX_TENSOR_ELEMENTS, MAX_WINDOW};
use crate::nn::shape::{window, window_extent, Shape};
use crate::BatchNormConfig;

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
    /// `Conv2D(filters, kernel_size, strides, padding)` on an NHWC feature map:
    /// glorot-uniform kernel `[kh, kw, in, filters]`, zero bias.
    Conv2D(Conv2D),
    /// `MaxPooling2D(pool_size, strides, padding)`.
    MaxPool2D(Pool2D),
    /// `AveragePooling2D(pool_size, strides, padding)`.
    AvgPool2D(Pool2D),
    /// `GlobalAveragePooling2D()`: a feature map to its per-channel means.
    GlobalAvgPool2D,
    /// `Flatten()`: a feature map to a vector (free: a view of the same memory).
    Flatten,
}

/// Checks the stack and builds its definitions, fusing each ReLU into the layer before it.
pub(crate) fn resolve(input: Shape, layers: &[LayerSpec]) -> Result<Vec<Box<dyn LayerDef>>> {
    resolve_labeled(input, layers, &|i| format!("layer {i}"))
}

/// As [`resolve`], each layer named in errors by `label(i)` (the user's name for spec `i`).
fn resolve_labeled(
    input: Shape,
    layers: &[LayerSpec],
    label: &dyn Fn(usize) -> String,
) -> Result<Vec<Box<dyn LayerDef>>> {
    check_shape("the input", input)?;
    let mut out: Vec<Box<dyn LayerDef>> = Vec::new();
    let mut shape = input;
    for (i, l) in layers.iter().enumerate() {
        let def: Box<dyn LayerDef> = match l {
            LayerSpec::Relu => {
                if !out.last_mut().is_some_and(|last| last.fuse_relu()) {
                    return Err(Error::Model(format!(
                        "{}: ReLU must follow a Dense, Conv2D or BatchNorm layer",
                        label(i)
                    )));
                }
                continue;
            }
            // Each message of `build` starts "layer {i}: "; it names the user's layer.
            _ => build(i, l, shape, previous(&layers[..i])).map_err(|e| match e {
                Error::Model(m) => match m.strip_prefix(&format!("layer {i}: ")) {
                    Some(why) => Error::Model(format!("{}: {why}", label(i))),
                    None => Error::Model(m),
                },
                e => e,
            })?,
        };
        shape = def.output_shape();
        check_shape(&format!("{}'s output", label(i)), shape)?;
        out.push(def);
    }
    match out.last() {
        Some(last) if last.gives_logits() && last.output_width() >= 2 => Ok(out),
        _ => Err(Error::Model(
            "the last layer must be a Dense layer without activation (its outputs are the softmax logits), with >= 2 units".into(),
        )),
    }
}

/// Checks a network without building it (no weights, no device): what
/// [`Sequential::new`](crate::nn::Sequential::new) and the CPU models refuse, this refuses.
pub fn check_network(input: Shape, layers: &[LayerSpec]) -> Result<()> {
    resolve(input, layers).map(drop)
}

/// Refuses data with a label the network's outputs cannot score (a last Dense narrower than
/// the classes), in those words, before any training: `outputs` is the last layer's width.
pub(crate) fn check_outputs(outputs: usize, data: &crate::nn::Dataset) -> Result<()> {
    match data.labels().iter().max() {
        Some(&l) if l as usize >= outputs => Err(Error::Model(format!(
            "the last Dense layer has {outputs} outputs but the data has {} classes (label {l} among them): give it {} units",
            data.classes().max(l as usize + 1),
            data.classes().max(l as usize + 1)
        ))),
        _ => Ok(()),
    }
}

/// Checks a network's classes against the data before anything is built or trained: the
/// last layer (a Dense, as [`check_network`] requires) must have an output for every class
/// of the data.
pub fn check_classes(layers: &[LayerSpec], data: &crate::nn::Dataset) -> Result<()> {
    match layers.last() {
        Some(LayerSpec::Dense(units)) => check_outputs(*units, data),
        _ => Ok(()),
    }
}

/// Checks a network as [`check_network`] does, naming layer `i` in errors by `labels[i]`
/// (an imported model's Keras position and name, see
/// [`from_keras_json_labeled`](crate::nn::from_keras_json_labeled)).
pub fn check_network_labeled(input: Shape, layers: &[LayerSpec], labels: &[String]) -> Result<()> {
    let label = |i: usize| {
        labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("layer {i}"))
    };
    resolve_labeled(input, layers, &label).map(drop)
}

/// The last layer before these that is not a ReLU (fused into it), for messages.
fn previous(layers: &[LayerSpec]) -> Option<&LayerSpec> {
    layers.iter().rev().find(|l| **l != LayerSpec::Relu)
}

/// A shape every buffer of the network can index.
fn check_shape(what: &str, shape: Shape) -> Result<()> {
    match shape.checked_len() {
        Some(0) => Err(Error::Model(format!("{what} {shape} has no values"))),
        Some(n) if n <= MAX_TENSOR_ELEMENTS => Ok(()),
        _ => Err(Error::Model(format!(
            "{what} {shape} has more than {MAX_TENSOR_ELEMENTS} values per sample"
        ))),
    }
}

/// Refuses window parameters past [`MAX_WINDOW`], before any arithmetic on them.
fn check_window_sizes(i: usize, layer: &str, sizes: [(&str, [usize; 2]); 2]) -> Result<()> {
    for (what, pair) in sizes {
        if let Some(v) = pair.iter().find(|&&v| v > MAX_WINDOW) {
            return Err(Error::Model(format!(
                "layer {i}: {layer} {what} {v} exceeds {MAX_WINDOW}, the largest the GPU kernels take (they compute window positions in 32-bit integers)"
            )));
        }
    }
    Ok(())
}

/// Refuses windows whose positions reach past [`MAX_WINDOW`] (padding included) on an
/// input of `[h, w]` with `out` outputs per axis.
fn check_window_reach(
    i: usize,
    layer: &str,
    (input, out): ([usize; 2], [usize; 2]),
    (kernel, strides): ([usize; 2], [usize; 2]),
) -> Result<()> {
    for (axis, name) in ["rows", "columns"].iter().enumerate() {
        let reach = window_extent(out[axis], kernel[axis], strides[axis]).unwrap_or(usize::MAX);
        if reach > MAX_WINDOW {
            return Err(Error::Model(format!(
                "layer {i}: {layer} windows over {} {name} reach {reach} {name} with their padding, more than the {MAX_WINDOW} the GPU kernels index",
                input[axis]
            )));
        }
    }
    Ok(())
}

/// The definition of layer `i` (not a ReLU) on an input of `shape`.
fn build(
    i: usize,
    l: &LayerSpec,
    shape: Shape,
    previous: Option<&LayerSpec>,
) -> Result<Box<dyn LayerDef>> {
    let image = |what: &str| {
        match shape {
        Shape::Image {
            height,
            width,
            channels,
        } => Ok([height, width, channels]),
        // What it received, and from where: the input, or a layer that gives vectors.
        Shape::Flat(n) => Err(Error::Model(match previous {
            Some(p) => format!(
                "layer {i}: {what} after {p} receives a vector of {n} features; it needs a feature map [height, width, channels]"
            ),
            None => format!(
                "layer {i}: {what} needs a feature map [height, width, channels], but the input is a vector of {n} features: give the model an image input shape"
            ),
        })),
    }
    };
    Ok(match l {
        LayerSpec::Dense(units) if *units > 0 => {
            let Shape::Flat(width) = shape else {
                return Err(Error::Model(format!(
                    "layer {i}: Dense({units}) takes a vector, got a feature map {shape}: add Flatten or GlobalAveragePooling2D before it"
                )));
            };
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
            config: BatchNormConfig::keras(shape.channels()),
            shape,
        }),
        LayerSpec::BatchNormWith(config) => {
            let config = BatchNormConfig {
                channels: shape.channels(),
                ..config.clone()
            };
            config
                .validate()
                .map_err(|e| Error::Model(format!("layer {i}: BatchNormalization: {e}")))?;
            Box::new(Norm { config, shape })
        }
        LayerSpec::Dropout(rate) if (0.0..1.0).contains(rate) => Box::new(Dropout {
            shape,
            rate: *rate,
            seed: i as u32,
        }),
        LayerSpec::Activation(function) => Box::new(ActivationLayer {
            shape,
            function: *function,
        }),
        LayerSpec::Conv2D(spec) => {
            let [h, w, cin] = image("Conv2D")?;
            let [kh, kw] = spec.kernel_size;
            let [sh, sw] = spec.strides;
            let sizes = [("kernel size", spec.kernel_size), ("strides", spec.strides)];
            check_window_sizes(i, "Conv2D", sizes)?;
            let windows = window(h, kh, sh, spec.padding).zip(window(w, kw, sw, spec.padding));
            let (Some(((oh, pt), (ow, pl))), true) = (windows, spec.filters > 0) else {
                return Err(Error::Model(format!(
                    "layer {i}: {l} does not fit an input of {shape} (filters, kernel and strides must be positive, and a `valid` kernel no larger than the input)"
                )));
            };
            let geometry = ([h, w], [oh, ow]);
            check_window_reach(i, "Conv2D", geometry, (spec.kernel_size, spec.strides))?;
            let kernel = [kh, kw, cin, spec.filters]
                .iter()
                .try_fold(1usize, |a, &b| a.checked_mul(b));
            if kernel.is_none_or(|k| k > MAX_TENSOR_ELEMENTS) {
                return Err(Error::Model(format!(
                    "layer {i}: a {kh}x{kw} kernel from {cin} to {} channels has more than {MAX_TENSOR_ELEMENTS} values",
                    spec.filters
                )));
            }
            Box::new(Conv {
                spec: *spec,
                input: [h, w, cin],
                out: [oh, ow],
                pad: [pt, pl],
                relu: false,
            })
        }
        LayerSpec::MaxPool2D(p) | LayerSpec::AvgPool2D(p) => {
            let input = image("pooling")?;
            let (kind, layer) = if matches!(l, LayerSpec::MaxPool2D(_)) {
                (PoolKind::Max, "MaxPooling2D")
            } else {
                (PoolKind::Average, "AveragePooling2D")
            };
            check_window_sizes(
                i,
                layer,
                [("pool size", p.pool_size), ("strides", p.strides)],
            )?;
            let [kh, kw] = p.pool_size;
            let [sh, sw] = p.strides;
            let windows =
                window(input[0], kh, sh, p.padding).zip(window(input[1], kw, sw, p.padding));
            let Some(((oh, pt), (ow, pl))) = windows else {
                return Err(Error::Model(format!(
                    "layer {i}: {l} does not fit an input of {shape} (pool size and strides must be positive, and a `valid` window no larger than the input)"
                )));
            };
            let geometry = ([input[0], input[1]], [oh, ow]);
            check_window_reach(i, layer, geometry, (p.pool_size, p.strides))?;
            Box::new(Pool {
                kind,
                window: *p,
                input,
                out: [oh, ow],
                pad: [pt, pl],
            })
        }
        LayerSpec::GlobalAvgPool2D => {
            let input = image("GlobalAveragePooling2D")?;
            Box::new(Pool {
                kind: PoolKind::GlobalAverage,
                window: Pool2D {
                    pool_size: [input[0], input[1]],
                    strides: [input[0], input[1]],
                    padding: Default::default(),
                },
                input,
                out: [1, 1],
                pad: [0, 0],
            })
        }
        LayerSpec::Flatten => Box::new(Flatten { len: shape.len() }),
        LayerSpec::Dropout(rate) => {
            return Err(Error::Model(format!(
                "layer {i}: Dropout(rate {rate}): the rate must lie in [0, 1)"
            )))
        }
        other => return Err(Error::Model(format!("layer {i}: {other} is invalid"))),
    })
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
        "{:<34} {:<20} {:>8}\n",
        "Layer (type)", "Output Shape", "Param #"
    );
    s.push_str(&"=".repeat(64));
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
            "{:<34} {:<20} {:>8}\n",
            format!("{name} ({})", d.describe()),
            d.output_shape().to_string(),
            count
        ));
    }
    s.push_str(&"=".repeat(64));
    s.push_str(&format!(
        "\nTotal params: {total}\nTrainable params: {trainable}\nNon-trainable params: {}\n(softmax is fused into the cross-entropy loss)\n",
        total - trainable
    ));
    s
}
