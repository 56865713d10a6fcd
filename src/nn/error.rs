//! The network's errors: its own (models, data, weights files, divergence) and the engine's,
//! wrapped. The engine's [`crate::Error`] knows nothing of the network.

use thiserror::Error;

use crate::nn::DataError;

/// Everything that can go wrong building, training or saving a network.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An error of the engine or the device (lost device, out of memory, bad sizes...).
    #[error(transparent)]
    Engine(#[from] crate::Error),
    /// A network that cannot be built or trained as specified.
    #[error("model: {0}")]
    Model(String),
    /// A Keras model file that asks for something this crate does not do exactly: the layer
    /// (its position and Keras name; none for the model itself) and the field.
    #[error("Keras {}{name:?} ({class}), field {field}: {why}", .index.map(|i| format!("layer {i} ")).unwrap_or_else(|| "model ".into()))]
    Keras {
        /// The layer's position in `config.layers`; `None` for a field of the model.
        index: Option<usize>,
        /// The layer's (or model's) Keras name.
        name: String,
        /// Its `class_name`.
        class: String,
        /// The config field.
        field: String,
        /// What is wrong with it.
        why: String,
    },
    /// A data set that cannot be used.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A weights file that cannot be read or written.
    #[error("weights file {path}: {why}")]
    Weights {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// A buffer the network binds is larger than the device allows: refused before anything
    /// is allocated.
    #[error("model too large for the device: {what} needs {needed} bytes, more than one buffer binding holds on this device ({limit} = {max} bytes)")]
    DeviceLimit {
        /// What needs the buffer, in words (names the layer or the batch).
        what: String,
        /// Bytes needed.
        needed: u128,
        /// The wgpu limit that was hit.
        limit: &'static str,
        /// The limit's value, bytes.
        max: u64,
    },
    /// Training diverged: the loss became NaN or infinite (Keras' `TerminateOnNaN` stops here).
    #[error("training diverged: the loss became NaN or infinite in epoch {epoch}{}; lower the learning rate or check the data", .batch.map(|b| format!(", batch {b}")).unwrap_or_default())]
    NonFiniteLoss {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based batch of that epoch, when known.
        batch: Option<usize>,
    },
}

impl Error {
    /// The engine's error inside, if this is one (for matching `DeviceLost` and friends).
    pub fn engine(&self) -> Option<&crate::Error> {
        match self {
            Error::Engine(e) => Some(e),
            _ => None,
        }
    }
}

/// Result alias of the network.
pub type Result<T, E = Error> = std::result::Result<T, E>;
