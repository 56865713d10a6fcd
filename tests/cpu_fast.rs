//! The fast CPU path against the f64 reference: same semantics, f32 accuracy.

mod common;

use common::{assert_close, clear_relu_ties, Rng};
use proptest::prelude::*;
use wgpu_batchnorm::cpu::{CpuBatchNorm, FastCpuBatchNorm};
use wgpu_batchnorm::{BatchNormConfig, Convention, Layout, Mode};

fn run(config: BatchNormConfig, shape: &[usize], seed: u64, mean_scale: f64, spread: f64) {
    let mut rng = Rng::new(seed);
    let len: usize = shape.iter().product();
    let c = config.channels;
    let mut fast = FastCpuBatchNorm::new(config.clone()).unwrap();
    let mut reference = CpuBatchNorm::new(config.clone()).unwrap();
    let gamma: Vec<f32> = (0..c).map(|_| (0.5 + rng.uniform()) as f32).collect();
    let beta: Vec<f32> = (0..c).map(|_| (rng.uniform() - 0.5) as f32).collect();
    fast.set_gamma(&gamma.clone()).unwrap();
    reference.set_gamma(&gamma).unwrap();
    fast.set_beta(&beta.clone()).unwrap();
    reference.set_beta(&beta).unwrap();
    let tag = format!(
        "{shape:?} {:?} {:?} relu={}",
        config.layout, config.convention, config.relu
    );
    for mode in [
        Mode::Training,
        Mode::Training,
        Mode::Inference,
        Mode::Training,
    ] {
        let x: Vec<f32> = (0..len)
            .map(|i| (mean_scale * (1 + i % 3) as f64 + spread * rng.normal()) as f32)
            .collect();
        let y = fast.forward(&x, shape, mode).unwrap();
        let y_ref = reference.forward(&x, shape, mode).unwrap();
        assert_close(&format!("{tag} {mode:?} y"), &y, &y_ref, 2e-4, 2e-4);
        let mut dy: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
        clear_relu_ties(&reference, &x, shape, &mut dy);
        let dx = fast.backward(&x, &dy, shape).unwrap();
        let r = reference.backward(&x, &dy, shape).unwrap();
        let sum_tol = 1e-4 * (len as f64 / c as f64).sqrt();
        assert_close(&format!("{tag} {mode:?} dx"), &dx, &r.dx, 2e-4, 2e-3);
        assert_close(
            &format!("{tag} {mode:?} dgamma"),
            &fast.dgamma,
            &r.dgamma,
            sum_tol,
            1e-3,
        );
        assert_close(
            &format!("{tag} {mode:?} dbeta"),
            &fast.dbeta,
            &r.dbeta,
            sum_tol,
            1e-3,
        );
    }
    assert_close(
        &format!("{tag} running mean"),
        fast.running_mean(),
        reference.running_mean(),
        1e-6,
        1e-5,
    );
    assert_close(
        &format!("{tag} running var"),
        fast.running_var(),
        reference.running_var(),
        1e-6,
        1e-4,
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fast_matches_reference(
        first in any::<bool>(),
        pytorch in any::<bool>(),
        relu in any::<bool>(),
        n in 2usize..300,
        c in 1usize..70,
        spatial in prop::collection::vec(1usize..20, 0..3),
        seed in any::<u64>(),
    ) {
        let mut config = if pytorch { BatchNormConfig::pytorch(c) } else { BatchNormConfig::keras(c) };
        config.relu = relu;
        config.layout = if first { Layout::ChannelsFirst } else { Layout::ChannelsLast };
        let mut shape = vec![n];
        if first { shape.push(c); shape.extend(&spatial); } else { shape.extend(&spatial); shape.push(c); }
        run(config, &shape, seed, 1.0, 1.0);
    }
}

#[test]
fn huge_means_with_tiny_spreads() {
    for layout in [Layout::ChannelsLast, Layout::ChannelsFirst] {
        let shape = if layout == Layout::ChannelsLast {
            vec![4096, 3]
        } else {
            vec![16, 3, 256]
        };
        run(
            BatchNormConfig::keras(3).with_layout(layout),
            &shape,
            3,
            1e4,
            1e-2,
        );
    }
}

#[test]
fn many_channels_and_cumulative_average() {
    run(BatchNormConfig::keras(9000), &[3, 9000], 4, 0.0, 1.0);
    let mut c = BatchNormConfig::pytorch(5);
    c.momentum = None;
    c.convention = Convention::PyTorch;
    run(c, &[7, 5, 11], 5, 2.0, 3.0);
}

/// Largest |a - b| over the largest |b|: error relative to the tensor's scale.
fn norm_rel(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    diff / scale.max(f64::MIN_POSITIVE)
}

/// Largest per-element |a - b| / |b|.
fn elem_rel(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| {
        m.max((x - y).abs() / y.abs().max(1e-30))
    })
}

