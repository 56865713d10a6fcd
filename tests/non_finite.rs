//! One behaviour for NaN, infinity and f32 overflow on every path: the GPU (whichever backend
//! `WGPU_BACKEND` picks; CI runs Vulkan and GL), the fast CPU path and the f64 reference.
//! A poisoned channel is NaN throughout in training; the other channels are exact.

mod common;

use common::{assert_close, ctx, serial};
use wgpu_batchnorm::cpu::{CpuBatchNorm, FastCpuBatchNorm};
use wgpu_batchnorm::{BatchNorm, BatchNormConfig, Layout, Mode};

const ROWS: usize = 8;

/// `[ROWS, 2]` channels-last: channel 0 gets `poison` at row `at` (or the whole column
/// `column` when given), channel 1 is ordinary data.
fn batch(poison: f32, at: usize, column: Option<&[f32]>) -> Vec<f32> {
    let mut x: Vec<f32> = (0..2 * ROWS)
        .map(|i| ((i * 7919) % 13) as f32 * 0.25 - 1.0)
        .collect();
    match column {
        Some(col) => {
            for (r, &v) in col.iter().enumerate() {
                x[2 * r] = v;
            }
        }
        None => x[2 * at] = poison,
    }
    x
}

struct Outcome {
    y: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    dx: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
}

fn gpu(config: &BatchNormConfig, x: &[f32], dy: &[f32]) -> Outcome {
    let mut bn = BatchNorm::new(ctx(), config.clone()).unwrap();
    let shape = [ROWS, 2];
    let y = bn.forward_host(x, &shape, Mode::Training).unwrap();
    let mean = bn.batch_mean().unwrap();
    let var = bn.batch_var().unwrap();
    assert!(
        mean[0].is_nan() == var[0].is_nan(),
        "mean {mean:?} var {var:?}"
    );
    let (dx, dgamma, dbeta) = bn.backward_host(x, dy, &shape).unwrap();
    Outcome {
        y,
        running_mean: bn.running_mean().unwrap(),
        running_var: bn.running_var().unwrap(),
        dx,
        dgamma,
        dbeta,
    }
}

fn fast(config: &BatchNormConfig, x: &[f32], dy: &[f32]) -> Outcome {
    let mut bn = FastCpuBatchNorm::new(config.clone()).unwrap();
    let shape = [ROWS, 2];
    let y = bn.forward(x, &shape, Mode::Training).unwrap();
    let dx = bn.backward(x, dy, &shape).unwrap();
    Outcome {
        y,
        running_mean: bn.running_mean().to_vec(),
        running_var: bn.running_var().to_vec(),
        dx,
        dgamma: bn.dgamma.clone(),
        dbeta: bn.dbeta.clone(),
    }
}

fn reference(config: &BatchNormConfig, x: &[f32], dy: &[f32]) -> Outcome {
    let mut bn = CpuBatchNorm::new(config.clone()).unwrap();
    let shape = [ROWS, 2];
    let y = bn.forward(x, &shape, Mode::Training).unwrap();
    let g = bn.backward(x, dy, &shape).unwrap();
    Outcome {
        y,
        running_mean: bn.running_mean().to_vec(),
        running_var: bn.running_var().to_vec(),
        dx: g.dx,
        dgamma: g.dgamma,
        dbeta: g.dbeta,
    }
}

fn channel(v: &[f32], c: usize) -> Vec<f32> {
    v.iter().skip(c).step_by(2).copied().collect()
}

/// Channel 0 is NaN in y, running statistics, dx and dgamma; channel 1 matches `want`.
fn assert_poisoned(who: &str, case: &str, got: &Outcome, want: &Outcome) {
    let tag = format!("{who} {case}");
    assert!(
        channel(&got.y, 0).iter().all(|v| v.is_nan()),
        "{tag} y {:?}",
        got.y
    );
    assert!(
        channel(&got.dx, 0).iter().all(|v| v.is_nan()),
        "{tag} dx {:?}",
        got.dx
    );
    assert!(
        got.running_mean[0].is_nan(),
        "{tag} running mean {:?}",
        got.running_mean
    );
    assert!(
        got.running_var[0].is_nan(),
        "{tag} running var {:?}",
        got.running_var
    );
    assert!(got.dgamma[0].is_nan(), "{tag} dgamma {:?}", got.dgamma);
    assert_close(
        &format!("{tag} y[1]"),
        &channel(&got.y, 1),
        &channel(&want.y, 1),
        1e-5,
        1e-5,
    );
    assert_close(
        &format!("{tag} dx[1]"),
        &channel(&got.dx, 1),
        &channel(&want.dx, 1),
        1e-5,
        1e-4,
    );
    assert_close(
        &format!("{tag} rm[1]"),
        &got.running_mean[1..],
        &want.running_mean[1..],
        1e-6,
        1e-6,
    );
    assert_close(
        &format!("{tag} rv[1]"),
        &got.running_var[1..],
        &want.running_var[1..],
        1e-6,
        1e-6,
    );
    assert_close(
        &format!("{tag} dgamma[1]"),
        &got.dgamma[1..],
        &want.dgamma[1..],
        1e-5,
        1e-4,
    );
    assert_close(
        &format!("{tag} dbeta[1]"),
        &got.dbeta[1..],
        &want.dbeta[1..],
        1e-5,
        1e-4,
    );
}

