//! The one-workgroup training step (`src/nn/step.rs`): the same training as the general path
//! (a dispatch or two per layer) and as the f64 reference, on the networks it takes, on the
//! hard inputs (a huge mean with a tiny spread, a constant feature, one row, a partial last
//! batch, NaN), and the general path for the networks it does not take. (The Keras golden run
//! in `training.rs` is reproduced on both paths.)

mod common;

use common::{assert_close, ctx, ctx_tiled, serial};
use wgpu_batchnorm::nn::reference::CpuModel;
use wgpu_batchnorm::nn::{
    tutorial_layers, Dataset, FitOptions, LayerSpec, Optimizer, Sequential, Weight,
};
use wgpu_batchnorm::Context;
use wgpu_batchnorm::{recorded_work, BatchNormConfig};

/// Dispatches of one step (counted on a second step: the first builds pipelines).
fn dispatches_per_step(m: &mut Sequential, data: &Dataset) -> u64 {
    m.train_batch(data).unwrap();
    let before = recorded_work();
    m.train_batch(data).unwrap();
    (recorded_work() - before).dispatches
}

/// Trains one model per path for `epochs` epochs; returns (history, weights) of each.
fn both_paths(
    ctx: &Context,
    layers: &[LayerSpec],
    input: usize,
    data: &Dataset,
    batch: usize,
    optimizer: Optimizer,
) -> [(wgpu_batchnorm::nn::History, Vec<Weight>); 2] {
    let options = FitOptions {
        batch_size: batch,
        epochs: 3,
        shuffle: true,
        seed: 9,
    };
    [true, false].map(|fused| {
        let mut m = Sequential::new(ctx, input, layers, 4, optimizer).unwrap();
        m.set_fused_steps(fused);
        let h = m.fit(data, &options, None, |_, _| {}).unwrap();
        (h, m.weights().unwrap())
    })
}

/// Data with `features` columns on a gentle scale, `shift` added to every value.
fn data(rows: usize, features: usize, seed: u64, shift: f32) -> Dataset {
    let d = Dataset::synthetic(rows, features, seed);
    let x = d.x().iter().map(|v| v / 20.0 + shift).collect();
    Dataset::new(x, d.labels().to_vec(), features, d.classes()).unwrap()
}

fn assert_same_training(
    what: &str,
    [(hf, wf), (hg, wg)]: &[(wgpu_batchnorm::nn::History, Vec<Weight>); 2],
    noisy: &[&str],
) {
    for (e, (a, b)) in hf.batch_loss.iter().zip(&hg.batch_loss).enumerate() {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() < 2e-5 * y.abs().max(1.0),
                "{what}: epoch {e} batch {i}: one-workgroup step {x}, general path {y}"
            );
        }
    }
    assert_eq!(hf.accuracy.len(), hg.accuracy.len());
    for (a, b) in wf.iter().zip(wg) {
        assert_eq!(a.name, b.name);
        if !noisy.contains(&a.name.as_str()) {
            assert_close(
                &format!("{what}: {}", a.name),
                &a.values,
                &b.values,
                1e-4,
                1e-3,
            );
        }
    }
}

