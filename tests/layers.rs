//! Layers as modules: the layer added in that form (Sigmoid/Tanh activations), a
//! PyTorch-convention BatchNorm in both models, the training hooks (per-batch callbacks,
//! weights and gradients readable from them), and guards on the layout that makes a new
//! layer cheap.

mod common;

use common::{check_finite_differences, ctx, gentle_batch as batch, serial};
use wgpu_batchnorm::nn::reference::CpuModel;
use wgpu_batchnorm::nn::{
    Activation, Callbacks, Dataset, FitOptions, History, LayerSpec, Optimizer, Sequential,
};
use wgpu_batchnorm::BatchNormConfig;

fn with_activations() -> Vec<LayerSpec> {
    vec![
        LayerSpec::Dense(7),
        LayerSpec::Activation(Activation::Tanh),
        LayerSpec::Dense(5),
        LayerSpec::BatchNorm,
        LayerSpec::Activation(Activation::Sigmoid),
        LayerSpec::Dense(3),
    ]
}

fn pytorch_bn() -> Vec<LayerSpec> {
    vec![
        LayerSpec::Dense(8),
        LayerSpec::BatchNormWith(BatchNormConfig::pytorch(0)),
        LayerSpec::Relu,
        LayerSpec::Dense(3),
    ]
}

/// The f64 twins of the new layers differentiate correctly.
#[test]
fn activation_gradients_match_finite_differences() {
    let data = batch(12, 3);
    let mut model = CpuModel::new(6, &with_activations(), 5, Optimizer::adam(1e-3)).unwrap();
    let checked = check_finite_differences(&mut model, &data, 2);
    assert!(checked > 40);
}

/// GPU against CPU, step by step: every weight, then inference.
fn gpu_matches_cpu(layers: &[LayerSpec], optimizer: Optimizer, steps: usize) {
    let mut gpu = Sequential::new(ctx(), 6, layers, 11, optimizer).unwrap();
    let mut cpu = CpuModel::new(6, layers, 11, optimizer).unwrap();
    for step in 0..steps {
        let data = batch(16 + step, 100 + step as u64);
        gpu.train_batch(&data).unwrap();
        cpu.train_batch(&data).unwrap();
        for (g, c) in gpu.weights().unwrap().iter().zip(cpu.weights()) {
            assert_eq!(g.name, c.name);
            for (i, (a, b)) in g.values.iter().zip(&c.values).enumerate() {
                assert!(
                    (a - b).abs() < 2e-5 + 1e-4 * b.abs(),
                    "step {step} {}[{i}]: gpu {a} cpu {b}",
                    g.name
                );
            }
        }
    }
    let data = batch(30, 7);
    let (gl, _) = gpu.evaluate(&data).unwrap();
    let (cl, _) = cpu.evaluate(&data).unwrap();
    assert!((gl - cl).abs() < 1e-4, "{gl} {cl}");
}

#[test]
fn activations_train_alike_on_gpu_and_cpu() {
    let _g = serial();
    gpu_matches_cpu(&with_activations(), Optimizer::sgd(0.1, 0.9), 5);
    let gpu = Sequential::new(ctx(), 6, &with_activations(), 0, Optimizer::default()).unwrap();
    let s = gpu.summary();
    assert!(
        s.contains("activation (Tanh)") && s.contains("activation_1 (Sigmoid)"),
        "{s}"
    );
}

