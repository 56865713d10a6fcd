//! One Keras layer's config as the importer reads it (`keras_json.rs`): each field read is
//! recorded, so that a field the importer did not read is refused rather than ignored; the
//! readers check a value as the model will store it (f32 where it keeps f32) and name the
//! layer and the field in every error.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::nn::error::{Error, Result};
use crate::nn::layers::activation::Activation;
use crate::nn::registry::LayerSpec;
use crate::nn::shape::{Padding, Shape};

/// One layer's config, with the fields read so far (so that the unread ones are refused).
pub(super) struct Fields<'a> {
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) class: &'a str,
    pub(super) config: Option<&'a Map<String, Value>>,
    read: HashSet<&'a str>,
}

impl<'a> Fields<'a> {
    pub(super) fn new(index: usize, layer: &'a Value) -> Result<Fields<'a>> {
        let class = layer["class_name"].as_str().unwrap_or("?");
        let config = layer["config"].as_object();
        let name = config
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .map_or_else(|| format!("layer {index}"), str::to_string);
        let f = Fields {
            index,
            name,
            class,
            config,
            read: HashSet::from(["name"]),
        };
        // A class registered by the user under a Keras name is not the Keras layer.
        if !matches!(layer["registered_name"], Value::Null) {
            return Err(f.err(
                "registered_name",
                format!(
                    "{} is a custom class, not Keras' {class}",
                    layer["registered_name"]
                ),
            ));
        }
        if let Some(module) = layer["module"].as_str() {
            if !(module == "keras" || module.starts_with("keras.")) {
                return Err(f.err(
                    "module",
                    format!("{module:?} is not Keras' (a custom layer)"),
                ));
            }
        }
        Ok(f)
    }

    pub(super) fn err(&self, field: &str, why: String) -> Error {
        Error::Keras {
            index: Some(self.index),
            name: self.name.clone(),
            class: self.class.to_string(),
            field: field.into(),
            why,
        }
    }

    /// The field's value, `None` when absent; marks it read.
    pub(super) fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        let v = self.config?.get(key)?;
        self.read.insert(key);
        Some(v)
    }

    /// The field, `None` when absent or null.
    pub(super) fn value(&mut self, key: &'static str) -> Option<&'a Value> {
        self.get(key).filter(|v| !v.is_null())
    }

    /// A field that must be absent or null (an unsupported option left unset).
    pub(super) fn unset(&mut self, key: &'static str, what: &str) -> Result<()> {
        match self.value(key) {
            None => Ok(()),
            Some(v) => Err(self.err(key, format!("{v}: {what} is not supported"))),
        }
    }

    /// A boolean field, `default` when absent.
    pub(super) fn flag(&mut self, key: &'static str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.err(key, format!("{v} is not true or false"))),
        }
    }

    /// A boolean field that must be `want` (or absent).
    pub(super) fn flag_is(&mut self, key: &'static str, want: bool, what: &str) -> Result<()> {
        if self.flag(key, want)? != want {
            return Err(self.err(key, format!("{} ({what}) is not supported", !want)));
        }
        Ok(())
    }

    /// A number field, `default` when absent.
    pub(super) fn number(&mut self, key: &'static str, default: Option<f64>) -> Result<f64> {
        match (self.get(key), default) {
            (None, Some(d)) => Ok(d),
            (None, None) => Err(self.err(key, "is missing".into())),
            (Some(v), _) => v
                .as_f64()
                .ok_or_else(|| self.err(key, format!("{v} is not a number"))),
        }
    }

    /// A number field that must equal `want` (or be absent).
    pub(super) fn number_is(&mut self, key: &'static str, want: f64, what: &str) -> Result<()> {
        let v = self.number(key, Some(want))?;
        if v != want {
            return Err(self.err(key, format!("{v} ({what}) is not supported; only {want}")));
        }
        Ok(())
    }

    /// A positive integer field (required).
    pub(super) fn count(&mut self, key: &'static str) -> Result<usize> {
        match self.value(key) {
            Some(v) => positive(v).map_err(|why| self.err(key, why)),
            None => Err(self.err(key, "is missing".into())),
        }
    }

