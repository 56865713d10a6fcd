//! Everything around the engine refuses bad input with a typed error that says what is wrong,
//! before anything is allocated or changed: data sets, layer state, models, optimizers, weights
//! files, output files, caller buffers. Each test names the defect it guards against.

mod common;

use std::path::{Path, PathBuf};

use common::{ctx, serial};
use wgpu_batchnorm::cpu::CpuBatchNorm;
use wgpu_batchnorm::nn::reference::CpuModel;
use wgpu_batchnorm::nn::{
    self, load_weights, save_weights, tutorial_layers, DataError, Dataset, FitOptions, LayerSpec,
    Optimizer, Sequential,
};
use wgpu_batchnorm::{BatchNorm, BatchNormConfig, Error, Mode, Tensor, TensorRef};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bnorm-robust-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn files_in(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A Dataset's invariants cannot be broken: wrong lengths, labels outside the classes and
/// non-finite features are refused at construction (they used to panic in `CpuModel::fit`,
/// or train the GPU model on out-of-bounds data and return Ok).
#[test]
fn datasets_are_valid_by_construction() {
    let x = vec![0.5f32; 12];
    assert!(Dataset::new(x.clone(), vec![0, 1, 2], 4, 3).is_ok());
    let short = Dataset::new(x[..11].to_vec(), vec![0, 1, 2], 4, 3).unwrap_err();
    assert!(
        short.to_string().contains("need 12 values, got 11"),
        "{short}"
    );
    let long = Dataset::new([x.clone(), vec![1.0]].concat(), vec![0, 1, 2], 4, 3).unwrap_err();
    assert!(matches!(long, DataError::Invalid(_)), "{long}");
    let label = Dataset::new(x.clone(), vec![0, 3, 2], 4, 3).unwrap_err();
    assert!(
        matches!(label, DataError::LabelOutOfRange { row: 1, .. }),
        "{label}"
    );
    let mut nan = x.clone();
    nan[6] = f32::NAN;
    let e = Dataset::new(nan, vec![0, 1, 2], 4, 3).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::NonFinite {
                row: 1,
                column: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(Dataset::new(vec![], vec![], 4, 3).is_err());
    assert!(Dataset::new(x.clone(), vec![0, 1, 2], 0, 3).is_err());
    assert!(Dataset::new(x, vec![0, 1, 2], 4, 0).is_err());
}

/// The CPU layers' state cannot be given a wrong-length vector (it used to panic later with
/// an index out of bounds).
#[test]
fn layer_state_checks_lengths() {
    let mut cpu = CpuBatchNorm::new(BatchNormConfig::keras(3)).unwrap();
    for e in [
        cpu.set_gamma(&[1.0, 2.0]),
        cpu.set_beta(&[0.0; 4]),
        cpu.set_running_mean(&[]),
        cpu.set_running_var(&[1.0; 2]),
    ] {
        assert!(
            matches!(e, Err(Error::LengthMismatch { expected: 3, .. })),
            "{e:?}"
        );
    }
    assert_eq!(cpu.gamma(), [1.0; 3]);
    let y = cpu.forward(&[1.0; 6], &[2, 3], Mode::Training).unwrap();
    assert_eq!(y.len(), 6);
}

/// Sizes are checked before anything is allocated: a Dense layer of 2^31 units, a label of
/// 4e9 (4e9 + 1 classes), a hidden layer of 1e8 units (used to abort or feed the OOM killer).
#[test]
fn huge_models_are_refused_before_allocating() {
    let _g = serial();
    for layers in [
        vec![LayerSpec::Dense(1 << 31), LayerSpec::Dense(3)],
        tutorial_layers(true, 10, 4_000_000_001),
        tutorial_layers(true, 100_000_000, 3),
        vec![LayerSpec::Dense(usize::MAX), LayerSpec::Dense(2)],
    ] {
        let cpu = CpuModel::new(20, &layers, 0, Optimizer::default()).unwrap_err();
        let gpu = Sequential::new(ctx(), 20, &layers, 0, Optimizer::default())
            .err()
            .unwrap();
        assert_eq!(cpu.to_string(), gpu.to_string());
        assert!(cpu.to_string().contains("at most"), "{cpu}");
    }
    // The CSV route to the same: a label of 4e9 is out of range where it is read (it gave
    // 4e9 + 1 classes, which the model then refused as a layer too large).
    let d = dir("label");
    let p = d.join("big.csv");
    std::fs::write(&p, "1,2,0\n3,4,4000000000\n").unwrap();
    let e = Dataset::from_csv(&p, None, None).unwrap_err().to_string();
    assert!(
        e.contains("big.csv:2: label 4000000000 is out of range"),
        "{e}"
    );
    std::fs::remove_dir_all(&d).ok();
    // Shapes whose element count overflows say so in words.
    let e = Tensor::zeros(ctx(), &[1 << 32, 1 << 32, 3]).unwrap_err();
    assert!(matches!(e, Error::ShapeOverflow(_)), "{e}");
    assert!(!e.to_string().contains("18446744073709551615"), "{e}");
    let e = wgpu_batchnorm::internal::bench::Case::parse("4294967296x4294967296").unwrap_err();
    assert!(e.contains("more elements than can be counted"), "{e}");
    let e = wgpu_batchnorm::internal::bench::Case::parse("100000000x1000").unwrap_err();
    assert!(e.contains("not enough host memory"), "{e}");
}

/// Both models accept and refuse exactly the same hyperparameters, with the same words.
#[test]
fn gpu_and_cpu_models_refuse_the_same_things() {
    let _g = serial();
    let bad = [
        Optimizer::adam(-1.0),
        Optimizer::adam(0.0),
        Optimizer::adam(f64::NAN),
        Optimizer::adam(1e300),
        Optimizer::Adam {
            lr: 1e-3,
            beta1: f64::NAN,
            beta2: 0.999,
            epsilon: 1e-7,
        },
        Optimizer::Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 1.0,
            epsilon: 1e-7,
        },
        Optimizer::Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: -1.0,
        },
        Optimizer::sgd(1e-2, f64::NAN),
        Optimizer::sgd(1e-2, -5.0),
        Optimizer::sgd(f64::INFINITY, 0.0),
    ];
    let layers = tutorial_layers(true, 4, 3);
    for opt in bad {
        let cpu = CpuModel::new(5, &layers, 0, opt).unwrap_err();
        let gpu = Sequential::new(ctx(), 5, &layers, 0, opt).err().unwrap();
        assert_eq!(cpu.to_string(), gpu.to_string(), "{opt:?}");
        assert!(cpu.to_string().contains("must be"), "{cpu}");
    }
    // Zero input features: the GPU refused, the CPU accepted.
    let layers = [LayerSpec::BatchNorm, LayerSpec::Dense(3)];
    let cpu = CpuModel::new(0, &layers, 0, Optimizer::default()).unwrap_err();
    let gpu = Sequential::new(ctx(), 0, &layers, 0, Optimizer::default())
        .err()
        .unwrap();
    assert_eq!(cpu.to_string(), gpu.to_string());
    // A zero batch size, in fit, on both.
    let data = Dataset::synthetic(20, 5, 1);
    let options = FitOptions {
        batch_size: 0,
        ..FitOptions::default()
    };
    let layers = tutorial_layers(true, 4, 3);
    let mut cpu = CpuModel::new(5, &layers, 0, Optimizer::default()).unwrap();
    let mut gpu = Sequential::new(ctx(), 5, &layers, 0, Optimizer::default()).unwrap();
    let a = cpu.fit(&data, &options, None, |_, _| {}).unwrap_err();
    let b = gpu.fit(&data, &options, None, |_, _| {}).unwrap_err();
    assert_eq!(a.to_string(), b.to_string());
}

