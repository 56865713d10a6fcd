//! Describing a model in words: the compact layer string of the command line
//! (`conv:32:3,bn,relu,maxpool:2,flatten,dense:64,relu,dense:10`) and a Keras `model.to_json()`
//! document, for the layer kinds this crate supports (anything else is named in the error).

use serde_json::Value;

use crate::nn::error::{Error, Result};
use crate::nn::layers::activation::Activation;
use crate::nn::layers::conv2d::Conv2D;
use crate::nn::layers::pool2d::Pool2D;
use crate::nn::registry::LayerSpec;
use crate::nn::shape::{Padding, Shape};
use crate::BatchNormConfig;

/// The grammar, for error messages.
const GRAMMAR: &str = "dense:UNITS, conv:FILTERS:K[:STRIDE][:same|valid], maxpool:K[:STRIDE][:same|valid], avgpool:K[:STRIDE][:same|valid], gap, flatten, bn, relu, sigmoid, tanh, dropout:RATE";

/// Parses a comma-separated layer string. Kernel and pool sizes are `K` or `KHxKW`;
/// convolutions default to stride 1 and `valid` padding, pools to stride `K` (Keras').
pub fn parse_layers(text: &str) -> Result<Vec<LayerSpec>> {
    let layers: Vec<LayerSpec> = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .enumerate()
        .map(|(i, t)| parse_token(t).map_err(|why| bad(format!("layer {i} {t:?}: {why}"))))
        .collect::<Result<_>>()?;
    if layers.is_empty() {
        return Err(bad(format!("no layers given (expected {GRAMMAR})")));
    }
    Ok(layers)
}

fn bad(why: String) -> Error {
    Error::Model(why)
}

fn number(s: &str, what: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{what} must be a positive integer, got {s:?}")),
    }
}

fn pair(s: &str, what: &str) -> std::result::Result<[usize; 2], String> {
    match s.split_once('x') {
        Some((h, w)) => Ok([number(h, what)?, number(w, what)?]),
        None => number(s, what).map(|k| [k, k]),
    }
}

/// Optional `STRIDE` and `same|valid` after a window size.
fn window_options(
    rest: &[&str],
    default_stride: [usize; 2],
) -> std::result::Result<([usize; 2], Padding), String> {
    let (mut stride, mut padding) = (default_stride, Padding::Valid);
    for (k, part) in rest.iter().enumerate() {
        match *part {
            "same" => padding = Padding::Same,
            "valid" => padding = Padding::Valid,
            s if k == 0 => stride = pair(s, "the stride")?,
            s => return Err(format!("unexpected {s:?} (a stride, then same or valid)")),
        }
    }
    Ok((stride, padding))
}

fn parse_token(t: &str) -> std::result::Result<LayerSpec, String> {
    let parts: Vec<&str> = t.split(':').collect();
    let args = |n: std::ops::RangeInclusive<usize>| {
        if n.contains(&(parts.len() - 1)) {
            Ok(())
        } else {
            Err(format!("{} takes {n:?} arguments", parts[0]))
        }
    };
    Ok(match parts[0].to_ascii_lowercase().as_str() {
        "dense" => {
            args(1..=1)?;
            LayerSpec::Dense(number(parts[1], "units")?)
        }
        "conv" | "conv2d" => {
            args(2..=4)?;
            let kernel_size = pair(parts[2], "the kernel size")?;
            let (strides, padding) = window_options(&parts[3..], [1, 1])?;
            LayerSpec::Conv2D(Conv2D {
                filters: number(parts[1], "filters")?,
                kernel_size,
                strides,
                padding,
                use_bias: true,
            })
        }
        kind @ ("maxpool" | "avgpool") => {
            args(1..=3)?;
            let pool_size = pair(parts[1], "the pool size")?;
            let (strides, padding) = window_options(&parts[2..], pool_size)?;
            let p = Pool2D {
                pool_size,
                strides,
                padding,
            };
            if kind == "maxpool" {
                LayerSpec::MaxPool2D(p)
            } else {
                LayerSpec::AvgPool2D(p)
            }
        }
        "gap" => LayerSpec::GlobalAvgPool2D,
        "flatten" => LayerSpec::Flatten,
        "bn" | "batchnorm" => LayerSpec::BatchNorm,
        "relu" => LayerSpec::Relu,
        "sigmoid" => LayerSpec::Activation(Activation::Sigmoid),
        "tanh" => LayerSpec::Activation(Activation::Tanh),
        "dropout" => {
            args(1..=1)?;
            match parts[1].parse::<f32>() {
                Ok(r) if (0.0..1.0).contains(&r) => LayerSpec::Dropout(r),
                _ => return Err(format!("the rate must lie in [0, 1), got {:?}", parts[1])),
            }
        }
        other => return Err(format!("unknown layer {other:?} (expected {GRAMMAR})")),
    })
}