    /// An `n` or `[h, w]` field of positive integers, `default` when absent.
    pub(super) fn pair(
        &mut self,
        key: &'static str,
        default: Option<[usize; 2]>,
    ) -> Result<[usize; 2]> {
        let v = match (self.value(key), default) {
            (Some(v), _) => v,
            (None, Some(d)) => return Ok(d),
            (None, None) => return Err(self.err(key, "is missing".into())),
        };
        let pair = match v.as_array().map(Vec::as_slice) {
            Some([h, w]) => positive(h).and_then(|h| Ok([h, positive(w)?])),
            Some(_) => Err(format!("{v} is not n or [h, w]")),
            None => positive(v).map(|k| [k, k]),
        };
        pair.map_err(|why| self.err(key, why))
    }

    /// `padding`: `valid` (Keras' default) or `same`.
    pub(super) fn padding(&mut self) -> Result<Padding> {
        match self.get("padding") {
            None => Ok(Padding::Valid),
            Some(Value::String(p)) if p == "valid" => Ok(Padding::Valid),
            Some(Value::String(p)) if p == "same" => Ok(Padding::Same),
            Some(v) => Err(self.err("padding", format!("{v} is not supported (valid or same)"))),
        }
    }

    /// `data_format`: channels-last (or unset: Keras' default) only.
    pub(super) fn channels_last(&mut self) -> Result<()> {
        match self.value("data_format") {
            None => Ok(()),
            Some(Value::String(f)) if f == "channels_last" => Ok(()),
            Some(v) => Err(self.err(
                "data_format",
                format!("{v} is not supported: the feature maps are channels_last (NHWC)"),
            )),
        }
    }

    /// An activation field: none, a ReLU, a separate layer, or the loss's softmax (last).
    pub(super) fn activation(
        &mut self,
        key: &'static str,
        last: bool,
    ) -> Result<Option<LayerSpec>> {
        let name = match self.get(key) {
            None | Some(Value::Null) => "linear",
            Some(Value::String(s)) => s.as_str(),
            Some(v) => return Err(self.err(key, format!("{v} is not a built-in activation name"))),
        };
        Ok(match name {
            "linear" => None,
            "softmax" if last => None,
            "relu" => Some(LayerSpec::Relu),
            "sigmoid" => Some(LayerSpec::Activation(Activation::Sigmoid)),
            "tanh" => Some(LayerSpec::Activation(Activation::Tanh)),
            "softmax" => {
                return Err(self.err(
                    key,
                    "softmax is supported only on the last layer (the loss's)".into(),
                ))
            }
            other => {
                return Err(self.err(
                    key,
                    format!(
                        "{other:?} is not supported (linear, relu, sigmoid, tanh, softmax last)"
                    ),
                ))
            }
        })
    }

    /// An initializer field that must be `want` (`GlorotUniform`, `Zeros`, `Ones`): this
    /// crate's initial values. Its seed is this crate's own.
    pub(super) fn initializer(&mut self, key: &'static str, want: &str) -> Result<()> {
        let Some(v) = self.get(key) else {
            return Ok(());
        };
        let snake = match want {
            "GlorotUniform" => "glorot_uniform",
            "Zeros" => "zeros",
            _ => "ones",
        };
        let ok = match v {
            Value::String(s) => s == want || s == snake,
            Value::Object(o) => {
                let class = o.get("class_name").and_then(Value::as_str);
                // Every option unset, but a random initializer's seed.
                let config_ok = match o.get("config") {
                    None | Some(Value::Null) => true,
                    Some(Value::Object(c)) => c.iter().all(|(k, v)| {
                        v.is_null() || (k == "seed" && v.is_number() && want == "GlorotUniform")
                    }),
                    Some(_) => false,
                };
                // A seed that is a number but not one Keras takes is refused as such.
                if let Some(seed) = o.get("config").and_then(|c| c.get("seed")) {
                    if config_ok && class_is(class, want, snake) && !seed.is_null() {
                        seed_ok(seed).map_err(|why| self.err(key, format!("seed {why}")))?;
                    }
                }
                class_is(class, want, snake)
                    && matches!(o.get("registered_name"), None | Some(Value::Null))
                    && config_ok
            }
            _ => false,
        };
        if !ok {
            return Err(self.err(
                key,
                format!("{v} is not supported: only {want} (this crate's initial values)"),
            ));
        }
        Ok(())
    }

