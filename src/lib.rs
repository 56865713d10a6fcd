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
//! ## NaN, infinity and overflow
//! In training, a NaN or infinity anywhere in a channel makes that channel's batch mean and
//! variance NaN, so its whole output, its running statistics and its gradients (dx, dgamma)
//! become NaN; other channels are untouched. This is the same on every backend (Vulkan, GL,
//! Metal, DX12) and on both CPU paths: non-finite values are detected by their bits, not by
//! arithmetic a shader compiler may fold away. (The frameworks reach NaN too, though PyTorch
//! leaves a channel's mean at ±inf for an infinite input; here mean and variance are NaN
//! together.) In inference, NaN and infinity propagate elementwise only. The fused ReLU passes
//! NaN through (`relu(NaN) = NaN`).
//!
//! Statistics are accumulated in f32, as the frameworks do on a GPU: a channel whose squared
//! deviations from its first value leave f32's range (`|x - x₀|` above about 1.8e19, or a
//! variance above 3.4e38) is treated as non-finite, NaN, rather than returning a clipped
//! or infinite variance. Below that limit results are exact to f32 round-off. The f64 CPU
//! reference ([`cpu::CpuBatchNorm`]) has no such limit.

pub use wgpu;

mod batchnorm;
mod collective;
mod config;
mod context;
pub mod cpu;
mod error;
mod exchange;
mod geometry;
#[doc(hidden)]
pub mod internal;
mod kernels;
mod memory;
pub mod nn;
mod pipeline;
mod plan;
pub(crate) mod sync_batchnorm;
mod tensor;
mod work;

pub use batchnorm::{BatchNorm, BoundCall, ParamBinding};
#[cfg(feature = "mpi")]
pub use collective::MpiCollective;
pub use collective::{Collective, ThreadGroup};
pub use config::{BatchNormConfig, Convention, Layout, Mode, SingleSamplePolicy};
pub use context::{Context, ContextOptions};
pub use error::{Error, Result};
pub use exchange::Exchange;
pub use geometry::Geometry;
#[cfg(feature = "mpi")]
pub use mpi;
pub use sync_batchnorm::{
    SyncBatchNorm, SYNC_BACKWARD_BYTES_PER_CHANNEL, SYNC_FORWARD_BYTES_PER_CHANNEL,
};
pub use tensor::{Tensor, TensorRef};
pub use work::{recorded_work, WorkCounts};

/// Every WGSL module this crate compiles, exactly as it hands it to wgpu: `(name, source,
/// needs subgroups)`. For validating them offline (naga) or precompiling them.
pub fn shader_sources() -> Vec<(&'static str, String, bool)> {
    let mut v = vec![
        ("stream (workgroup)", kernels::stream_source(false), false),
        ("stream (subgroup)", kernels::stream_source(true), true),
        ("channel", kernels::channel_source(), false),
        ("fused (workgroup)", kernels::fused_source(false), false),
        ("fused (subgroup)", kernels::fused_source(true), true),
        (
            "stream reference",
            internal::bench::stream_reference_source(),
            false,
        ),
    ];
    v.extend(
        nn::shader_sources()
            .into_iter()
            .map(|(name, src)| (name, src, false)),
    );
    v
}

// The README's examples compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
