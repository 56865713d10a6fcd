//! Describing a model in words: the compact layer string of the command line
//! (`conv:32:3,bn,relu,maxpool:2,flatten,dense:64,relu,dense:10`), for the layer kinds this
//! crate supports (anything else is named in the error). Keras `to_json()`: `keras_json.rs`.

use crate::nn::error::{Error, Result};
use crate::nn::layers::activation::Activation;
use crate::nn::layers::conv2d::Conv2D;
use crate::nn::layers::pool2d::Pool2D;
use crate::nn::registry::LayerSpec;
use crate::nn::shape::Padding;

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

/// Optional `STRIDE`, then optional `same|valid`, after a window size: each at most once, in
/// that order (`conv:4:3:valid:same` is refused, not read as its last word).
fn window_options(
    kind: &str,
    rest: &[&str],
    default_stride: [usize; 2],
) -> std::result::Result<([usize; 2], Padding), String> {
    let padding_of = |s: &str| match s {
        "same" => Some(Padding::Same),
        "valid" => Some(Padding::Valid),
        _ => None,
    };
    let (stride, rest) = match rest.split_first() {
        Some((s, more)) if padding_of(s).is_none() => (pair(s, "the stride")?, more),
        _ => (default_stride, rest),
    };
    let (padding, rest) = match rest.split_first() {
        Some((s, more)) => match padding_of(s) {
            Some(p) => (p, more),
            None => {
                return Err(format!(
                    "{kind}: unexpected {s:?} (after the stride comes same or valid)"
                ))
            }
        },
        None => (Padding::Valid, rest),
    };
    match rest.first() {
        None => Ok((stride, padding)),
        Some(extra) => Err(format!(
            "{kind}: unexpected {extra:?} after the padding (a stride, then same or valid, each at most once)"
        )),
    }
}

fn parse_token(t: &str) -> std::result::Result<LayerSpec, String> {
    let parts: Vec<&str> = t.split(':').collect();
    let (kind, args) = match parts.split_first() {
        Some((kind, args)) => (kind.to_ascii_lowercase(), args),
        None => return Err("an empty layer".into()),
    };
    // Exactly the documented arguments: `usage` names them.
    let arity = |min: usize, max: usize, usage: &str| {
        if (min..=max).contains(&args.len()) {
            Ok(())
        } else if args.len() > max {
            Err(format!(
                "{kind} takes {}; unexpected {:?} (usage: {usage})",
                match max {
                    0 => "no arguments".to_string(),
                    1 => "one argument".to_string(),
                    n => format!("at most {n} arguments"),
                },
                args[max..].join(":")
            ))
        } else {
            Err(format!("{kind} needs more arguments (usage: {usage})"))
        }
    };
    Ok(match kind.as_str() {
        "dense" => {
            arity(1, 1, "dense:UNITS")?;
            LayerSpec::Dense(number(args[0], "units")?)
        }
        "conv" | "conv2d" => {
            arity(2, 4, "conv:FILTERS:K[:STRIDE][:same|valid]")?;
            let kernel_size = pair(args[1], "the kernel size")?;
            let (strides, padding) = window_options(&kind, &args[2..], [1, 1])?;
            LayerSpec::Conv2D(Conv2D {
                filters: number(args[0], "filters")?,
                kernel_size,
                strides,
                padding,
                use_bias: true,
            })
        }
        "maxpool" | "avgpool" => {
            arity(1, 3, &format!("{kind}:K[:STRIDE][:same|valid]"))?;
            let pool_size = pair(args[0], "the pool size")?;
            let (strides, padding) = window_options(&kind, &args[1..], pool_size)?;
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
        "dropout" => {
            arity(1, 1, "dropout:RATE")?;
            match args[0].parse::<f32>() {
                Ok(r) if (0.0..1.0).contains(&r) => LayerSpec::Dropout(r),
                _ => return Err(format!("the rate must lie in [0, 1), got {:?}", args[0])),
            }
        }
        bare @ ("gap" | "flatten" | "bn" | "batchnorm" | "relu" | "sigmoid" | "tanh") => {
            arity(0, 0, bare)?;
            match bare {
                "gap" => LayerSpec::GlobalAvgPool2D,
                "flatten" => LayerSpec::Flatten,
                "bn" | "batchnorm" => LayerSpec::BatchNorm,
                "relu" => LayerSpec::Relu,
                "sigmoid" => LayerSpec::Activation(Activation::Sigmoid),
                _ => LayerSpec::Activation(Activation::Tanh),
            }
        }
        other => return Err(format!("unknown layer {other:?} (expected {GRAMMAR})")),
    })
}

/// `2`, or `2x3` when the two sides differ.
fn sides([h, w]: [usize; 2]) -> String {
    if h == w {
        h.to_string()
    } else {
        format!("{h}x{w}")
    }
}

fn padding(p: Padding) -> &'static str {
    match p {
        Padding::Valid => "valid",
        Padding::Same => "same",
    }
}

/// A layer in words for messages (`Conv2D(4, 9x9, stride 1, valid)`), not its Rust form.
impl std::fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let window = |p: &Pool2D| {
            let [kh, kw] = p.pool_size;
            format!(
                "{kh}x{kw}, stride {}, {}",
                sides(p.strides),
                padding(p.padding)
            )
        };
        match self {
            LayerSpec::Dense(units) => write!(f, "Dense({units})"),
            LayerSpec::BatchNorm => write!(f, "BatchNormalization"),
            LayerSpec::BatchNormWith(c) => write!(
                f,
                "BatchNormalization(epsilon {}, momentum {}{}{}{})",
                c.epsilon,
                c.momentum.map_or("none".into(), |m| m.to_string()),
                if c.center { "" } else { ", no center" },
                if c.scale { "" } else { ", no scale" },
                if c.relu { ", ReLU" } else { "" }
            ),
            LayerSpec::Relu => write!(f, "ReLU"),
            LayerSpec::Activation(Activation::Sigmoid) => write!(f, "Activation(sigmoid)"),
            LayerSpec::Activation(Activation::Tanh) => write!(f, "Activation(tanh)"),
            LayerSpec::Dropout(rate) => write!(f, "Dropout(rate {rate})"),
            LayerSpec::Conv2D(c) => {
                let [kh, kw] = c.kernel_size;
                write!(
                    f,
                    "Conv2D({}, {kh}x{kw}, stride {}, {}{})",
                    c.filters,
                    sides(c.strides),
                    padding(c.padding),
                    if c.use_bias { "" } else { ", no bias" }
                )
            }
            LayerSpec::MaxPool2D(p) => write!(f, "MaxPooling2D({})", window(p)),
            LayerSpec::AvgPool2D(p) => write!(f, "AveragePooling2D({})", window(p)),
            LayerSpec::GlobalAvgPool2D => write!(f, "GlobalAveragePooling2D"),
            LayerSpec::Flatten => write!(f, "Flatten"),
        }
    }
}
