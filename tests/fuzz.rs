//! Property tests of what users reach beyond the engine: the data loaders (any bytes), the
//! training stack (any layers, optimizer, options and data: no panic, and the GPU and CPU
//! models accept and refuse exactly the same things), and the `bnorm` argument space.
//! Bounded in CI; `PROPTEST_CASES=1000 cargo test --test fuzz` runs more.

mod common;

use common::{ctx, serial};
use proptest::prelude::*;
use wgpu_batchnorm::nn::reference::CpuModel;
use wgpu_batchnorm::nn::{self, Dataset, FitOptions, LayerSpec, Optimizer, Sequential};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("bnorm-fuzz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Bytes that look like a CSV more often than random bytes do.
fn csv_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("0".to_string()),
            Just("1".to_string()),
            Just("2".to_string()),
            Just("-3.5".to_string()),
            Just("1e39".to_string()),
            Just("nan".to_string()),
            Just("inf".to_string()),
            Just("4000000000".to_string()),
            Just("0.5".to_string()),
            Just("".to_string()),
            Just("x".to_string()),
            Just("#".to_string()),
        ],
        0..40,
    )
    .prop_flat_map(|cells| {
        let n = cells.len();
        (Just(cells), prop::collection::vec(prop::bool::ANY, n))
    })
    .prop_map(|(cells, breaks)| {
        let mut s = String::new();
        for (c, b) in cells.iter().zip(breaks) {
            s.push_str(c);
            s.push(if b { '\n' } else { ',' });
        }
        s
    })
}

/// A `.npy` header with arbitrary shape and dtype over arbitrary data bytes.
fn npy_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["<f4", "<f8", "<i4", "<i8", "<u4", "|u1", "<c8", "'"]),
        prop::collection::vec(
            prop_oneof![Just(0usize), 1usize..5, Just(usize::MAX / 3)],
            0..4,
        ),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(descr, shape, data, fortran)| {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            let header = format!(
                "{{'descr': '{descr}', 'fortran_order': {}, 'shape': ({}{}), }}\n",
                if fortran { "True" } else { "False" },
                dims.join(", "),
                if dims.len() == 1 { "," } else { "" }
            );
            let mut out = b"\x93NUMPY\x01\x00".to_vec();
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(&data);
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn csv_loader_never_panics(text in csv_text(), classes in prop::option::of(0usize..5), one_hot in prop::option::of(0usize..4)) {
        let d = scratch("csv");
        let p = d.join("f.csv");
        std::fs::write(&p, &text).unwrap();
        if let Ok(data) = Dataset::from_csv(&p, classes, one_hot) {
            prop_assert!(data.rows() > 0 && data.features() > 0);
            prop_assert_eq!(data.x().len(), data.rows() * data.features());
            prop_assert!(data.x().iter().all(|v| v.is_finite()));
            prop_assert!(data.labels().iter().all(|&l| (l as usize) < data.classes()));
        }
    }

    #[test]
    fn npy_loader_never_panics(x in npy_bytes(), y in npy_bytes(), raw in prop::collection::vec(any::<u8>(), 0..80)) {
        let d = scratch("npy");
        let (px, py, pr) = (d.join("x.npy"), d.join("y.npy"), d.join("r.npy"));
        std::fs::write(&px, &x).unwrap();
        std::fs::write(&py, &y).unwrap();
        std::fs::write(&pr, &raw).unwrap();
        for (a, b) in [(&px, &py), (&pr, &py), (&px, &pr)] {
            if let Ok(data) = Dataset::from_npy(a, b, None) {
                prop_assert_eq!(data.x().len(), data.rows() * data.features());
            }
        }
    }
}

fn layer() -> impl Strategy<Value = LayerSpec> {
    prop_oneof![
        (0usize..6).prop_map(LayerSpec::Dense),
        Just(LayerSpec::BatchNorm),
        Just(LayerSpec::Relu),
        prop_oneof![
            Just(-0.5f32),
            Just(0.0),
            Just(0.3),
            Just(1.0),
            Just(f32::NAN)
        ]
        .prop_map(LayerSpec::Dropout),
    ]
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(-1.0),
        Just(0.0),
        Just(1e-3),
        Just(0.5),
        Just(0.9),
        Just(1.0),
        Just(2.0),
        Just(1e300),
        Just(f64::NAN),
        Just(f64::INFINITY),
    ]
}

