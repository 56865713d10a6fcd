//! criterion benches: forward (training), inference and backward on the CPU path and the GPU
//! path. GPU iterations report GPU time from timestamp queries when the adapter has them
//! (criterion's `iter_custom`), otherwise wall time from submit to completion.
//!
//!     cargo bench --bench batchnorm
//!     BNORM_BENCH_SHAPES=64x56x56x64,64x64x56x56:first cargo bench --bench batchnorm

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wgpu_batchnorm::internal::bench::{Case, CpuRunner, GpuRunner, Pass};
use wgpu_batchnorm::Context;

fn shapes() -> Vec<Case> {
    let spec = std::env::var("BNORM_BENCH_SHAPES")
        .unwrap_or_else(|_| "256x64,32x56x56x64,32x64x56x56:first".into());
    spec.split(',')
        .filter_map(|s| Case::parse(s).ok())
        .collect()
}

fn bench(c: &mut Criterion) {
    let ctx = Context::new().ok();
    if let Some(ctx) = &ctx {
        eprintln!("GPU: {}", ctx.describe());
    }
    for case in shapes() {
        let x = case.data(1);
        let dy = case.data(2);
        let mut group = c.benchmark_group(case.label());
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(3));
        let mut cpu = CpuRunner::new(&case, x.clone(), dy.clone()).expect("cpu runner");
        let mut gpu = ctx
            .as_ref()
            .map(|ctx| GpuRunner::new(ctx, &case, &x, &dy).expect("gpu runner"));
        for pass in Pass::ALL {
            group.throughput(Throughput::Bytes(
                pass.bytes_per_element() * case.elements() as u64,
            ));
            group.bench_function(BenchmarkId::new("cpu", pass.name()), |b| {
                b.iter_custom(|iters| {
                    Duration::from_secs_f64(
                        cpu.time(pass, iters as u32).expect("cpu").wall_s * iters as f64,
                    )
                })
            });
            if let Some(gpu) = gpu.as_mut() {
                group.bench_function(BenchmarkId::new("gpu", pass.name()), |b| {
                    b.iter_custom(|iters| {
                        let t = gpu.time(pass, iters as u32).expect("gpu");
                        Duration::from_secs_f64(t.best() * iters as f64)
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
