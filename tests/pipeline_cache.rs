//! The per-context cache of geometry-specialized convolution pipelines is bounded: 500
//! models with distinct convolution geometries, each built, trained a step, asked a
//! prediction and dropped on one context, leave no more cached geometries than a fixed few
//! (the live models' and the most recently used), and the process's memory stays flat
//! (before the bound: +9.6 MB per model, 79 MB to 4.9 GB). Each model compiles its own
//! pipelines (~1-2 s on lavapipe), so the suite builds 100; `BNORM_CACHE_CYCLES=500` runs the
//! issue's 500 (about 15 minutes on a loaded 2-core lavapipe machine).

mod common;

use common::serial;
use wgpu_batchnorm::internal::cached_conv_geometries;
use wgpu_batchnorm::nn::{Conv2D, Dataset, LayerSpec, Optimizer, Padding, Sequential, Shape};
use wgpu_batchnorm::Context;

/// Resident memory of this process, bytes (`/proc/self/statm`; `None` off Linux).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Cached geometries may be the live model's and at most this many kept.
const BOUND: usize = 16;

#[test]
fn distinct_conv_geometries_do_not_pile_up() {
    let _g = serial();
    let cycles: usize = std::env::var("BNORM_CACHE_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let ctx = Context::new().unwrap();
    let input = Shape::image(6, 6, 1);
    let data = Dataset::synthetic(4, 36, 1);
    let (mut settled, mut most) = (None, 0);
    let started = std::time::Instant::now();
    for i in 0..cycles {
        let layers = [
            LayerSpec::Conv2D(Conv2D::new(2 + i, 3).padding(Padding::Same)),
            LayerSpec::Flatten,
            LayerSpec::Dense(3),
        ];
        let mut model =
            Sequential::new(&ctx, input, &layers, i as u64, Optimizer::sgd(0.01, 0.0)).unwrap();
        model.train_batch(&data).unwrap();
        let probs = model.predict(&data.x()[..72]).unwrap();
        assert_eq!(probs.len(), 6);
        most = most.max(cached_conv_geometries(&ctx));
        drop(model);
        // Memory once the allocator and the driver have warmed up.
        if i == 20 {
            settled = rss();
        }
    }
    let cached = cached_conv_geometries(&ctx);
    eprintln!(
        "{cycles} models in {:.1} s; cached geometries: {cached} at the end, {most} at most",
        started.elapsed().as_secs_f64()
    );
    assert!(most <= BOUND, "{most} geometries cached at once");
    assert!(
        cached <= BOUND,
        "{cached} geometries cached after the models went"
    );
    if let (Some(before), Some(after)) = (settled, rss()) {
        let grown = after.saturating_sub(before) as f64 / 1e6;
        eprintln!(
            "resident memory: {:.0} MB -> {:.0} MB",
            before as f64 / 1e6,
            after as f64 / 1e6
        );
        // Generous: 2% of what 480 models took before the bound (9.6 MB each).
        assert!(
            grown < 0.02 * 9.6 * cycles.saturating_sub(21) as f64 + 64.0,
            "grew {grown:.0} MB over {} models",
            cycles - 21
        );
    }
}

/// A model built again with the same geometry finds its pipelines (no recompilation, the
/// same cache entry), and two live models of one geometry share it.
#[test]
fn one_geometry_is_one_entry() {
    let _g = serial();
    let ctx = Context::new().unwrap();
    let input = Shape::image(5, 5, 1);
    let layers = [
        LayerSpec::Conv2D(Conv2D::new(3, 3)),
        LayerSpec::Flatten,
        LayerSpec::Dense(3),
    ];
    let opt = Optimizer::sgd(0.01, 0.0);
    let a = Sequential::new(&ctx, input, &layers, 1, opt).unwrap();
    let b = Sequential::new(&ctx, input, &layers, 2, opt).unwrap();
    assert_eq!(cached_conv_geometries(&ctx), 1);
    drop((a, b));
    for seed in 0..5 {
        Sequential::new(&ctx, input, &layers, seed, opt).unwrap();
    }
    assert_eq!(cached_conv_geometries(&ctx), 1);
}