fn optimizer() -> impl Strategy<Value = Optimizer> {
    prop_oneof![
        (number(), number(), number(), number()).prop_map(|(lr, beta1, beta2, epsilon)| {
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
            }
        }),
        (number(), number()).prop_map(|(lr, momentum)| Optimizer::Sgd { lr, momentum }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), failure_persistence: None, ..ProptestConfig::default() })]

    /// Any network, optimizer, options and data: no panic, and both models say the same.
    #[test]
    fn both_models_accept_and_refuse_the_same(
        input in 0usize..4,
        layers in prop::collection::vec(layer(), 0..5),
        opt in optimizer(),
        rows in 1usize..12,
        features in 1usize..4,
        classes in 1usize..4,
        batch_size in 0usize..6,
        epochs in 0usize..3,
        seed in any::<u64>(),
    ) {
        let _g = serial();
        let gpu = Sequential::new(ctx(), input, &layers, seed, opt);
        let cpu = CpuModel::new(input, &layers, seed, opt);
        match (gpu, cpu) {
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (Ok(mut gpu), Ok(mut cpu)) => {
                let data = Dataset::synthetic(rows, features, seed);
                let data = Dataset::new(
                    data.x().to_vec(),
                    data.labels().iter().map(|&l| l % classes as u32).collect(),
                    features,
                    classes,
                ).unwrap();
                let options = FitOptions { batch_size, epochs, shuffle: true, seed };
                let a = gpu.fit(&data, &options, None, |_, _| {});
                let b = cpu.fit(&data, &options, None, |_, _| {});
                match (&a, &b) {
                    (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                    (Ok(a), Ok(b)) => prop_assert_eq!(a.loss.len(), b.loss.len()),
                    // A run that diverges in f32 may stay finite in f64: the one allowed
                    // difference, and only as a divergence.
                    (Err(e), Ok(_)) | (Ok(_), Err(e)) => prop_assert!(
                        matches!(e, nn::Error::NonFiniteLoss { .. }),
                        "{e}"
                    ),
                }
            }
            (a, b) => prop_assert!(false, "GPU {:?} vs CPU {:?}", a.err(), b.err()),
        }
    }
}

fn cli_arg() -> impl Strategy<Value = Vec<String>> {
    let value = prop::sample::select(vec![
        "0",
        "1",
        "2",
        "-1",
        "0.5",
        "1.5",
        "nan",
        "inf",
        "1e300",
        "18446744073709551616",
        "",
        "x",
        "sgd",
        "adam",
        "gpu",
        "cpu",
        "nodir/f.png",
        "f.jpg",
    ]);
    let flag = prop::sample::select(vec![
        "--epochs",
        "--batch-size",
        "--lr",
        "--optimizer",
        "--momentum",
        "--seed",
        "--hidden",
        "--data",
        "--labels",
        "--one-hot",
        "--classes",
        "--validation-split",
        "--device",
        "--save",
        "--plot",
    ]);
    prop::collection::vec((flag, value), 0..4)
        .prop_map(|pairs| pairs.into_iter().map(|(f, v)| format!("{f}={v}")).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(24), failure_persistence: None, ..ProptestConfig::default() })]

    /// The `bnorm train` argument space: every combination either trains or fails in words;
    /// nothing panics, hangs or aborts. (Small runs on the CPU path to stay fast.)
    #[test]
    fn cli_arguments_never_panic(args in cli_arg()) {
        let d = scratch("cli");
        let mut full: Vec<String> = vec!["train".into(), "--epochs=1".into(), "--device=cpu".into()];
        full.extend(args);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bnorm"))
            .args(&full)
            .current_dir(&d)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        prop_assert!(!err.contains("panicked"), "{full:?}: {err}");
        // A Rust panic exits 101; a signal (abort, OOM kill) has no code.
        prop_assert!(matches!(out.status.code(), Some(0) | Some(1) | Some(2)), "{full:?}: {:?} {err}", out.status);
        if !out.status.success() {
            prop_assert!(err.contains("error"), "{full:?}: {err}");
        }
    }
}
