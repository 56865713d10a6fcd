//! The training stack: gradients against the f64 reference and finite differences, GPU and
//! CPU runs step by step, parity with a real Keras training run, the default job's accuracy,
//! and weights round-tripping through safetensors.

mod common;

use common::{all_layers, check_finite_differences, ctx, gentle_batch as batch, serial};
use serde_json::Value;
use wgpu_batchnorm::nn::reference::{CpuModel, CpuModelF32};
use wgpu_batchnorm::nn::{tutorial_layers, Dataset, FitOptions, LayerSpec, Optimizer, Sequential};

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn reference_gradients_match_finite_differences() {
    let data = batch(12, 3);
    let mut model = CpuModel::new(6, &all_layers(), 5, Optimizer::adam(1e-3)).unwrap();
    let checked = check_finite_differences(&mut model, &data, 3);
    assert!(checked > 30);
}

#[test]
fn gpu_gradients_match_the_reference() {
    let _g = serial();
    // SGD with lr 1 and no momentum: one step moves every weight by exactly its gradient.
    let data = batch(20, 4);
    let layers = all_layers();
    let mut gpu = Sequential::new(ctx(), 6, &layers, 9, Optimizer::sgd(1.0, 0.0)).unwrap();
    let mut cpu = CpuModel::new(6, &layers, 9, Optimizer::sgd(1.0, 0.0)).unwrap();
    let before = gpu.weights().unwrap();
    let (_, _, grads) = cpu.gradients(&data).unwrap();
    gpu.train_batch(&data).unwrap();
    let after = gpu.weights().unwrap();
    let trainable = before
        .iter()
        .zip(&after)
        .filter(|(w, _)| !w.name.contains("moving"));
    for ((b, a), g) in trainable.zip(&grads) {
        for (i, want) in g.iter().enumerate() {
            let gpu_grad = (b.values[i] - a.values[i]) as f64;
            assert!(
                (gpu_grad - want).abs() < 1e-4 + 1e-3 * want.abs(),
                "{}[{i}]: gpu {gpu_grad} cpu {want}",
                b.name
            );
        }
    }
}

fn step_by_step(optimizer: Optimizer, skip: &[&str]) {
    let layers = all_layers();
    let mut gpu = Sequential::new(ctx(), 6, &layers, 11, optimizer).unwrap();
    let mut cpu = CpuModel::new(6, &layers, 11, optimizer).unwrap();
    for step in 0..6 {
        let data = batch(16 + step, 100 + step as u64);
        gpu.train_batch(&data).unwrap();
        cpu.train_batch(&data).unwrap();
        for (g, c) in gpu.weights().unwrap().iter().zip(cpu.weights()) {
            assert_eq!(g.name, c.name);
            if skip.contains(&g.name.as_str()) {
                continue;
            }
            for (i, (a, b)) in g.values.iter().zip(&c.values).enumerate() {
                assert!(
                    (a - b).abs() < 2e-5 + 1e-4 * b.abs(),
                    "{optimizer:?} step {step} {}[{i}]: gpu {a} cpu {b}",
                    g.name
                );
            }
        }
    }
    if !skip.is_empty() {
        return; // inference uses the moving mean, which is allowed to differ
    }
    let data = batch(30, 7);
    let (gl, ga) = gpu.evaluate(&data).unwrap();
    let (cl, ca) = cpu.evaluate(&data).unwrap();
    assert!((gl - cl).abs() < 1e-4, "{gl} {cl}");
    assert_eq!(ga, ca);
    let p = gpu.predict(data.x()).unwrap();
    let q = cpu.predict(data.x()).unwrap();
    let worst = p
        .iter()
        .zip(&q)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "probabilities differ by {worst}");
    assert!(p
        .chunks(3)
        .all(|r| (r.iter().sum::<f32>() - 1.0).abs() < 1e-5));
}

