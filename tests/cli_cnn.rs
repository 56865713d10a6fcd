//! The convolutional network from the command line: the tutorial's CNN on the embedded digits
//! with and without batch norm (default settings: BN reaches 0.95 validation accuracy within
//! 10 epochs), layer strings and Keras JSON, and `predict` on a saved model.

mod common;

use common::bnorm;

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("bnorm-cnn-{}-{name}", std::process::id()))
}

/// The epoch table's rows: [loss, accuracy, val_loss, val_acc] per run.
fn table(out: &str) -> Vec<Vec<f64>> {
    out.lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .filter(|l| l.contains('|'))
        .map(|l| {
            l.split('|')
                .skip(1)
                .flat_map(|part| part.split_whitespace().map(|v| v.parse::<f64>().unwrap()))
                .collect()
        })
        .collect()
}

#[test]
fn the_tutorial_cnn_learns_the_digits_and_bn_helps() {
    let plot = temp("cnn.png");
    let (ok, out, err) = bnorm(&[
        "train",
        "--model",
        "cnn",
        "--data",
        "digits",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("conv2d_1 (Conv2D 3x3+ReLU)") && out.contains("(None, 2, 2, 64)"));
    assert!(out.contains("359 rows held out for validation"), "{out}");
    let rows = table(&out);
    assert_eq!(rows.len(), 10, "{out}");
    let best = |col: usize| rows.iter().map(|r| r[col]).fold(0.0, f64::max);
    // With BN: columns 0-3; without: 4-7.
    assert!(best(3) >= 0.95, "validation accuracy with BN: {out}");
    assert!(best(1) > 0.99, "{out}");
    // What BN changes: the training loss falls faster (epoch 1).
    assert!(rows[0][0] < rows[0][4], "{out}");
    let png = std::fs::read(&plot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    std::fs::remove_file(&plot).ok();
}

#[test]
fn layer_strings_keras_json_and_predict() {
    let weights = temp("w.safetensors");
    let w = weights.to_str().unwrap();
    let layers = "conv:6:3:2:same,bn,relu,avgpool:2:1:same,gap,dense:10";
    let (ok, out, err) = bnorm(&[
        "train", "--layers", layers, "--data", "digits", "--epochs", "1", "--save", w,
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("global_average_pooling2d") && out.contains("(None, 4, 4, 6)"));
    let (ok, out, err) = bnorm(&[
        "predict",
        "--weights",
        w,
        "--layers",
        layers,
        "--data",
        "digits",
        "--sample",
        "3",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("1797 rows (None, 8, 8, 1): loss"), "{out}");
    for want in [
        "sample 3 (label 3",
        "conv2d (Conv2D 3x3)",
        "batch_normalization (BN+ReLU)",
        "average_pooling2d",
        "dense (Dense)",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    // The same weights under another network are refused, whole, in words.
    let (ok, _, err) = bnorm(&[
        "predict",
        "--weights",
        w,
        "--model",
        "cnn",
        "--data",
        "digits",
    ]);
    assert!(!ok && err.contains("has shape"), "{err}");
    // A Keras JSON model, and a kind we do not have.
    let json = temp("model.json");
    let keras_json = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keras_cnn_model.json"
    ))
    .unwrap();
    std::fs::write(&json, &keras_json).unwrap();
    let j = json.to_str().unwrap();
    let (ok, out, err) = bnorm(&[
        "train",
        "--model-json",
        j,
        "--data",
        "digits",
        "--epochs",
        "1",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("max_pooling2d (MaxPooling2D 2x2)"), "{out}");
    std::fs::write(&json, keras_json.replace("MaxPooling2D", "SeparableConv2D")).unwrap();
    let (ok, _, err) = bnorm(&[
        "train",
        "--model-json",
        j,
        "--data",
        "digits",
        "--epochs",
        "1",
    ]);
    assert!(
        !ok && err.contains("SeparableConv2D is not supported"),
        "{err}"
    );
    for bad in ["conv:0:3", "conv:8", "maxpool:2:x", "dense:4,wat"] {
        let (ok, _, err) = bnorm(&["train", "--layers", bad, "--data", "digits"]);
        assert!(!ok && err.contains("layer"), "{bad}: {err}");
    }
    std::fs::remove_file(&weights).ok();
    std::fs::remove_file(&json).ok();
}