    /// The fields of every layer: name (read), trainable, dtype, autocast.
    pub(super) fn common(&mut self) -> Result<()> {
        self.flag_is("trainable", true, "a frozen layer")?;
        if let Some(v) = self.get("dtype") {
            dtype_ok(v).map_err(|why| self.err("dtype", why))?;
        }
        // Mixed precision only: with float32 it changes nothing.
        self.flag("autocast", true)?;
        Ok(())
    }

    /// A weighted layer's regularizers, constraints and adapters: none supported.
    pub(super) fn no_extras(&mut self, keys: &[&'static str]) -> Result<()> {
        for &k in keys {
            self.unset(k, "a regularizer, constraint, LoRA or quantization option")?;
        }
        Ok(())
    }

    /// Refuses every field no handler read.
    pub(super) fn finish(self) -> Result<()> {
        let Some(config) = self.config else {
            return Ok(());
        };
        match config.keys().find(|k| !self.read.contains(k.as_str())) {
            None => Ok(()),
            Some(k) => Err(self.err(
                k,
                format!(
                    "{} is not a field this importer knows; refused rather than ignored",
                    config[k]
                ),
            )),
        }
    }
}

/// Whether an initializer's class is `want` (its CamelCase or snake_case name).
pub(super) fn class_is(class: Option<&str>, want: &str, snake: &str) -> bool {
    class == Some(want) || class == Some(snake)
}

/// `Ok` for a seed Keras takes: an integer of a signed 64-bit range (this crate draws its
/// own; the seed is read only to refuse what Keras itself would).
pub(super) fn seed_ok(v: &Value) -> std::result::Result<(), String> {
    match v {
        _ if v.is_i64() => Ok(()),
        _ if v.is_u64() => Err(format!(
            "{v} is out of range: a seed is a signed 64-bit integer (at most {})",
            i64::MAX
        )),
        _ => Err(format!("{v} is not an integer")),
    }
}

/// `Ok` for float32 (a string, a DTypePolicy or tf.keras' Policy), or unset.
pub(super) fn dtype_ok(v: &Value) -> std::result::Result<(), String> {
    let name = match v {
        Value::Null => return Ok(()),
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => {
            let class = o.get("class_name").and_then(Value::as_str);
            match class {
                Some("DTypePolicy" | "FloatDTypePolicy" | "Policy") => {
                    o.get("config").and_then(|c| c["name"].as_str())
                }
                _ => None,
            }
        }
        _ => None,
    };
    match name {
        Some("float32") => Ok(()),
        _ => Err(format!("{v}: only float32 is supported")),
    }
}

/// A positive integer.
pub(super) fn positive(v: &Value) -> std::result::Result<usize, String> {
    match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!("{v} is not a positive integer")),
    }
}

/// A JSON list as the user wrote it: `[null, 8, 8]`.
pub(super) fn list(dims: &[Value]) -> String {
    let parts: Vec<String> = dims.iter().map(Value::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// A batch shape `[batch, features]` or `[batch, h, w, c]` (batch: null or a count).
pub(super) fn input_shape(v: &Value) -> std::result::Result<Shape, String> {
    let Some(all) = v.as_array() else {
        return Err(format!("{v} is not a list [batch, ...]"));
    };
    let Some((batch, dims)) = all.split_first() else {
        return Err("[] has no batch dimension and no sample shape".into());
    };
    if !batch.is_null() {
        positive(batch).map_err(|why| format!("the batch size {why}"))?;
    }
    let d: Option<Vec<usize>> = dims.iter().map(|d| positive(d).ok()).collect();
    match d.as_deref() {
        Some(&[n]) => Ok(Shape::Flat(n)),
        Some(&[h, w, c]) => Ok(Shape::image(h, w, c)),
        _ => Err(format!(
            "input shape {} is not [features] or [height, width, channels] of positive integers",
            list(dims)
        )),
    }
}