/// The input shape and layers of a Keras `Sequential` model's `to_json()` (Keras 3 or
/// tf.keras). A softmax on the last Dense layer is the loss's (fused); other activations
/// become layers. Refused: other layer kinds, channels-first data, dilations, groups.
pub fn from_keras_json(text: &str) -> Result<(Shape, Vec<LayerSpec>)> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not a JSON document: {e}")))?;
    if doc["class_name"] != "Sequential" {
        return Err(bad(format!(
            "a Keras Sequential model is expected, got class_name {}",
            doc["class_name"]
        )));
    }
    let list = doc["config"]["layers"]
        .as_array()
        .ok_or_else(|| bad("config.layers is missing".into()))?;
    let mut shape = None;
    let mut out = Vec::new();
    for (i, layer) in list.iter().enumerate() {
        let class = layer["class_name"].as_str().unwrap_or("?");
        let c = &layer["config"];
        let at = |why: String| bad(format!("layer {i} ({class}): {why}"));
        // The input shape: an InputLayer's, or the first layer's batch_input_shape.
        for key in ["batch_shape", "batch_input_shape"] {
            if let Some(dims) = c[key].as_array() {
                shape = Some(input_shape(&dims[1..]).map_err(at)?);
            }
        }
        let keras_layer = keras_layer(class, c, i + 1 == list.len()).map_err(at)?;
        out.extend(keras_layer);
    }
    let shape = shape
        .ok_or_else(|| bad("the model has no input shape (build it with an Input layer)".into()))?;
    Ok((shape, out))
}

fn input_shape(dims: &[Value]) -> std::result::Result<Shape, String> {
    let d: Option<Vec<usize>> = dims
        .iter()
        .map(|v| v.as_u64().map(|n| n as usize))
        .collect();
    match d.as_deref() {
        Some(&[n]) => Ok(Shape::Flat(n)),
        Some(&[h, w, c]) => Ok(Shape::image(h, w, c)),
        _ => Err(format!(
            "input shape {dims:?} is not [features] or [h, w, c]"
        )),
    }
}

fn usize_of(v: &Value, what: &str) -> std::result::Result<usize, String> {
    v.as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| format!("{what} {v} is not a non-negative integer"))
}

fn pair_of(v: &Value, what: &str) -> std::result::Result<[usize; 2], String> {
    match v.as_array().map(|a| a.as_slice()) {
        Some([h, w]) => Ok([usize_of(h, what)?, usize_of(w, what)?]),
        _ => usize_of(v, what).map(|k| [k, k]),
    }
}

fn padding_of(v: &Value) -> std::result::Result<Padding, String> {
    match v.as_str() {
        Some("valid") | None => Ok(Padding::Valid),
        Some("same") => Ok(Padding::Same),
        Some(p) => Err(format!("padding {p:?} is not supported")),
    }
}

fn channels_last(c: &Value) -> std::result::Result<(), String> {
    match c["data_format"].as_str() {
        None | Some("channels_last") => Ok(()),
        Some(f) => Err(format!(
            "data_format {f:?}: only channels_last is supported"
        )),
    }
}

