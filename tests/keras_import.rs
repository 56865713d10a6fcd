//! Keras `to_json()` import: every field of every supported layer, mutated one at a time to
//! odd values (or removed, or joined by an unknown field), gives either exactly the model
//! Keras means or an `Error::Keras` naming that layer and that field: never a panic, never a
//! silently different model. The expected model comes from Keras' semantics, written here
//! independently of the importer.

use serde_json::{json, Value};
use wgpu_batchnorm::nn::{self, Activation, Conv2D, Error, LayerSpec, Padding, Pool2D, Shape};
use wgpu_batchnorm::BatchNormConfig;

const FIXTURE: &str = include_str!("fixtures/keras_cnn_model.json");

/// The fixture as Keras built it (Conv2D+ReLU, BN, MaxPooling2D, Flatten, Dense+softmax),
/// with what each layer means.
fn model_a() -> (Value, Vec<Vec<LayerSpec>>) {
    let doc: Value = serde_json::from_str(FIXTURE).unwrap();
    let conv = Conv2D::new(8, 3).padding(Padding::Same);
    let meaning = vec![
        vec![],
        vec![LayerSpec::Conv2D(conv), LayerSpec::Relu],
        vec![LayerSpec::BatchNorm],
        vec![LayerSpec::MaxPool2D(Pool2D::new(2))],
        vec![LayerSpec::Flatten],
        vec![LayerSpec::Dense(10)],
    ];
    (doc, meaning)
}

/// The other supported kinds, with Keras 3's configs: Conv2D (linear) → ReLU →
/// AveragePooling2D → Activation(tanh) → Dropout → GlobalAveragePooling2D → Dense.
fn model_b() -> (Value, Vec<Vec<LayerSpec>>) {
    let (mut doc, _) = model_a();
    let policy = doc["config"]["layers"][1]["config"]["dtype"].clone();
    let layer = |class: &str, config: Value| {
        let mut config = config;
        config["trainable"] = json!(true);
        config["dtype"] = policy.clone();
        json!({"module": "keras.layers", "class_name": class, "config": config, "registered_name": null})
    };
    let layers = doc["config"]["layers"].as_array().unwrap().clone();
    let mut conv = layers[1].clone();
    conv["config"]["activation"] = json!("linear");
    let new = vec![
        layers[0].clone(),
        conv,
        layer(
            "ReLU",
            json!({"name": "re_lu", "max_value": null, "negative_slope": 0.0, "threshold": 0.0}),
        ),
        layer(
            "AveragePooling2D",
            json!({"name": "average_pooling2d", "pool_size": [2, 2], "padding": "valid", "strides": [2, 2], "data_format": "channels_last"}),
        ),
        layer(
            "Activation",
            json!({"name": "activation", "activation": "tanh"}),
        ),
        layer(
            "Dropout",
            json!({"name": "dropout", "rate": 0.25, "seed": null, "noise_shape": null}),
        ),
        layer(
            "GlobalAveragePooling2D",
            json!({"name": "global_average_pooling2d", "data_format": "channels_last", "keepdims": false}),
        ),
        layers[5].clone(),
    ];
    doc["config"]["layers"] = Value::Array(new);
    let conv = Conv2D::new(8, 3).padding(Padding::Same);
    let meaning = vec![
        vec![],
        vec![LayerSpec::Conv2D(conv)],
        vec![LayerSpec::Relu],
        vec![LayerSpec::AvgPool2D(Pool2D::new(2))],
        vec![LayerSpec::Activation(Activation::Tanh)],
        vec![LayerSpec::Dropout(0.25)],
        vec![LayerSpec::GlobalAvgPool2D],
        vec![LayerSpec::Dense(10)],
    ];
    (doc, meaning)
}