#[test]
fn nan_and_infinity_poison_their_channel_on_every_path() {
    let _g = serial();
    let dy: Vec<f32> = (0..2 * ROWS).map(|i| (i as f32 * 0.37).sin()).collect();
    for relu in [false, true] {
        for layout_first in [false, true] {
            // [ROWS, 2] is the same tensor in both layouts; the kernels take different paths.
            let mut config = BatchNormConfig::keras(2).with_relu(relu);
            if layout_first {
                config = config.with_layout(Layout::ChannelsFirst);
            }
            for (poison, at) in [
                (f32::NAN, 0),
                (f32::NAN, 5),
                (f32::INFINITY, 0),
                (f32::INFINITY, 3),
                (f32::NEG_INFINITY, 7),
            ] {
                let x = batch(poison, at, None);
                let case = format!("{poison} at row {at}, relu {relu}, first {layout_first}");
                let want = reference(&config, &x, &dy);
                assert_poisoned("reference", &case, &want, &want);
                assert_poisoned("fast CPU", &case, &fast(&config, &x, &dy), &want);
                assert_poisoned("GPU", &case, &gpu(&config, &x, &dy), &want);
            }
        }
    }
}

/// Finite values whose squared deviations sum past f32's range: the engine's documented
/// limit. Every path treats the channel as non-finite; the f64 reference too (it gave ±1).
#[test]
fn overflowing_squares_are_nan_not_garbage() {
    let _g = serial();
    let dy: Vec<f32> = (0..2 * ROWS).map(|i| (i as f32 * 0.37).cos()).collect();
    let config = BatchNormConfig::keras(2);
    for (case, v) in [("±1e38", 1e38f32), ("±1e19", 1e19)] {
        let huge: Vec<f32> = (0..ROWS).map(|r| if r % 2 == 0 { v } else { -v }).collect();
        let x = batch(0.0, 0, Some(&huge));
        let want = reference(&config, &x, &dy);
        assert_poisoned("reference", case, &want, &want);
        assert_poisoned("fast CPU", case, &fast(&config, &x, &dy), &want);
        assert_poisoned("GPU", case, &gpu(&config, &x, &dy), &want);
    }
    // Just inside the limit the result is exact.
    let big: Vec<f32> = (0..ROWS)
        .map(|r| if r % 2 == 0 { 1e18 } else { -1e18 })
        .collect();
    let x = batch(0.0, 0, Some(&big));
    let want = reference(&config, &x, &dy);
    let got = gpu(&config, &x, &dy);
    assert_close("GPU y at ±1e18", &got.y, &want.y, 1e-5, 1e-5);
    assert_close(
        "fast y at ±1e18",
        &fast(&config, &x, &dy).y,
        &want.y,
        1e-5,
        1e-5,
    );
}

/// Inference propagates NaN and infinity elementwise only.
#[test]
fn inference_propagates_elementwise() {
    let _g = serial();
    let config = BatchNormConfig::keras(2);
    let x = batch(f32::NAN, 2, None);
    let mut bn = BatchNorm::new(ctx(), config.clone()).unwrap();
    let y = bn.forward_host(&x, &[ROWS, 2], Mode::Inference).unwrap();
    let mut cpu = CpuBatchNorm::new(config).unwrap();
    let want = cpu.forward(&x, &[ROWS, 2], Mode::Inference).unwrap();
    for (i, (a, b)) in y.iter().zip(&want).enumerate() {
        assert_eq!(a.is_nan(), b.is_nan(), "element {i}: {a} vs {b}");
        assert_eq!(a.is_nan(), i == 4, "element {i}");
    }
}
