//! Typed errors. Every check on user input happens before anything is recorded or written.

use thiserror::Error;

/// Everything that can go wrong in `wgpu-batchnorm`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An exchange between ranks (synchronized batch norm, data-parallel training) failed: a
    /// rank reported an error, a rank left, or the transport failed. Every rank returns it.
    /// The message says it all (no prefix: it is not always a batch-norm layer's exchange).
    #[error("{0}")]
    Collective(String),
    /// The ranks disagree on what they are about to exchange over (a layer's configuration,
    /// the network, the training options, the data): every rank returns the same error,
    /// before any exchange of values.
    #[error("ranks disagree on {what}: {values}")]
    RanksDisagree {
        /// What differs: `epochs`, `layer 1`, `channels`...
        what: String,
        /// Each rank's value: `rank 0 has 1, rank 1 has 2`.
        values: String,
    },
    /// No adapter matched the request (or `WGPU_ADAPTER_NAME`).
    #[error("no GPU adapter found{}", .0.as_deref().map(|n| format!(" whose name contains {n:?} (WGPU_ADAPTER_NAME or ContextOptions::adapter_name; `bnorm info` lists them)")).unwrap_or_default())]
    NoAdapter(Option<String>),
    /// The adapter refused the device request.
    #[error("requesting a device failed: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),
    /// The configuration has zero channels.
    #[error("a batch-norm layer needs at least one channel")]
    ZeroChannels,
    /// Epsilon must be finite and positive.
    #[error("epsilon must be finite and > 0, got {0}")]
    InvalidEpsilon(f32),
    /// Momentum must lie in [0, 1].
    #[error("momentum must be finite and within [0, 1], got {0}")]
    InvalidMomentum(f64),
    /// `momentum: None` (cumulative average) exists only in the PyTorch convention.
    #[error("a cumulative moving average (momentum None) needs the PyTorch convention")]
    CumulativeNeedsPyTorch,
    /// A tensor with a zero-sized dimension.
    #[error("empty tensor: shape {0:?} has no elements")]
    EmptyTensor(Vec<usize>),
    /// Batch norm needs at least a batch axis and a channel axis.
    #[error("shape {0:?} has rank {len}; batch norm needs rank >= 2 (batch and channel axes)", len = .0.len())]
    RankTooLow(Vec<usize>),
    /// The channel axis of the tensor does not match the layer.
    #[error("shape {shape:?} has {got} channels on axis {axis}, the layer has {expected}")]
    ChannelMismatch {
        /// The input shape.
        shape: Vec<usize>,
        /// The channel axis that was read.
        axis: usize,
        /// Channels the layer was built with.
        expected: usize,
        /// Channels found.
        got: usize,
    },
    /// Two tensors of one call must have the same shape.
    #[error("shape mismatch: {what} has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Which argument.
        what: &'static str,
        /// The shape it should have.
        expected: Vec<usize>,
        /// The shape it has.
        got: Vec<usize>,
    },
    /// A host slice whose length does not match.
    #[error("{what}: expected {expected} values, got {got}")]
    LengthMismatch {
        /// Which argument.
        what: &'static str,
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// PyTorch refuses training statistics from a single value per channel.
    #[error("expected more than 1 value per channel when training, got input shape {0:?} (PyTorch policy)")]
    SingleSample(Vec<usize>),
    /// A bound call replayed by a layer other than the one that bound it.
    #[error("this bound call was made by another batch-norm layer")]
    ForeignBinding,
    /// Statistics were asked for before any forward pass produced them.
    #[error("no statistics yet: run a forward pass first")]
    NoStatistics,
    /// Backward needs the statistics of a forward pass.
    #[error("backward called before any forward pass")]
    BackwardBeforeForward,
    /// A buffer region cannot hold the tensor.
    #[error("{what}: buffer region of {available} bytes cannot hold {} bytes", count(*.needed))]
    BufferTooSmall {
        /// Which argument.
        what: &'static str,
        /// Bytes needed from the offset on.
        needed: u64,
        /// Bytes available from the offset on.
        available: u64,
    },
    /// Binding offsets must be aligned as the device requires.
    #[error("{what}: offset {offset} is not a multiple of {alignment} (min_storage_buffer_offset_alignment)")]
    MisalignedOffset {
        /// Which argument.
        what: &'static str,
        /// The offset given.
        offset: u64,
        /// The device's alignment.
        alignment: u64,
    },
    /// A caller's buffer lacks a usage the kernels need.
    #[error("{what}: buffer lacks usage {missing:?}")]
    BufferUsage {
        /// Which argument.
        what: &'static str,
        /// The usage it lacks.
        missing: wgpu::BufferUsages,
    },
    /// Input and output regions overlap in one buffer.
    #[error("{0}: input and output overlap in the same buffer")]
    Aliasing(&'static str),
    /// The tensor exceeds what the device can bind or dispatch.
    #[error("tensor too large: {what} needs {}, the device limit {limit} is {max}", count(*.needed))]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The wgpu limit that was hit.
        limit: &'static str,
        /// The amount needed.
        needed: u64,
        /// The limit's value.
        max: u64,
    },
    /// A shape whose element count cannot even be counted (the product overflows).
    #[error("shape {0:?} has more elements than this machine can address (their product overflows {bits} bits)", bits = usize::BITS)]
    ShapeOverflow(Vec<usize>),
    /// Host memory for a buffer could not be reserved, or would exceed what is available.
    #[error("not enough host memory for {what}: needs {} bytes{}", count(*.needed), .available.map(|a| format!(", {a} available")).unwrap_or_default())]
    HostMemory {
        /// What was being allocated.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes available, when known.
        available: Option<u64>,
    },
    /// The device ran out of memory.
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),
    /// The device was lost (driver reset, removal, destroy).
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// Mapping a buffer for readback failed.
    #[error("buffer readback failed: {0}")]
    Readback(String),
    /// The device reported a validation or internal error.
    #[error("wgpu error: {0}")]
    Gpu(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A count in words: u64::MAX is what a saturated (overflowed) count reads, so its true value
/// is 2^64 or more, not that number.
fn count(n: u64) -> String {
    if n == u64::MAX {
        "2^64 or more".into()
    } else {
        n.to_string()
    }
}