/// The odd values every field is set to.
fn odd_values() -> Vec<Value> {
    [
        "0", "-1", "1", "2", "3", "0.5", "0.99999999999", "18446744073709551615", "1e300", "null", "true", "false", "[]", "[1]", "[2, 2]",
        "[1, 1]", "[3]", "[1, 2]", "[1, 2, 3]", "[null, 8]", "[null, 8, 8, 1]", "{}",
        "\"x\"", "\"same\"", "\"valid\"", "\"SAME\"", "\"causal\"", "\"float32\"",
        "\"float16\"", "\"channels_last\"", "\"channels_first\"", "\"relu\"", "\"linear\"",
        "\"softmax\"", "\"tanh\"", "\"sigmoid\"", "\"relu6\"", "\"zeros\"", "\"ones\"",
        "\"glorot_uniform\"", "\"he_normal\"",
        r#"{"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01}, "registered_name": null}"#,
        r#"{"module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_float16"}, "registered_name": null}"#,
        r#"{"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null}"#,
        r#"{"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": 7}, "registered_name": null}"#,
        r#"{"module": "keras.initializers", "class_name": "HeNormal", "config": {"seed": null}, "registered_name": null}"#,
    ]
    .iter()
    .map(|v| serde_json::from_str(v).unwrap())
    .collect()
}

/// What Keras makes of a layer whose `field` is `value` (`None`: removed).
enum Expect {
    /// The layer means what it meant.
    Same,
    /// It means this instead.
    Changed(Vec<LayerSpec>),
    /// The importer must refuse it, naming the layer and the field.
    Refused,
}

fn positive(v: &Value) -> Option<usize> {
    v.as_u64().filter(|&n| n > 0).map(|n| n as usize)
}

fn pair(v: &Value) -> Option<[usize; 2]> {
    match v.as_array().map(Vec::as_slice) {
        Some([h, w]) => Some([positive(h)?, positive(w)?]),
        Some(_) => None,
        None => positive(v).map(|k| [k, k]),
    }
}

fn is_float32(v: &Value) -> bool {
    v.is_null() || *v == "float32" || v["config"]["name"] == "float32"
}

/// Keras' activation names, as a layer after the weighted one (`last`: the loss's softmax).
fn activation(v: Option<&Value>, last: bool) -> Option<Option<LayerSpec>> {
    match v.map(|v| v.as_str().ok_or(v)) {
        None | Some(Err(Value::Null)) => Some(None),
        Some(Ok("linear")) => Some(None),
        Some(Ok("softmax")) if last => Some(None),
        Some(Ok("relu")) => Some(Some(LayerSpec::Relu)),
        Some(Ok("tanh")) => Some(Some(LayerSpec::Activation(Activation::Tanh))),
        Some(Ok("sigmoid")) => Some(Some(LayerSpec::Activation(Activation::Sigmoid))),
        _ => None,
    }
}