/// The networks the step takes, on both paths: the tutorial's with and without batch norm,
/// SGD, odd widths with a partial last batch, batch norm straight on the input, PyTorch's
/// convention. Each is one dispatch per step on one path and several on the other.
#[test]
fn the_step_trains_as_the_general_path_does() {
    let _g = serial();
    let pytorch = BatchNormConfig::pytorch(0).with_layout(wgpu_batchnorm::Layout::ChannelsLast);
    type Case<'a> = (&'a str, Vec<LayerSpec>, usize, Optimizer, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            "tutorial with BN",
            tutorial_layers(true, 10, 3),
            32,
            Optimizer::default(),
            // Adam turns the f32 noise of the bias before BN into steps (no true gradient).
            &["dense/bias", "batch_normalization/moving_mean"],
        ),
        (
            "tutorial without BN",
            tutorial_layers(false, 10, 3),
            32,
            Optimizer::default(),
            &[],
        ),
        (
            "SGD with momentum",
            tutorial_layers(true, 10, 3),
            32,
            Optimizer::sgd(0.05, 0.9),
            &[],
        ),
        (
            "odd widths, partial batch",
            vec![
                LayerSpec::Dense(13),
                LayerSpec::Relu,
                LayerSpec::Dense(7),
                LayerSpec::BatchNorm,
                LayerSpec::Relu,
                LayerSpec::Dense(3),
            ],
            27,
            Optimizer::sgd(0.05, 0.0),
            &[],
        ),
        (
            "BN on the input, PyTorch's convention",
            vec![
                LayerSpec::BatchNormWith(pytorch),
                LayerSpec::Dense(9),
                LayerSpec::Relu,
                LayerSpec::Dense(3),
            ],
            32,
            Optimizer::sgd(0.05, 0.0),
            &[],
        ),
    ];
    let d = data(100, 6, 3, 0.0);
    // CPU adapters run the step on 32 threads, GPUs on 256 (`ctx_tiled` forces the GPU form).
    for ((what, layers, batch, optimizer, noisy), ctx) in cases
        .into_iter()
        .flat_map(|c| [(c.clone(), ctx()), (c, ctx_tiled())])
    {
        let mut m = Sequential::new(ctx, 6, &layers, 4, optimizer).unwrap();
        let first = Dataset::new(
            d.x()[..6 * batch].to_vec(),
            d.labels()[..batch].to_vec(),
            6,
            3,
        )
        .unwrap();
        assert_eq!(dispatches_per_step(&mut m, &first), 1, "{what}");
        m.set_fused_steps(false);
        assert!(dispatches_per_step(&mut m, &first) > 5, "{what}");
        let runs = both_paths(ctx, &layers, 6, &d, batch, optimizer);
        assert_same_training(what, &runs, noisy);
    }
}

/// One step's gradients (read back from the model's gradient buffer, which the step writes as
/// the general path does) against the f64 reference.
#[test]
fn the_steps_gradients_match_the_reference() {
    let _g = serial();
    let layers = vec![
        LayerSpec::Dense(11),
        LayerSpec::BatchNorm,
        LayerSpec::Relu,
        LayerSpec::Dense(5),
        LayerSpec::Relu,
        LayerSpec::Dense(3),
    ];
    let batch = data(29, 6, 5, 0.0);
    let mut gpu = Sequential::new(ctx(), 6, &layers, 2, Optimizer::default()).unwrap();
    let mut cpu = CpuModel::new(6, &layers, 2, Optimizer::default()).unwrap();
    let before = recorded_work();
    gpu.train_batch(&batch).unwrap();
    assert_eq!((recorded_work() - before).dispatches, 1);
    let (_, _, want) = cpu.gradients(&batch).unwrap();
    for (g, w) in gpu.gradients().unwrap().iter().zip(&want) {
        let w: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        // The bias before BN has no true gradient: both sides give round-off.
        let abs = if g.name == "dense/bias" { 1e-5 } else { 1e-6 };
        assert_close(&g.name, &g.values, &w, abs, 1e-4);
    }
}

/// The hard inputs of batch norm, through the step's two-pass statistics about a pivot: a
/// huge mean with a tiny spread (1e4 + values of order 0.05: a one-pass sum of squares loses
/// every digit), a constant feature (variance 0), a batch of one row (Keras: variance 0, the
/// output is beta). Same as the general path and the f64 reference.
#[test]
fn hard_batches_match_the_reference() {
    let _g = serial();
    let layers = vec![
        LayerSpec::BatchNorm,
        LayerSpec::Dense(8),
        LayerSpec::BatchNorm,
        LayerSpec::Relu,
        LayerSpec::Dense(3),
    ];
    let huge = data(32, 5, 6, 1e4);
    let mut constant = data(32, 5, 7, 0.0);
    let x: Vec<f32> = constant
        .x()
        .iter()
        .enumerate()
        .map(|(i, &v)| if i % 5 == 2 { 3.5 } else { v })
        .collect();
    constant = Dataset::new(x, constant.labels().to_vec(), 5, 3).unwrap();
    let one = data(1, 5, 8, 0.0);
    for (what, batch) in [
        ("huge mean", &huge),
        ("constant feature", &constant),
        ("one row", &one),
    ] {
        let mut gpu = Sequential::new(ctx(), 5, &layers, 3, Optimizer::sgd(0.05, 0.0)).unwrap();
        let mut cpu = CpuModel::new(5, &layers, 3, Optimizer::sgd(0.05, 0.0)).unwrap();
        for _ in 0..3 {
            let before = recorded_work();
            gpu.train_batch(batch).unwrap();
            assert_eq!((recorded_work() - before).dispatches, 1, "{what}");
            cpu.train_batch(batch).unwrap();
        }
        for (g, c) in gpu.weights().unwrap().iter().zip(cpu.weights()) {
            assert_close(
                &format!("{what}: {}", g.name),
                &g.values,
                &c.values,
                1e-4,
                1e-4,
            );
        }
    }
}

