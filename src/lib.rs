//! # wgpu-batchnorm
//!
//! Batch normalization on any GPU through wgpu and WGSL compute shaders: training mode (batch
//! statistics, running statistics updated on the GPU), inference mode (running statistics),
//! and the backward pass, exact against Keras and PyTorch conventions.
//!
//! ```no_run
//! use wgpu_batchnorm::{BatchNorm, BatchNormConfig, Context, Mode};
//!
//! # fn main() -> wgpu_batchnorm::Result<()> {
//! let ctx = Context::new()?;
//! let mut bn = BatchNorm::new(&ctx, BatchNormConfig::keras(3))?;
//! let x = [1.0, 2.0, 3.0, 5.0, 6.0, 9.0];
//! let y = bn.forward_host(&x, &[2, 3], Mode::Training)?;
//! assert_eq!(y.len(), 6);
//! # Ok(()) }
//! ```
//!
//! Two levels: [`BatchNorm::encode_forward`] / [`BatchNorm::encode_backward`] record into the
//! caller's `CommandEncoder` on the caller's buffers and never submit; [`BatchNorm::forward`],
//! [`BatchNorm::forward_host`] and friends submit and return data.
//!
//! ## NaN and infinity
//! As in Keras and PyTorch: in training, a NaN or infinity anywhere in a channel makes that
//! channel's batch mean and variance NaN, so its whole output, its running statistics and
//! its gradients become NaN; other channels are untouched. In inference, NaN and infinity
//! propagate elementwise only. The fused ReLU passes NaN through (`relu(NaN) = NaN`).

pub use wgpu;

mod batchnorm;
pub mod bench;
mod config;
mod context;
pub mod cpu;
mod error;
mod geometry;
pub mod kernels;
pub mod memory;
pub mod nn;
pub mod plan;
mod tensor;

pub use batchnorm::BatchNorm;
pub use config::{BatchNormConfig, Convention, Layout, Mode, SingleSamplePolicy};
pub use context::{Context, ContextOptions};
pub use error::{Error, Result};
pub use geometry::Geometry;
pub use tensor::{Tensor, TensorRef};

// The README's examples compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
