//! Shared helpers of the GPU test suites.
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard, OnceLock};

use wgpu_batchnorm::{Context, ContextOptions};

/// The default context: the adapter's own limits, subgroups where available.
pub fn ctx() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| Context::new().expect("a wgpu adapter (lavapipe or llvmpipe in CI)"))
}

/// A context with subgroups refused: the workgroup-memory reduction path.
pub fn ctx_no_subgroups() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| {
        Context::with_options(ContextOptions {
            disable_subgroups: true,
            ..Default::default()
        })
        .expect("adapter")
    })
}

/// A context with 4 KiB bindings: small tensors take the chunked path (binding offsets) that
/// only tensors past the device's binding limit take otherwise.
pub fn ctx_small_bindings() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| {
        Context::with_options(ContextOptions {
            max_binding_bytes: Some(4096),
            max_workgroups_per_dim: Some(2),
            ..Default::default()
        })
        .expect("adapter")
    })
}

/// A context with 4 workgroups per grid dimension: small tensors take the folded 2-D grid
/// that only tensors past 65,535 workgroups take otherwise.
pub fn ctx_small_grid() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| {
        Context::with_options(ContextOptions {
            max_workgroups_per_dim: Some(4),
            ..Default::default()
        })
        .expect("adapter")
    })
}

/// GPU tests of one binary run one at a time (software drivers share 2 cores).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Deterministic data for the tests: the library's own generator.
#[allow(unused_imports)]
pub use wgpu_batchnorm::internal::Rng;

/// Max over elements of |a - b| / (abs + rel * |b|); <= 1 means within tolerance.
pub fn worst(a: &[f32], b: &[f32], abs: f64, rel: f64) -> f64 {
    assert_eq!(a.len(), b.len(), "length");
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let (x, y) = (x as f64, y as f64);
            if x.is_nan() && y.is_nan() {
                0.0
            } else {
                (x - y).abs() / (abs + rel * y.abs())
            }
        })
        .fold(0.0, f64::max)
}

#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], abs: f64, rel: f64) {
    let w = worst(got, want, abs, rel);
    assert!(
        w <= 1.0,
        "{what}: off by {w:.2}x tolerance (abs {abs}, rel {rel}); got {:?}.. want {:?}..",
        &got[..got.len().min(6)],
        &want[..want.len().min(6)]
    );
}

/// Zeroes the upstream gradient where the fused ReLU's input lies within 1e-4 of zero in the
/// reference's last forward pass. Two correct implementations may round such an input to
/// opposite signs and so mask it differently; with dy = 0 there, the mask cannot matter.
pub fn clear_relu_ties(
    reference: &wgpu_batchnorm::cpu::CpuBatchNorm,
    x: &[f32],
    shape: &[usize],
    dy: &mut [f32],
) {
    let config = reference.config();
    if !config.relu {
        return;
    }
    let stats = reference.last_stats().expect("a forward pass");
    let g = wgpu_batchnorm::Geometry::new(shape, config.layout, config.channels).expect("shape");
    let st = &reference;
    for o in 0..g.outer {
        for c in 0..g.channels {
            let gamma = if config.scale {
                st.gamma()[c] as f64
            } else {
                1.0
            };
            let beta = if config.center {
                st.beta()[c] as f64
            } else {
                0.0
            };
            for i in 0..g.inner {
                let k = g.index(o, c, i);
                let pre = (x[k] as f64 - stats.mean[c]) * stats.inv_std[c] * gamma + beta;
                if pre.abs() < 1e-4 {
                    dy[k] = 0.0;
                }
            }
        }
    }
}

/// Every kind of block: Dense+ReLU, BatchNorm+ReLU, Dropout, Dense logits.
pub fn all_layers() -> Vec<wgpu_batchnorm::nn::LayerSpec> {
    use wgpu_batchnorm::nn::LayerSpec;
    vec![
        LayerSpec::Dense(7),
        LayerSpec::Relu,
        LayerSpec::Dense(5),
        LayerSpec::BatchNorm,
        LayerSpec::Relu,
        LayerSpec::Dropout(0.3),
        LayerSpec::Dense(3),
    ]
}

/// `rows` x 6 synthetic rows, 3 classes, features on a gentler scale (for finite
/// differences and step-by-step comparisons).
pub fn gentle_batch(rows: usize, seed: u64) -> wgpu_batchnorm::nn::Dataset {
    let d = wgpu_batchnorm::nn::Dataset::synthetic(rows, 6, seed);
    let x = d.x().iter().map(|v| v / 20.0).collect();
    wgpu_batchnorm::nn::Dataset::new(x, d.labels().to_vec(), d.features(), d.classes()).unwrap()
}

/// Checks every `stride`-th entry of the f64 model's analytic gradients against central
/// differences of its training loss (|error| < 1e-6 + 1e-4 |numeric|); returns how many.
pub fn check_finite_differences(
    model: &mut wgpu_batchnorm::nn::reference::CpuModel,
    data: &wgpu_batchnorm::nn::Dataset,
    stride: usize,
) -> usize {
    let (_, _, grads) = model.gradients(data).unwrap();
    let h = 1e-6;
    let mut checked = 0;
    for (t, grad) in grads.iter().enumerate() {
        for i in (0..grad.len()).step_by(stride) {
            let orig = model.trainable()[t][i];
            model.trainable_mut()[t][i] = orig + h;
            let up = model.training_loss(data).unwrap();
            model.trainable_mut()[t][i] = orig - h;
            let down = model.training_loss(data).unwrap();
            model.trainable_mut()[t][i] = orig;
            let numeric = (up - down) / (2.0 * h);
            assert!(
                (numeric - grad[i]).abs() < 1e-6 + 1e-4 * numeric.abs(),
                "tensor {t}[{i}]: analytic {} numeric {numeric}",
                grad[i]
            );
            checked += 1;
        }
    }
    checked
}

/// A context whose network kernels take their tiled form (workgroup-memory tiles, what GPUs
/// get), even on a CPU adapter, which gets the direct form by default.
pub fn ctx_tiled() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| {
        Context::with_options(ContextOptions {
            direct_kernels: Some(false),
            ..Default::default()
        })
        .expect("adapter")
    })
}

/// A `.npy` file as numpy writes it (format 1.0, C order, header padded to 64 bytes): any
/// `descr` and `shape`, then `payload` as given, so a test can write dtypes and lying shapes
/// that `write_npy_f32` (f4, checked) does not.
pub fn npy(descr: &str, shape: &[usize], payload: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(payload);
    b
}

/// Runs the `bnorm` binary: (success, stdout, stderr).
pub fn bnorm(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bnorm"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A raw IDX file of unsigned bytes (MNIST's format): the magic, big-endian `dims`, `data`.
pub fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}