/// Validation splits outside (0, 1), or that leave a side empty, are refused in words (they
/// were clamped to 0.9 or silently meant "no split").
#[test]
fn validation_splits_are_checked() {
    let data = Dataset::synthetic(10, 3, 0);
    for f in [1.5, 1.0, 0.0, -1.0, f64::NAN] {
        let e = data.split_validation(f).unwrap_err();
        assert!(
            e.to_string().contains("strictly between 0 and 1"),
            "{f}: {e}"
        );
    }
    let e = data.split_validation(0.01).unwrap_err();
    assert!(e.to_string().contains("0 validation rows"), "{e}");
    assert!(!e.to_string().contains("empty tensor"), "{e}");
    let (a, b) = data.split_validation(0.2).unwrap();
    assert_eq!((a.rows(), b.rows()), (8, 2));
}

/// A run whose loss becomes NaN or infinite stops with a typed error on both models (the GPU
/// model used to report finite losses while its weights were NaN).
#[test]
fn divergence_surfaces_as_an_error() {
    let _g = serial();
    let data = Dataset::synthetic(64, 5, 2);
    let layers = vec![LayerSpec::Dense(8), LayerSpec::Relu, LayerSpec::Dense(3)];
    let options = FitOptions {
        epochs: 2,
        ..FitOptions::default()
    };
    // An infinite weight makes the logits non-finite from the first batch on (the GPU's
    // clipped loss used to hide it and report finite losses).
    let mut kernel = vec![0.1f32; 5 * 8];
    kernel[3] = f32::INFINITY;
    let mut gpu = Sequential::new(ctx(), 5, &layers, 0, Optimizer::default()).unwrap();
    let mut cpu = CpuModel::new(5, &layers, 0, Optimizer::default()).unwrap();
    gpu.set_weight("dense/kernel", &kernel).unwrap();
    cpu.set_weight("dense/kernel", &kernel).unwrap();
    let mut seen = Vec::new();
    let a = gpu
        .fit(&data, &options, None, |e, h| seen.push((e, h.loss[e])))
        .unwrap_err();
    let b = cpu.fit(&data, &options, None, |_, _| {}).unwrap_err();
    for e in [&a, &b] {
        assert!(
            matches!(
                e,
                nn::Error::NonFiniteLoss {
                    epoch: 1,
                    batch: Some(1)
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("diverged"), "{e}");
    }
    // Training stopped after the first epoch, whose NaN loss the callback saw.
    assert_eq!(seen.len(), 1);
    assert!(seen[0].1.is_nan());
    // Features so large that f32 overflows (finite, so the data set accepts them): the
    // GPU model's activations become infinite and it stops too.
    let big: Vec<f32> = data.x().iter().map(|v| v.signum() * 3e38).collect();
    let big = Dataset::new(big, data.labels().to_vec(), 5, 3).unwrap();
    let mut gpu = Sequential::new(ctx(), 5, &layers, 0, Optimizer::default()).unwrap();
    let e = gpu.fit(&big, &options, None, |_, _| {}).unwrap_err();
    assert!(matches!(e, nn::Error::NonFiniteLoss { .. }), "{e}");
}

/// A weights file is validated whole before any weight changes: transposed kernels, missing
/// or extra tensors, wrong lengths (each used to load partially, or be accepted).
#[test]
fn weights_files_are_validated_before_applying() {
    let _g = serial();
    let d = dir("weights");
    let layers = tutorial_layers(true, 4, 3);
    let mut gpu = Sequential::new(ctx(), 5, &layers, 1, Optimizer::default()).unwrap();
    let mut cpu = CpuModel::new(5, &layers, 1, Optimizer::default()).unwrap();
    let good = gpu.weights().unwrap();
    let other = Sequential::new(ctx(), 5, &layers, 2, Optimizer::default())
        .unwrap()
        .weights()
        .unwrap();
    // Each broken file starts from another model's weights, so a partial load would show.
    let mut cases: Vec<(&str, Vec<wgpu_batchnorm::nn::Weight>)> = Vec::new();
    let mut t = other.clone();
    t[0].shape.reverse(); // dense/kernel [4, 5] instead of [5, 4]: same count
    cases.push(("transposed", t));
    cases.push((
        "missing",
        other
            .iter()
            .filter(|w| !w.name.starts_with("dense_1/"))
            .cloned()
            .collect(),
    ));
    let mut t = other.clone();
    t.push(wgpu_batchnorm::nn::Weight {
        name: "dense_7/kernel".into(),
        shape: vec![1],
        values: vec![0.0],
    });
    cases.push(("extra", t));
    let mut t = other.clone();
    let mv = t
        .iter_mut()
        .find(|w| w.name.ends_with("moving_variance"))
        .unwrap();
    mv.values.pop();
    mv.shape = vec![mv.values.len()];
    cases.push(("short moving variance", t));
    for (what, weights) in cases {
        let p = d.join(format!("{}.safetensors", what.replace(' ', "_")));
        save_weights(&weights, &p).unwrap();
        let e = gpu.load(&p).unwrap_err();
        assert!(matches!(e, nn::Error::Weights { .. }), "{what}: {e}");
        assert_eq!(gpu.weights().unwrap(), good, "{what}: GPU model changed");
        let before = cpu.weights();
        let e = cpu.load(&p).unwrap_err();
        assert!(matches!(e, nn::Error::Weights { .. }), "{what}: {e}");
        assert_eq!(cpu.weights(), before, "{what}: CPU model changed");
    }
    // And a whole, right file loads.
    let p = d.join("ok.safetensors");
    save_weights(&other, &p).unwrap();
    gpu.load(&p).unwrap();
    assert_eq!(gpu.weights().unwrap(), other);
    assert_eq!(load_weights(&p).unwrap().len(), other.len());
    std::fs::remove_dir_all(&d).ok();
}

/// A failed save leaves nothing behind; links stay links; device nodes are not replaced.
#[test]
fn saves_are_atomic_and_leave_nothing_on_failure() {
    let d = dir("save");
    let w = Dataset::synthetic(3, 2, 0); // any weights will do: use a tiny model's
    let weights = CpuModel::new(
        w.features(),
        &tutorial_layers(true, 2, 3),
        0,
        Optimizer::default(),
    )
    .unwrap()
    .weights();
    // A directory as the target.
    let sub = d.join("a_directory");
    std::fs::create_dir(&sub).unwrap();
    let e = save_weights(&weights, &sub).unwrap_err();
    assert!(e.to_string().contains("is a directory"), "{e}");
    assert_eq!(files_in(&d), ["a_directory"]);
    assert!(files_in(&sub).is_empty());
    // A missing directory.
    let e = save_weights(&weights, &d.join("nodir/w.safetensors")).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    // The file is named once (it was "weights file P: P: the directory ...").
    assert_eq!(e.to_string().matches("w.safetensors").count(), 1, "{e}");
    // A symlink stays a symlink; its target gets the file.
    #[cfg(unix)]
    {
        let target = d.join("target.safetensors");
        std::fs::write(&target, b"old").unwrap();
        let link = d.join("link.safetensors");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        save_weights(&weights, &link).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let by_name = |mut v: Vec<wgpu_batchnorm::nn::Weight>| {
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        };
        assert_eq!(
            by_name(load_weights(&target).unwrap()),
            by_name(weights.clone())
        );
        // A device node is refused, not replaced.
        let e = save_weights(&weights, Path::new("/dev/null")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
    }
    let leftovers: Vec<String> = files_in(&d)
        .into_iter()
        .filter(|f| f.contains("partial") || f.contains("probe"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&d).ok();
}

/// Regions at disjoint offsets of one buffer are not aliasing (they were refused); regions
/// that share bytes are.
#[test]
fn disjoint_regions_of_one_buffer_are_accepted() {
    let _g = serial();
    let ctx = ctx();
    let buffer = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("shared"),
        size: 1024,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let shape = [4usize, 8];
    let x: Vec<f32> = (0..32)
        .map(|i| (i as f32 * 0.7).sin() * 3.0 + 1.0)
        .collect();
    let dy: Vec<f32> = (0..32).map(|i| (i as f32 * 0.3).cos()).collect();
    ctx.queue()
        .write_buffer(&buffer, 0, bytemuck::cast_slice(&x));
    ctx.queue()
        .write_buffer(&buffer, 512, bytemuck::cast_slice(&dy));
    let mut bn = BatchNorm::new(ctx, BatchNormConfig::keras(8)).unwrap();
    let at = |offset| TensorRef {
        buffer: &buffer,
        offset,
        shape: &shape,
    };
    // x at 0, y at 256, dy at 512, dx at 768: four regions of one buffer.
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    bn.encode_forward(&mut enc, at(0), at(256), Mode::Training)
        .unwrap();
    bn.encode_backward(&mut enc, at(0), at(512), at(768))
        .unwrap();
    ctx.submit_and_wait(enc).unwrap();
    let mut cpu = CpuBatchNorm::new(BatchNormConfig::keras(8)).unwrap();
    let y_ref = cpu.forward(&x, &shape, Mode::Training).unwrap();
    let g = cpu.backward(&x, &dy, &shape).unwrap();
    common::assert_close(
        "y",
        &ctx.read_f32(&buffer, 256, 32).unwrap(),
        &y_ref,
        1e-5,
        1e-5,
    );
    common::assert_close(
        "dx",
        &ctx.read_f32(&buffer, 768, 32).unwrap(),
        &g.dx,
        1e-5,
        1e-4,
    );
    // Regions that share bytes are aliasing.
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    let e = bn
        .encode_forward(&mut enc, at(0), at(0), Mode::Training)
        .unwrap_err();
    assert!(matches!(e, Error::Aliasing(_)), "{e}");
    let long = [32usize, 8]; // 1 KiB from 0: covers the region at 256
    let e = bn
        .encode_forward(
            &mut enc,
            TensorRef {
                buffer: &buffer,
                offset: 0,
                shape: &long,
            },
            TensorRef {
                buffer: &buffer,
                offset: 256,
                shape: &[2usize, 8],
            },
            Mode::Training,
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { .. } | Error::Aliasing(_)),
        "{e}"
    );
    let e = bn
        .encode_backward(&mut enc, at(0), at(512), at(512))
        .unwrap_err();
    assert!(matches!(e, Error::Aliasing(_)), "{e}");
}

/// Asking for statistics before any forward pass says so (it said "backward called").
#[test]
fn statistics_before_a_forward_pass_say_so() {
    let _g = serial();
    let bn = BatchNorm::new(ctx(), BatchNormConfig::keras(2)).unwrap();
    let e = bn.batch_mean().unwrap_err();
    assert!(matches!(e, Error::NoStatistics), "{e}");
    assert!(e.to_string().contains("forward pass first"), "{e}");
}

/// Keras forms `1 - momentum` from Python floats: f32(1 - 0.99) = 0.0099999998, not
/// 1 - f32(0.99) = 0.0099999905. On a channel of mean 1e4 that is 9.4e-5 in the moving mean
/// after one step; rounded once, every path lands within f32 round-off of Keras.
#[test]
fn the_momentum_complement_is_rounded_once() {
    let _g = serial();
    let config = BatchNormConfig::keras(2);
    let (keep, fresh) = config.running_weights();
    assert_eq!(keep, 0.99f32);
    assert_eq!(fresh, (1.0f64 - 0.99) as f32);
    assert_ne!(fresh, 1.0 - 0.99f32);
    let torch = BatchNormConfig::pytorch(2).running_weights();
    assert_eq!(torch, ((1.0f64 - 0.1) as f32, 0.1f32));
    // One training step on channels of mean 1e4 and 3e6.
    let x: Vec<f32> = (0..64)
        .map(|i| if i % 2 == 0 { 1e4 } else { 3e6 } + (i % 7) as f32 * 0.25)
        .collect();
    let mean =
        |c: usize| -> f64 { x.iter().skip(c).step_by(2).map(|&v| v as f64).sum::<f64>() / 32.0 };
    // Keras: moving = 0.99 * 0 + f32(0.01) * mean, in f32.
    let keras: Vec<f32> = (0..2).map(|c| fresh * mean(c) as f32).collect();
    let mut gpu = BatchNorm::new(ctx(), config.clone()).unwrap();
    gpu.forward_host(&x, &[32, 2], Mode::Training).unwrap();
    let mut fast = wgpu_batchnorm::cpu::FastCpuBatchNorm::new(config.clone()).unwrap();
    fast.forward(&x, &[32, 2], Mode::Training).unwrap();
    let mut reference = CpuBatchNorm::new(config).unwrap();
    reference.forward(&x, &[32, 2], Mode::Training).unwrap();
    for (who, got) in [
        ("gpu", gpu.running_mean().unwrap()),
        ("fast", fast.running_mean().to_vec()),
        ("reference", reference.running_mean().to_vec()),
    ] {
        for c in 0..2 {
            let err = (got[c] - keras[c]).abs() / keras[c].abs();
            assert!(
                err < 2e-7,
                "{who} channel {c}: {} keras {}",
                got[c],
                keras[c]
            );
        }
    }
}

/// Bound calls replay the same tensors without building anything, give what unbound calls
/// give, survive the layer replacing its scratch buffers in between, and refuse to be
/// replayed by another layer.
#[test]
fn bound_calls_match_unbound_ones() {
    let _g = serial();
    let ctx = ctx();
    // 4096 rows: several row splits, the path that binds the layer's partials buffer.
    let shape = [4096usize, 8];
    let x: Vec<f32> = (0..4096 * 8)
        .map(|i| ((i * 37) % 23) as f32 * 0.3 - 2.0)
        .collect();
    let dy: Vec<f32> = (0..4096 * 8)
        .map(|i| ((i * 11) % 7) as f32 * 0.2 - 0.5)
        .collect();
    let [xt, dyt] = [&x, &dy].map(|v| Tensor::from_slice(ctx, &shape, v).unwrap());
    let [yt, dxt] = [0, 1].map(|_| Tensor::zeros(ctx, &shape).unwrap());
    let config = BatchNormConfig::keras(8).with_relu(true);
    let mut bn = BatchNorm::new(ctx, config.clone()).unwrap();
    let mut fwd = bn.bind_forward(xt.as_ref(), yt.as_ref()).unwrap();
    let mut bwd = bn
        .bind_backward(xt.as_ref(), dyt.as_ref(), dxt.as_ref())
        .unwrap();
    let mut cpu = CpuBatchNorm::new(config.clone()).unwrap();
    for round in 0..3 {
        if round == 1 {
            // A much larger batch in between: more row splits, a new partials buffer.
            let big = vec![0.5f32; 200_000 * 8];
            bn.forward_host(&big, &[200_000, 8], Mode::Training)
                .unwrap();
            cpu.forward(&big, &[200_000, 8], Mode::Training).unwrap();
        }
        let mut enc = ctx.device().create_command_encoder(&Default::default());
        bn.encode_forward_bound(&mut enc, &mut fwd, Mode::Training)
            .unwrap();
        bn.encode_backward_bound(&mut enc, &mut bwd).unwrap();
        ctx.submit_and_wait(enc).unwrap();
        let y_ref = cpu.forward(&x, &shape, Mode::Training).unwrap();
        let g = cpu.backward(&x, &dy, &shape).unwrap();
        common::assert_close("bound y", &yt.to_vec(ctx).unwrap(), &y_ref, 1e-5, 1e-5);
        common::assert_close("bound dx", &dxt.to_vec(ctx).unwrap(), &g.dx, 1e-5, 1e-4);
        common::assert_close(
            "running mean",
            &bn.running_mean().unwrap(),
            cpu.running_mean(),
            1e-6,
            1e-5,
        );
    }
    let mut other = BatchNorm::new(ctx, config).unwrap();
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    let e = other
        .encode_forward_bound(&mut enc, &mut fwd, Mode::Training)
        .unwrap_err();
    assert!(matches!(e, Error::ForeignBinding), "{e}");
}
