//! Window parameters (pool and kernel sizes, strides, filters) up to 2^64: every size a shader
//! takes is checked where the layer is defined, so the GPU model and both CPU models refuse
//! the same networks with the same words, and where they accept one they agree on its loss
//! (no size is cut to 32 bits on its way to a shader). Bounded in CI; `PROPTEST_CASES=1000`
//! runs more.

mod common;

use common::{bnorm, ctx, serial};
use proptest::prelude::*;
use wgpu_batchnorm::nn::reference::{CpuModel, CpuModelF32};
use wgpu_batchnorm::nn::{
    Conv2D, Dataset, FitOptions, LayerSpec, Optimizer, Padding, Pool2D, Sequential, Shape,
    MAX_WINDOW,
};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A window size: small, at the 31- and 32-bit edges, or anywhere up to 2^64 - 1.
fn size() -> impl Strategy<Value = usize> {
    let edge = MAX_WINDOW;
    prop_oneof![
        3 => 1usize..4,
        1 => prop::sample::select(vec![
            edge - 1,
            edge,
            edge + 1,
            u32::MAX as usize,
            1 << 32,
            (1 << 32) + 1,
            (1 << 33) + 3,
            1 << 63,
            usize::MAX,
        ]),
        1 => any::<usize>(),
    ]
}

/// A convolution or pooling layer with any sizes.
fn window_layer() -> impl Strategy<Value = LayerSpec> {
    let padding = prop_oneof![Just(Padding::Valid), Just(Padding::Same)];
    prop_oneof![
        (
            prop_oneof![3 => 1usize..4, 1 => size()],
            size(),
            size(),
            size(),
            padding.clone()
        )
            .prop_map(|(filters, k, s, s2, padding)| LayerSpec::Conv2D(Conv2D {
                filters,
                kernel_size: [k, k.min(2)],
                strides: [s, s2],
                padding,
                use_bias: true,
            })),
        (size(), size(), size(), size(), padding, any::<bool>()).prop_map(
            |(kh, kw, sh, sw, padding, max)| {
                let p = Pool2D {
                    pool_size: [kh, kw],
                    strides: [sh, sw],
                    padding,
                };
                if max {
                    LayerSpec::MaxPool2D(p)
                } else {
                    LayerSpec::AvgPool2D(p)
                }
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), failure_persistence: None, ..ProptestConfig::default() })]

    /// The GPU model and both CPU models refuse the same windows in the same words; where
    /// they accept, one epoch gives the same loss on all three.
    #[test]
    fn window_sizes_agree_on_every_model(
        (h, w, c) in (1usize..6, 1usize..6, 1usize..3),
        first in window_layer(),
        second in prop::option::of(window_layer()),
        rows in 1usize..5,
        seed in any::<u64>(),
    ) {
        let _g = serial();
        let mut layers = vec![first];
        layers.extend(second);
        layers.extend([LayerSpec::Flatten, LayerSpec::Dense(3)]);
        let input = Shape::image(h, w, c);
        let opt = Optimizer::sgd(0.05, 0.0);
        let gpu = Sequential::new(ctx(), input, &layers, seed, opt);
        let cpu = CpuModel::new(input, &layers, seed, opt);
        let fast = CpuModelF32::new(input, &layers, seed, opt);
        match (gpu, cpu, fast) {
            (Err(a), Err(b), Err(f)) => {
                prop_assert_eq!(a.to_string(), b.to_string());
                prop_assert_eq!(a.to_string(), f.to_string());
                // A size past the kernels' range is named as such, never a wgpu error.
                prop_assert!(!a.to_string().contains("wgpu"), "{}", a);
            }
            (Ok(mut gpu), Ok(mut cpu), Ok(mut fast)) => {
                let d = Dataset::synthetic(rows, h * w * c, seed);
                let x = d.x().iter().map(|v| v / 50.0).collect();
                let data = Dataset::new(x, d.labels().to_vec(), h * w * c, 3).unwrap();
                let options = FitOptions { batch_size: 4, epochs: 1, shuffle: false, seed };
                let a = gpu.fit(&data, &options, None, |_, _| {}).unwrap().loss[0];
                let b = cpu.fit(&data, &options, None, |_, _| {}).unwrap().loss[0];
                let f = fast.fit(&data, &options, None, |_, _| {}).unwrap().loss[0];
                let close = |x: f64| (x - b).abs() < 1e-4 * b.max(1.0);
                prop_assert!(close(a) && close(f), "{layers:?}: GPU {a}, CPU f64 {b}, CPU f32 {f}");
            }
            (a, b, f) => prop_assert!(
                false,
                "{layers:?}: GPU {:?} vs CPU {:?} vs CPU f32 {:?}",
                a.err(), b.err(), f.err()
            ),
        }
    }
}

