//! Not part of the public API: what the `bnorm` binary, the benches, the examples and the
//! tests share with the library (measurement helpers, the test-data generator, atomic file
//! writes). Hidden from the documentation; it may change in any release without notice.

pub mod bench;

pub use crate::nn::files::{check_writable, write_atomically};
pub use crate::nn::rng::Rng;
