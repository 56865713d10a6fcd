//! Synchronized batch norm across ranks (threads of one process here; processes over MPI in
//! `examples/sync_bn_mpi.rs`): uneven slices, an empty rank included, give the single-process
//! result on the concatenated batch within 1e-6 relative — statistics, y, dx, dgamma, dbeta,
//! running statistics — bit-identical on every rank and from run to run.

mod common;

use std::thread;

use common::{ctx, serial, Rng};
use wgpu_batchnorm::{
    BatchNorm, BatchNormConfig, Collective, Context, ContextOptions, Error, Layout, Mode,
    SyncBatchNorm, ThreadGroup,
};

/// What one rank ends with: its y and dx slices, then the layer's dgamma, dbeta, running
/// mean and variance after `steps` steps.
type RankResult = (Vec<f32>, Vec<f32>, [Vec<f32>; 4]);

/// A batch of `rows` with per-channel means far from zero and small spreads.
fn batch(rows: usize, inner: usize, c: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let x = (0..rows * inner * c)
        .map(|i| (1000.0 * (i % c) as f64 + rng.normal()) as f32)
        .collect();
    let dy = (0..rows * inner * c).map(|_| rng.normal() as f32).collect();
    (x, dy)
}

fn shape(rows: usize, inner: usize, c: usize, layout: Layout) -> Vec<usize> {
    match layout {
        Layout::ChannelsLast => vec![rows, inner, c],
        Layout::ChannelsFirst => vec![rows, c, inner],
    }
}

/// Runs `f` on each rank of a group of `ranks`, one thread each: every thread's outcome, in
/// rank order (`Err` where the thread panicked).
fn on_ranks<T: Send>(ranks: usize, f: impl Fn(ThreadGroup) -> T + Sync) -> Vec<thread::Result<T>> {
    let members = ThreadGroup::new(ranks).unwrap();
    let f = &f;
    thread::scope(|s| {
        let handles: Vec<_> = members
            .into_iter()
            .map(|comm| s.spawn(move || f(comm)))
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    })
}

/// Runs `steps` training steps on ranks holding `slices` rows each (in order).
fn run_ranks(
    config: &BatchNormConfig,
    slices: &[usize],
    inner: usize,
    steps: usize,
) -> Vec<RankResult> {
    run_ranks_on(&[ctx()], config, slices, inner, steps)
}

/// As `run_ranks`, rank r on `contexts[r % len]`.
fn run_ranks_on(
    contexts: &[&Context],
    config: &BatchNormConfig,
    slices: &[usize],
    inner: usize,
    steps: usize,
) -> Vec<RankResult> {
    let c = config.channels;
    let total: usize = slices.iter().sum();
    let per_row = inner * c;
    on_ranks(slices.len(), |comm| {
        let r = comm.rank();
        let start: usize = slices[..r].iter().sum();
        let rows = slices[r];
        let rank_ctx = contexts[r % contexts.len()];
        let mut bn = SyncBatchNorm::new(rank_ctx, config.clone(), comm).unwrap();
        let sh = shape(rows, inner, c, config.layout);
        let (mut y, mut dx) = (Vec::new(), Vec::new());
        for step in 0..steps {
            let (x, dy) = batch(total, inner, c, step as u64);
            let part = |v: &[f32]| v[start * per_row..(start + rows) * per_row].to_vec();
            let (x, dy) = (part(&x), part(&dy));
            y = bn.forward_host(&x, &sh, Mode::Training).unwrap();
            dx = bn.backward_host(&x, &dy, &sh).unwrap().0;
        }
        let l = bn.layer();
        // The batch statistics are readable on every rank, an empty one included.
        assert_eq!(l.batch_mean().unwrap().len(), c);
        let state = [l.dgamma(), l.dbeta(), l.running_mean(), l.running_var()].map(|v| v.unwrap());
        (y, dx, state)
    })
    .into_iter()
    .map(|r| r.unwrap())
    .collect()
}

/// The same steps on one layer over the whole batch.
fn run_single(config: &BatchNormConfig, total: usize, inner: usize, steps: usize) -> RankResult {
    let c = config.channels;
    let mut bn = BatchNorm::new(ctx(), config.clone()).unwrap();
    let sh = shape(total, inner, c, config.layout);
    let (mut y, mut dx) = (Vec::new(), Vec::new());
    for step in 0..steps {
        let (x, dy) = batch(total, inner, c, step as u64);
        y = bn.forward_host(&x, &sh, Mode::Training).unwrap();
        dx = bn.backward_host(&x, &dy, &sh).unwrap().0;
    }
    let state = [bn.dgamma(), bn.dbeta(), bn.running_mean(), bn.running_var()].map(|v| v.unwrap());
    (y, dx, state)
}