/// Keras' semantics of one field, independently of the importer.
fn expect(
    class: &str,
    field: &str,
    value: Option<&Value>,
    original: &Value,
    was: &[LayerSpec],
    last: bool,
) -> Expect {
    use Expect::*;
    let same_or_refused = |ok: bool| if ok { Same } else { Refused };
    let null_or_absent = value.is_none_or(Value::is_null);
    let changed = |f: &dyn Fn(&mut Vec<LayerSpec>) -> bool| {
        let mut m = was.to_vec();
        match f(&mut m) {
            true if m == was => Same,
            true => Changed(m),
            false => Refused,
        }
    };
    match field {
        "name" => return Same,
        "trainable" => return same_or_refused(value.is_none_or(|v| *v == true)),
        "dtype" => return same_or_refused(value.is_none_or(is_float32)),
        "autocast" => return same_or_refused(value.is_none_or(Value::is_boolean)),
        f if f.ends_with("_regularizer")
            || f.ends_with("_constraint")
            || [
                "lora_rank",
                "lora_alpha",
                "quantization_config",
                "noise_shape",
            ]
            .contains(&f) =>
        {
            return same_or_refused(null_or_absent)
        }
        f if f.ends_with("_initializer") => {
            let want = match f {
                "kernel_initializer" => ["GlorotUniform", "glorot_uniform"],
                "bias_initializer" | "beta_initializer" | "moving_mean_initializer" => {
                    ["Zeros", "zeros"]
                }
                _ => ["Ones", "ones"],
            };
            return same_or_refused(value.is_none_or(|v| {
                v == original
                    || want.iter().any(|w| *v == *w)
                    || (want[0] == "GlorotUniform"
                        && v["class_name"] == "GlorotUniform"
                        && v["config"].as_object().is_some_and(|c| {
                            c.iter()
                                .all(|(k, x)| x.is_null() || (k == "seed" && x.is_i64()))
                        }))
            }));
        }
        "data_format" => {
            return same_or_refused(value.is_none_or(|v| v.is_null() || *v == "channels_last"))
        }
        _ => {}
    }
    let padding = |v: Option<&Value>| match v.map(|v| v.as_str()) {
        None => Some(Padding::Valid),
        Some(Some("valid")) => Some(Padding::Valid),
        Some(Some("same")) => Some(Padding::Same),
        _ => None,
    };
    let bn_config = |m: &mut Vec<LayerSpec>, edit: &dyn Fn(&mut BatchNormConfig)| {
        let mut c = match &m[0] {
            LayerSpec::BatchNormWith(c) => c.clone(),
            _ => BatchNormConfig::keras(1),
        };
        edit(&mut c);
        m[0] = if c == BatchNormConfig::keras(1) {
            LayerSpec::BatchNorm
        } else {
            LayerSpec::BatchNormWith(c)
        };
    };
    match (class, field) {
        ("InputLayer", "batch_shape") => same_or_refused(value == Some(original)),
        ("InputLayer", "sparse" | "ragged" | "optional") => {
            same_or_refused(value.is_none_or(|v| *v == false))
        }
        ("Conv2D", "filters") => changed(&|m| match (value.and_then(positive), &mut m[0]) {
            (Some(n), LayerSpec::Conv2D(c)) => {
                c.filters = n;
                true
            }
            _ => false,
        }),
        ("Conv2D", "kernel_size" | "strides") => {
            let v = match (field, value) {
                ("strides", None | Some(Value::Null)) => Some([1, 1]),
                (_, v) => v.and_then(pair),
            };
            changed(&|m| match (v, &mut m[0]) {
                (Some(k), LayerSpec::Conv2D(c)) => {
                    if field == "strides" {
                        c.strides = k;
                    } else {
                        c.kernel_size = k;
                    }
                    true
                }
                _ => false,
            })
        }
        ("Conv2D" | "MaxPooling2D" | "AveragePooling2D", "padding") => {
            changed(&|m| match (padding(value), &mut m[0]) {
                (Some(p), LayerSpec::Conv2D(c)) => {
                    c.padding = p;
                    true
                }
                (Some(p), LayerSpec::MaxPool2D(c) | LayerSpec::AvgPool2D(c)) => {
                    c.padding = p;
                    true
                }
                _ => false,
            })
        }
        ("Conv2D", "dilation_rate") => {
            same_or_refused(value.is_none_or(|v| v.is_null() || pair(v) == Some([1, 1])))
        }
        ("Conv2D", "groups") => same_or_refused(value.is_none_or(|v| v.is_null() || *v == 1)),
        ("Conv2D", "use_bias") => changed(&|m| match (value, &mut m[0]) {
            (None, _) => true,
            (Some(Value::Bool(b)), LayerSpec::Conv2D(c)) => {
                c.use_bias = *b;
                true
            }
            _ => false,
        }),
        ("Conv2D" | "Dense", "activation") => changed(&|m| match activation(value, last) {
            Some(a) => {
                m.truncate(1);
                m.extend(a);
                true
            }
            None => false,
        }),
        ("Activation", "activation") => changed(&|m| match value.and(activation(value, last)) {
            Some(a) => {
                m.clear();
                m.extend(a);
                true
            }
            None => false,
        }),
        ("Dense", "units") => changed(&|m| match value.and_then(positive) {
            Some(n) => {
                m[0] = LayerSpec::Dense(n);
                true
            }
            None => false,
        }),
        ("Dense", "use_bias") => same_or_refused(value.is_none_or(|v| *v == true)),
        ("MaxPooling2D" | "AveragePooling2D", "pool_size" | "strides") => {
            let v = match value {
                None | Some(Value::Null) => Some([2, 2]), // both default to the other's [2, 2]
                Some(v) => pair(v),
            };
            changed(&|m| match (v, &mut m[0]) {
                (Some(k), LayerSpec::MaxPool2D(p) | LayerSpec::AvgPool2D(p)) => {
                    if field == "strides" {
                        p.strides = k;
                    } else {
                        p.pool_size = k;
                    }
                    true
                }
                _ => false,
            })
        }
        ("GlobalAveragePooling2D", "keepdims") => {
            same_or_refused(value.is_none_or(|v| *v == false))
        }
        ("BatchNormalization", "axis") => same_or_refused(value.is_none_or(|v| {
            [json!(null), json!(-1), json!(3), json!([3]), json!([-1])].contains(v)
        })),
        ("BatchNormalization", "epsilon") => changed(&|m| match value.map(Value::as_f64) {
            None => true,
            Some(Some(e)) if (e as f32).is_finite() && e as f32 > 0.0 => {
                bn_config(m, &|c| c.epsilon = e as f32);
                true
            }
            _ => false,
        }),
        ("BatchNormalization", "momentum") => changed(&|m| match value.map(Value::as_f64) {
            None => true,
            Some(Some(x)) if (0.0..=1.0).contains(&x) => {
                bn_config(m, &|c| c.momentum = Some(x));
                true
            }
            _ => false,
        }),
        ("BatchNormalization", "center" | "scale") => changed(&|m| match value {
            None => true,
            Some(Value::Bool(b)) => {
                bn_config(m, &|c| {
                    if field == "center" {
                        c.center = *b
                    } else {
                        c.scale = *b
                    }
                });
                true
            }
            _ => false,
        }),
        ("BatchNormalization", "synchronized" | "renorm") => {
            same_or_refused(value.is_none_or(|v| *v == false))
        }
        // Unused without renorm, as in Keras.
        ("BatchNormalization", "renorm_clipping" | "renorm_momentum") => Same,
        ("ReLU", "max_value") => same_or_refused(null_or_absent),
        ("ReLU", "negative_slope" | "threshold") => {
            same_or_refused(value.is_none_or(|v| v.as_f64() == Some(0.0)))
        }
        ("Dropout", "rate") => changed(&|m| match value.and_then(Value::as_f64) {
            // Keras' float32 rate: the f64 in the file rounded.
            Some(r) if (0.0..1.0).contains(&(r as f32)) => {
                m[0] = LayerSpec::Dropout(r as f32);
                true
            }
            _ => false,
        }),
        ("Dropout", "seed") => same_or_refused(value.is_none_or(|v| v.is_null() || v.is_i64())),
        // Unknown fields.
        _ => Refused,
    }
}

