//! Not part of the public API: what the `bnorm` binary, the benches, the examples and the
//! tests share with the library (measurement helpers, the test-data generator, atomic file
//! writes). Hidden from the documentation; it may change in any release without notice.
//!
//! None of it is reachable from the public modules (each of these fails to compile):
//! ```compile_fail
//! use wgpu_batchnorm::bench::Case;
//! ```
//! ```compile_fail
//! use wgpu_batchnorm::nn::rng::Rng;
//! ```
//! ```compile_fail
//! use wgpu_batchnorm::nn::{check_writable, write_atomically};
//! ```
//! ```compile_fail
//! use wgpu_batchnorm::cpu::LayerState;
//! ```
//! ```compile_fail
//! use wgpu_batchnorm::nn::reference::dropout_keep;
//! ```
//! ```compile_fail
//! use wgpu_batchnorm::nn::glorot_uniform;
//! ```

pub mod bench;

pub use crate::memory::check_host_bytes;
pub use crate::nn::files::{check_writable, write_atomically};
pub use crate::nn::layers::conv2d::cached_conv_geometries;
pub use crate::nn::rng::Rng;
