//! criterion bench of the default job: one epoch (32 steps of 32 rows, plus the last batch of
//! 8) of Dense(10) → BatchNorm → ReLU → Dense(3) with Adam, on the GPU path and the CPU path.
//! `bnorm train` prints the same per-step figures; `benches/compare_train.py` adds Keras and
//! PyTorch to the comparison.
//!
//!     cargo bench --bench train

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use wgpu_batchnorm::nn::reference::CpuModel;
use wgpu_batchnorm::nn::{tutorial_layers, Dataset, FitOptions, Optimizer, Sequential};
use wgpu_batchnorm::Context;

fn bench(c: &mut Criterion) {
    let data = Dataset::synthetic(1000, 20, 42);
    let layers = tutorial_layers(true, 10, 3);
    let options = FitOptions {
        epochs: 1,
        ..Default::default()
    };
    let mut group = c.benchmark_group("default_job_epoch");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    if let Ok(ctx) = Context::new() {
        let mut gpu = Sequential::new(&ctx, 20, &layers, 42, Optimizer::default()).expect("model");
        group.bench_function("gpu", |b| {
            b.iter(|| gpu.fit(&data, &options, None, |_, _| {}).expect("fit"))
        });
    }
    let mut cpu = CpuModel::new(20, &layers, 42, Optimizer::default()).expect("model");
    group.bench_function("cpu_f64", |b| {
        b.iter(|| cpu.fit(&data, &options, None, |_, _| {}).expect("fit"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
