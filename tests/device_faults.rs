//! Device faults: uncaptured errors, a destroyed device (ours and a caller's), memory that
//! stays flat over many calls, many threads and contexts.

mod common;

use std::sync::{Arc, Mutex};

use common::serial;
use wgpu_batchnorm::nn::{self, tutorial_layers, Dataset, FitOptions, Optimizer, Sequential};

/// The engine's error inside a network's (whose device errors wrap the engine's).
fn engine<T>(r: Result<T, nn::Error>) -> Result<T, Error> {
    r.map_err(|e| match e {
        nn::Error::Engine(e) => e,
        other => Error::Gpu(format!("not an engine error: {other}")),
    })
}
use wgpu_batchnorm::{BatchNorm, BatchNormConfig, Context, ContextOptions, Error, Mode, Tensor};

fn caller_device() -> (wgpu::Device, wgpu::Queue) {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).unwrap();
    pollster::block_on(adapter.request_device(&Default::default())).unwrap()
}

/// Every call on a destroyed device returns `DeviceLost`: never a panic, never an Ok.
fn assert_every_call_is_lost(ctx: &Context, bn: &mut BatchNorm, model: &mut Sequential) {
    let lost = |what: &str, r: Result<(), Error>| {
        assert!(matches!(r, Err(Error::DeviceLost(_))), "{what}: {r:?}");
    };
    lost("check_alive", ctx.check_alive());
    lost(
        "forward_host",
        bn.forward_host(&[1.0; 8], &[2, 4], Mode::Training)
            .map(drop),
    );
    lost(
        "backward_host",
        bn.backward_host(&[1.0; 8], &[1.0; 8], &[2, 4]).map(drop),
    );
    lost("running_mean", bn.running_mean().map(drop));
    lost("set_gamma", bn.set_gamma(&[2.0; 4]));
    lost(
        "BatchNorm::new",
        BatchNorm::new(ctx, BatchNormConfig::keras(4)).map(drop),
    );
    lost(
        "Tensor::from_slice",
        Tensor::from_slice(ctx, &[2], &[1.0, 2.0]).map(drop),
    );
    lost(
        "Sequential::new",
        engine(Sequential::new(
            ctx,
            5,
            &tutorial_layers(true, 4, 3),
            0,
            Optimizer::default(),
        ))
        .map(drop),
    );
    let data = Dataset::synthetic(16, 5, 0);
    lost("train_batch", engine(model.train_batch(&data)));
    lost(
        "fit",
        engine(model.fit(&data, &FitOptions::default(), None, |_, _| {})).map(drop),
    );
    lost("predict", engine(model.predict(data.x())).map(drop));
    lost("weights", engine(model.weights()).map(drop));
}

/// `device.destroy()` on a caller's device (with wgpu's default handler, which panics on an
/// uncaptured error): every later call is `DeviceLost`, and the caller's handler is untouched.
#[test]
fn a_destroyed_caller_device_is_reported_not_panicked() {
    let _g = serial();
    let (device, queue) = caller_device();
    let ctx = Context::from_device(device.clone(), queue, ContextOptions::default());
    let mut bn = BatchNorm::new(&ctx, BatchNormConfig::keras(4)).unwrap();
    bn.forward_host(&[1.0; 8], &[2, 4], Mode::Training).unwrap();
    let mut model = Sequential::new(
        &ctx,
        5,
        &tutorial_layers(true, 4, 3),
        0,
        Optimizer::default(),
    )
    .unwrap();
    model.train_batch(&Dataset::synthetic(16, 5, 0)).unwrap();
    device.destroy();
    assert_every_call_is_lost(&ctx, &mut bn, &mut model);
}

/// The same with a caller's own error handler installed: it sees nothing of ours, and calls
/// still say `DeviceLost` (they said `Gpu("Tried to wait using a submission index...")`,
/// or Ok).
#[test]
fn a_callers_error_handler_is_kept() {
    let _g = serial();
    let (device, queue) = caller_device();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    device.on_uncaptured_error(Arc::new(move |e| sink.lock().unwrap().push(e.to_string())));
    let ctx = Context::from_device(device.clone(), queue, ContextOptions::default());
    let mut bn = BatchNorm::new(&ctx, BatchNormConfig::keras(4)).unwrap();
    let mut model = Sequential::new(
        &ctx,
        5,
        &tutorial_layers(true, 4, 3),
        0,
        Optimizer::default(),
    )
    .unwrap();
    device.destroy();
    assert_every_call_is_lost(&ctx, &mut bn, &mut model);
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
}

