//! One file per layer: the definition and GPU twin (`<name>.rs`, which drives its shader in
//! `shaders/nn/`), and the CPU twin (`<name>_cpu.rs`),
//! written once over `Real`: f64 for the reference model, f32 for the fast CPU path.

pub(crate) mod activation;
mod activation_cpu;
pub(crate) mod batch_norm;
mod batch_norm_cpu;
pub(crate) mod conv2d;
mod conv2d_cpu;
pub(crate) mod dense;
mod dense_cpu;
pub(crate) mod dropout;
pub(crate) mod dropout_cpu;
mod elementwise;
pub(crate) mod flatten;
mod flatten_cpu;
pub(crate) mod pool2d;
mod pool2d_cpu;