#[test]
fn gpu_and_cpu_training_agree_step_by_step() {
    let _g = serial();
    step_by_step(Optimizer::sgd(0.1, 0.9), &[]);
    // The bias of a Dense layer feeding BatchNorm has an exactly zero gradient, so in f32 it is
    // rounding noise, which Adam normalizes into full-size steps: both sides move it, each by
    // its own noise; the BatchNorm's moving mean follows that bias. Every other weight must
    // agree (the normalized output does not depend on the bias).
    step_by_step(
        Optimizer::adam(1e-2),
        &["dense_1/bias", "batch_normalization/moving_mean"],
    );
}

#[test]
fn keras_training_run_is_reproduced() {
    let _g = serial();
    let path = format!(
        "{}/tests/fixtures/keras_training.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let n = |k: &str| golden[k].as_u64().unwrap() as usize;
    let data = Dataset::new(
        floats(&golden["x"]),
        golden["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect(),
        n("features"),
        n("classes"),
    )
    .unwrap();
    let options = FitOptions {
        batch_size: n("batch_size"),
        epochs: n("epochs"),
        shuffle: false,
        seed: 0,
    };
    // Both GPU paths: the one-workgroup step (this network's default) and the general one.
    let runs = [(true, "with_bn"), (false, "without_bn")];
    for (fused, (bn, key)) in [true, false].into_iter().flat_map(|f| runs.map(|r| (f, r))) {
        let run = &golden[key];
        let layers = tutorial_layers(bn, n("hidden"), n("classes"));
        let mut gpu =
            Sequential::new(ctx(), n("features"), &layers, 0, Optimizer::default()).unwrap();
        gpu.set_fused_steps(fused);
        let mut cpu = CpuModel::new(n("features"), &layers, 0, Optimizer::default()).unwrap();
        for (name, init) in [("dense/kernel", "w1"), ("dense_1/kernel", "w2")] {
            gpu.set_weight(name, &floats(&golden["init"][init]))
                .unwrap();
            cpu.set_weight(name, &floats(&golden["init"][init]))
                .unwrap();
        }
        let mut fast = CpuModelF32::new(n("features"), &layers, 0, Optimizer::default()).unwrap();
        for (name, init) in [("dense/kernel", "w1"), ("dense_1/kernel", "w2")] {
            fast.set_weight(name, &floats(&golden["init"][init]))
                .unwrap();
        }
        let hg = gpu.fit(&data, &options, None, |_, _| {}).unwrap();
        let hc = cpu.fit(&data, &options, None, |_, _| {}).unwrap();
        let hf = fast.fit(&data, &options, None, |_, _| {}).unwrap();
        let rows = data.rows();
        let batch = options.batch_size;
        // The GPU model and the f32 CPU model against Keras in float32, within 1e-5 (Keras'
        // own float32 round-off here is up to 1.4e-5 from the exact run); the f64 CPU model
        // against Keras in float64, within 1e-6.
        for (h, who, golden_run, tol) in [
            (&hg, "gpu", run, 1e-5),
            (&hf, "cpu f32", run, 1e-5),
            (&hc, "cpu", &golden[format!("{key}_float64")], 1e-6),
        ] {
            let want_loss = floats(&golden_run["loss"]);
            let want_running = golden_run["batch_loss_running_mean"].as_array().unwrap();
            assert_eq!(h.loss.len(), want_loss.len());
            for e in 0..want_loss.len() {
                assert!(
                    (h.loss[e] - want_loss[e] as f64).abs() < tol,
                    "{key} {who} (one-workgroup step {fused}) epoch {e} loss {} keras {}",
                    h.loss[e],
                    want_loss[e]
                );
                let want_acc = floats(&run["accuracy"]);
                assert!(
                    (h.accuracy[e] - want_acc[e] as f64).abs() < 1.5 / rows as f64,
                    "{key} {who} epoch {e} accuracy {} keras {}",
                    h.accuracy[e],
                    want_acc[e]
                );
                // Keras reports after each batch the epoch's running mean, weighted by rows.
                let want: Vec<f64> = want_running[e]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                assert_eq!(h.batch_loss[e].len(), want.len(), "{key} {who} epoch {e}");
                let (mut sum, mut seen) = (0.0, 0usize);
                for (b, (&ours, &keras)) in h.batch_loss[e].iter().zip(&want).enumerate() {
                    let n = batch.min(rows - b * batch);
                    sum += ours * n as f64;
                    seen += n;
                    let running = sum / seen as f64;
                    assert!(
                        (running - keras).abs() < tol,
                        "{key} {who} epoch {e} batch {b}: running loss {running} keras {keras}"
                    );
                }
            }
        }
        // The bias of the Dense layer feeding BN has no true gradient (BN removes it), so Adam
        // turns its f32 noise into steps; the moving mean that follows it inherits that.
        let noisy = |name: &str| bn && (name == "dense/bias" || name.ends_with("moving_mean"));
        let weights = gpu.weights().unwrap();
        for w in weights.iter().filter(|w| !noisy(&w.name)) {
            let want = floats(&run["weights"][&w.name]);
            assert_eq!(want.len(), w.values.len(), "{key} {}", w.name);
            for (i, (a, b)) in w.values.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() < 2e-5 * b.abs().max(1.0),
                    "{key} {}[{i}]: ours {a} keras {b}",
                    w.name
                );
            }
        }
    }
}

