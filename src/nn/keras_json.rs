//! Importing a Keras `Sequential` model's `model.to_json()` (Keras 3 or tf.keras 2). Every
//! field of a supported layer's config is either honoured exactly or refused with
//! [`Error::Keras`], naming the layer and the field: an import never builds a silently
//! different model. A softmax on the last layer is the loss's (fused).

use serde_json::Value;

use crate::nn::error::{Error, Result};
use crate::nn::keras_fields::{dtype_ok, input_shape, positive, seed_ok, Fields};
use crate::nn::layers::conv2d::Conv2D;
use crate::nn::layers::pool2d::Pool2D;
use crate::nn::registry::LayerSpec;
use crate::nn::shape::Shape;
use crate::BatchNormConfig;

/// Fields of Dense and Conv2D that this crate does not implement: refused when set.
const WEIGHTED_EXTRAS: &[&str] = &[
    "kernel_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "bias_constraint",
    "lora_rank",
    "lora_alpha",
    "quantization_config",
];

/// The layer kinds this importer reads.
const SUPPORTED: &str = "InputLayer, Dense, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten, BatchNormalization, Activation, ReLU, Dropout";

/// The input shape and layers of a Keras `Sequential` model's `to_json()`.
pub fn from_keras_json(text: &str) -> Result<(Shape, Vec<LayerSpec>)> {
    from_keras_json_labeled(text).map(|(shape, layers, _)| (shape, layers))
}

/// As [`from_keras_json`], with each layer's Keras label (`Keras layer 3 "my_gap"
/// (GlobalAveragePooling2D)`: its position in `config.layers`, its name and class), for
/// [`check_network_labeled`](crate::nn::check_network_labeled) to name the user's layer
/// rather than its position among the specs (a Conv2D with `relu` is two of them, and the
/// InputLayer none).
pub fn from_keras_json_labeled(text: &str) -> Result<(Shape, Vec<LayerSpec>, Vec<String>)> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| Error::Model(format!("not a JSON document: {e}")))?;
    if doc["class_name"] != "Sequential" {
        return Err(Error::Model(format!(
            "a Keras Sequential model is expected, got class_name {}",
            doc["class_name"]
        )));
    }
    let model = &doc["config"];
    let list = model["layers"]
        .as_array()
        .ok_or_else(|| Error::Model("config.layers is missing".into()))?;
    let whole = |field: &str, why: String| Error::Keras {
        index: None,
        name: model["name"].as_str().unwrap_or("sequential").to_string(),
        class: "Sequential".into(),
        field: field.into(),
        why,
    };
    if !matches!(model["trainable"], Value::Null | Value::Bool(true)) {
        return Err(whole(
            "trainable",
            "a frozen model (trainable false) is not supported".into(),
        ));
    }
    dtype_ok(&model["dtype"]).map_err(|why| whole("dtype", why))?;
    // The input shape: the InputLayer's, or the first layer's (tf.keras' batch_input_shape),
    // or the model's build_input_shape. Every place that gives one must agree with it.
    let first = list.first().map(|l| &l["config"]);
    let given = first.and_then(|c| {
        ["batch_shape", "batch_input_shape"]
            .into_iter()
            .find(|&k| !c[k].is_null())
            .map(|k| (k, &c[k]))
    });
    let shape = match (given, &model["build_input_shape"]) {
        (Some((key, v)), _) => input_shape(v).map_err(|why| match Fields::new(0, &list[0]) {
            Ok(f) => f.err(key, why),
            Err(e) => e,
        })?,
        (None, Value::Null) => {
            return Err(Error::Model(
                "the model has no input shape (build it with an Input layer)".into(),
            ))
        }
        (None, v) => input_shape(v).map_err(|why| whole("build_input_shape", why))?,
    };
    if !model["build_input_shape"].is_null() {
        let built = input_shape(&model["build_input_shape"])
            .map_err(|why| whole("build_input_shape", why))?;
        if built != shape {
            return Err(whole(
                "build_input_shape",
                format!("{built} differs from the input layer's {shape}"),
            ));
        }
    }
    let mut walk = Walk {
        shape,
        rank: if matches!(shape, Shape::Image { .. }) {
            4
        } else {
            2
        },
    };
    let (mut out, mut labels) = (Vec::new(), Vec::new());
    for (i, layer) in list.iter().enumerate() {
        let mut f = Fields::new(i, layer)?;
        let specs = walk.layer(&mut f, i + 1 == list.len())?;
        labels.extend(
            specs
                .iter()
                .map(|_| format!("Keras layer {i} {:?} ({})", f.name, f.class)),
        );
        out.extend(specs);
        f.finish()?;
    }
    Ok((shape, out, labels))
}

