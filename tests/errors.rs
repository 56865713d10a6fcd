//! Bad input comes back as a typed error that says what was wrong; nothing is written.

mod common;

use common::{ctx, serial};
use wgpu_batchnorm::wgpu;
use wgpu_batchnorm::{BatchNorm, BatchNormConfig, Convention, Error, Mode, Tensor, TensorRef};

#[test]
fn bad_configs_are_refused() {
    let mut c = BatchNormConfig::keras(0);
    assert!(matches!(c.validate(), Err(Error::ZeroChannels)));
    c.channels = 4;
    for eps in [0.0, -1e-3, f32::NAN, f32::INFINITY] {
        c.epsilon = eps;
        assert!(
            matches!(c.validate(), Err(Error::InvalidEpsilon(_))),
            "{eps}"
        );
    }
    c.epsilon = 1e-3;
    for m in [-0.1, 1.5, f64::NAN] {
        c.momentum = Some(m);
        assert!(
            matches!(c.validate(), Err(Error::InvalidMomentum(_))),
            "{m}"
        );
    }
    c.momentum = None;
    assert!(matches!(c.validate(), Err(Error::CumulativeNeedsPyTorch)));
    c.convention = Convention::PyTorch;
    assert!(c.validate().is_ok());
    let _g = serial();
    assert!(matches!(
        BatchNorm::new(ctx(), BatchNormConfig::default()),
        Err(Error::ZeroChannels)
    ));
}

#[test]
fn bad_shapes_are_refused_and_nothing_is_written() {
    let _g = serial();
    let mut bn = BatchNorm::new(ctx(), BatchNormConfig::keras(3)).unwrap();
    let e = bn
        .forward_host(&[1.0; 6], &[6], Mode::Training)
        .unwrap_err();
    assert!(matches!(e, Error::RankTooLow(_)), "{e}");
    let e = bn.forward_host(&[], &[0, 3], Mode::Training).unwrap_err();
    assert!(matches!(e, Error::EmptyTensor(_)), "{e}");
    let e = bn
        .forward_host(&[1.0; 8], &[2, 4], Mode::Training)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ChannelMismatch {
                expected: 3,
                got: 4,
                axis: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("4 channels"), "{e}");
    let e = bn
        .forward_host(&[1.0; 5], &[2, 3], Mode::Training)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::LengthMismatch {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{e}"
    );
    let e = bn.set_gamma(&[1.0, 2.0]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LengthMismatch {
                expected: 3,
                got: 2,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(bn.batches_tracked(), 0);
    assert_eq!(bn.running_mean().unwrap(), vec![0.0; 3]);
    assert_eq!(bn.gamma().unwrap(), vec![1.0; 3]);
}

#[test]
fn backward_needs_a_forward_of_the_same_shape() {
    let _g = serial();
    let mut bn = BatchNorm::new(ctx(), BatchNormConfig::keras(2)).unwrap();
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let e = bn.backward_host(&x, &x, &[2, 2]).unwrap_err();
    assert!(matches!(e, Error::BackwardBeforeForward), "{e}");
    bn.forward_host(&x, &[2, 2], Mode::Training).unwrap();
    let e = bn.backward_host(&[1.0; 6], &[1.0; 6], &[3, 2]).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
}

#[test]
fn caller_buffers_are_checked() {
    let _g = serial();
    let ctx = ctx();
    let dev = ctx.device();
    let mut bn = BatchNorm::new(ctx, BatchNormConfig::keras(4)).unwrap();
    let shape = [8usize, 4];
    let x = Tensor::from_slice(ctx, &shape, &[1.0; 32]).unwrap();
    let mut enc = dev.create_command_encoder(&Default::default());

    let small = Tensor::zeros(ctx, &[4, 4]).unwrap();
    let e = bn
        .encode_forward(
            &mut enc,
            x.as_ref(),
            TensorRef::new(small.buffer(), &shape),
            Mode::Training,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BufferTooSmall {
                what: "y",
                needed: 128,
                available: 64
            }
        ),
        "{e}"
    );

    let e = bn
        .encode_forward(
            &mut enc,
            x.as_ref(),
            TensorRef {
                buffer: small.buffer(),
                offset: 4,
                shape: &[1, 4],
            },
            Mode::Training,
        )
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");

    let big = Tensor::zeros(ctx, &[512, 4]).unwrap();
    let e = bn
        .encode_forward(
            &mut enc,
            x.as_ref(),
            TensorRef {
                buffer: big.buffer(),
                offset: 4,
                shape: &shape,
            },
            Mode::Training,
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::MisalignedOffset { offset: 4, .. }),
        "{e}"
    );

    let uniform = dev.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 128,
        usage: wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    });
    let e = bn
        .encode_forward(
            &mut enc,
            x.as_ref(),
            TensorRef::new(&uniform, &shape),
            Mode::Training,
        )
        .unwrap_err();
    assert!(matches!(e, Error::BufferUsage { what: "y", .. }), "{e}");

    let e = bn
        .encode_forward(&mut enc, x.as_ref(), x.as_ref(), Mode::Training)
        .unwrap_err();
    assert!(matches!(e, Error::Aliasing(_)), "{e}");

    // Nothing was recorded: the encoder still finishes and the layer is untouched.
    ctx.submit_and_wait(enc).unwrap();
    assert_eq!(bn.batches_tracked(), 0);
    assert_eq!(bn.running_var().unwrap(), vec![1.0; 4]);
}