/// An activation after a layer: none, a fused ReLU, a separate layer, or the loss's softmax.
fn activation(name: &str, last: bool) -> std::result::Result<Option<LayerSpec>, String> {
    Ok(match name {
        "linear" => None,
        "softmax" if last => None,
        "relu" => Some(LayerSpec::Relu),
        "sigmoid" => Some(LayerSpec::Activation(Activation::Sigmoid)),
        "tanh" => Some(LayerSpec::Activation(Activation::Tanh)),
        other => return Err(format!("activation {other:?} is not supported here")),
    })
}

fn keras_layer(class: &str, c: &Value, last: bool) -> std::result::Result<Vec<LayerSpec>, String> {
    let act = |c: &Value| activation(c["activation"].as_str().unwrap_or("linear"), last);
    let mut out = Vec::new();
    match class {
        "InputLayer" => {}
        "Dense" => {
            out.push(LayerSpec::Dense(usize_of(&c["units"], "units")?));
            out.extend(act(c)?);
        }
        "Conv2D" => {
            channels_last(c)?;
            if c["dilation_rate"].as_array().is_some_and(|d| d.iter().any(|v| v != 1))
                || c["groups"].as_u64().is_some_and(|g| g != 1)
            {
                return Err("dilations and groups are not supported".into());
            }
            out.push(LayerSpec::Conv2D(Conv2D {
                filters: usize_of(&c["filters"], "filters")?,
                kernel_size: pair_of(&c["kernel_size"], "kernel_size")?,
                strides: pair_of(&c["strides"], "strides")?,
                padding: padding_of(&c["padding"])?,
                use_bias: c["use_bias"].as_bool().unwrap_or(true),
            }));
            out.extend(act(c)?);
        }
        "MaxPooling2D" | "AveragePooling2D" => {
            channels_last(c)?;
            let pool_size = pair_of(&c["pool_size"], "pool_size")?;
            let strides = if c["strides"].is_null() {
                pool_size
            } else {
                pair_of(&c["strides"], "strides")?
            };
            let p = Pool2D {
                pool_size,
                strides,
                padding: padding_of(&c["padding"])?,
            };
            out.push(if class == "MaxPooling2D" {
                LayerSpec::MaxPool2D(p)
            } else {
                LayerSpec::AvgPool2D(p)
            });
        }
        "GlobalAveragePooling2D" => {
            channels_last(c)?;
            if c["keepdims"].as_bool() == Some(true) {
                return Err("keepdims=True is not supported".into());
            }
            out.push(LayerSpec::GlobalAvgPool2D);
        }
        "Flatten" => out.push(LayerSpec::Flatten),
        "BatchNormalization" => {
            let axis = c["axis"].as_i64().or_else(|| c["axis"][0].as_i64());
            if !matches!(axis, None | Some(-1) | Some(3) | Some(1)) {
                return Err(format!("axis {axis:?}: only the last axis is supported"));
            }
            if c["renorm"].as_bool() == Some(true) || c["synchronized"].as_bool() == Some(true) {
                return Err("renorm and synchronized batch norm are not supported".into());
            }
            let mut config = BatchNormConfig::keras(1);
            if let Some(e) = c["epsilon"].as_f64() {
                config.epsilon = e as f32;
            }
            if let Some(m) = c["momentum"].as_f64() {
                config.momentum = Some(m);
            }
            config.center = c["center"].as_bool().unwrap_or(true);
            config.scale = c["scale"].as_bool().unwrap_or(true);
            out.push(if config == BatchNormConfig::keras(1) {
                LayerSpec::BatchNorm
            } else {
                LayerSpec::BatchNormWith(config)
            });
        }
        "Activation" => out.extend(activation(
            c["activation"].as_str().unwrap_or("?"),
            last,
        )?),
        "ReLU" => out.push(LayerSpec::Relu),
        "Dropout" => {
            let r = c["rate"].as_f64().ok_or("rate is missing")?;
            out.push(LayerSpec::Dropout(r as f32));
        }
        other => {
            return Err(format!(
                "layer kind {other} is not supported (Dense, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten, BatchNormalization, Activation, ReLU, Dropout are)"
            ))
        }
    }
    Ok(out)
}