/// The walk over the layers: the model's input shape, and the rank of the tensor between
/// layers (2: vectors, 4: NHWC maps).
struct Walk {
    shape: Shape,
    rank: usize,
}

impl Walk {
    /// An input shape given on a layer (`key`): it must be the model's.
    fn input(&self, f: &mut Fields, key: &'static str) -> Result<()> {
        let Some(v) = f.value(key) else {
            return Ok(());
        };
        let shape = input_shape(v).map_err(|why| f.err(key, why))?;
        if shape != self.shape {
            return Err(f.err(
                key,
                format!(
                    "{shape} differs from the model's input shape {}",
                    self.shape
                ),
            ));
        }
        Ok(())
    }

    fn layer(&mut self, f: &mut Fields, last: bool) -> Result<Vec<LayerSpec>> {
        if f.config.is_none() {
            return Err(f.err("config", "is missing".into()));
        }
        let class = f.class;
        // Keras 3's InputLayer, and tf.keras' input shape on the first layer.
        self.input(f, "batch_shape")?;
        self.input(f, "batch_input_shape")?;
        f.common()?;
        if class == "InputLayer" {
            if f.index != 0 {
                return Err(f.err("class_name", "an InputLayer after the first layer".into()));
            }
            if f.value("batch_shape").is_none() && f.value("batch_input_shape").is_none() {
                return Err(f.err("batch_shape", "is missing".into()));
            }
            f.flag_is("sparse", false, "sparse inputs")?;
            f.flag_is("ragged", false, "ragged inputs")?;
            f.flag_is("optional", false, "an optional input")?;
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        match class {
            "Dense" => {
                let units = f.count("units")?;
                if !f.flag("use_bias", true)? {
                    return Err(f.err(
                        "use_bias",
                        "false (a Dense layer without bias) is not supported".into(),
                    ));
                }
                f.initializer("kernel_initializer", "GlorotUniform")?;
                f.initializer("bias_initializer", "Zeros")?;
                f.no_extras(WEIGHTED_EXTRAS)?;
                out.push(LayerSpec::Dense(units));
                out.extend(f.activation("activation", last)?);
                self.rank = 2;
            }
            "Conv2D" => {
                f.channels_last()?;
                let dilation = f.pair("dilation_rate", Some([1, 1]))?;
                if dilation != [1, 1] {
                    return Err(f.err(
                        "dilation_rate",
                        format!("{dilation:?}: dilated convolutions are not supported"),
                    ));
                }
                if let Some(v) = f.value("groups") {
                    if positive(v) != Ok(1) {
                        return Err(f.err(
                            "groups",
                            format!("{v}: grouped convolutions are not supported"),
                        ));
                    }
                }
                let conv = Conv2D {
                    filters: f.count("filters")?,
                    kernel_size: f.pair("kernel_size", None)?,
                    strides: f.pair("strides", Some([1, 1]))?,
                    padding: f.padding()?,
                    use_bias: f.flag("use_bias", true)?,
                };
                f.initializer("kernel_initializer", "GlorotUniform")?;
                if conv.use_bias {
                    f.initializer("bias_initializer", "Zeros")?;
                } else {
                    f.get("bias_initializer"); // no bias: nothing to initialize
                }
                f.no_extras(WEIGHTED_EXTRAS)?;
                out.push(LayerSpec::Conv2D(conv));
                out.extend(f.activation("activation", last)?);
                self.rank = 4;
            }
            "MaxPooling2D" | "AveragePooling2D" => {
                f.channels_last()?;
                let pool_size = f.pair("pool_size", Some([2, 2]))?;
                let p = Pool2D {
                    pool_size,
                    // Keras: strides None means the pool size.
                    strides: f.pair("strides", Some(pool_size))?,
                    padding: f.padding()?,
                };
                out.push(if class == "MaxPooling2D" {
                    LayerSpec::MaxPool2D(p)
                } else {
                    LayerSpec::AvgPool2D(p)
                });
                self.rank = 4;
            }
            "GlobalAveragePooling2D" => {
                f.channels_last()?;
                f.flag_is("keepdims", false, "a [1, 1, channels] map")?;
                out.push(LayerSpec::GlobalAvgPool2D);
                self.rank = 2;
            }
            "Flatten" => {
                f.channels_last()?;
                out.push(LayerSpec::Flatten);
                self.rank = 2;
            }
            "BatchNormalization" => out.push(self.batch_norm(f)?),
            "Activation" => {
                if f.get("activation").is_none() {
                    return Err(f.err("activation", "is missing".into()));
                }
                out.extend(f.activation("activation", last)?);
            }
            "ReLU" => {
                if let Some(v) = f.value("max_value") {
                    return Err(f.err("max_value", format!("{v} (a capped ReLU) is not supported")));
                }
                f.number_is("negative_slope", 0.0, "a leaky ReLU")?;
                f.number_is("threshold", 0.0, "a shifted ReLU")?;
                out.push(LayerSpec::Relu);
            }
            "Dropout" => {
                let rate = f.number("rate", None)?;
                if !(0.0..1.0).contains(&rate) {
                    return Err(f.err("rate", format!("{rate} is not in [0, 1)")));
                }
                f.unset("noise_shape", "a noise shape (masks shared across axes)")?;
                // Any seed: the masks are this crate's own draws.
                if let Some(v) = f.value("seed") {
                    seed_ok(v).map_err(|why| f.err("seed", why))?;
                }
                // Checked as stored: a rate just below 1 in f64 can round to 1 in f32.
                let stored = rate as f32;
                if !(0.0..1.0).contains(&stored) {
                    return Err(f.err(
                        "rate",
                        format!("{rate} rounds to {stored} in float32, not in [0, 1)"),
                    ));
                }
                out.push(LayerSpec::Dropout(stored));
            }
            other => {
                return Err(f.err(
                    "class_name",
                    format!("layer kind {other} is not supported ({SUPPORTED} are)"),
                ))
            }
        }
        Ok(out)
    }

    fn batch_norm(&mut self, f: &mut Fields) -> Result<LayerSpec> {
        // The channel axis: the last of a vector [batch, features] or of an NHWC map.
        let last_axis = self.rank as i64 - 1;
        if let Some(v) = f.value("axis") {
            let axis = match v.as_array().map(Vec::as_slice) {
                Some([a]) => a.as_i64(),
                Some(_) => None,
                None => v.as_i64(),
            };
            if !matches!(axis, Some(a) if a == -1 || a == last_axis) {
                return Err(f.err(
                    "axis",
                    format!(
                        "{v}: only the channel axis of this rank-{} tensor (-1 or {last_axis}) is supported",
                        self.rank
                    ),
                ));
            }
        }
        let epsilon = f.number("epsilon", Some(1e-3))?;
        if !((epsilon as f32).is_finite() && epsilon as f32 > 0.0) {
            return Err(f.err(
                "epsilon",
                format!("{epsilon} must be a positive number (in float32)"),
            ));
        }
        let momentum = f.number("momentum", Some(0.99))?;
        if !(0.0..=1.0).contains(&momentum) {
            return Err(f.err("momentum", format!("{momentum} is not in [0, 1]")));
        }
        let center = f.flag("center", true)?;
        let scale = f.flag("scale", true)?;
        if center {
            f.initializer("beta_initializer", "Zeros")?;
        } else {
            f.get("beta_initializer");
        }
        if scale {
            f.initializer("gamma_initializer", "Ones")?;
        } else {
            f.get("gamma_initializer");
        }
        f.initializer("moving_mean_initializer", "Zeros")?;
        f.initializer("moving_variance_initializer", "Ones")?;
        f.no_extras(&[
            "beta_regularizer",
            "gamma_regularizer",
            "beta_constraint",
            "gamma_constraint",
        ])?;
        f.flag_is("synchronized", false, "synchronized batch norm")?;
        if f.flag("renorm", false)? {
            return Err(f.err(
                "renorm",
                "true (batch renormalization) is not supported".into(),
            ));
        }
        // Unused without renorm, as in Keras.
        f.get("renorm_clipping");
        f.get("renorm_momentum");
        f.unset("virtual_batch_size", "a virtual batch size")?;
        f.unset("adjustment", "an adjustment function")?;
        // tf.keras' choice of kernel, not of arithmetic.
        if let Some(v) = f.value("fused") {
            if !v.is_boolean() {
                return Err(f.err("fused", format!("{v} is not true, false or null")));
            }
        }
        let config = BatchNormConfig {
            epsilon: epsilon as f32,
            momentum: Some(momentum),
            center,
            scale,
            ..BatchNormConfig::keras(1)
        };
        config
            .validate()
            .map_err(|e| f.err("config", e.to_string()))?;
        Ok(if config == BatchNormConfig::keras(1) {
            LayerSpec::BatchNorm
        } else {
            LayerSpec::BatchNormWith(config)
        })
    }
}
