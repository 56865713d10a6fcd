//! The GPU kernels against the CPU reference (f64 accumulation) on many shapes, in every
//! layout and both conventions: y, batch statistics, running statistics after several steps,
//! inference y, dx, dgamma, dbeta.

mod common;

use common::{
    assert_close, clear_relu_ties, ctx, ctx_no_subgroups, ctx_small_bindings, ctx_small_grid,
    serial, Rng,
};
use proptest::prelude::*;
use wgpu_batchnorm::cpu::CpuBatchNorm;
use wgpu_batchnorm::{
    BatchNorm, BatchNormConfig, Context, Convention, Geometry, Layout, Mode, SingleSamplePolicy,
};

/// Data whose channels have distinct means and spreads.
fn batch(rng: &mut Rng, config: &BatchNormConfig, shape: &[usize]) -> Vec<f32> {
    let g = Geometry::new(shape, config.layout, config.channels).expect("shape");
    let means: Vec<f64> = (0..g.channels).map(|_| rng.uniform() * 6.0 - 3.0).collect();
    let spreads: Vec<f64> = (0..g.channels).map(|_| 0.2 + rng.uniform() * 2.0).collect();
    let mut x = vec![0.0f32; g.elements().expect("size")];
    for o in 0..g.outer {
        for c in 0..g.channels {
            for i in 0..g.inner {
                x[g.index(o, c, i)] = (means[c] + spreads[c] * rng.normal()) as f32;
            }
        }
    }
    x
}

/// Trains `steps` batches on GPU and CPU side by side, then runs inference and backward, and
/// compares everything.
fn scenario(ctx: &Context, config: BatchNormConfig, shape: &[usize], seed: u64, steps: usize) {
    let mut rng = Rng::new(seed);
    let c = config.channels;
    let mut gpu = BatchNorm::new(ctx, config.clone()).expect("gpu layer");
    let mut cpu = CpuBatchNorm::new(config.clone()).expect("cpu layer");
    cpu.set_gamma(
        &(0..c)
            .map(|_| (0.5 + rng.uniform()) as f32)
            .collect::<Vec<f32>>(),
    )
    .unwrap();
    cpu.set_beta(
        &(0..c)
            .map(|_| (rng.uniform() - 0.5) as f32)
            .collect::<Vec<f32>>(),
    )
    .unwrap();
    gpu.set_gamma(cpu.gamma()).expect("gamma");
    gpu.set_beta(cpu.beta()).expect("beta");
    let n = shape.iter().product::<usize>() / c;
    let tag = format!(
        "{shape:?} {:?} {:?} relu={}",
        config.layout, config.convention, config.relu
    );
    for step in 0..steps {
        let x = batch(&mut rng, &config, shape);
        let y = gpu
            .forward_host(&x, shape, Mode::Training)
            .expect("gpu forward");
        let y_ref = cpu.forward(&x, shape, Mode::Training).expect("cpu forward");
        assert_close(&format!("{tag} step {step} y"), &y, &y_ref, 1e-4, 1e-4);
        let st = cpu.last_stats().expect("stats");
        let mean_ref: Vec<f32> = st.mean.iter().map(|&v| v as f32).collect();
        let var_ref: Vec<f32> = st.var.iter().map(|&v| v as f32).collect();
        assert_close(
            &format!("{tag} batch mean"),
            &gpu.batch_mean().expect("mean"),
            &mean_ref,
            1e-5,
            1e-5,
        );
        assert_close(
            &format!("{tag} batch var"),
            &gpu.batch_var().expect("var"),
            &var_ref,
            1e-6,
            1e-4,
        );
    }
    assert_close(
        &format!("{tag} running mean"),
        &gpu.running_mean().expect("rm"),
        cpu.running_mean(),
        1e-5,
        1e-5,
    );
    assert_close(
        &format!("{tag} running var"),
        &gpu.running_var().expect("rv"),
        cpu.running_var(),
        1e-6,
        1e-4,
    );
    assert_eq!(gpu.batches_tracked(), cpu.batches_tracked());

    let x = batch(&mut rng, &config, shape);
    let y = gpu
        .forward_host(&x, shape, Mode::Inference)
        .expect("gpu inference");
    let y_ref = cpu
        .forward(&x, shape, Mode::Inference)
        .expect("cpu inference");
    assert_close(&format!("{tag} inference y"), &y, &y_ref, 1e-4, 1e-4);

    for mode in [Mode::Inference, Mode::Training] {
        let x = batch(&mut rng, &config, shape);
        let mut dy: Vec<f32> = (0..x.len()).map(|_| rng.normal() as f32).collect();
        gpu.forward_host(&x, shape, mode).expect("gpu forward");
        cpu.forward(&x, shape, mode).expect("cpu forward");
        clear_relu_ties(&cpu, &x, shape, &mut dy);
        let (dx, dgamma, dbeta) = gpu.backward_host(&x, &dy, shape).expect("gpu backward");
        let r = cpu.backward(&x, &dy, shape).expect("cpu backward");
        let sum_tol = 1e-5 * (n as f64).sqrt() * 4.0;
        assert_close(&format!("{tag} {mode:?} dx"), &dx, &r.dx, 1e-4, 1e-3);
        assert_close(
            &format!("{tag} {mode:?} dgamma"),
            &dgamma,
            &r.dgamma,
            sum_tol,
            1e-4,
        );
        assert_close(
            &format!("{tag} {mode:?} dbeta"),
            &dbeta,
            &r.dbeta,
            sum_tol,
            1e-4,
        );
    }
}

