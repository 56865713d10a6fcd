//! A Keras 3 training run of a small CNN with batch norm (`tests/fixtures/gen_cnn.py`:
//! Conv2D+ReLU → BN → MaxPooling2D → Conv2D stride 2 without bias → BN+ReLU → Flatten → Dense, Adam,
//! sparse categorical cross-entropy, validation data, no shuffle) reproduced from the same
//! initial weights: per-epoch and per-batch loss within 1e-5 on the GPU (Keras float32) and
//! the f64 CPU model (Keras float64), validation metrics, and every final weight.

mod common;

use common::{ctx, ctx_tiled, serial};
use serde_json::Value;
use wgpu_batchnorm::nn::reference::CpuModel;
use wgpu_batchnorm::nn::{
    Conv2D, Dataset, FitOptions, History, LayerSpec, Optimizer, Padding, Pool2D, Sequential, Weight,
};
use wgpu_batchnorm::Context;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_f64().unwrap() as f32)
        .collect()
}

fn golden() -> Value {
    let path = format!(
        "{}/tests/fixtures/keras_cnn.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn layers() -> Vec<LayerSpec> {
    vec![
        LayerSpec::Conv2D(Conv2D::new(4, 3).padding(Padding::Same)),
        LayerSpec::Relu,
        LayerSpec::BatchNorm,
        LayerSpec::MaxPool2D(Pool2D::new(2)),
        LayerSpec::Conv2D(Conv2D {
            use_bias: false,
            ..Conv2D::new(6, 3).stride(2).padding(Padding::Same)
        }),
        LayerSpec::BatchNorm,
        LayerSpec::Relu,
        LayerSpec::Flatten,
        LayerSpec::Dense(10),
    ]
}

/// The golden run's training and validation rows: the embedded digits' first ones.
fn data(g: &Value) -> (Dataset, Dataset) {
    let n = |k: &str| g[k].as_u64().unwrap() as usize;
    let digits = Dataset::digits().unwrap();
    let (head, _) = digits.split(n("train") + n("val")).unwrap();
    let labels: Vec<u32> = g["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(head.labels(), &labels[..], "the golden file's digits");
    let sum: f64 = head.x().iter().map(|&v| v as f64).sum();
    assert!((sum - g["x_sum"].as_f64().unwrap()).abs() < 1e-6);
    head.split(n("train")).unwrap()
}

fn options(g: &Value) -> FitOptions {
    FitOptions {
        batch_size: g["batch_size"].as_u64().unwrap() as usize,
        epochs: g["epochs"].as_u64().unwrap() as usize,
        shuffle: false,
        seed: 0,
    }
}

/// Loss, accuracy, validation metrics per epoch and the running loss per batch.
fn check_history(who: &str, h: &History, want: &Value, rows: usize, batch: usize, tol: f64) {
    let series = [("loss", &h.loss), ("val_loss", &h.val_loss)];
    for (key, ours) in series {
        let keras = floats(&want[key]);
        assert_eq!(ours.len(), keras.len());
        for (e, (a, b)) in ours.iter().zip(&keras).enumerate() {
            assert!(
                (a - *b as f64).abs() < tol,
                "{who} epoch {e} {key}: ours {a} keras {b}"
            );
        }
    }
    for (key, ours, n) in [
        ("accuracy", &h.accuracy, rows),
        ("val_accuracy", &h.val_accuracy, 100),
    ] {
        if let Some(keras) = want.get(key) {
            for (e, (a, b)) in ours.iter().zip(floats(keras)).enumerate() {
                assert!(
                    (a - b as f64).abs() < 1.5 / n as f64,
                    "{who} epoch {e} {key}: {a} {b}"
                );
            }
        }
    }
    let running = want["batch_loss_running_mean"].as_array().unwrap();
    for (e, keras) in running.iter().enumerate() {
        let keras = floats(keras);
        assert_eq!(h.batch_loss[e].len(), keras.len());
        let (mut sum, mut seen) = (0.0, 0usize);
        for (b, (&ours, &k)) in h.batch_loss[e].iter().zip(&keras).enumerate() {
            let n = batch.min(rows - b * batch);
            sum += ours * n as f64;
            seen += n;
            let r = sum / seen as f64;
            assert!(
                (r - k as f64).abs() < tol,
                "{who} epoch {e} batch {b}: {r} keras {k}"
            );
        }
    }
}

fn check_weights(who: &str, weights: &[Weight], want: &Value) {
    for w in weights {
        let keras = floats(&want[&w.name]);
        assert_eq!(keras.len(), w.values.len(), "{}", w.name);
        for (i, (a, b)) in w.values.iter().zip(&keras).enumerate() {
            assert!(
                (a - b).abs() < 2e-5 * b.abs().max(1.0),
                "{who} {}[{i}]: ours {a} keras {b}",
                w.name
            );
        }
    }
}

fn start<M>(g: &Value, mut set: impl FnMut(&str, &[f32]) -> M) {
    for (name, init) in g["init"].as_object().unwrap() {
        set(name, &floats(init));
    }
}

fn gpu_run(ctx: &Context, g: &Value) {
    let (train, val) = data(g);
    let mut gpu = Sequential::new(ctx, [8, 8, 1], &layers(), 0, Optimizer::default()).unwrap();
    start(g, |n, v| gpu.set_weight(n, v).unwrap());
    let h = gpu.fit(&train, &options(g), Some(&val), |_, _| {}).unwrap();
    let batch = options(g).batch_size;
    check_history("gpu", &h, &g["float32"], train.rows(), batch, 1e-5);
    check_weights("gpu", &gpu.weights().unwrap(), &g["float32"]["weights"]);
}

#[test]
fn a_keras_cnn_run_is_reproduced_on_the_gpu() {
    let _g = serial();
    let g = golden();
    gpu_run(ctx(), &g);
    gpu_run(ctx_tiled(), &g);
}

#[test]
fn a_keras_cnn_run_is_reproduced_by_the_f64_model() {
    let g = golden();
    let (train, val) = data(&g);
    let mut cpu = CpuModel::new([8, 8, 1], &layers(), 0, Optimizer::default()).unwrap();
    start(&g, |n, v| cpu.set_weight(n, v).unwrap());
    let h = cpu
        .fit(&train, &options(&g), Some(&val), |_, _| {})
        .unwrap();
    let batch = options(&g).batch_size;
    check_history("cpu", &h, &g["float64"], train.rows(), batch, 1e-6);
    // Against float32 Keras' weights (float64 Keras' were not kept).
    check_weights("cpu", &cpu.weights(), &g["float32"]["weights"]);
}