/// The largest accepted window and stride meet at the 31-bit edge: the windows of a
/// `same` pool of size and stride `MAX_WINDOW` cover the whole image, on every model.
#[test]
fn the_largest_window_is_taken_whole() {
    let _g = serial();
    let p = Pool2D::new(MAX_WINDOW).padding(Padding::Same);
    for layer in [LayerSpec::MaxPool2D(p), LayerSpec::AvgPool2D(p)] {
        let layers = [layer, LayerSpec::Flatten, LayerSpec::Dense(3)];
        let input = Shape::image(5, 4, 2);
        let opt = Optimizer::sgd(0.05, 0.0);
        let mut gpu = Sequential::new(ctx(), input, &layers, 7, opt).unwrap();
        let mut cpu = CpuModel::new(input, &layers, 7, opt).unwrap();
        let d = Dataset::synthetic(6, 40, 3);
        let x = d.x().iter().map(|v| v / 50.0).collect();
        let data = Dataset::new(x, d.labels().to_vec(), 40, 3).unwrap();
        let options = FitOptions {
            batch_size: 3,
            epochs: 2,
            shuffle: false,
            seed: 0,
        };
        let a = gpu.fit(&data, &options, None, |_, _| {}).unwrap();
        let b = cpu.fit(&data, &options, None, |_, _| {}).unwrap();
        for (a, b) in a.loss.iter().zip(&b.loss) {
            assert!((a - b).abs() < 1e-4 * b.max(1.0), "{layers:?}: {a} vs {b}");
        }
        // One past it: refused, naming the layer and the size.
        let big = Pool2D::new(MAX_WINDOW + 1).padding(Padding::Same);
        let layers = [
            LayerSpec::MaxPool2D(big),
            LayerSpec::Flatten,
            LayerSpec::Dense(3),
        ];
        let e = Sequential::new(ctx(), input, &layers, 7, opt)
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("MaxPooling2D pool size 2147483648 exceeds"),
            "{msg}"
        );
    }
}

/// The case: a max-pool of 2^32 trained with loss 2.2910 on the GPU and 2.3570 on the
/// CPU (its size cut to 0 on the way to the shader). Both devices now refuse it, in the same
/// words, before training.
#[test]
fn cli_refuses_a_pool_of_2_pow_32_on_both_devices() {
    let mut messages = Vec::new();
    for device in ["gpu", "cpu"] {
        let (ok, out, err) = bnorm(&[
            "train",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--no-bn",
            "--no-shuffle",
            "--device",
            device,
            "--layers",
            "conv:4:3:same,maxpool:4294967296:same,flatten,dense:10",
        ]);
        assert!(!ok, "{device}: trained\n{out}");
        assert!(
            err.contains("pool size 4294967296 exceeds"),
            "{device}: {err}"
        );
        assert!(!err.contains("panicked"), "{device}: {err}");
        let line = err.lines().find(|l| l.contains("4294967296")).unwrap();
        messages.push(line.to_string());
    }
    assert_eq!(messages[0], messages[1]);
}