/// Our own device: `check_alive` sees a destroy at once, and so does every call.
#[test]
fn our_own_destroyed_device_is_reported() {
    let _g = serial();
    let ctx = Context::new().unwrap();
    let mut bn = BatchNorm::new(&ctx, BatchNormConfig::keras(4)).unwrap();
    let mut model = Sequential::new(
        &ctx,
        5,
        &tutorial_layers(true, 4, 3),
        0,
        Optimizer::default(),
    )
    .unwrap();
    ctx.device().destroy();
    assert_every_call_is_lost(&ctx, &mut bn, &mut model);
}

/// A device destroyed in the middle of `fit` (from the per-epoch callback): fit returns
/// `DeviceLost` and nothing panics.
#[test]
fn a_device_destroyed_mid_fit_stops_fit() {
    let _g = serial();
    let (device, queue) = caller_device();
    let ctx = Context::from_device(device.clone(), queue, ContextOptions::default());
    let mut model = Sequential::new(
        &ctx,
        5,
        &tutorial_layers(true, 4, 3),
        0,
        Optimizer::default(),
    )
    .unwrap();
    let data = Dataset::synthetic(200, 5, 0);
    let options = FitOptions {
        epochs: 4,
        ..FitOptions::default()
    };
    let r = model.fit(&data, &options, None, |e, _| {
        if e == 1 {
            device.destroy();
        }
    });
    assert!(matches!(engine(r), Err(Error::DeviceLost(_))), "mid-fit");
}

/// One uncaptured error (a caller's destroyed buffer, submitted by us) comes back once as
/// `Error::Gpu`; the context stays usable (it used to say `DeviceLost` forever after).
#[test]
fn an_uncaptured_error_is_reported_once_and_the_context_stays_usable() {
    let _g = serial();
    let ctx = Context::new().unwrap();
    let mut bn = BatchNorm::new(&ctx, BatchNormConfig::keras(4)).unwrap();
    let x = Tensor::from_slice(&ctx, &[2, 4], &[1.0; 8]).unwrap();
    let y = Tensor::zeros(&ctx, &[2, 4]).unwrap();
    x.buffer().destroy();
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    let r = bn.encode_forward(&mut enc, x.as_ref(), y.as_ref(), Mode::Training);
    assert!(
        matches!(&r, Err(Error::Gpu(m)) if m.contains("destroyed")),
        "{r:?}"
    );
    // A caller's own bad command, submitted through the context.
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(x.buffer(), 0, y.buffer(), 0, 32);
    let r = ctx.submit_and_wait(enc);
    assert!(matches!(r, Err(Error::Gpu(_))), "{r:?}");
    ctx.check_alive().unwrap();
    let y = bn.forward_host(&[1.0; 8], &[2, 4], Mode::Training).unwrap();
    assert_eq!(y.len(), 8);
    BatchNorm::new(&ctx, BatchNormConfig::keras(4)).unwrap();
}

/// A caller's device destroyed from another thread while `forward_host` runs: the call that
/// fails says `DeviceLost` wherever the destroy lands (a map failing after the wait used to
/// say `Readback`, in about 1 race of 6). Each race ends within the deadline or fails.
#[test]
fn a_device_destroyed_during_a_readback_is_lost_not_a_readback_error() {
    use std::time::{Duration, Instant};
    let _g = serial();
    let deadline = Instant::now() + Duration::from_secs(300);
    let x = vec![0.5f32; 256 * 16];
    for race in 0..24u64 {
        let (device, queue) = caller_device();
        let ctx = Context::from_device(device.clone(), queue, ContextOptions::default());
        let mut bn = BatchNorm::new(&ctx, BatchNormConfig::keras(16)).unwrap();
        bn.forward_host(&x, &[256, 16], Mode::Training).unwrap();
        // A different moment in the loop below each race.
        let destroyer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros(150 * race));
            device.destroy();
        });
        loop {
            match bn.forward_host(&x, &[256, 16], Mode::Training) {
                Ok(_) => assert!(Instant::now() < deadline, "race {race}: never lost"),
                Err(Error::DeviceLost(_)) => break,
                Err(e) => panic!("race {race}: {e:?}"),
            }
        }
        destroyer.join().unwrap();
    }
}