/// A PyTorch-convention BatchNorm (momentum 0.1 on the new value, unbiased running variance)
/// works in the network and in its f64 twin, which is the engine's own CPU reference.
#[test]
fn a_pytorch_batch_norm_layer_works_in_both_models() {
    let _g = serial();
    gpu_matches_cpu(&pytorch_bn(), Optimizer::sgd(0.1, 0.0), 4);
    // After one step from (0, 1): running = 0.9 * old + 0.1 * batch, variance unbiased.
    let data = batch(16, 1);
    let mut cpu = CpuModel::new(6, &pytorch_bn(), 2, Optimizer::sgd(0.1, 0.0)).unwrap();
    let w = cpu.weights();
    let kernel = &w[0].values;
    cpu.train_batch(&data).unwrap();
    let w = cpu.weights();
    let mean = &w
        .iter()
        .find(|w| w.name.ends_with("moving_mean"))
        .unwrap()
        .values;
    let var = &w
        .iter()
        .find(|w| w.name.ends_with("moving_variance"))
        .unwrap()
        .values;
    for c in 0..8 {
        let h: Vec<f64> = (0..16)
            .map(|r| {
                (0..6)
                    .map(|k| data.x()[r * 6 + k] as f64 * kernel[k * 8 + c] as f64)
                    .sum::<f64>()
            })
            .collect();
        let m = h.iter().sum::<f64>() / 16.0;
        let unbiased = h.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / 15.0;
        assert!((mean[c] as f64 - 0.1 * m).abs() < 1e-6, "mean {c}");
        assert!(
            (var[c] as f64 - (0.9 + 0.1 * unbiased)).abs() < 1e-5,
            "var {c}"
        );
    }
    // And the PyTorch policy holds in the network: one row per channel is an error.
    let one = batch(1, 3);
    assert!(cpu.train_batch(&one).is_err());
    let mut gpu = Sequential::new(ctx(), 6, &pytorch_bn(), 2, Optimizer::default()).unwrap();
    assert!(gpu.train_batch(&one).is_err());
}

/// Callbacks that ask for every batch and read the model as it trains.
#[derive(Default)]
struct Recorder {
    batch_losses: Vec<Vec<f64>>,
    epoch_weights: Vec<Vec<f32>>,
    gradient_norms: Vec<f64>,
}

impl Callbacks<Sequential> for Recorder {
    fn wants_batches(&self) -> bool {
        true
    }
    fn on_train_batch_end(&mut self, model: &Sequential, epoch: usize, batch: usize, loss: f64) {
        if batch == 0 {
            self.batch_losses.push(Vec::new());
        }
        assert_eq!(self.batch_losses.len(), epoch + 1);
        self.batch_losses[epoch].push(loss);
        let g = model.gradients().unwrap();
        let norm: f64 = g
            .iter()
            .flat_map(|w| &w.values)
            .map(|v| (*v as f64).powi(2))
            .sum();
        self.gradient_norms.push(norm.sqrt());
    }
    fn on_epoch_end(&mut self, model: &Sequential, _epoch: usize, _h: &History) {
        self.epoch_weights.push(
            model
                .weights()
                .unwrap()
                .into_iter()
                .flat_map(|w| w.values)
                .collect(),
        );
    }
}

#[test]
fn callbacks_see_every_batch_and_the_model() {
    let _g = serial();
    let data = Dataset::synthetic(100, 6, 4);
    let layers = wgpu_batchnorm::nn::tutorial_layers(true, 8, 3);
    let mut gpu = Sequential::new(ctx(), 6, &layers, 3, Optimizer::default()).unwrap();
    let options = FitOptions {
        batch_size: 32,
        epochs: 3,
        shuffle: true,
        seed: 1,
    };
    let mut rec = Recorder::default();
    let h = gpu.fit_with(&data, &options, None, &mut rec).unwrap();
    assert_eq!(
        rec.batch_losses, h.batch_loss,
        "per-batch losses as the history has them"
    );
    assert_eq!(
        rec.batch_losses.iter().map(Vec::len).collect::<Vec<_>>(),
        [4, 4, 4]
    );
    assert_eq!(rec.gradient_norms.len(), 12);
    assert!(rec.gradient_norms.iter().all(|&n| n > 0.0 && n.is_finite()));
    let last: Vec<f32> = gpu
        .weights()
        .unwrap()
        .into_iter()
        .flat_map(|w| w.values)
        .collect();
    assert_eq!(rec.epoch_weights.last(), Some(&last));
    assert_ne!(
        rec.epoch_weights[0], rec.epoch_weights[2],
        "weights move between epochs"
    );
    // The same run without per-batch callbacks gives the same history.
    let mut again = Sequential::new(ctx(), 6, &layers, 3, Optimizer::default()).unwrap();
    assert_eq!(again.fit(&data, &options, None, |_, _| {}).unwrap(), h);
}

