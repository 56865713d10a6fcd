//! Convolutional layers (Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
//! Flatten, BatchNorm over NHWC maps): the f64 twins against finite differences, and the GPU
//! against the f64 twins on odd shapes (stride 2, both paddings, channel counts that are not
//! multiples of the tile), forward and backward.

mod common;

use common::{check_finite_differences, ctx, ctx_tiled, serial, Rng};
use wgpu_batchnorm::nn::reference::CpuModel;
use wgpu_batchnorm::nn::{
    Conv2D, Dataset, FitOptions, LayerSpec, Optimizer, Padding, Pool2D, Sequential, Shape,
};
use wgpu_batchnorm::Context;

/// Random images in [0, 1) of `shape` with random labels of `classes`.
fn images(rows: usize, shape: [usize; 3], classes: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let len: usize = shape.iter().product();
    let x = (0..rows * len).map(|_| rng.uniform() as f32).collect();
    let labels = (0..rows)
        .map(|_| (rng.next_u64() % classes as u64) as u32)
        .collect();
    Dataset::new(x, labels, len, classes).unwrap()
}

/// Every layer kind, strides and paddings mixed, odd channel counts.
fn every_layer(classes: usize) -> Vec<LayerSpec> {
    vec![
        LayerSpec::Conv2D(Conv2D::new(5, 3).padding(Padding::Same).stride(2)),
        LayerSpec::BatchNorm,
        LayerSpec::Relu,
        LayerSpec::MaxPool2D(Pool2D::new(2).stride(1).padding(Padding::Same)),
        LayerSpec::Conv2D(Conv2D::new(17, 2)),
        LayerSpec::Relu,
        LayerSpec::AvgPool2D(Pool2D::new(3).stride(2).padding(Padding::Same)),
        LayerSpec::BatchNorm,
        LayerSpec::Flatten,
        LayerSpec::Dense(classes),
    ]
}

fn global_pool(classes: usize) -> Vec<LayerSpec> {
    vec![
        LayerSpec::Conv2D(Conv2D::new(7, 3)),
        LayerSpec::Relu,
        LayerSpec::MaxPool2D(Pool2D::new(3).stride(2)),
        LayerSpec::Conv2D(Conv2D {
            use_bias: false,
            ..Conv2D::new(19, 1)
        }),
        LayerSpec::BatchNorm,
        LayerSpec::Relu,
        LayerSpec::GlobalAvgPool2D,
        LayerSpec::Dense(classes),
    ]
}

#[test]
fn convolution_twins_match_finite_differences() {
    for (layers, shape) in [(every_layer(3), [9, 7, 2]), (global_pool(4), [8, 9, 3])] {
        let classes = if shape[2] == 2 { 3 } else { 4 };
        let data = images(5, shape, classes, 3);
        let mut model = CpuModel::new(shape, &layers, 1, Optimizer::adam(1e-3)).unwrap();
        let checked = check_finite_differences(&mut model, &data, 3);
        assert!(checked > 60, "{checked}");
    }
}

/// SGD with momentum: a bias before batch norm has a zero gradient up to round-off, which
/// Adam would turn into full steps of either sign.
fn opt() -> Optimizer {
    Optimizer::sgd(0.05, 0.9)
}