#[test]
fn tensors_refuse_empty_and_mismatched_data() {
    let _g = serial();
    assert!(matches!(
        Tensor::zeros(ctx(), &[3, 0]),
        Err(Error::EmptyTensor(_))
    ));
    assert!(matches!(
        Tensor::from_slice(ctx(), &[2, 2], &[1.0; 3]),
        Err(Error::LengthMismatch {
            expected: 4,
            got: 3,
            ..
        })
    ));
}

#[test]
fn a_row_past_the_binding_limit_names_the_limit() {
    let _g = serial();
    let mut bn =
        BatchNorm::new(common::ctx_small_bindings(), BatchNormConfig::pytorch(64)).unwrap();
    // One sample of 64 x 32 floats is 8 KiB: it cannot be split below the 4 KiB binding.
    let x = vec![1.0f32; 2 * 64 * 32];
    let e = bn
        .forward_host(&x, &[2, 64, 32], Mode::Training)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooLarge {
                limit: "max_storage_buffer_binding_size",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("max_storage_buffer_binding_size"));
}

/// The GPU model's fit refuses, before any epoch, a last Dense narrower than the data's
/// classes (in those words) and epochs whose history cannot be held (as the CPU models do).
#[test]
fn gpu_fit_refuses_narrow_outputs_and_unholdable_epochs() {
    use wgpu_batchnorm::nn::{Dataset, FitOptions, LayerSpec, Optimizer, Sequential};
    let _guard = serial();
    let data = Dataset::new(vec![0.5; 12], vec![0, 1, 2], 4, 3).unwrap();
    let mut m = Sequential::new(ctx(), 4, &[LayerSpec::Dense(2)], 0, Optimizer::default()).unwrap();
    let mut ran = 0;
    let e = m
        .fit(&data, &FitOptions::default(), None, |_, _| ran += 1)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("the last Dense layer has 2 outputs but the data has 3 classes"),
        "{e}"
    );
    let mut m = Sequential::new(ctx(), 4, &[LayerSpec::Dense(3)], 0, Optimizer::default()).unwrap();
    let options = FitOptions {
        epochs: usize::MAX,
        ..FitOptions::default()
    };
    let e = m.fit(&data, &options, None, |_, _| ran += 1).unwrap_err();
    assert!(e.to_string().contains("training history"), "{e}");
    assert_eq!(ran, 0);
}