/// The GPU model's gradients, readable after a step, are the f64 model's.
#[test]
fn gpu_gradients_are_readable_and_right() {
    let _g = serial();
    let data = batch(20, 9);
    let layers = with_activations();
    let mut gpu = Sequential::new(ctx(), 6, &layers, 4, Optimizer::default()).unwrap();
    let mut cpu = CpuModel::new(6, &layers, 4, Optimizer::default()).unwrap();
    gpu.train_batch(&data).unwrap();
    let (_, _, want) = cpu.gradients(&data).unwrap();
    let got = gpu.gradients().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        for (i, (a, b)) in g.values.iter().zip(w).enumerate() {
            assert!(
                (*a as f64 - b).abs() < 1e-5 + 1e-3 * b.abs(),
                "{}[{i}]: gpu {a} cpu {b}",
                g.name
            );
        }
    }
}

fn source_files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(source_files(path.to_str().unwrap()));
        } else if path.extension().is_some_and(|e| e == "rs" || e == "wgsl") {
            out.push(path);
        }
    }
    out
}

/// The layout that makes a layer cheap to add: only the registry matches on layer kinds,
/// no network file grows past ~500 lines, and every network shader has exactly one driver.
#[test]
fn the_network_stays_modular() {
    let root = env!("CARGO_MANIFEST_DIR");
    let nn = source_files(&format!("{root}/src/nn"));
    for path in &nn {
        let text = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            text.lines().count() <= 500,
            "{name} has {} lines",
            text.lines().count()
        );
        // The registry builds layers from specs; `describe.rs` (the layer string) and
        // `keras_json.rs`/`keras_fields.rs` (Keras JSON) build specs from text, and
        // `without_bn.rs` rewrites a spec list into its no-BN twin: a new layer's names go
        // there, nothing else changes.
        let spec_level = [
            "registry.rs",
            "mod.rs",
            "describe.rs",
            "keras_json.rs",
            "keras_fields.rs",
            "without_bn.rs",
        ];
        if !spec_level.contains(&name) {
            assert!(
                !text.contains("LayerSpec::"),
                "{name} matches on layer kinds"
            );
        }
    }
    for shader in source_files(&format!("{root}/shaders/nn")) {
        let file = shader.file_name().unwrap().to_str().unwrap().to_string();
        let drivers: Vec<_> = nn
            .iter()
            .filter(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .contains(&format!("shaders/nn/{file}\")"))
            })
            .collect();
        assert_eq!(drivers.len(), 1, "{file} is driven by {drivers:?}");
    }
}

/// What one training step of the tutorial network records: pinned, so a change that adds a
/// dispatch, a pass or a copy to the step shows. The network is small enough for the
/// one-workgroup step: one dispatch in one pass (the issue asks for at most 8). The general
/// path, pinned too: gather, Dense forward, BN forward (fused: one dispatch for a small
/// tensor), Dense forward, loss (which counts the step), Dense backward (one dispatch), BN
/// backward (one), Dense backward, optimizer (one dispatch for every parameter): 9, where it
/// was 18 with 2 copies.
#[test]
fn a_training_step_records_what_it_should() {
    let _g = serial();
    let data = Dataset::synthetic(32, 20, 1);
    for (fused, bn, most) in [
        (true, true, 1),
        (true, false, 1),
        (false, true, 9),
        (false, false, 7),
    ] {
        let layers = wgpu_batchnorm::nn::tutorial_layers(bn, 10, 3);
        let mut m = Sequential::new(ctx(), 20, &layers, 0, Optimizer::default()).unwrap();
        m.set_fused_steps(fused);
        m.train_batch(&data).unwrap(); // builds the plan and the pipelines
        let before = wgpu_batchnorm::recorded_work();
        m.train_batch(&data).unwrap();
        let step = wgpu_batchnorm::recorded_work() - before;
        eprintln!("one-workgroup step {fused}, batch norm {bn}: {step:?}");
        assert_eq!(step.submits, 1, "one submit per step");
        assert_eq!(step.copies, 0, "no copies: parameters have one home");
        assert_eq!(step.dispatches, most, "{step:?}");
        assert_eq!(step.passes, most, "{step:?}");
    }
}