/// GPU and f64 gradients of one step, then weights after a few steps, then inference.
fn gpu_matches_cpu(
    ctx: &Context,
    shape: [usize; 3],
    layers: &[LayerSpec],
    classes: usize,
    rows: usize,
) {
    let mut gpu = Sequential::new(ctx, shape, layers, 5, opt()).unwrap();
    let mut cpu = CpuModel::new(shape, layers, 5, opt()).unwrap();
    let data = images(rows, shape, classes, 11);
    let (_, _, want) = cpu.gradients(&data).unwrap();
    let mut fresh = CpuModel::new(shape, layers, 5, opt()).unwrap();
    gpu.train_batch(&data).unwrap();
    fresh.train_batch(&data).unwrap();
    let got = gpu.gradients().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (a, b)) in g.values.iter().zip(w).enumerate() {
            assert!(
                (*a as f64 - b).abs() < 1e-5 + 2e-4 * scale,
                "{shape:?} {}[{i}]: gpu {a} cpu {b} (largest {scale})",
                g.name
            );
        }
    }
    for step in 1..4 {
        let data = images(rows, shape, classes, 20 + step);
        gpu.train_batch(&data).unwrap();
        fresh.train_batch(&data).unwrap();
    }
    for (g, c) in gpu.weights().unwrap().iter().zip(fresh.weights()) {
        assert_eq!(g.name, c.name);
        for (i, (a, b)) in g.values.iter().zip(&c.values).enumerate() {
            assert!(
                (a - b).abs() < 1e-4 + 1e-4 * b.abs(),
                "{shape:?} {}[{i}]: gpu {a} cpu {b}",
                g.name
            );
        }
    }
    let test = images(rows + 3, shape, classes, 99);
    let p = gpu.predict(test.x()).unwrap();
    let q = fresh.predict(test.x()).unwrap();
    for (i, (a, b)) in p.iter().zip(&q).enumerate() {
        assert!(
            (a - b).abs() < 1e-4,
            "{shape:?} probability {i}: gpu {a} cpu {b}"
        );
    }
}

#[test]
fn every_layer_matches_its_twin_on_the_gpu() {
    let _g = serial();
    // Both forms of the convolution kernels: direct (CPU adapters' default) and tiled.
    for ctx in [ctx(), ctx_tiled()] {
        gpu_matches_cpu(ctx, [9, 7, 2], &every_layer(3), 3, 6);
        gpu_matches_cpu(ctx, [13, 11, 3], &every_layer(5), 5, 3);
        gpu_matches_cpu(ctx, [8, 9, 3], &global_pool(4), 4, 5);
        // Batch of one.
        gpu_matches_cpu(ctx, [6, 6, 1], &global_pool(2), 2, 1);
    }
}

#[test]
fn shapes_are_checked_and_summarized() {
    let cnn = every_layer(3);
    let m = CpuModel::new([9, 7, 2], &cnn, 0, Optimizer::default());
    assert!(m.is_ok());
    let err = |input: Shape, layers: &[LayerSpec]| {
        CpuModel::new(input, layers, 0, Optimizer::default())
            .unwrap_err()
            .to_string()
    };
    // A convolution on a vector, a Dense on a map, a window larger than the input.
    assert!(err(Shape::Flat(64), &cnn).contains("feature map"));
    let dense_on_map = [LayerSpec::Conv2D(Conv2D::new(4, 3)), LayerSpec::Dense(3)];
    assert!(err(Shape::image(8, 8, 1), &dense_on_map).contains("Flatten"));
    let too_big = [
        LayerSpec::Conv2D(Conv2D::new(4, 9)),
        LayerSpec::Flatten,
        LayerSpec::Dense(3),
    ];
    assert!(err(Shape::image(8, 8, 1), &too_big).contains("does not fit"));
    let zero_stride = [
        LayerSpec::MaxPool2D(Pool2D::new(2).stride(0)),
        LayerSpec::Flatten,
        LayerSpec::Dense(3),
    ];
    assert!(err(Shape::image(8, 8, 1), &zero_stride).contains("does not fit"));
    let huge = [
        LayerSpec::Conv2D(Conv2D::new(1 << 20, 3).padding(Padding::Same)),
        LayerSpec::Flatten,
        LayerSpec::Dense(3),
    ];
    assert!(err(Shape::image(4096, 4096, 1), &huge).contains("values per sample"));
    let _g = serial();
    let gpu = Sequential::new(ctx(), [9, 7, 2], &cnn, 0, Optimizer::default()).unwrap();
    let s = gpu.summary();
    for want in [
        "conv2d (Conv2D 3x3)",
        "(None, 5, 4, 5)",
        "max_pooling2d",
        "conv2d_1 (Conv2D 2x2+ReLU)",
        "average_pooling2d",
        "batch_normalization_1",
        "flatten",
    ] {
        assert!(s.contains(want), "{want} in\n{s}");
    }
}

