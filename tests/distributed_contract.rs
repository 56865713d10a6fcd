//! Data-parallel training cannot hang and cannot silently mix different runs: ranks that
//! disagree on the contract (options, network, weights, data) all return the same
//! `RanksDisagree` before any exchange of values, and a rank that fails after joining makes
//! every rank return an error. Ranks are threads over a `ThreadGroup`; each test waits for
//! them with a deadline and fails instead of hanging.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{ctx, serial};
use proptest::prelude::*;
use wgpu_batchnorm::nn::{
    tutorial_layers, Dataset, FitOptions, History, LayerSpec, Optimizer, Sequential, Shape,
};
use wgpu_batchnorm::{BatchNormConfig, Collective, Context, Error, ThreadGroup};

/// Far past what any of these runs takes; only a hang gets there.
const DEADLINE: Duration = Duration::from_secs(240);

/// What one rank trains.
#[derive(Clone)]
struct Run {
    input: Shape,
    layers: Vec<LayerSpec>,
    seed: u64,
    optimizer: Optimizer,
    options: FitOptions,
    data: Dataset,
    validation: Option<Dataset>,
}

fn base() -> Run {
    Run {
        input: Shape::Flat(20),
        layers: tutorial_layers(true, 10, 3),
        seed: 7,
        optimizer: Optimizer::default(),
        options: FitOptions {
            batch_size: 20,
            epochs: 1,
            shuffle: true,
            seed: 5,
        },
        data: Dataset::synthetic(60, 20, 1),
        validation: None,
    }
}

/// How a rank ended: its history, or its error's message and whether it is `RanksDisagree`.
type Outcome = Result<History, (String, bool)>;

/// Trains `runs[r]` on rank `r`, each rank a thread with its own member of one group and,
/// where `contexts` gives one, its own device; `wrap` may stand between a rank and its
/// member. Fails the test when a rank has not returned by the deadline.
fn on_ranks(
    runs: Vec<Run>,
    contexts: Vec<Option<Context>>,
    wrap: fn(usize, ThreadGroup, Option<Context>) -> Box<dyn Collective + Send>,
) -> Vec<Outcome> {
    let n = runs.len();
    let members = ThreadGroup::new(n).unwrap();
    let (tx, rx) = mpsc::channel();
    for (r, ((member, run), own)) in members.into_iter().zip(runs).zip(contexts).enumerate() {
        let tx = tx.clone();
        // Detached: a rank that hangs must not keep the test from failing.
        thread::spawn(move || {
            let rank_ctx = own.clone().unwrap_or_else(|| ctx().clone());
            let mut comm = wrap(r, member, own);
            let out = Sequential::new(&rank_ctx, run.input, &run.layers, run.seed, run.optimizer)
                .and_then(|mut m| {
                    m.fit_distributed(&run.data, &run.options, run.validation.as_ref(), &mut *comm)
                })
                .map_err(|e| {
                    let disagree = matches!(e.engine(), Some(Error::RanksDisagree { .. }));
                    (e.to_string(), disagree)
                });
            drop(comm);
            let _ = tx.send((r, out));
        });
    }
    drop(tx);
    let mut out: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let (r, o) = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("a rank did not return within {DEADLINE:?}: a hang"));
        out[r] = Some(o);
    }
    out.into_iter().map(Option::unwrap).collect()
}

fn plain(_: usize, m: ThreadGroup, _: Option<Context>) -> Box<dyn Collective + Send> {
    Box::new(m)
}

fn train(runs: Vec<Run>) -> Vec<Outcome> {
    let n = runs.len();
    on_ranks(runs, vec![None; n], plain)
}

/// Every rank returns the same `RanksDisagree`, naming `what`; returns the message.
fn assert_disagree(outcomes: &[Outcome], what: &str) -> String {
    let first = match &outcomes[0] {
        Err((m, true)) => m.clone(),
        other => panic!("rank 0: expected a disagreement on {what}, got {other:?}"),
    };
    for (r, o) in outcomes.iter().enumerate() {
        assert_eq!(o, &Err((first.clone(), true)), "rank {r}: the same error");
    }
    assert!(
        first.starts_with(&format!("ranks disagree on {what}: ")),
        "expected {what}: {first}"
    );
    first
}

