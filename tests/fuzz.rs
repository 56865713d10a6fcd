//! Property tests of what users reach beyond the engine: the data loaders (any bytes), the
//! training stack (any layers, optimizer, options and data: no panic, and the GPU and CPU
//! models accept and refuse exactly the same things), and the `bnorm` argument space.
//! Bounded in CI; `PROPTEST_CASES=1000 cargo test --test fuzz` runs more.

mod common;

use common::{ctx, serial};
use proptest::prelude::*;
use wgpu_batchnorm::nn::reference::CpuModel;
use wgpu_batchnorm::nn::{
    self, Conv2D, Dataset, FitOptions, LayerSpec, Optimizer, Padding, Pool2D, Sequential, Shape,
};

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
        // With classes asked for: every label within them, or an error.
        for k in [1, 3] {
            if let Ok(data) = Dataset::from_npy(&px, &py, Some(k)) {
                prop_assert_eq!(data.classes(), k);
                prop_assert!(data.labels().iter().all(|&l| (l as usize) < k));
            }
        }
    }
}

/// IDX headers (plain or gzip) with dimensions that may lie about the data behind them.
fn idx_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(
            prop_oneof![
                Just(0u32),
                Just(1),
                Just(2),
                Just(3),
                Just(u32::MAX),
                Just(1 << 20)
            ],
            0..4,
        ),
        prop::collection::vec(any::<u8>(), 0..40),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(dims, data, compress, kind)| {
            let mut b = vec![0, 0, if kind < 200 { 8 } else { kind }, dims.len() as u8];
            for d in dims {
                b.extend_from_slice(&d.to_be_bytes());
            }
            b.extend(data);
            if compress {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&b).unwrap();
                e.finish().unwrap()
            } else {
                b
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn image_readers_never_panic(
        images in idx_bytes(),
        labels in idx_bytes(),
        cifar in prop::collection::vec(any::<u8>(), 0..7000),
        classes in prop::option::of(0usize..12),
    ) {
        let d = scratch("images");
        let (pi, pl, pc) = (d.join("i"), d.join("l"), d.join("c.bin"));
        std::fs::write(&pi, &images).unwrap();
        std::fs::write(&pl, &labels).unwrap();
        std::fs::write(&pc, &cifar).unwrap();
        // What loads is the file whole, its labels within the classes asked for.
        let whole = |bytes: &[u8], data: &Dataset, per_row: usize| {
            bytes.starts_with(&[0x1f, 0x8b])
                || bytes.len() == 4 + 4 * bytes[3] as usize + data.rows() * per_row
        };
        let within = |data: &Dataset| {
            classes.is_none_or(|k| data.classes() == k)
                && data.labels().iter().all(|&l| (l as usize) < data.classes())
        };
        if let Ok(data) = Dataset::from_idx(&pi, &pl, classes) {
            prop_assert_eq!(data.x().len(), data.rows() * data.shape().len());
            prop_assert!(whole(&images, &data, data.features()));
            prop_assert!(whole(&labels, &data, 1));
            prop_assert!(within(&data));
        }
        if let Ok(data) = Dataset::from_cifar10(&[&pc], classes) {
            prop_assert_eq!(data.features(), 3072);
            prop_assert_eq!(cifar.len(), data.rows() * 3073);
            prop_assert!(classes.is_some() || data.classes() == 10);
            prop_assert!(within(&data));
        }
        let _ = Dataset::from_npy_images(&pi, &pl, classes);
    }

    /// Raw IDX images and labels with random labels and bytes appended: loaded only with
    /// nothing appended and every label below the classes asked for.
    #[test]
    fn idx_files_are_read_whole_and_labels_within_the_classes(
        rows in 1u32..5,
        label_values in prop::collection::vec(any::<u8>(), 5),
        tail in prop::collection::vec(any::<u8>(), 0..3),
        tail_in_labels in any::<bool>(),
        classes in prop::option::of(1usize..300),
    ) {
        let d = scratch("idx-whole");
        let idx = |dims: &[u32], data: &[u8]| {
            let mut b = vec![0, 0, 8, dims.len() as u8];
            for v in dims {
                b.extend_from_slice(&v.to_be_bytes());
            }
            b.extend_from_slice(data);
            b
        };
        let n = rows as usize;
        let mut images = idx(&[rows, 2, 2], &vec![9; n * 4]);
        let mut labels = idx(&[rows], &label_values[..n]);
        if tail_in_labels { &mut labels } else { &mut images }.extend_from_slice(&tail);
        let (pi, pl) = (d.join("i"), d.join("l"));
        std::fs::write(&pi, &images).unwrap();
        std::fs::write(&pl, &labels).unwrap();
        let max = *label_values[..n].iter().max().unwrap() as usize;
        let fits = classes.is_none_or(|k| max < k);
        match Dataset::from_idx(&pi, &pl, classes) {
            Ok(data) => {
                prop_assert!(tail.is_empty() && fits);
                prop_assert_eq!(data.classes(), classes.unwrap_or(max + 1));
            }
            Err(e) => {
                prop_assert!(!tail.is_empty() || !fits, "{}", e);
                let s = e.to_string();
                prop_assert!(s.contains("follow") || s.contains("out of range"), "{}", s);
            }
        }
    }

    /// Layer strings from a soup of tokens, and Keras JSON documents with fields changed:
    /// a network or an error in words, never a panic.
    #[test]
    fn model_descriptions_never_panic(
        tokens in prop::collection::vec(prop::sample::select(vec![
            "conv", "maxpool", "avgpool", "gap", "flatten", "bn", "relu", "dense", "dropout",
            "tanh", ":", ",", "0", "3", "2x", "x2", "same", "valid", "0.5", "-1", "99999999999999999999",
        ]), 0..12),
        field in prop::sample::select(vec!["filters", "kernel_size", "strides", "padding", "pool_size", "units", "batch_shape", "class_name", "axis", "rate"]),
        value in prop::sample::select(vec!["0", "-1", "null", "\"same\"", "[3]", "[1, 2, 3]", "1e300", "{}", "\"x\""]),
    ) {
        let text: String = tokens.concat();
        if let Ok(layers) = nn::parse_layers(&text) {
            let _ = CpuModel::new(Shape::image(4, 4, 1), &layers, 0, Optimizer::default());
        }
        let json = include_str!("fixtures/keras_cnn_model.json")
            .replace(&format!("\"{field}\": "), &format!("\"{field}\": {value}, \"was\": "));
        if let Ok((shape, layers)) = nn::from_keras_json(&json) {
            let _ = CpuModel::new(shape, &layers, 0, Optimizer::default());
        }
    }
}

