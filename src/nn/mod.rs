//! A small training stack built on the engine: layers as modules (Dense, BatchNorm with any
//! convention, ReLU fused into the layer before it, Sigmoid/Tanh, Dropout), softmax
//! cross-entropy, Adam and SGD, all on the GPU, with a CPU twin of every piece (in f64, the oracle, and in f32, the
//! fast CPU path).
//! `docs/ARCHITECTURE.md` says which file owns what and how to add a layer.

mod batch_plan;
mod binding_limits;
mod contract;
pub mod data;
mod describe;
mod error;
pub(crate) mod files;
mod gather;
mod gpu_data;
mod init;
mod keras_fields;
mod keras_json;
mod layer;
pub(crate) mod layers;
mod limits;
mod loss;
mod loss_cpu;
mod optimizer;
mod optimizer_cpu;
mod real;
pub mod reference;
mod registry;
pub(crate) mod rng;
mod sequential;
mod sequential_distributed;
mod sequential_epoch;
pub(crate) mod sequential_fit;
mod sequential_weights;
mod shape;
mod spec;
mod step;
mod step_code;
mod weights;
mod without_bn;

pub use data::{DataError, Dataset};
pub use describe::parse_layers;
pub use error::{Error, Result};
pub use keras_json::{from_keras_json, from_keras_json_labeled};
pub use layers::activation::Activation;
pub use layers::conv2d::Conv2D;
pub use layers::pool2d::Pool2D;
pub use limits::{MAX_TENSOR_ELEMENTS, MAX_WINDOW};
pub use optimizer::Optimizer;
pub use registry::{check_classes, check_network, check_network_labeled, LayerSpec};
pub use sequential::Sequential;
pub use shape::{Padding, Shape};
pub use spec::{Callbacks, FitOptions, History, LayerTrace, Weight};
pub use weights::{load_weights, save_weights};
pub use without_bn::without_batch_norm;

/// The tutorial's network: Dense(10) → BatchNormalization → ReLU → Dense(3) → softmax, or
/// without the BatchNormalization layer.
pub fn tutorial_layers(batch_norm: bool, hidden: usize, classes: usize) -> Vec<LayerSpec> {
    let mut l = vec![LayerSpec::Dense(hidden)];
    if batch_norm {
        l.push(LayerSpec::BatchNorm);
    }
    l.push(LayerSpec::Relu);
    l.push(LayerSpec::Dense(classes));
    l
}

/// The tutorials' convolutional network, on `[h, w, c]` images with `same` padding (so it
/// fits 8×8 digits): Conv2D(32, 3×3, ReLU) → BN → MaxPooling2D → Conv2D(64, 3×3, ReLU) → BN →
/// MaxPooling2D → Flatten → Dense(64, ReLU) → BN → Dense(classes), or without the
/// BatchNormalization layers.
pub fn tutorial_cnn(batch_norm: bool, classes: usize) -> Vec<LayerSpec> {
    let conv = |f| LayerSpec::Conv2D(Conv2D::new(f, 3).padding(Padding::Same));
    let pool = || LayerSpec::MaxPool2D(Pool2D::new(2));
    let mut l = vec![conv(32), LayerSpec::Relu];
    let bn = |l: &mut Vec<LayerSpec>| {
        if batch_norm {
            l.push(LayerSpec::BatchNorm);
        }
    };
    bn(&mut l);
    l.extend([pool(), conv(64), LayerSpec::Relu]);
    bn(&mut l);
    l.extend([
        pool(),
        LayerSpec::Flatten,
        LayerSpec::Dense(64),
        LayerSpec::Relu,
    ]);
    bn(&mut l);
    l.push(LayerSpec::Dense(classes));
    l
}

/// Every WGSL module of the network, as compiled (name, source): for validation.
pub(crate) fn shader_sources() -> Vec<(&'static str, String)> {
    vec![
        ("nn/dense", layers::dense::source()),
        ("nn/dense_backward", layers::dense::backward_source()),
        ("nn/conv2d", layers::conv2d::source()),
        ("nn/conv2d_backward", layers::conv2d::backward_source()),
        ("nn/pool2d", layers::pool2d::source()),
        ("nn/dropout", layers::dropout::source()),
        ("nn/activation", layers::activation::source()),
        ("nn/loss", loss::source()),
        ("nn/optimizer", optimizer::source()),
        ("nn/gather", gather::source()),
        ("nn/step (the tutorial network)", step::tutorial_source()),
    ]
}