#[track_caller]
fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1.0) + 2e-6 * scale,
            "{what}[{i}]: synchronized {a} single {b}"
        );
    }
}

fn check(config: BatchNormConfig, slices: &[usize], inner: usize) {
    let total: usize = slices.iter().sum();
    let steps = 2;
    let ranks = run_ranks(&config, slices, inner, steps);
    let (y, dx, state) = run_single(&config, total, inner, steps);
    let per_row = inner * config.channels;
    let mut start = 0;
    for (r, (ry, rdx, rstate)) in ranks.iter().enumerate() {
        let rows = slices[r];
        let part = |v: &[f32]| v[start * per_row..(start + rows) * per_row].to_vec();
        if config.layout == Layout::ChannelsLast {
            close(&format!("rank {r} y"), ry, &part(&y));
            close(&format!("rank {r} dx"), rdx, &part(&dx));
        }
        for (k, name) in ["dgamma", "dbeta", "running mean", "running var"]
            .iter()
            .enumerate()
        {
            close(&format!("rank {r} {name}"), &rstate[k], &state[k]);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&rstate[k]),
                bits(&ranks[0].2[k]),
                "rank {r} {name} bits"
            );
        }
        start += rows;
    }
    // Run to run: the same bits.
    let again = run_ranks(&config, slices, inner, steps);
    for (a, b) in ranks.iter().zip(&again) {
        assert_eq!(
            a.0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.0.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(a.2, b.2);
    }
}

#[test]
fn uneven_ranks_equal_the_whole_batch() {
    let _g = serial();
    // Keras: momentum on the old value, biased running variance; NHWC-like [rows, 4, 5].
    check(BatchNormConfig::keras(5), &[3, 0, 7], 4);
    // PyTorch: unbiased running variance with the global count; one row on a rank.
    check(BatchNormConfig::pytorch(3), &[1, 6], 1);
    // Channels-first, ReLU fused, four ranks.
    let nchw = BatchNormConfig::pytorch(4)
        .with_layout(Layout::ChannelsFirst)
        .with_relu(true);
    check(nchw, &[2, 5, 0, 3], 6);
    // A bigger slice that takes several row splits on its rank.
    check(BatchNormConfig::keras(3), &[4000, 17], 1);
}

#[test]
fn a_failing_rank_makes_every_rank_fail() {
    let _g = serial();
    let results: Vec<_> = on_ranks(2, |comm| {
        let r = comm.rank();
        let mut bn = SyncBatchNorm::new(ctx(), BatchNormConfig::keras(3), comm).unwrap();
        // Rank 1 passes a shape that does not match its data.
        let rows = 4;
        let x = vec![1.0f32; rows * 3];
        let shape = if r == 0 {
            vec![rows, 3]
        } else {
            vec![rows + 1, 3]
        };
        bn.forward_host(&x, &shape, Mode::Training).map(|_| ())
    })
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    assert!(
        matches!(&results[0], Err(Error::Collective(m)) if m.contains("rank 1 failed")),
        "{results:?}"
    );
    assert!(
        results[1].is_err() && !matches!(results[1], Err(Error::Collective(_))),
        "{results:?}"
    );
    // A rank whose thread panics before the exchange leaves the group: the other gets an
    // error, not a hang.
    let results = on_ranks(2, |comm| {
        let r = comm.rank();
        let mut bn = SyncBatchNorm::new(ctx(), BatchNormConfig::keras(2), comm).unwrap();
        if r == 1 {
            panic!("rank 1 gives up");
        }
        bn.forward_host(&[1.0, 2.0, 3.0, 4.0], &[2, 2], Mode::Training)
            .map(|_| ())
    });
    assert!(results[1].is_err(), "rank 1 panicked");
    let rank0 = results[0].as_ref().unwrap();
    assert!(
        matches!(rank0, Err(Error::Collective(m)) if m.contains("rank 1 left")),
        "{rank0:?}"
    );
    // Every rank empty: an error everywhere, no hang.
    for outcome in on_ranks(2, |comm| {
        let mut bn = SyncBatchNorm::new(ctx(), BatchNormConfig::keras(2), comm).unwrap();
        let e = bn.forward_host(&[], &[0, 2], Mode::Training).unwrap_err();
        assert!(e.to_string().contains("no rank has any rows"), "{e}");
    }) {
        outcome.unwrap();
    }
}