fn config_of(
    layout: Layout,
    conv: Convention,
    channels: usize,
    relu: bool,
    affine: (bool, bool),
) -> BatchNormConfig {
    let mut c = match conv {
        Convention::Keras => BatchNormConfig::keras(channels),
        Convention::PyTorch => BatchNormConfig::pytorch(channels),
    };
    c.layout = layout;
    c.relu = relu;
    c.center = affine.0;
    c.scale = affine.1;
    c.single_sample = SingleSamplePolicy::ZeroVariance;
    c
}

fn shape_strategy() -> impl Strategy<Value = (Layout, Vec<usize>)> {
    (
        prop_oneof![Just(Layout::ChannelsLast), Just(Layout::ChannelsFirst)],
        prop::collection::vec(1usize..9, 0..3),
        2usize..70,
        1usize..40,
    )
        .prop_map(|(layout, spatial, c, n)| {
            let mut shape = vec![n.max(2)];
            match layout {
                Layout::ChannelsLast => {
                    shape.extend(&spatial);
                    shape.push(c);
                }
                Layout::ChannelsFirst => {
                    shape.push(c);
                    shape.extend(&spatial);
                }
            }
            (layout, shape)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn gpu_matches_cpu_on_random_shapes(
        (layout, shape) in shape_strategy(),
        pytorch in any::<bool>(),
        relu in any::<bool>(),
        center in any::<bool>(),
        scale in any::<bool>(),
        subgroups in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let _g = serial();
        let conv = if pytorch { Convention::PyTorch } else { Convention::Keras };
        let channels = match layout { Layout::ChannelsLast => *shape.last().unwrap(), Layout::ChannelsFirst => shape[1] };
        let config = config_of(layout, conv, channels, relu, (center, scale));
        let ctx = if subgroups { ctx() } else { ctx_no_subgroups() };
        scenario(ctx, config, &shape, seed, 3);
    }
}

#[test]
fn channel_counts_that_are_not_multiples_of_the_workgroup() {
    let _g = serial();
    for c in [1, 3, 65, 257, 2000] {
        for layout in [Layout::ChannelsLast, Layout::ChannelsFirst] {
            let shape = match layout {
                Layout::ChannelsLast => vec![37, c],
                Layout::ChannelsFirst => vec![5, c, 3],
            };
            scenario(
                ctx(),
                config_of(layout, Convention::Keras, c, false, (true, true)),
                &shape,
                c as u64,
                2,
            );
        }
    }
}

#[test]
fn two_channels_over_many_rows_spread_across_workgroups() {
    let _g = serial();
    scenario(
        ctx(),
        config_of(
            Layout::ChannelsLast,
            Convention::PyTorch,
            2,
            true,
            (true, true),
        ),
        &[20_000, 2],
        7,
        2,
    );
    scenario(
        ctx_no_subgroups(),
        config_of(
            Layout::ChannelsFirst,
            Convention::Keras,
            2,
            false,
            (true, true),
        ),
        &[16, 2, 40, 40],
        8,
        2,
    );
}

#[test]
fn chunked_bindings_match_the_reference() {
    let _g = serial();
    // 4 KiB bindings: [300, 7] is 3 chunks of 128 rows; [40, 4, 4, 4] is 3 chunks of 16.
    scenario(
        ctx_small_bindings(),
        config_of(
            Layout::ChannelsLast,
            Convention::Keras,
            7,
            true,
            (true, true),
        ),
        &[300, 7],
        1,
        2,
    );
    scenario(
        ctx_small_bindings(),
        config_of(
            Layout::ChannelsFirst,
            Convention::PyTorch,
            4,
            false,
            (true, true),
        ),
        &[40, 4, 4, 4],
        2,
        2,
    );
}

#[test]
fn folded_two_dimensional_grids_match_the_reference() {
    let _g = serial();
    scenario(
        ctx_small_grid(),
        config_of(
            Layout::ChannelsLast,
            Convention::Keras,
            3,
            false,
            (true, true),
        ),
        &[5000, 3],
        3,
        2,
    );
    scenario(
        ctx_small_grid(),
        config_of(
            Layout::ChannelsFirst,
            Convention::PyTorch,
            3,
            true,
            (true, true),
        ),
        &[8, 3, 20, 20],
        4,
        2,
    );
}

#[test]
fn huge_mean_tiny_spread_matches_float64() {
    let _g = serial();
    let mut rng = Rng::new(11);
    // Channel c: mean 10^(4+c%4), spread 1e-2 or 1e-1. E[x^2] - E[x]^2 in f32 gives garbage here.
    let c = 8;
    let rows = 4096;
    let means: Vec<f64> = (0..c).map(|k| 10f64.powi(4 + (k % 4) as i32)).collect();
    let spreads: Vec<f64> = (0..c).map(|k| if k < 4 { 1e-2 } else { 1e-1 }).collect();
    for layout in [Layout::ChannelsLast, Layout::ChannelsFirst] {
        let shape = match layout {
            Layout::ChannelsLast => vec![rows, c],
            Layout::ChannelsFirst => vec![16, c, rows / 16],
        };
        let g = Geometry::new(&shape, layout, c).unwrap();
        let mut x = vec![0.0f32; rows * c];
        for o in 0..g.outer {
            for k in 0..c {
                for i in 0..g.inner {
                    x[g.index(o, k, i)] = (means[k] + spreads[k] * rng.normal()) as f32;
                }
            }
        }
        let config = BatchNormConfig::keras(c).with_layout(layout);
        let mut gpu = BatchNorm::new(ctx(), config.clone()).unwrap();
        let mut cpu = CpuBatchNorm::new(config).unwrap();
        let y = gpu.forward_host(&x, &shape, Mode::Training).unwrap();
        let y_ref = cpu.forward(&x, &shape, Mode::Training).unwrap();
        // 1e-3 relative in y (y is O(1), so 1e-3 absolute for small values).
        assert_close(&format!("{layout:?} y"), &y, &y_ref, 1e-3, 1e-3);
        let var_ref: Vec<f32> = cpu
            .last_stats()
            .unwrap()
            .var
            .iter()
            .map(|&v| v as f32)
            .collect();
        assert_close("variance", &gpu.batch_var().unwrap(), &var_ref, 1e-9, 1e-3);
        assert!(gpu
            .batch_var()
            .unwrap()
            .iter()
            .all(|v| *v >= 0.0 && v.is_finite()));
    }
}

#[test]
fn a_constant_channel_gives_beta() {
    let _g = serial();
    let c = 3;
    let rows = 1000;
    let mut x = vec![0.0f32; rows * c];
    let mut rng = Rng::new(5);
    for r in 0..rows {
        x[r * c] = 12345.678; // constant
        x[r * c + 1] = rng.normal() as f32;
        x[r * c + 2] = -0.5; // constant
    }
    let mut gpu = BatchNorm::new(ctx(), BatchNormConfig::keras(c)).unwrap();
    let beta = [0.25, -1.0, 3.0];
    gpu.set_beta(&beta).unwrap();
    let y = gpu.forward_host(&x, &[rows, c], Mode::Training).unwrap();
    for r in 0..rows {
        assert_eq!(y[r * c], beta[0], "row {r}");
        assert_eq!(y[r * c + 2], beta[2], "row {r}");
    }
    let var = gpu.batch_var().unwrap();
    assert_eq!(var[0], 0.0);
    assert_eq!(var[2], 0.0);
    assert!(var[1] > 0.5);
}

#[test]
fn batch_of_one_follows_each_policy() {
    let _g = serial();
    let x = [3.0f32, -2.0, 7.5, 0.0];
    // Keras: variance 0, y = beta, moving variance pulled towards 0.
    let mut keras = BatchNorm::new(ctx(), BatchNormConfig::keras(4)).unwrap();
    keras.set_beta(&[0.1, 0.2, 0.3, 0.4]).unwrap();
    let y = keras.forward_host(&x, &[1, 4], Mode::Training).unwrap();
    assert_eq!(y, vec![0.1, 0.2, 0.3, 0.4]);
    let mut cpu = CpuBatchNorm::new(BatchNormConfig::keras(4)).unwrap();
    cpu.forward(&x, &[1, 4], Mode::Training).unwrap();
    assert_close(
        "moving mean",
        &keras.running_mean().unwrap(),
        cpu.running_mean(),
        1e-7,
        1e-6,
    );
    assert_close(
        "moving var",
        &keras.running_var().unwrap(),
        cpu.running_var(),
        1e-7,
        1e-6,
    );
    // PyTorch: an error, and nothing written.
    let mut torch = BatchNorm::new(ctx(), BatchNormConfig::pytorch(4)).unwrap();
    let err = torch
        .forward_host(&x, &[1, 4, 1], Mode::Training)
        .unwrap_err();
    assert!(
        matches!(err, wgpu_batchnorm::Error::SingleSample(_)),
        "{err}"
    );
    assert_eq!(torch.running_mean().unwrap(), vec![0.0; 4]);
    assert_eq!(torch.batches_tracked(), 0);
    // One sample but several spatial positions is fine for PyTorch.
    let y = torch
        .forward_host(
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            &[1, 4, 2],
            Mode::Training,
        )
        .unwrap();
    assert_close(
        "1x4x2",
        &y,
        &[-1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0],
        1e-4,
        1e-4,
    );
    // Inference with one sample is always fine.
    assert!(torch.forward_host(&x, &[1, 4], Mode::Inference).is_ok());
}

#[test]
fn a_frozen_layer_runs_in_inference_mode() {
    let _g = serial();
    let mut gpu = BatchNorm::new(ctx(), BatchNormConfig::keras(2)).unwrap();
    gpu.set_running_mean(&[1.0, -1.0]).unwrap();
    gpu.set_running_var(&[4.0, 0.25]).unwrap();
    gpu.set_trainable(false);
    let x = [3.0f32, 0.0, 5.0, -2.0];
    let y = gpu.forward_host(&x, &[2, 2], Mode::Training).unwrap();
    let want = |v: f32, m: f32, s: f32| (v - m) / (s + 1e-3f32).sqrt();
    assert_close(
        "frozen",
        &y,
        &[
            want(3.0, 1.0, 4.0),
            want(0.0, -1.0, 0.25),
            want(5.0, 1.0, 4.0),
            want(-2.0, -1.0, 0.25),
        ],
        1e-6,
        1e-5,
    );
    assert_eq!(gpu.running_mean().unwrap(), vec![1.0, -1.0]);
    assert_eq!(gpu.batches_tracked(), 0);
}

#[test]
fn nan_poisons_only_its_channel_in_training() {
    let _g = serial();
    let mut gpu = BatchNorm::new(ctx(), BatchNormConfig::keras(2)).unwrap();
    let x = [1.0f32, 1.0, f32::NAN, 2.0, 3.0, 4.0];
    let y = gpu.forward_host(&x, &[3, 2], Mode::Training).unwrap();
    assert!(y[0].is_nan() && y[2].is_nan() && y[4].is_nan());
    assert!(y[1].is_finite() && y[3].is_finite() && y[5].is_finite());
    let rm = gpu.running_mean().unwrap();
    assert!(rm[0].is_nan() && rm[1].is_finite());
    // Inference: NaN stays elementwise.
    let mut fresh = BatchNorm::new(ctx(), BatchNormConfig::keras(2)).unwrap();
    let y = fresh.forward_host(&x, &[3, 2], Mode::Inference).unwrap();
    assert!(y[2].is_nan());
    assert!(y.iter().enumerate().all(|(i, v)| i == 2 || v.is_finite()));
}

#[test]
fn pytorch_cumulative_average() {
    let _g = serial();
    let mut config = BatchNormConfig::pytorch(3);
    config.momentum = None;
    scenario(ctx(), config, &[6, 3, 5], 21, 4);
}

#[test]
fn a_tensor_past_the_default_binding_buffer_and_dispatch_limits() {
    let _g = serial();
    // 70M f32 = 280 MB: past wgpu's default 128 MiB binding and 256 MiB buffer, and its
    // normalize dispatch needs 68,360 workgroups (> 65,535 in one dimension).
    let shape = [17_500_000usize, 4];
    let mut rng = Rng::new(99);
    let x: Vec<f32> = (0..shape[0] * 4)
        .map(|i| ((i % 4) as f64 * 10.0 + rng.normal()) as f32)
        .collect();
    let config = BatchNormConfig::keras(4);
    let mut gpu = BatchNorm::new(ctx(), config.clone()).unwrap();
    let mut cpu = CpuBatchNorm::new(config).unwrap();
    match gpu.forward_host(&x, &shape, Mode::Training) {
        Ok(y) => {
            let y_ref = cpu.forward(&x, &shape, Mode::Training).unwrap();
            assert_close("y", &y, &y_ref, 1e-4, 1e-4);
            let mean_ref: Vec<f32> = cpu
                .last_stats()
                .unwrap()
                .mean
                .iter()
                .map(|&v| v as f32)
                .collect();
            assert_close("mean", &gpu.batch_mean().unwrap(), &mean_ref, 1e-5, 1e-5);
        }
        // A device that cannot hold it must say which limit it hit.
        Err(e @ wgpu_batchnorm::Error::TooLarge { .. }) => eprintln!("skipped on this device: {e}"),
        Err(e) => panic!("{e}"),
    }
}