/// Two ranks: the base run, and the base run changed by `change`.
fn pair(change: impl FnOnce(&mut Run)) -> Vec<Run> {
    let mut other = base();
    change(&mut other);
    vec![base(), other]
}

#[test]
fn ranks_that_disagree_all_return_the_same_error_naming_the_difference() {
    let _g = serial();
    let m = assert_disagree(&train(pair(|r| r.options.epochs = 2)), "epochs");
    assert_eq!(m, "ranks disagree on epochs: rank 0 has 1, rank 1 has 2");
    assert_disagree(&train(pair(|r| r.options.batch_size = 30)), "batch size");
    assert_disagree(&train(pair(|r| r.options.shuffle = false)), "shuffle");
    assert_disagree(&train(pair(|r| r.options.seed = 6)), "seed");
    assert_disagree(
        &train(pair(|r| r.optimizer = Optimizer::sgd(0.01, 0.0))),
        "optimizer",
    );
    // Hidden 10 against 12: buffers of equal length once aligned, different tensors.
    let m = assert_disagree(
        &train(pair(|r| r.layers = tutorial_layers(true, 12, 3))),
        "layer 1 (dense)",
    );
    assert!(
        m.contains("kernel [20, 10]") && m.contains("kernel [20, 12]"),
        "{m}"
    );
    assert_disagree(
        &train(pair(|r| r.layers = tutorial_layers(false, 10, 3))),
        "number of layers",
    );
    // ReLU or none: the same layers, one fused differently.
    assert_disagree(
        &train(pair(|r| {
            r.layers = vec![
                LayerSpec::Dense(10),
                LayerSpec::BatchNorm,
                LayerSpec::Dense(3),
            ]
        })),
        "layer 2 (batch_normalization)",
    );
    // Keras' convention against PyTorch's on one batch-norm layer.
    let m = assert_disagree(
        &train(pair(|r| {
            r.layers[1] = LayerSpec::BatchNormWith(BatchNormConfig::pytorch(10));
        })),
        "layer 2 (batch_normalization)'s settings",
    );
    assert!(m.contains("Keras") && m.contains("PyTorch"), "{m}");
    // Another model seed: other initial weights.
    assert_disagree(&train(pair(|r| r.seed = 8)), "initial weights");
    assert_disagree(
        &train(pair(|r| r.data = Dataset::synthetic(63, 20, 1))),
        "training rows",
    );
    // The same rows, other values.
    assert_disagree(
        &train(pair(|r| r.data = Dataset::synthetic(60, 20, 2))),
        "training data",
    );
    assert_disagree(
        &train(pair(|r| r.validation = Some(Dataset::synthetic(10, 20, 3)))),
        "validation rows",
    );
    // Three ranks, the last one different: every rank's value is named.
    let mut third = base();
    third.options.epochs = 3;
    let m = assert_disagree(&train(vec![base(), base(), third]), "epochs");
    assert_eq!(
        m,
        "ranks disagree on epochs: rank 0 has 1, rank 1 has 1, rank 2 has 3"
    );
}

#[test]
fn ranks_that_agree_still_train_alike() {
    let _g = serial();
    let out = train(vec![base(), base()]);
    let h = out[0].as_ref().unwrap();
    assert_eq!(out[1].as_ref().unwrap(), h);
    assert!(h.loss[0].is_finite());
}

#[test]
fn a_rank_with_invalid_options_makes_every_rank_fail() {
    let _g = serial();
    // A network without batch norm: the message says nothing of batch norm.
    let no_bn = |r: &mut Run| r.layers = tutorial_layers(false, 10, 3);
    let mut runs = pair(|r| {
        no_bn(r);
        r.options.batch_size = 0;
    });
    no_bn(&mut runs[0]);
    let out = train(runs);
    let (m1, _) = out[1].as_ref().unwrap_err();
    let (m0, disagree) = out[0].as_ref().unwrap_err();
    assert!(!disagree);
    assert_eq!(m0, &format!("rank 1 failed: {m1}"));
    assert!(!m0.contains("batch norm"), "{m0}");
}