/// The one-dispatch Dense backward on sizes past one tile in every role (dW, db and dX
/// tiles, odd edges), against the f64 model.
#[test]
fn dense_backward_on_odd_sizes() {
    let _g = serial();
    let d = Dataset::synthetic(45, 21, 8);
    let x = d.x().iter().map(|v| v / 40.0).collect();
    let data = Dataset::new(x, d.labels().iter().map(|l| l % 3).collect(), 21, 3).unwrap();
    let layers = vec![
        LayerSpec::Dense(37),
        LayerSpec::Relu,
        LayerSpec::Dense(19),
        LayerSpec::Activation(Activation::Tanh),
        LayerSpec::Dense(3),
    ];
    let mut gpu = Sequential::new(ctx(), 21, &layers, 6, Optimizer::default()).unwrap();
    let mut cpu = CpuModel::new(21, &layers, 6, Optimizer::default()).unwrap();
    gpu.train_batch(&data).unwrap();
    let (_, _, want) = cpu.gradients(&data).unwrap();
    for (g, w) in gpu.gradients().unwrap().iter().zip(&want) {
        assert_eq!(g.values.len(), w.len(), "{}", g.name);
        for (i, (a, b)) in g.values.iter().zip(w).enumerate() {
            assert!(
                (*a as f64 - b).abs() < 1e-5 + 1e-3 * b.abs(),
                "{}[{i}]: gpu {a} cpu {b}",
                g.name
            );
        }
    }
}

/// An epoch's steps (up to 16; more are submitted 16 at a time) are one encoder and one
/// submit (the batch each step trains on comes from a count on the GPU, not a write between
/// steps); per-batch callbacks ask for a submit per step instead. Both train identically.
#[test]
fn an_epoch_is_one_submit() {
    let _g = serial();
    let data = Dataset::synthetic(100, 6, 4);
    let layers = wgpu_batchnorm::nn::tutorial_layers(true, 8, 3);
    let options = FitOptions {
        batch_size: 32,
        epochs: 2,
        shuffle: true,
        seed: 5,
    };
    let mut a = Sequential::new(ctx(), 6, &layers, 3, Optimizer::default()).unwrap();
    let before = wgpu_batchnorm::recorded_work();
    let ha = a.fit(&data, &options, None, |_, _| {}).unwrap();
    let work = wgpu_batchnorm::recorded_work() - before;
    assert_eq!(work.submits, 2, "one per epoch: {work:?}");
    assert_eq!(
        work.dispatches,
        2 * 4,
        "4 steps of one dispatch per epoch: {work:?}"
    );
    let mut b = Sequential::new(ctx(), 6, &layers, 3, Optimizer::default()).unwrap();
    let mut rec = Recorder::default();
    let before = wgpu_batchnorm::recorded_work();
    let hb = b.fit_with(&data, &options, None, &mut rec).unwrap();
    let work = wgpu_batchnorm::recorded_work() - before;
    assert_eq!(work.submits, 2 * 4, "one per step: {work:?}");
    assert_eq!(ha, hb);
    assert_eq!(a.weights().unwrap(), b.weights().unwrap());
}

/// The register-tiled GEMM (layers of at least 64 x 64 outputs) against the f64 model, on
/// sizes that are not multiples of its tile: predictions and the gradients of a step.
#[test]
fn wide_dense_layers_match_the_reference() {
    let _g = serial();
    let d = Dataset::synthetic(130, 9, 2);
    let x = d.x().iter().map(|v| v / 40.0).collect();
    let data = Dataset::new(x, d.labels().to_vec(), 9, 3).unwrap();
    let layers = vec![
        LayerSpec::Dense(70),
        LayerSpec::Relu,
        LayerSpec::Dense(67),
        LayerSpec::Relu,
        LayerSpec::Dense(3),
    ];
    let mut gpu = Sequential::new(ctx(), 9, &layers, 8, Optimizer::default()).unwrap();
    let mut cpu = CpuModel::new(9, &layers, 8, Optimizer::default()).unwrap();
    let p = gpu.predict(data.x()).unwrap();
    let q = cpu.predict(data.x()).unwrap();
    let worst = p
        .iter()
        .zip(&q)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "probabilities differ by {worst}");
    gpu.train_batch(&data).unwrap();
    let (_, _, want) = cpu.gradients(&data).unwrap();
    for (g, w) in gpu.gradients().unwrap().iter().zip(&want) {
        for (i, (a, b)) in g.values.iter().zip(w).enumerate() {
            assert!(
                (*a as f64 - b).abs() < 1e-5 + 1e-3 * b.abs(),
                "{}[{i}]: gpu {a} cpu {b}",
                g.name
            );
        }
    }
}