/// Mutates each field of each layer of `doc` to each odd value (and removes it, and adds an
/// unknown field), checking the import against Keras' meaning.
fn check_every_mutation(doc: &Value, meaning: &[Vec<LayerSpec>]) {
    let (shape, layers) = nn::from_keras_json(&doc.to_string()).unwrap();
    assert_eq!(shape, Shape::image(8, 8, 1));
    assert_eq!(layers, meaning.concat(), "the unmutated model");
    let n = meaning.len();
    let mut checked = 0;
    for i in 0..n {
        let config = doc["config"]["layers"][i]["config"].as_object().unwrap();
        let class = doc["config"]["layers"][i]["class_name"].as_str().unwrap();
        let mut fields: Vec<&str> = config.keys().map(String::as_str).collect();
        fields.push("an_unknown_field");
        for field in fields {
            let original = config.get(field).cloned().unwrap_or(Value::Null);
            let mut values: Vec<Option<Value>> = odd_values().into_iter().map(Some).collect();
            values.push(None);
            for value in values {
                if value.is_none() && !config.contains_key(field) {
                    continue; // removing what is not there
                }
                let mut d = doc.clone();
                let c = d["config"]["layers"][i]["config"].as_object_mut().unwrap();
                match &value {
                    Some(v) => c.insert(field.to_string(), v.clone()),
                    None => c.remove(field),
                };
                let want = expect(
                    class,
                    field,
                    value.as_ref(),
                    &original,
                    &meaning[i],
                    i + 1 == n,
                );
                let got = nn::from_keras_json(&d.to_string());
                let what = format!("layer {i} ({class}) {field} = {value:?}");
                match (want, got) {
                    (Expect::Same, Ok((s, l))) => {
                        assert_eq!((s, l), (shape, layers.clone()), "{what}")
                    }
                    (Expect::Changed(m), Ok((s, l))) => {
                        let mut all = meaning.to_vec();
                        all[i] = m;
                        assert_eq!((s, l), (shape, all.concat()), "{what}");
                    }
                    (
                        Expect::Refused,
                        Err(Error::Keras {
                            index, field: f, ..
                        }),
                    ) => {
                        // A different input shape conflicts with the model's build_input_shape.
                        let named = (index == Some(i) && f == field)
                            || (class == "InputLayer"
                                && index.is_none()
                                && f == "build_input_shape");
                        assert!(named, "{what}: the error names layer {index:?} field {f}");
                    }
                    (Expect::Refused, other) => panic!("{what}: must be refused, got {other:?}"),
                    (_, Err(e)) => panic!("{what}: must be honoured, got {e}"),
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn every_field_of_the_fixture_is_honoured_or_refused_by_name() {
    let (doc, meaning) = model_a();
    check_every_mutation(&doc, &meaning);
}

#[test]
fn every_field_of_the_other_kinds_is_honoured_or_refused_by_name() {
    let (doc, meaning) = model_b();
    check_every_mutation(&doc, &meaning);
}

/// The cases of the issue, with their messages.
#[test]
fn the_reported_imports_are_refused_in_words() {
    let (doc, _) = model_a();
    let case = |edit: &dyn Fn(&mut Value), field: &str, says: &str| {
        let mut d = doc.clone();
        edit(&mut d);
        let e = nn::from_keras_json(&d.to_string()).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(&e, Error::Keras { field: f, .. } if f == field),
            "{field}: {text}"
        );
        assert!(text.contains(says), "{text}");
    };
    let layer = |i: usize, k: &'static str, v: Value| {
        move |d: &mut Value| d["config"]["layers"][i]["config"][k] = v.clone()
    };
    case(&layer(5, "use_bias", json!(false)), "use_bias", "\"dense\"");
    case(
        &layer(2, "axis", json!(1)),
        "axis",
        "\"batch_normalization\"",
    );
    case(&layer(2, "axis", json!([1, 2])), "axis", "channel axis");
    case(
        &layer(2, "epsilon", json!(-1)),
        "epsilon",
        "layer 2 \"batch_normalization\"",
    );
    case(
        &layer(1, "dilation_rate", json!(2)),
        "dilation_rate",
        "dilat",
    );
    case(
        &layer(4, "data_format", json!("channels_first")),
        "data_format",
        "\"flatten\"",
    );
    // Used to panic (`&dims[1..]`).
    case(&layer(0, "batch_shape", json!([])), "batch_shape", "[]");
    // serde's Debug ("[Number(8), Number(8)]") no more.
    case(
        &layer(0, "batch_shape", json!([null, 8, 8])),
        "batch_shape",
        "input shape [8, 8] ",
    );
    let relu = |k: &'static str, v: Value| {
        move |d: &mut Value| {
            let layers = d["config"]["layers"].as_array_mut().unwrap();
            layers.insert(
                2,
                json!({"class_name": "ReLU", "config": {"name": "re_lu", k: v.clone()}}),
            );
        }
    };
    case(&relu("max_value", json!(6.0)), "max_value", "\"re_lu\"");
    case(
        &relu("negative_slope", json!(0.3)),
        "negative_slope",
        "leaky",
    );
    case(&relu("threshold", json!(1.0)), "threshold", "\"re_lu\"");
}

/// A BN epsilon given through the API names its layer too (it used to say only "epsilon").
#[test]
fn a_bad_batch_norm_config_names_its_layer() {
    let config = BatchNormConfig {
        epsilon: -1.0,
        ..BatchNormConfig::keras(1)
    };
    let e = nn::check_network(
        Shape::Flat(4),
        &[
            LayerSpec::Dense(3),
            LayerSpec::BatchNormWith(config),
            LayerSpec::Dense(2),
        ],
    )
    .unwrap_err();
    assert!(e.to_string().contains("layer 1"), "{e}");
}

/// Each float field is checked as the model stores it (f32), and a seed Keras would refuse
/// is refused as out of range, naming the layer and the field (a Dropout rate of
/// 0.99999999999 passed, became 1.0 and failed later as "invalid Dropout(1.0)"; a u64 seed
/// read "not supported: only GlorotUniform").
#[test]
fn values_are_checked_as_stored_and_seeds_in_range() {
    let (doc, _) = model_b();
    let case = |i: usize, edit: &dyn Fn(&mut Value), field: &str, says: &[&str]| {
        let mut d = doc.clone();
        edit(&mut d["config"]["layers"][i]["config"]);
        let e = nn::from_keras_json(&d.to_string()).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(&e, Error::Keras { index: Some(x), field: f, .. } if f == field && *x == i),
            "{field}: {text}"
        );
        for s in says {
            assert!(text.contains(s), "{text} does not say {s:?}");
        }
        assert!(!text.contains("Dropout("), "{text}");
    };
    case(
        5,
        &|c| c["rate"] = json!(0.99999999999),
        "rate",
        &["\"dropout\"", "float32"],
    );
    case(
        5,
        &|c| c["seed"] = json!(u64::MAX),
        "seed",
        &["\"dropout\"", "out of range"],
    );
    case(
        1,
        &|c| c["kernel_initializer"] = json!({"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": u64::MAX}, "registered_name": null}),
        "kernel_initializer",
        &["\"conv2d\"", "seed", "out of range"],
    );
    // The largest seed Keras takes is taken.
    let mut d = doc.clone();
    d["config"]["layers"][5]["config"]["seed"] = json!(i64::MAX);
    nn::from_keras_json(&d.to_string()).unwrap();
}