/// A plain all-gather of unequal lengths: one error, the same on every rank, said once.
#[test]
fn unequal_lengths_are_one_error_on_every_rank() {
    let (tx, rx) = mpsc::channel();
    for mut comm in ThreadGroup::new(2).unwrap() {
        let tx = tx.clone();
        thread::spawn(move || {
            let local = vec![1.0; comm.rank() + 1];
            let _ = tx.send(comm.all_gather(&local).map_err(|e| e.to_string()));
        });
    }
    let want = "ranks exchange payloads of different lengths: rank 0 sends 1 values, rank 1 sends 2 values";
    for _ in 0..2 {
        let got = rx.recv_timeout(DEADLINE).expect("a rank hung");
        assert_eq!(got, Err(want.to_string()));
    }
}

/// Destroys its rank's device during exchange number `AFTER[rank]`: the rank's next GPU work
/// fails between two exchanges, as an allocation or a driver error would.
fn sabotage(r: usize, m: ThreadGroup, own: Option<Context>) -> Box<dyn Collective + Send> {
    struct Sabotage {
        inner: ThreadGroup,
        ctx: Option<Context>,
        calls: usize,
        after: usize,
    }
    impl Collective for Sabotage {
        fn rank(&self) -> usize {
            self.inner.rank()
        }
        fn ranks(&self) -> usize {
            self.inner.ranks()
        }
        fn all_gather(&mut self, local: &[f64]) -> wgpu_batchnorm::Result<Vec<f64>> {
            self.calls += 1;
            if self.calls == self.after {
                if let Some(ctx) = &self.ctx {
                    ctx.device().destroy();
                }
            }
            self.inner.all_gather(local)
        }
    }
    let after = AFTER.load(std::sync::atomic::Ordering::Relaxed);
    Box::new(Sabotage {
        inner: m,
        ctx: (r == 1).then_some(own).flatten(),
        calls: 0,
        after,
    })
}

static AFTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn a_rank_that_fails_after_joining_makes_every_rank_fail() {
    let _g = serial();
    // After the contract (4 all-gathers), in the setup barrier, in a batch-norm exchange,
    // in the gradients' exchange, in a later step.
    for after in [3, 5, 6, 9, 12, 20] {
        AFTER.store(after, std::sync::atomic::Ordering::Relaxed);
        let contexts = (0..2).map(|_| Some(Context::new().unwrap())).collect();
        let mut run = base();
        run.options.epochs = 2;
        let out = on_ranks(vec![run.clone(), run], contexts, sabotage);
        let (m1, _) = out[1]
            .as_ref()
            .expect_err("rank 1 lost its device: an error");
        let (m0, disagree) = out[0].as_ref().expect_err("rank 0: an error, not a hang");
        assert!(!disagree, "{m0}");
        assert!(
            m1.contains("device lost") && m0 == &format!("rank 1 failed: {m1}"),
            "after {after} exchanges: rank 0 {m0:?}, rank 1 {m1:?}"
        );
    }
}

/// One random change to the base run.
fn mismatch() -> impl Strategy<Value = (usize, &'static str)> {
    let changes = [
        "epochs",
        "batch size",
        "shuffle",
        "seed",
        "optimizer",
        "layer 1 (dense)",
        "number of layers",
        "initial weights",
        "training rows",
        "training data",
    ];
    (0usize..3, prop::sample::select(changes.to_vec()))
}

fn apply(what: &str, r: &mut Run) {
    match what {
        "epochs" => r.options.epochs += 1,
        "batch size" => r.options.batch_size += 1,
        "shuffle" => r.options.shuffle = !r.options.shuffle,
        "seed" => r.options.seed += 1,
        "optimizer" => r.optimizer = Optimizer::sgd(0.05, 0.9),
        "layer 1 (dense)" => r.layers = tutorial_layers(true, 11, 3),
        "number of layers" => r.layers = tutorial_layers(false, 10, 3),
        "initial weights" => r.seed += 1,
        "training rows" => r.data = Dataset::synthetic(61, 20, 1),
        "training data" => r.data = Dataset::synthetic(60, 20, 9),
        other => unreachable!("{other}"),
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(6)))]

    /// Random mismatches on a random rank of 2 or 3: every rank errs alike, none hangs.
    #[test]
    fn any_mismatch_on_any_rank_is_everyone_s_error(
        three in prop::bool::ANY,
        (which, what) in mismatch(),
    ) {
        let _g = serial();
        let n = if three { 3 } else { 2 };
        let mut runs = vec![base(); n];
        apply(what, &mut runs[which % n]);
        assert_disagree(&train(runs), what);
    }
}