/// One training forward and backward of `x` on both paths; the relative errors of
/// (y, batch variance, dx, dgamma) against float64.
fn errors(config: BatchNormConfig, shape: &[usize], x: &[f32], seed: u64) -> [f64; 4] {
    let mut fast = FastCpuBatchNorm::new(config.clone()).unwrap();
    let mut reference = CpuBatchNorm::new(config).unwrap();
    let y = fast.forward(x, shape, Mode::Training).unwrap();
    let y_ref = reference.forward(x, shape, Mode::Training).unwrap();
    let var: Vec<f64> = fast
        .last_stats()
        .unwrap()
        .1
        .iter()
        .map(|&v| v as f64)
        .collect();
    let var_ref = reference.last_stats().unwrap().var.clone();
    let mut rng = Rng::new(seed);
    let dy: Vec<f32> = (0..x.len()).map(|_| rng.normal() as f32).collect();
    let dx = fast.backward(x, &dy, shape).unwrap();
    let r = reference.backward(x, &dy, shape).unwrap();
    let dg: Vec<f64> = fast.dgamma.iter().map(|&v| v as f64).collect();
    let dg_ref: Vec<f64> = r.dgamma.iter().map(|&v| v as f64).collect();
    [
        norm_rel(&y, &y_ref),
        elem_rel(&var, &var_ref),
        norm_rel(&dx, &r.dx),
        elem_rel(&dg, &dg_ref),
    ]
}

/// A first sample far from the rest (the pivot of a naive shifted sum) and a huge mean with
/// a tiny spread: the fast path stays within 1e-5 of float64, as the GPU path does.
#[test]
fn outlier_first_sample_and_huge_means_stay_within_1e5() {
    for &(n, layout) in &[
        (4096, Layout::ChannelsLast),
        (4096, Layout::ChannelsFirst),
        (1_000_000, Layout::ChannelsLast),
        (1_000_000, Layout::ChannelsFirst),
    ] {
        let mut rng = Rng::new(n as u64);
        // Channels-first as [n / 64, 2, 64]: planes of 64 values.
        let shape = match layout {
            Layout::ChannelsLast => vec![n, 2],
            Layout::ChannelsFirst => vec![n / 64, 2, 64],
        };
        let config = BatchNormConfig::keras(2).with_layout(layout);
        let mut x: Vec<f32> = (0..2 * n).map(|_| rng.normal() as f32).collect();
        // Outlier first sample of channel 0 in either layout; channel 1: mean 1e7, spread 0.1.
        x[0] = 1e3;
        let second: Vec<usize> = match layout {
            Layout::ChannelsLast => (0..n).map(|i| 2 * i + 1).collect(),
            Layout::ChannelsFirst => (0..n).map(|i| (i / 64) * 128 + 64 + i % 64).collect(),
        };
        for i in second {
            x[i] = (1e7 + 0.1 * rng.normal()) as f32;
        }
        let e = errors(config, &shape, &x, 7);
        for (what, err) in ["y", "variance", "dx", "dgamma"].iter().zip(e) {
            assert!(
                err < 1e-5,
                "n = {n} {layout:?}: {what} off by {err:.2e} relative to float64"
            );
        }
    }
}