/// Two ranks built with different configurations are told so, alike, before any statistics
/// are merged: a Keras layer and a PyTorch one, 3 channels and 4.
#[test]
fn ranks_built_differently_disagree_before_exchanging() {
    let _g = serial();
    let configs = [
        [
            BatchNormConfig::keras(3),
            BatchNormConfig::pytorch(3).with_layout(Layout::ChannelsLast),
        ],
        [BatchNormConfig::keras(3), BatchNormConfig::keras(4)],
        [
            BatchNormConfig::keras(3),
            BatchNormConfig::keras(3).with_relu(true),
        ],
    ];
    for (pair, what) in configs.iter().zip(["convention", "channels", "fused ReLU"]) {
        let errors: Vec<String> = on_ranks(2, |comm| {
            let config = pair[comm.rank()].clone();
            let c = config.channels;
            let mut bn = SyncBatchNorm::new(ctx(), config, comm).unwrap();
            match bn.forward_host(&vec![1.0; 4 * c], &[4, c], Mode::Training) {
                Err(e @ Error::RanksDisagree { .. }) => e.to_string(),
                other => panic!("{what}: expected a disagreement, got {other:?}"),
            }
        })
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
        assert_eq!(errors[0], errors[1]);
        assert!(
            errors[0].starts_with(&format!(
                "ranks disagree on the batch-norm layer's {what}: rank 0 has "
            )),
            "{}",
            errors[0]
        );
    }
}

/// Several adapters of one machine in one process: rank 0 on Vulkan (lavapipe), rank 1 on GL
/// (llvmpipe), as two GPUs would be. The exchanged statistics are the same on both; each
/// device finishes them with its own compiler, so the results agree to round-off.
#[test]
fn two_adapters_in_one_process() {
    let _g = serial();
    let on = |backends| {
        Context::with_options(ContextOptions {
            backends: Some(backends),
            ..Default::default()
        })
    };
    let (vk, gl) = match (
        on(wgpu_batchnorm::wgpu::Backends::VULKAN),
        on(wgpu_batchnorm::wgpu::Backends::GL),
    ) {
        (Ok(vk), Ok(gl)) => (vk, gl),
        (a, b) => {
            // CI has both (lavapipe and llvmpipe); a machine with one backend skips.
            eprintln!("skipped: Vulkan {:?}, GL {:?}", a.err(), b.err());
            return;
        }
    };
    assert_ne!(vk.adapter_info().backend, gl.adapter_info().backend);
    // The same adapters by name (what picks one of several GPUs).
    let name = vk.adapter_info().name.clone();
    let by_name = Context::with_options(ContextOptions {
        backends: Some(wgpu_batchnorm::wgpu::Backends::VULKAN),
        adapter_name: Some(name.to_uppercase()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(by_name.adapter_info().name, name);
    assert!(Context::adapters(None).iter().any(|(n, _, _)| *n == name));
    let missing = Context::with_options(ContextOptions {
        adapter_name: Some("no such adapter".into()),
        ..Default::default()
    });
    assert!(matches!(missing, Err(Error::NoAdapter(Some(_)))));
    let config = BatchNormConfig::pytorch(6);
    let slices = [9, 4];
    let ranks = run_ranks_on(&[&vk, &gl], &config, &slices, 3, 2);
    let (y, dx, state) = run_single(&config, 13, 3, 2);
    let per_row = 3 * 6;
    close("rank 0 y", &ranks[0].0, &y[..9 * per_row]);
    close("rank 1 y", &ranks[1].0, &y[9 * per_row..]);
    close("rank 1 dx", &ranks[1].1, &dx[9 * per_row..]);
    for r in &ranks {
        for (k, want) in state.iter().enumerate() {
            close("state", &r.2[k], want);
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 16, failure_persistence: None, ..Default::default() })]

    /// Any split of any batch over 1-4 ranks (empty ranks included), either layout and
    /// convention: the whole batch's results, the same bits on every rank.
    #[test]
    fn any_split_equals_the_whole_batch(
        slices in proptest::collection::vec(0usize..6, 1..5),
        channels in 1usize..5,
        inner in 1usize..4,
        first in proptest::bool::ANY,
        pytorch in proptest::bool::ANY,
    ) {
        let total: usize = slices.iter().sum();
        // The whole batch needs two values per channel (PyTorch refuses one).
        proptest::prop_assume!(total * inner >= 2);
        let _g = serial();
        let config = if pytorch { BatchNormConfig::pytorch(channels) } else { BatchNormConfig::keras(channels) };
        let layout = if first { Layout::ChannelsFirst } else { Layout::ChannelsLast };
        check(config.with_layout(layout), &slices, inner);
    }
}