fn layer() -> impl Strategy<Value = LayerSpec> {
    let padding = prop_oneof![Just(Padding::Valid), Just(Padding::Same)];
    let pool = (0usize..4, 0usize..3, padding.clone()).prop_map(|(k, s, padding)| Pool2D {
        pool_size: [k, k.max(1)],
        strides: [s, s.max(1)],
        padding,
    });
    prop_oneof![
        (0usize..6).prop_map(LayerSpec::Dense),
        (0usize..4, 0usize..4, 0usize..3, padding, any::<bool>()).prop_map(
            |(filters, k, s, padding, use_bias)| LayerSpec::Conv2D(Conv2D {
                filters,
                kernel_size: [k, 1 + k / 2],
                strides: [s, 1],
                padding,
                use_bias,
            })
        ),
        pool.clone().prop_map(LayerSpec::MaxPool2D),
        pool.prop_map(LayerSpec::AvgPool2D),
        Just(LayerSpec::GlobalAvgPool2D),
        Just(LayerSpec::Flatten),
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
        input in prop_oneof![
            (0usize..4).prop_map(Shape::Flat),
            (0usize..6, 0usize..6, 0usize..3).prop_map(|(h, w, c)| Shape::image(h, w, c)),
        ],
        body in prop::collection::vec(layer(), 0..5),
        logits in prop::option::of(2usize..4),
        opt in prop_oneof![2 => Just(Optimizer::adam(1e-2)), 1 => optimizer()],
        rows in 1usize..12,
        features in 1usize..4,
        classes in 1usize..4,
        batch_size in prop_oneof![4 => 1usize..6, 1 => Just(0usize)],
        epochs in prop_oneof![4 => 1usize..3, 1 => Just(0usize)],
        seed in any::<u64>(),
    ) {
        let _g = serial();
        // Mostly stacks that end in logits, as a real model does.
        let mut layers = body;
        layers.extend(logits.map(LayerSpec::Dense));
        let gpu = Sequential::new(ctx(), input, &layers, seed, opt);
        let cpu = CpuModel::new(input, &layers, seed, opt);
        match (gpu, cpu) {
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (Ok(mut gpu), Ok(mut cpu)) => {
                // Mostly data that fits the input (images are flat rows of h * w * c).
                let features = if features == 1 { features } else { input.len() };
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

/// Convolutional stacks with positive sizes (windows may still not fit the input).
fn cnn_layer() -> impl Strategy<Value = LayerSpec> {
    let padding = prop_oneof![Just(Padding::Valid), Just(Padding::Same)];
    prop_oneof![
        (
            1usize..5,
            1usize..4,
            1usize..3,
            padding.clone(),
            any::<bool>()
        )
            .prop_map(
                |(filters, k, s, padding, use_bias)| LayerSpec::Conv2D(Conv2D {
                    filters,
                    kernel_size: [k, 1 + k / 2],
                    strides: [s, 1],
                    padding,
                    use_bias,
                })
            ),
        (1usize..4, 1usize..3, padding, any::<bool>()).prop_map(|(k, s, padding, max)| {
            let p = Pool2D {
                pool_size: [k, k],
                strides: [s, s],
                padding,
            };
            if max {
                LayerSpec::MaxPool2D(p)
            } else {
                LayerSpec::AvgPool2D(p)
            }
        }),
        Just(LayerSpec::BatchNorm),
        Just(LayerSpec::Relu),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(24), failure_persistence: None, ..ProptestConfig::default() })]

    /// Convolutional networks on images: the GPU and CPU models accept and refuse the same,
    /// and where both train, they agree on the loss.
    #[test]
    fn convolutional_models_agree(
        (h, w, c) in (1usize..7, 1usize..7, 1usize..3),
        body in prop::collection::vec(cnn_layer(), 1..4),
        global in any::<bool>(),
        rows in 1usize..6,
        seed in any::<u64>(),
    ) {
        let _g = serial();
        let mut layers = body;
        layers.push(if global { LayerSpec::GlobalAvgPool2D } else { LayerSpec::Flatten });
        layers.push(LayerSpec::Dense(3));
        let input = Shape::image(h, w, c);
        let opt = Optimizer::sgd(0.01, 0.0);
        let gpu = Sequential::new(ctx(), input, &layers, seed, opt);
        let cpu = CpuModel::new(input, &layers, seed, opt);
        match (gpu, cpu) {
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (Ok(mut gpu), Ok(mut cpu)) => {
                let d = Dataset::synthetic(rows, h * w * c, seed);
                let x = d.x().iter().map(|v| v / 50.0).collect();
                let data = Dataset::new(x, d.labels().to_vec(), h * w * c, 3).unwrap();
                let options = FitOptions { batch_size: 4, epochs: 1, shuffle: false, seed };
                let a = gpu.fit(&data, &options, None, |_, _| {}).unwrap();
                let b = cpu.fit(&data, &options, None, |_, _| {}).unwrap();
                prop_assert!((a.loss[0] - b.loss[0]).abs() < 1e-4 * b.loss[0].max(1.0), "{layers:?}: {} {}", a.loss[0], b.loss[0]);
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
        "digits",
        "cnn",
        "dense",
        "8,8,1",
        "2,2",
        "conv:2:3:same,flatten,dense:3",
        "flatten,dense:2",
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
        "--model",
        "--layers",
        "--input-shape",
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
