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
pub use wgpu_batchnorm::nn::rng::Rng;

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
