//! Layer configuration: the Keras and PyTorch conventions in one struct.

use crate::error::{Error, Result};
use crate::geometry::Geometry;
pub use crate::geometry::Layout;

/// How running statistics are updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Convention {
    /// `moving = m * moving + (1 - m) * batch`, moving variance from the biased batch variance.
    #[default]
    Keras,
    /// `running = (1 - f) * running + f * batch`, running variance from the unbiased batch
    /// variance; `momentum: None` gives the cumulative average `f = 1 / num_batches_tracked`.
    PyTorch,
}

/// What training mode does with one value per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SingleSamplePolicy {
    /// Keras: the batch variance is 0 and the output equals beta.
    #[default]
    ZeroVariance,
    /// PyTorch: `Error::SingleSample` ("Expected more than 1 value per channel").
    Error,
}

/// Which statistics a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics; running statistics are updated and the batch statistics saved for backward.
    Training,
    /// Running statistics; nothing is updated.
    Inference,
}

/// Configuration of a [`BatchNorm`](crate::BatchNorm) layer. `Default` is Keras'
/// `BatchNormalization()` with `channels: 0`, which must be set before use.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormConfig {
    /// Number of channels (features).
    pub channels: usize,
    /// Which axis holds the channels.
    pub layout: Layout,
    /// Added to the variance before the square root (Keras 1e-3, PyTorch 1e-5).
    pub epsilon: f32,
    /// Keras: weight of the old value (0.99). PyTorch: weight of the new value (0.1);
    /// `None` means the cumulative average (PyTorch only). Kept in f64, as the frameworks keep
    /// it as a Python float: both running-statistics weights are formed in f64 and rounded once.
    pub momentum: Option<f64>,
    /// Learn and add beta (Keras `center`; PyTorch `affine`).
    pub center: bool,
    /// Learn and multiply by gamma (Keras `scale`; PyTorch `affine`).
    pub scale: bool,
    /// Momentum semantics and running-variance bias.
    pub convention: Convention,
    /// What a batch of one value per channel does in training.
    pub single_sample: SingleSamplePolicy,
    /// Fuse a ReLU after the normalization (forward and backward).
    pub relu: bool,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self::keras(0)
    }
}

impl BatchNormConfig {
    /// Keras 3 `BatchNormalization(axis=-1)`: epsilon 1e-3, momentum 0.99, channels-last.
    pub fn keras(channels: usize) -> Self {
        Self {
            channels,
            layout: Layout::ChannelsLast,
            epsilon: 1e-3,
            momentum: Some(0.99),
            center: true,
            scale: true,
            convention: Convention::Keras,
            single_sample: SingleSamplePolicy::ZeroVariance,
            relu: false,
        }
    }

    /// PyTorch `BatchNorm{1,2,3}d(channels)`: epsilon 1e-5, momentum 0.1, channels-first,
    /// unbiased running variance, an error for one value per channel.
    pub fn pytorch(channels: usize) -> Self {
        Self {
            channels,
            layout: Layout::ChannelsFirst,
            epsilon: 1e-5,
            momentum: Some(0.1),
            center: true,
            scale: true,
            convention: Convention::PyTorch,
            single_sample: SingleSamplePolicy::Error,
            relu: false,
        }
    }

    /// Sets the fused ReLU.
    pub fn with_relu(mut self, relu: bool) -> Self {
        self.relu = relu;
        self
    }

    /// Sets the layout.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Checks every field; the layer calls this on creation.
    pub fn validate(&self) -> Result<()> {
        if self.channels == 0 {
            return Err(Error::ZeroChannels);
        }
        // Kernels index channels as u32, and the channel buffer holds 16 bytes per channel.
        let max = (u32::MAX / 16) as usize;
        if self.channels > max {
            return Err(Error::TooLarge {
                what: "channels",
                limit: "u32 channel indices",
                needed: self.channels as u64,
                max: max as u64,
            });
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(Error::InvalidEpsilon(self.epsilon));
        }
        match self.momentum {
            Some(m) if !(m.is_finite() && (0.0..=1.0).contains(&m)) => {
                return Err(Error::InvalidMomentum(m))
            }
            None if self.convention != Convention::PyTorch => {
                return Err(Error::CumulativeNeedsPyTorch)
            }
            _ => {}
        }
        Ok(())
    }

    /// `(keep, fresh)`: running <- keep * running + fresh * batch. Each weight is formed in
    /// f64 from the f64 momentum and rounded to f32 once, as the frameworks round their Python
    /// floats: Keras' `1 - 0.99` is f32(0.01000000000000001) = 0.0099999998, not
    /// 1 - f32(0.99) = 0.0099999905. `fresh < 0` marks the cumulative average.
    pub fn running_weights(&self) -> (f32, f32) {
        match (self.convention, self.momentum) {
            (Convention::Keras, Some(m)) => (m as f32, (1.0 - m) as f32),
            (Convention::PyTorch, Some(f)) => ((1.0 - f) as f32, f as f32),
            (_, None) => (0.0, -1.0),
        }
    }

    /// `(keep, fresh)` in f64, unrounded: the weights of a float64 model (Keras with
    /// `floatx = float64`). `fresh < 0` marks the cumulative average.
    pub fn running_weights_f64(&self) -> (f64, f64) {
        match (self.convention, self.momentum) {
            (Convention::Keras, Some(m)) => (m, 1.0 - m),
            (Convention::PyTorch, Some(f)) => (1.0 - f, f),
            (_, None) => (0.0, -1.0),
        }
    }

    /// The mode a pass over `shape` really runs in — a frozen layer (`trainable == false`)
    /// runs inference, as Keras does — or the PyTorch batch-of-one error.
    pub fn resolve_mode(
        &self,
        trainable: bool,
        mode: Mode,
        geometry: &Geometry,
        shape: &[usize],
    ) -> Result<Mode> {
        let mode = if trainable { mode } else { Mode::Inference };
        if mode == Mode::Training
            && geometry.per_channel() == 1
            && self.single_sample == SingleSamplePolicy::Error
        {
            return Err(Error::SingleSample(shape.to_vec()));
        }
        Ok(mode)
    }

    /// Factor applied to the biased batch variance before it enters the running variance.
    pub fn variance_correction(&self, n: usize) -> f32 {
        match self.convention {
            Convention::PyTorch if n > 1 => (n as f64 / (n as f64 - 1.0)) as f32,
            _ => 1.0,
        }
    }
}
