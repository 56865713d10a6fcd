//! The CLI's layer strings (each kind takes exactly its documented arguments, each once) and
//! the network without batch norm that `bnorm train` trains beside them (valid whenever the
//! network with batch norm is).

use proptest::prelude::*;
use wgpu_batchnorm::nn::{
    self, check_network, parse_layers, without_batch_norm, Conv2D, LayerSpec, Padding, Pool2D,
    Shape,
};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Extra, repeated or misplaced arguments are refused, naming the layer and the argument
/// (`conv:4:3:valid:same` used to keep the last word, `bn:5` to ignore the 5).
#[test]
fn extra_arguments_are_refused_by_name() {
    for (text, names) in [
        ("conv:4:3:valid:same", "\"same\""),
        ("conv:4:3:same:same", "\"same\""),
        ("conv:4:3:2:same:valid", "\"valid\""),
        ("conv:4:3:same:2", "\"2\""),
        ("conv:4:3:2:2", "\"2\""),
        ("maxpool:2:valid:same", "\"same\""),
        ("avgpool:2:1:same:x", "\"x\""),
        ("maxpool:2:same:1", "\"1\""),
        ("bn:5", "\"5\""),
        ("batchnorm:5", "\"5\""),
        ("gap:3", "\"3\""),
        ("flatten:xyz", "\"xyz\""),
        ("relu:1", "\"1\""),
        ("tanh:x", "\"x\""),
        ("sigmoid:", "\"\""),
        ("dense:10:20", "\"20\""),
        ("dense:10:", "\"\""),
        ("dropout:0.5:0.5", "\"0.5\""),
    ] {
        let e = parse_layers(&format!("{text},flatten,dense:10"))
            .expect_err(text)
            .to_string();
        assert!(
            e.contains(&format!("layer 0 {text:?}")) && e.contains(names),
            "{text}: {e}"
        );
    }
    for text in ["dense", "conv:4", "maxpool", "dropout"] {
        let e = parse_layers(text).expect_err(text).to_string();
        assert!(e.contains("needs more arguments"), "{text}: {e}");
    }
}

/// What the grammar allows still means what it says.
#[test]
fn documented_forms_parse_as_documented() {
    let conv = |s: usize, padding| {
        LayerSpec::Conv2D(Conv2D {
            filters: 4,
            kernel_size: [3, 2],
            strides: [s, s],
            padding,
            use_bias: true,
        })
    };
    let pool = |k: usize, s: usize, padding| Pool2D {
        pool_size: [k, k],
        strides: [s, s],
        padding,
    };
    let layers = parse_layers(
        "conv:4:3x2, conv:4:3x2:2, conv:4:3x2:same, conv:4:3x2:2:same, maxpool:2, avgpool:3:1:same, gap, flatten, bn, relu, dropout:0.5, dense:7",
    )
    .unwrap();
    assert_eq!(
        layers,
        vec![
            conv(1, Padding::Valid),
            conv(2, Padding::Valid),
            conv(1, Padding::Same),
            conv(2, Padding::Same),
            LayerSpec::MaxPool2D(pool(2, 2, Padding::Valid)),
            LayerSpec::AvgPool2D(pool(3, 1, Padding::Same)),
            LayerSpec::GlobalAvgPool2D,
            LayerSpec::Flatten,
            LayerSpec::BatchNorm,
            LayerSpec::Relu,
            LayerSpec::Dropout(0.5),
            LayerSpec::Dense(7),
        ]
    );
}

/// The network: its twin used to be `conv,relu,relu,...` (refused after the BN
/// network had trained); now the repeated ReLU collapses.
#[test]
fn the_twin_of_conv_relu_bn_relu_is_valid() {
    let input = Shape::image(8, 8, 1);
    let layers = parse_layers("conv:4:3:same,relu,bn,relu,flatten,dense:10").unwrap();
    check_network(input, &layers).unwrap();
    let twin = without_batch_norm(&layers);
    assert_eq!(
        twin,
        parse_layers("conv:4:3:same,relu,flatten,dense:10").unwrap()
    );
    check_network(input, &twin).unwrap();
    // A ReLU after pooling moves back to the convolution (relu commutes with max pooling).
    let layers = parse_layers("conv:4:3:same,maxpool:2,bn,relu,flatten,dense:10").unwrap();
    assert_eq!(
        without_batch_norm(&layers),
        parse_layers("conv:4:3:same,relu,maxpool:2,flatten,dense:10").unwrap()
    );
    // A batch norm configured with its ReLU fused leaves the ReLU.
    let fused = LayerSpec::BatchNormWith(wgpu_batchnorm::BatchNormConfig::keras(1).with_relu(true));
    assert_eq!(
        without_batch_norm(&[LayerSpec::Dense(4), fused, LayerSpec::Dense(2)]),
        [LayerSpec::Dense(4), LayerSpec::Relu, LayerSpec::Dense(2)]
    );
}

fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "conv:3:3:same",
        "conv:2:2",
        "conv:2:3:2:same",
        "maxpool:2",
        "maxpool:2:1:same",
        "avgpool:2:same",
        "gap",
        "flatten",
        "bn",
        "bn",
        "relu",
        "relu",
        "sigmoid",
        "tanh",
        "dropout:0.3",
        "dense:4",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), failure_persistence: None, ..ProptestConfig::default() })]

    /// Whenever a network with batch norm is valid, so is its twin without, with the same
    /// layers but the BNs (and a ReLU at most where one was).
    #[test]
    fn the_twin_of_a_valid_network_is_valid(
        tokens in prop::collection::vec(token(), 0..9),
        image in any::<bool>(),
    ) {
        let text = format!("{}dense:3", tokens.iter().map(|t| format!("{t},")).collect::<String>());
        let layers = parse_layers(&text).unwrap();
        let input = if image { Shape::image(8, 8, 2) } else { Shape::Flat(6) };
        if check_network(input, &layers).is_ok() {
            let twin = without_batch_norm(&layers);
            prop_assert!(
                check_network(input, &twin).is_ok(),
                "{text}: twin {twin:?}: {:?}", check_network(input, &twin)
            );
            let not_bn_relu = |l: &&LayerSpec| !matches!(l, LayerSpec::BatchNorm | LayerSpec::BatchNormWith(_) | LayerSpec::Relu);
            prop_assert_eq!(
                layers.iter().filter(not_bn_relu).collect::<Vec<_>>(),
                twin.iter().filter(not_bn_relu).collect::<Vec<_>>()
            );
            let relus = |l: &[LayerSpec]| l.iter().filter(|l| **l == LayerSpec::Relu).count();
            prop_assert!(relus(&twin) <= relus(&layers));
            prop_assert!(twin.iter().all(|l| !matches!(l, LayerSpec::BatchNorm | LayerSpec::BatchNormWith(_))));
        }
    }
}

/// `nn::check_network` refuses what the models refuse, without building them.
#[test]
fn check_network_refuses_what_the_models_refuse() {
    let e = check_network(Shape::Flat(4), &[LayerSpec::Relu, LayerSpec::Dense(2)]).unwrap_err();
    assert!(matches!(e, nn::Error::Model(_)), "{e}");
    check_network(
        Shape::Flat(4),
        &[LayerSpec::Dense(3), LayerSpec::Relu, LayerSpec::Dense(2)],
    )
    .unwrap();
}

/// Model errors describe layers in words, never in Rust's `Debug` form
/// (`Conv2D { filters: 4, kernel_size: [9, 9], ... }`, `Pool2D { pool_size: ...`,
/// `Dropout(1.0)`).
#[test]
fn model_errors_describe_layers_in_words() {
    let image = Shape::image(2, 2, 1);
    let cases: Vec<(Shape, Vec<LayerSpec>, &str)> = vec![
        (
            image,
            vec![
                LayerSpec::Conv2D(Conv2D::new(4, 9)),
                LayerSpec::Flatten,
                LayerSpec::Dense(2),
            ],
            "Conv2D(4, 9x9, stride 1, valid)",
        ),
        (
            image,
            vec![
                LayerSpec::MaxPool2D(Pool2D::new(3)),
                LayerSpec::Flatten,
                LayerSpec::Dense(2),
            ],
            "MaxPooling2D(3x3, stride 3, valid)",
        ),
        (
            image,
            vec![
                LayerSpec::AvgPool2D(Pool2D::new(2)),
                LayerSpec::AvgPool2D(Pool2D {
                    strides: [1, 1],
                    ..Pool2D::new(2)
                }),
                LayerSpec::Flatten,
                LayerSpec::Dense(2),
            ],
            "AveragePooling2D(2x2, stride 1, valid)",
        ),
        (
            Shape::Flat(4),
            vec![LayerSpec::Dropout(1.0), LayerSpec::Dense(2)],
            "Dropout(rate 1)",
        ),
        (
            Shape::Flat(4),
            vec![LayerSpec::Dense(0), LayerSpec::Dense(2)],
            "Dense(0)",
        ),
    ];
    for (input, layers, says) in cases {
        let e = check_network(input, &layers).unwrap_err().to_string();
        assert!(e.contains(says), "{e} does not say {says:?}");
        assert!(!e.contains(" { ") && !e.contains("1.0)"), "{e}");
    }
}

/// A last Dense narrower than the data's classes is refused by both models' fit before any
/// training, in those words (it read "label 2 is out of range for 2 classes").
#[test]
fn a_last_dense_narrower_than_the_classes_is_refused_before_training() {
    let data = nn::Dataset::new(vec![0.5; 12], vec![0, 1, 2], 4, 3).unwrap();
    let layers = [LayerSpec::Dense(2)];
    let says = "the last Dense layer has 2 outputs but the data has 3 classes";
    assert!(nn::check_classes(&layers, &data)
        .unwrap_err()
        .to_string()
        .contains(says));
    let mut epochs = 0;
    let mut m = nn::reference::CpuModelF32::new(4, &layers, 0, nn::Optimizer::default()).unwrap();
    let e = m
        .fit(&data, &nn::FitOptions::default(), None, |_, _| epochs += 1)
        .unwrap_err();
    assert!(e.to_string().contains(says), "{e}");
    assert_eq!(epochs, 0);
}

/// Epochs whose history cannot be held are refused by `fit` with an error (it would abort
/// allocating, or overflow counting), before any epoch runs.
#[test]
fn epochs_whose_history_cannot_be_held_are_refused() {
    let data = nn::Dataset::synthetic(8, 4, 0);
    let layers = [LayerSpec::Dense(3)];
    for epochs in [usize::MAX, 1 << 62, 1_000_000_000_000] {
        let options = nn::FitOptions {
            epochs,
            ..nn::FitOptions::default()
        };
        let e = options.check_history(data.rows()).unwrap_err();
        assert!(e.to_string().contains("training history"), "{e}");
        let mut m =
            nn::reference::CpuModelF32::new(4, &layers, 0, nn::Optimizer::default()).unwrap();
        let mut ran = 0;
        let e = m.fit(&data, &options, None, |_, _| ran += 1).unwrap_err();
        assert!(e.to_string().contains("training history"), "{e}");
        assert_eq!(ran, 0);
    }
}
