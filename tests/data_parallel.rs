//! Data-parallel training: the tutorial network (and a small CNN) trained on 2 and 3 ranks —
//! each rank a share of every global batch, batch norm synchronized, gradients summed —
//! follows single-process training on the same global batches: loss per epoch within 1e-5,
//! weights within 1e-5·max(1,|w|), the same history and weights on every rank.

mod common;

use std::thread;

use common::{ctx, serial};
use wgpu_batchnorm::nn::{
    tutorial_layers, Conv2D, Dataset, FitOptions, History, LayerSpec, Optimizer, Padding, Pool2D,
    Sequential, Shape, Weight,
};
use wgpu_batchnorm::{Collective, ThreadGroup};

fn train_ranks(
    ranks: usize,
    input: Shape,
    layers: &[LayerSpec],
    data: &Dataset,
    options: &FitOptions,
    optimizer: Optimizer,
) -> Vec<(History, Vec<Weight>)> {
    let members = ThreadGroup::new(ranks).unwrap();
    thread::scope(|s| {
        let handles: Vec<_> = members
            .into_iter()
            .map(|mut comm| {
                s.spawn(move || {
                    let mut m = Sequential::new(ctx(), input, layers, 7, optimizer).unwrap();
                    let h = m.fit_distributed(data, options, None, &mut comm).unwrap();
                    (h, m.weights().unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn compare(
    ranks: usize,
    input: Shape,
    layers: &[LayerSpec],
    data: &Dataset,
    optimizer: Optimizer,
    skip: &[&str],
) {
    let options = FitOptions {
        batch_size: 24,
        epochs: 3,
        shuffle: true,
        seed: 5,
    };
    let mut single = Sequential::new(ctx(), input, layers, 7, optimizer).unwrap();
    let want = single.fit(data, &options, None, |_, _| {}).unwrap();
    let want_w = single.weights().unwrap();
    let got = train_ranks(ranks, input, layers, data, &options, optimizer);
    for (r, (h, w)) in got.iter().enumerate() {
        for e in 0..options.epochs {
            assert!(
                (h.loss[e] - want.loss[e]).abs() < 1e-5,
                "{ranks} ranks, rank {r}, epoch {e}: loss {} single {}",
                h.loss[e],
                want.loss[e]
            );
            assert!((h.accuracy[e] - want.accuracy[e]).abs() < 1.5 / data.rows() as f64);
        }
        assert_eq!(h, &got[0].0, "rank {r}: the same history everywhere");
        for (a, b) in w.iter().zip(&want_w) {
            assert_eq!(a.name, b.name);
            if skip.contains(&a.name.as_str()) {
                continue;
            }
            for (i, (x, y)) in a.values.iter().zip(&b.values).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                    "{ranks} ranks, rank {r}: {}[{i}] {x} single {y}",
                    a.name
                );
            }
        }
        assert_eq!(w, &got[0].1, "rank {r}: the same weights everywhere");
    }
}

#[test]
fn data_parallel_training_follows_single_process_training() {
    let _g = serial();
    let data = Dataset::synthetic(100, 20, 3);
    // A Dense bias right before BN has a round-off-only gradient, which Adam turns into steps
    // of either sign, and the moving mean follows it (as in tests/training.rs).
    let noisy = ["dense/bias", "batch_normalization/moving_mean"];
    for ranks in [2, 3] {
        compare(
            ranks,
            Shape::Flat(20),
            &tutorial_layers(true, 10, 3),
            &data,
            Optimizer::default(),
            &noisy,
        );
    }
    // A CNN with batch norm over feature maps, on 2 ranks.
    let digits = Dataset::digits().unwrap().split(96).unwrap().0;
    let cnn = [
        LayerSpec::Conv2D(Conv2D::new(4, 3).padding(Padding::Same)),
        LayerSpec::BatchNorm,
        LayerSpec::Relu,
        LayerSpec::MaxPool2D(Pool2D::new(2)),
        LayerSpec::Flatten,
        LayerSpec::Dense(10),
    ];
    compare(
        2,
        Shape::image(8, 8, 1),
        &cnn,
        &digits,
        Optimizer::sgd(0.05, 0.9),
        &[],
    );
}

#[test]
fn batches_too_small_for_the_ranks_are_refused() {
    let _g = serial();
    let data = Dataset::synthetic(50, 4, 1);
    let options = FitOptions {
        batch_size: 24, // the last batch has 2 rows
        epochs: 1,
        shuffle: false,
        seed: 0,
    };
    // Every rank refuses alike (after agreeing on the options and rows), none waits: the
    // ranks report through a channel, and a hang fails the test at the deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    for mut comm in ThreadGroup::new(3).unwrap() {
        let (tx, data, options) = (tx.clone(), data.clone(), options.clone());
        thread::spawn(move || {
            let layers = tutorial_layers(true, 5, 3);
            let e = Sequential::new(ctx(), 4, &layers, 0, Optimizer::default())
                .and_then(|mut m| m.fit_distributed(&data, &options, None, &mut comm))
                .map(|_| ())
                .map_err(|e| e.to_string());
            let _ = tx.send((comm.ranks(), e));
        });
    }
    drop(tx);
    for _ in 0..3 {
        let (ranks, e) = rx
            .recv_timeout(std::time::Duration::from_secs(240))
            .expect("a rank hung");
        assert_eq!(ranks, 3);
        let e = e.unwrap_err();
        assert!(e.contains("at least one row per rank"), "{e}");
    }
}