/// Values near the f32 range: squared deviations overflow, which batch norm turns into NaN for
/// the channels they reach, and a NaN loss stops `fit`. Both paths end the same way, with NaN
/// in the same parameters. Checked on Vulkan: on GL (llvmpipe) an overflowing batch gives
/// run-to-run different outcomes on the general path itself (a NaN loss or a finite one), an
/// open issue of the GL backend that this test does not hide.
#[test]
fn nan_spreads_as_on_the_general_path() {
    let _g = serial();
    if ctx().adapter_info().backend == wgpu_batchnorm::wgpu::Backend::Gl {
        eprintln!("skipped on GL: see the comment");
        return;
    }
    let mut d = data(32, 6, 9, 0.0);
    let mut x = d.x().to_vec();
    (x[7], x[8]) = (3e38, -3e38);
    d = Dataset::new(x, d.labels().to_vec(), 6, 3).unwrap();
    let layers = tutorial_layers(true, 10, 3);
    let mut runs = [false, true].map(|fused| {
        let mut m = Sequential::new(ctx(), 6, &layers, 1, Optimizer::default()).unwrap();
        m.set_fused_steps(fused);
        let options = FitOptions {
            batch_size: 32,
            epochs: 1,
            shuffle: false,
            seed: 0,
        };
        let outcome = match m.fit(&d, &options, None, |_, _| {}) {
            Ok(h) => format!("{:?}", h.batch_loss),
            Err(e) => e.to_string(),
        };
        (outcome, m.weights().unwrap())
    });
    let [(ef, wf), (eg, wg)] = &mut runs;
    assert_eq!(ef, eg, "one-workgroup step against the general path");
    assert!(ef.contains("loss became NaN"), "{ef}");
    for (a, b) in wf.iter().zip(wg.iter()) {
        let nan_a: Vec<bool> = a.values.iter().map(|v| v.is_nan()).collect();
        let nan_b: Vec<bool> = b.values.iter().map(|v| v.is_nan()).collect();
        assert_eq!(nan_a, nan_b, "{}: where NaN reached", a.name);
    }
}

/// Networks the step does not take keep the general path: a layer without step phases
/// (dropout), and a step too large for one workgroup.
#[test]
fn other_networks_take_the_general_path() {
    let _g = serial();
    let d = data(64, 6, 10, 0.0);
    let dropout = vec![
        LayerSpec::Dense(8),
        LayerSpec::Relu,
        LayerSpec::Dropout(0.2),
        LayerSpec::Dense(3),
    ];
    let mut m = Sequential::new(ctx(), 6, &dropout, 0, Optimizer::default()).unwrap();
    assert!(dispatches_per_step(&mut m, &d) > 1);
    let wide = tutorial_layers(true, 512, 3);
    let mut m = Sequential::new(ctx(), 6, &wide, 0, Optimizer::default()).unwrap();
    assert!(dispatches_per_step(&mut m, &d) > 1);
    let mut m = Sequential::new(
        ctx(),
        6,
        &tutorial_layers(true, 16, 3),
        0,
        Optimizer::default(),
    )
    .unwrap();
    assert_eq!(dispatches_per_step(&mut m, &d), 1);
}
