//! A small training stack around the engine: Dense, BatchNorm (+ReLU), Dropout, softmax
//! cross-entropy, Adam and SGD, all on the GPU, with an f64 CPU reference of the same network.

pub mod data;
mod files;
pub(crate) mod kernels;
mod model;
pub mod reference;
pub mod rng;
pub mod spec;

pub use data::{DataError, Dataset};
pub use files::{check_writable, write_atomically};
pub use model::{load_weights, save_weights, Sequential};
pub use spec::{glorot_uniform, FitOptions, History, LayerSpec, Optimizer, Weight};

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