#[test]
fn the_default_job_reaches_85_percent_in_5_epochs() {
    let _g = serial();
    let data = Dataset::synthetic(1000, 20, 42);
    let mut model = Sequential::new(
        ctx(),
        20,
        &tutorial_layers(true, 10, 3),
        42,
        Optimizer::default(),
    )
    .unwrap();
    let options = FitOptions {
        batch_size: 32,
        epochs: 5,
        shuffle: true,
        seed: 42,
    };
    let h = model.fit(&data, &options, None, |_, _| {}).unwrap();
    assert!(
        h.loss.windows(2).all(|w| w[1] < w[0]),
        "loss must fall every epoch: {:?}",
        h.loss
    );
    assert!(
        h.accuracy[4] >= 0.85,
        "accuracy after 5 epochs: {:?}",
        h.accuracy
    );
}

#[test]
fn weights_round_trip_through_safetensors() {
    let _g = serial();
    let dir = std::env::temp_dir().join(format!("bnorm-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let layers = tutorial_layers(true, 10, 3);
    let mut a = Sequential::new(ctx(), 20, &layers, 1, Optimizer::default()).unwrap();
    let data = Dataset::synthetic(64, 20, 1);
    a.fit(
        &data,
        &FitOptions {
            epochs: 1,
            ..Default::default()
        },
        None,
        |_, _| {},
    )
    .unwrap();
    a.save(&path).unwrap();
    let mut b = Sequential::new(ctx(), 20, &layers, 2, Optimizer::default()).unwrap();
    assert_ne!(a.weights().unwrap(), b.weights().unwrap());
    b.load(&path).unwrap();
    assert_eq!(a.weights().unwrap(), b.weights().unwrap());
    assert_eq!(a.predict(data.x()).unwrap(), b.predict(data.x()).unwrap());
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"not a safetensors file").unwrap();
    assert!(matches!(
        b.load(&bad),
        Err(wgpu_batchnorm::nn::Error::Weights { .. })
    ));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_models_and_data_are_refused() {
    let _g = serial();
    let e = Sequential::new(
        ctx(),
        4,
        &[LayerSpec::Relu, LayerSpec::Dense(3)],
        0,
        Optimizer::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("ReLU must follow"), "{e}");
    let e = Sequential::new(
        ctx(),
        4,
        &[LayerSpec::Dense(3), LayerSpec::Relu],
        0,
        Optimizer::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("last layer"), "{e}");
    let mut m = Sequential::new(
        ctx(),
        4,
        &tutorial_layers(true, 5, 3),
        0,
        Optimizer::default(),
    )
    .unwrap();
    let wrong = Dataset::synthetic(10, 5, 0);
    assert!(m
        .fit(&wrong, &FitOptions::default(), None, |_, _| {})
        .unwrap_err()
        .to_string()
        .contains("features"));
    let d = Dataset::synthetic(10, 4, 0);
    let mut l = d.labels().to_vec();
    l[3] = 7;
    let labels = Dataset::new(d.x().to_vec(), l, 4, 8).unwrap();
    assert!(m
        .evaluate(&labels)
        .unwrap_err()
        .to_string()
        .contains("label 7"));
}
