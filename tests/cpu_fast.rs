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
    fast.state.gamma = gamma.clone();
    reference.state.gamma = gamma;
    fast.state.beta = beta.clone();
    reference.state.beta = beta;
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
        &fast.state.running_mean,
        &reference.state.running_mean,
        1e-6,
        1e-5,
    );
    assert_close(
        &format!("{tag} running var"),
        &fast.state.running_var,
        &reference.state.running_var,
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
