//! Every buffer a model binds is checked against the device's binding limits before it is
//! allocated: a network whose parameters, or a batch whose activations, are past the
//! adapter's `max_storage_buffer_binding_size` (lavapipe: 128 MiB) is refused in words
//! naming the size and the limit (before: a raw multi-line wgpu error after allocating), and
//! predictions are cut into chunks that fit.

mod common;

use std::process::Command;

use common::{ctx, serial};
use wgpu_batchnorm::nn::reference::CpuModel;
use wgpu_batchnorm::nn::{self, Dataset, FitOptions, LayerSpec, Optimizer, Sequential, Shape};

/// The largest buffer the device binds, bytes.
fn limit() -> u64 {
    let l = ctx().device().limits();
    l.max_storage_buffer_binding_size.min(l.max_buffer_size)
}

#[test]
fn parameters_just_past_the_binding_limit_are_refused_in_words() {
    let _g = serial();
    let floats = (limit() / 4) as usize;
    // 64 inputs, `units` hidden, 10 classes: 75 values per unit plus the aligned biases.
    let units = floats / 75 + 1;
    let layers = [LayerSpec::Dense(units), LayerSpec::Dense(10)];
    let params = 64 * units + units + 10 * units + 10;
    assert!(
        params > floats && params < floats + 1000,
        "the network is just past it"
    );
    let e = Sequential::new(ctx(), Shape::Flat(64), &layers, 0, Optimizer::default())
        .err()
        .expect("refused");
    match &e {
        nn::Error::DeviceLimit {
            needed, limit, max, ..
        } => {
            assert_eq!(*max, self::limit());
            assert!(
                *needed > *max as u128 && *needed < *max as u128 + 8192,
                "{e}"
            );
            assert!(limit.starts_with("max_"), "{e}");
        }
        other => panic!("expected DeviceLimit, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("the parameters") && msg.contains(&limit().to_string()),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), 1, "{msg}");
    // Just under it (a few units fewer) the same network is not refused for its size.
    let fits = (floats - 64 * 2) / 75 - 8;
    let layers = [LayerSpec::Dense(fits), LayerSpec::Dense(10)];
    if let Err(e) = Sequential::new(ctx(), Shape::Flat(64), &layers, 0, Optimizer::sgd(0.1, 0.0)) {
        assert!(!matches!(e, nn::Error::DeviceLimit { .. }), "{e}");
    }
}

#[test]
fn a_batch_past_the_binding_limit_is_refused_and_predictions_are_chunked() {
    let _g = serial();
    // A row of the hidden layer's activations is 1/40 of the limit.
    let hidden = (limit() / 4 / 40) as usize;
    let layers = [LayerSpec::Dense(hidden), LayerSpec::Dense(2)];
    let opt = Optimizer::sgd(0.1, 0.0);
    let mut gpu = Sequential::new(ctx(), Shape::Flat(1), &layers, 5, opt).unwrap();
    let d = Dataset::synthetic(100, 1, 3);
    let labels: Vec<u32> = d.labels().iter().map(|&l| l % 2).collect();
    let data = Dataset::new(d.x().iter().map(|v| v / 50.0).collect(), labels, 1, 2).unwrap();
    let options = FitOptions {
        batch_size: 41,
        epochs: 1,
        shuffle: false,
        seed: 0,
    };
    let e = gpu
        .fit(&data, &options, None, |_, _| {})
        .expect_err("refused");
    let msg = e.to_string();
    assert!(matches!(e, nn::Error::DeviceLimit { .. }), "{msg}");
    assert!(
        msg.contains("a batch of 41 rows") && msg.contains("layer 0"),
        "{msg}"
    );
    // The model is unharmed; predictions go in chunks of at most 40 rows.
    let mut cpu = CpuModel::new(Shape::Flat(1), &layers, 5, opt).unwrap();
    let got = gpu.predict(data.x()).unwrap();
    let want = cpu.predict(data.x()).unwrap();
    common::assert_close("chunked predictions", &got, &want, 1e-5, 1e-4);
}

/// A Dense layer wider than the device's grid (16 units per workgroup) is refused on the GPU
/// in words, not by a validation error at its first dispatch.
#[test]
fn a_dense_layer_past_the_grid_is_refused_in_words() {
    let _g = serial();
    let max = ctx().device().limits().max_compute_workgroups_per_dimension as usize;
    let layers = [LayerSpec::Dense(max * 16 + 1), LayerSpec::Dense(2)];
    let e = Sequential::new(ctx(), Shape::Flat(1), &layers, 0, Optimizer::sgd(0.1, 0.0))
        .err()
        .expect("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("max_compute_workgroups_per_dimension"),
        "{msg}"
    );
    let layers = [LayerSpec::Dense(max * 16), LayerSpec::Dense(2)];
    Sequential::new(ctx(), Shape::Flat(1), &layers, 0, Optimizer::sgd(0.1, 0.0)).unwrap();
}

/// The command: 38 M parameters on lavapipe's 128 MiB binding. Skipped where the
/// device binds more than this network.
#[test]
fn cli_refuses_a_network_past_the_binding_limit() {
    let params = 64u64 * 600_000 + 600_000 * 11 + 10;
    if params * 4 <= limit() {
        eprintln!("skipped: this device binds {} bytes", limit());
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_bnorm"))
        .args(["train", "--data", "digits", "--epochs", "1", "--layers"])
        .arg("flatten,dense:600000,dense:10")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("model too large for the device"), "{err}");
    assert!(err.contains(&limit().to_string()), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("wgpu error"),
        "{err}"
    );
}
