//! The fast CPU path (`CpuModelF32`: every layer's CPU twin in f32, batch norm on the engine's
//! fast CPU path) against the f64 reference: gradients of every kind of layer, training step by
//! step, wide and narrow Dense layers past the size where the loops go parallel, and a
//! convolutional network. (Its Keras golden run is in `training.rs`.)

mod common;

use common::{all_layers, assert_close, gentle_batch as batch};
use wgpu_batchnorm::nn::reference::{CpuModel, CpuModelF32};
use wgpu_batchnorm::nn::{Conv2D, Dataset, LayerSpec, Optimizer, Padding, Pool2D};

/// Both models' gradients of one batch, tensor by tensor, within f32 round-off.
fn same_gradients(input: usize, layers: &[LayerSpec], data: &Dataset, abs: f64) {
    let mut fast = CpuModelF32::new(input, layers, 3, Optimizer::default()).unwrap();
    let mut reference = CpuModel::new(input, layers, 3, Optimizer::default()).unwrap();
    let (lf, af, gf) = fast.gradients(data).unwrap();
    let (lr, ar, gr) = reference.gradients(data).unwrap();
    assert!((lf - lr).abs() < 1e-5 * lr.abs().max(1.0), "loss {lf} {lr}");
    assert_eq!(af, ar);
    for (t, (f, r)) in gf.iter().zip(&gr).enumerate() {
        let r: Vec<f32> = r.iter().map(|&v| v as f32).collect();
        assert_close(&format!("tensor {t}"), f, &r, abs, 1e-3);
    }
}

#[test]
fn gradients_match_the_reference() {
    same_gradients(6, &all_layers(), &batch(12, 3), 1e-6);
}

/// Layers past the size where the loops run in parallel (rows x in x out >= 2^16), one wide
/// (lanes across outputs), the logits narrow (lanes across rows; dW's across inputs), with
/// sizes that are not multiples of the lanes.
#[test]
fn wide_and_narrow_layers_in_parallel_match_the_reference() {
    let d = Dataset::synthetic(437, 37, 2);
    let x = d.x().iter().map(|v| v / 40.0).collect();
    let data = Dataset::new(x, d.labels().to_vec(), 37, 3).unwrap();
    let layers = vec![
        LayerSpec::Dense(70),
        LayerSpec::Relu,
        LayerSpec::Dense(67),
        LayerSpec::BatchNorm,
        LayerSpec::Relu,
        LayerSpec::Dense(3),
    ];
    same_gradients(37, &layers, &data, 1e-6);
}

/// Six steps of training with each optimizer: the weights follow the reference.
#[test]
fn training_follows_the_reference_step_by_step() {
    for optimizer in [Optimizer::sgd(0.1, 0.9), Optimizer::adam(1e-2)] {
        let layers = all_layers();
        let mut fast = CpuModelF32::new(6, &layers, 11, optimizer).unwrap();
        let mut reference = CpuModel::new(6, &layers, 11, optimizer).unwrap();
        for step in 0..6 {
            let data = batch(16 + step, 100 + step as u64);
            fast.train_batch(&data).unwrap();
            reference.train_batch(&data).unwrap();
        }
        for (f, r) in fast.weights().iter().zip(reference.weights()) {
            assert_eq!(f.name, r.name);
            // As on the GPU: Adam turns the f32 noise of the bias before batch norm (which
            // has no true gradient) into steps, and the moving mean follows it.
            let adam = matches!(optimizer, Optimizer::Adam { .. });
            if adam && (f.name == "dense_1/bias" || f.name.ends_with("moving_mean")) {
                continue;
            }
            assert_close(&f.name, &f.values, &r.values, 2e-5, 1e-4);
        }
    }
}

/// A convolutional network (convolutions with padding and strides, both poolings, batch norm
/// over feature maps, flatten): gradients as the reference's.
#[test]
fn a_convolutional_network_matches_the_reference() {
    let d = Dataset::synthetic(6, 7 * 7 * 2, 4);
    let x = d.x().iter().map(|v| v / 40.0).collect();
    let data = Dataset::new(x, d.labels().to_vec(), 7 * 7 * 2, 3).unwrap();
    let layers = vec![
        LayerSpec::Conv2D(Conv2D::new(5, 3).padding(Padding::Same).stride(2)),
        LayerSpec::BatchNorm,
        LayerSpec::Relu,
        LayerSpec::MaxPool2D(Pool2D::new(2).stride(1).padding(Padding::Same)),
        LayerSpec::Conv2D(Conv2D::new(4, 2)),
        LayerSpec::Relu,
        LayerSpec::AvgPool2D(Pool2D::new(2)),
        LayerSpec::Flatten,
        LayerSpec::Dense(3),
    ];
    let mut fast = CpuModelF32::new([7, 7, 2], &layers, 5, Optimizer::default()).unwrap();
    let mut reference = CpuModel::new([7, 7, 2], &layers, 5, Optimizer::default()).unwrap();
    let (_, _, gf) = fast.gradients(&data).unwrap();
    let (_, _, gr) = reference.gradients(&data).unwrap();
    for (t, (f, r)) in gf.iter().zip(&gr).enumerate() {
        let r: Vec<f32> = r.iter().map(|&v| v as f32).collect();
        assert_close(&format!("tensor {t}"), f, &r, 1e-5, 1e-3);
    }
}