/// A CNN step is one encoder, no copies; an epoch with validation is two submits (training,
/// then inference); Flatten records nothing. The tutorial's CNN step with BN is 21 passes:
/// gather, conv+ReLU, BN, pool, conv+ReLU, BN, pool, dense+ReLU, BN, dense, loss, then
/// backward (dense, BN, dense, pool, BN, conv, pool, BN, conv; the first conv computes no
/// input gradient) and the optimizer: 21 dispatches, one per pass. Every BN here (over the
/// feature maps, 1600 x 32 and 400 x 64 values of a batch of 25, and over 25 x 64) is small
/// enough for the engine's fused path: one dispatch each way, where the split path would take
/// 4 forward (pivot, statistics, finalize, normalize) and 3 backward. Validation: 11 passes,
/// 11 dispatches.
#[test]
fn a_cnn_epoch_records_what_it_should() {
    let _g = serial();
    let (train, val) = Dataset::digits().unwrap().split(100).unwrap();
    let (val, _) = val.split(20).unwrap();
    let mut model = Sequential::new(
        ctx(),
        [8, 8, 1],
        &wgpu_batchnorm::nn::tutorial_cnn(true, 10),
        1,
        Optimizer::default(),
    )
    .unwrap();
    let options = FitOptions {
        batch_size: 25,
        epochs: 1,
        shuffle: true,
        seed: 2,
    };
    let before = wgpu_batchnorm::recorded_work();
    model.fit(&train, &options, Some(&val), |_, _| {}).unwrap();
    let work = wgpu_batchnorm::recorded_work() - before;
    assert_eq!(work.copies, 0, "{work:?}");
    assert_eq!(
        work.submits, 2,
        "one for the epoch's 4 steps, one for validation: {work:?}"
    );
    assert_eq!(work.passes, 4 * 21 + 11, "{work:?}");
    assert_eq!(work.dispatches, 4 * 21 + 11, "{work:?}");
}

/// NaN propagates through convolution and pooling as in the frameworks (a max-pooling window
/// with a NaN gives NaN, whatever else it holds), the same on the GPU and in the f64 twin;
/// other windows are untouched.
#[test]
fn nan_propagates_through_convolutions_and_pooling() {
    let _g = serial();
    let mut x: Vec<f32> = (0..36).map(|i| (i as f32 * 0.37).sin()).collect();
    x[7] = f32::NAN; // row 1, column 1 of a 6 x 6 image
    for pool in [
        LayerSpec::MaxPool2D(Pool2D::new(2)),
        LayerSpec::AvgPool2D(Pool2D::new(3).stride(3)),
    ] {
        let layers = [
            LayerSpec::Conv2D(Conv2D::new(2, 1)),
            pool,
            LayerSpec::Flatten,
            LayerSpec::Dense(2),
        ];
        let mut gpu = Sequential::new(ctx(), [6, 6, 1], &layers, 3, opt()).unwrap();
        let mut cpu = CpuModel::new([6, 6, 1], &layers, 3, opt()).unwrap();
        let (tg, tc) = (gpu.trace(&x).unwrap(), cpu.trace(&x).unwrap());
        for (g, c) in tg.iter().zip(&tc).take(2) {
            for (i, (a, b)) in g.values.iter().zip(&c.values).enumerate() {
                assert_eq!(a.is_nan(), b.is_nan(), "{} [{i}]: gpu {a} cpu {b}", g.name);
                assert!(
                    a.is_nan() || (a - b).abs() < 1e-5,
                    "{} [{i}]: {a} {b}",
                    g.name
                );
            }
        }
        // The convolution: NaN at that position only (both channels); the pooling: in the
        // first window only (both channels).
        let conv = &tg[0].values;
        let nan_at: Vec<usize> = (0..conv.len()).filter(|&i| conv[i].is_nan()).collect();
        assert_eq!(nan_at, vec![14, 15], "{conv:?}");
        let pooled = &tg[1].values;
        let nan_at: Vec<usize> = (0..pooled.len()).filter(|&i| pooled[i].is_nan()).collect();
        assert_eq!(nan_at, vec![0, 1], "{pooled:?}");
    }
}