/// A model error names the Keras layer (its position in `config.layers` and its name), not
/// the position among the importer's specs, and says what the layer received: GAP after
/// Flatten read "layer 2: GlobalAveragePooling2D needs a feature map ... give the model an
/// image input shape" for Keras layer 3 of an image model.
#[test]
fn model_errors_name_the_keras_layer_and_what_it_received() {
    let (mut doc, _) = model_a();
    let layers = doc["config"]["layers"].as_array_mut().unwrap();
    layers.insert(
        5,
        json!({"class_name": "GlobalAveragePooling2D", "config": {"name": "my_gap"}}),
    );
    let text = doc.to_string();
    let (input, specs, labels) = nn::from_keras_json_labeled(&text).unwrap();
    assert_eq!(labels.len(), specs.len());
    let e = nn::check_network_labeled(input, &specs, &labels)
        .unwrap_err()
        .to_string();
    for says in [
        "Keras layer 5 \"my_gap\" (GlobalAveragePooling2D)",
        "after Flatten receives a vector of 128 features",
    ] {
        assert!(e.contains(says), "{e} does not say {says:?}");
    }
    assert!(!e.contains("image input shape"), "{e}");
    // Without labels, the position among the specs (the Conv2D's ReLU is one of them).
    let e = nn::check_network(input, &specs).unwrap_err().to_string();
    assert!(
        e.contains("layer 5: GlobalAveragePooling2D after Flatten"),
        "{e}"
    );
}
