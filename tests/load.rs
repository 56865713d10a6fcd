//! Under load and over time: memory stays flat over many calls with fresh tensors and over
//! many shapes, contexts come and go, threads share a context, and two fits run at once,
//! all agreeing bit for bit with serial runs. Bounded for CI.

mod common;

use std::sync::Arc;

use common::serial;
use wgpu_batchnorm::nn::{tutorial_layers, Dataset, FitOptions, Optimizer, Sequential};
use wgpu_batchnorm::{BatchNorm, BatchNormConfig, Context, Layout, Mode, Tensor};

/// Resident memory of this process, in bytes (Linux; 0 elsewhere, which passes trivially).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

const MB: u64 = 1 << 20;

/// Fresh tensors every call: the layer keeps none of them alive (its bind-group cache kept
/// every caller buffer, 1.9 GB after 60 calls of 12 MB tensors).
#[test]
fn memory_stays_flat_over_calls_with_fresh_tensors() {
    let _g = serial();
    let ctx = Context::new().unwrap();
    let shape = [8usize, 64, 28, 28]; // 1.6 MB per tensor, channels-first
    let len: usize = shape.iter().product();
    let x: Vec<f32> = (0..len).map(|i| (i % 97) as f32 * 0.1).collect();
    let config = BatchNormConfig::keras(64).with_layout(Layout::ChannelsFirst);
    let mut bn = BatchNorm::new(&ctx, config).unwrap();
    let round = |bn: &mut BatchNorm| {
        bn.forward_host(&x, &shape, Mode::Training).unwrap();
        bn.backward_host(&x, &x, &shape).unwrap();
        // The GPU-tensor API with the caller dropping y at once.
        let xt = Tensor::from_slice(&ctx, &shape, &x).unwrap();
        drop(bn.forward(&xt, Mode::Training).unwrap());
    };
    for _ in 0..5 {
        round(&mut bn);
    }
    let before = rss();
    for _ in 0..40 {
        round(&mut bn);
    }
    let grown = rss().saturating_sub(before);
    // 40 rounds hold 5 tensors of 1.6 MB each: 320 MB if any were kept.
    assert!(grown < 40 * MB, "grew {} MB", grown / MB);
}

/// Ever new shapes on one layer: its per-shape cache is bounded.
#[test]
fn memory_stays_bounded_over_many_shapes() {
    let _g = serial();
    let ctx = Context::new().unwrap();
    let mut bn = BatchNorm::new(&ctx, BatchNormConfig::keras(3)).unwrap();
    let mut run = |rows: usize| {
        let x = vec![0.5f32; rows * 3];
        bn.forward_host(&x, &[rows, 3], Mode::Training).unwrap();
    };
    for rows in 2..100 {
        run(rows);
    }
    let before = rss();
    for rows in 100..1100 {
        run(rows);
    }
    let grown = rss().saturating_sub(before);
    assert!(grown < 12 * MB, "1000 shapes grew {} MB", grown / MB);
}

/// Contexts created and dropped leave nothing behind.
#[test]
fn contexts_come_and_go() {
    let _g = serial();
    let once = || {
        let ctx = Context::new().unwrap();
        let mut bn = BatchNorm::new(&ctx, BatchNormConfig::keras(4)).unwrap();
        bn.forward_host(&[1.0; 16], &[4, 4], Mode::Training)
            .unwrap();
    };
    for _ in 0..5 {
        once();
    }
    let before = rss();
    for _ in 0..30 {
        once();
    }
    let grown = rss().saturating_sub(before);
    assert!(grown < 40 * MB, "30 contexts grew {} MB", grown / MB);
}

fn rounds(ctx: &Context, seed: u32, n: usize) -> Vec<Vec<f32>> {
    let mut bn = BatchNorm::new(
        ctx,
        BatchNormConfig::keras(5).with_relu(seed.is_multiple_of(2)),
    )
    .unwrap();
    (0..n)
        .map(|r| {
            let x: Vec<f32> = (0..40)
                .map(|i| {
                    (((i as u32).wrapping_mul(2_654_435_761) ^ seed ^ r as u32) % 1000) as f32
                        * 0.01
                })
                .collect();
            let mut y = bn.forward_host(&x, &[8, 5], Mode::Training).unwrap();
            let (dx, _, _) = bn.backward_host(&x, &x, &[8, 5]).unwrap();
            y.extend(dx);
            y.extend(bn.running_mean().unwrap());
            y
        })
        .collect()
}

/// Eight threads on one context give, bit for bit, what each gives alone.
#[test]
fn threads_sharing_a_context_agree_with_serial_runs() {
    let _g = serial();
    let ctx = Arc::new(Context::new().unwrap());
    let serial_runs: Vec<_> = (0..8).map(|s| rounds(&ctx, s, 25)).collect();
    let handles: Vec<_> = (0..8)
        .map(|s| {
            let ctx = ctx.clone();
            std::thread::spawn(move || rounds(&ctx, s, 25))
        })
        .collect();
    for (s, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), serial_runs[s], "thread {s}");
    }
}

/// Two fits at once on one context agree bit for bit with the same fits run one by one.
#[test]
fn two_fits_at_once_agree_with_serial_fits() {
    let _g = serial();
    let ctx = Arc::new(Context::new().unwrap());
    let fit = |ctx: &Context, seed: u64| {
        let data = Dataset::synthetic(300, 8, seed);
        let mut m = Sequential::new(
            ctx,
            8,
            &tutorial_layers(seed == 1, 6, 3),
            seed,
            Optimizer::default(),
        )
        .unwrap();
        let h = m
            .fit(&data, &FitOptions::default(), None, |_, _| {})
            .unwrap();
        (h, m.weights().unwrap())
    };
    let alone = [fit(&ctx, 1), fit(&ctx, 2)];
    let handles: Vec<_> = [1u64, 2]
        .into_iter()
        .map(|seed| {
            let ctx = ctx.clone();
            std::thread::spawn(move || fit(&ctx, seed))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), alone[i], "fit {i}");
    }
}
