//! The CPU side: an f64 reference (the oracle of every GPU test) and a fast f32 path (the CPU
//! side of the CPU-versus-GPU benchmark and of CPU training). Both share the layer semantics.

mod fast;
mod reference;

pub use fast::FastCpuBatchNorm;
pub(crate) use fast::{simd, Moments};
pub use reference::{
    backward, channel_moments, normalize, stats_for, CpuBatchNorm, Gradients, Stats,
};

use crate::config::{BatchNormConfig, Mode};
use crate::error::{Error, Result};
use crate::geometry::Geometry;

/// The engine's rule for a channel whose statistics are not finite: it saw NaN or infinity,
/// or its sum of squared deviations from the mean (`m2`, n times the variance) leaves f32's
/// range, where the GPU and the fast path accumulate it; then mean and variance are both
/// NaN, so its output, running statistics and gradients are NaN too. Returns (mean, biased
/// variance) from (mean, m2, count).
pub(crate) fn finite_or_nan(mean: f64, m2: f64, n: f64) -> (f64, f64) {
    if mean.is_finite() && (m2 as f32).is_finite() {
        (mean, m2 / n)
    } else {
        (f64::NAN, f64::NAN)
    }
}

/// What both CPU twins hold: the configuration, the parameters and the running statistics,
/// with the framework initial values (gamma 1, beta 0, running mean 0, variance 1). Every
/// per-channel vector has exactly `channels` values: the setters check it.
#[derive(Debug, Clone)]
pub(crate) struct LayerState {
    config: BatchNormConfig,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    batches_tracked: u64,
    trainable: bool,
}

fn set_channels(
    slot: &mut Vec<f32>,
    what: &'static str,
    channels: usize,
    values: &[f32],
) -> Result<()> {
    if values.len() != channels {
        return Err(Error::LengthMismatch {
            what,
            expected: channels,
            got: values.len(),
        });
    }
    slot.clear();
    slot.extend_from_slice(values);
    Ok(())
}

impl LayerState {
    /// Validates `config` and sets the initial values.
    pub fn new(config: BatchNormConfig) -> Result<Self> {
        config.validate()?;
        let c = config.channels;
        Ok(Self {
            config,
            gamma: vec![1.0; c],
            beta: vec![0.0; c],
            running_mean: vec![0.0; c],
            running_var: vec![1.0; c],
            batches_tracked: 0,
            trainable: true,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BatchNormConfig {
        &self.config
    }

    /// Gamma (scale).
    pub fn gamma(&self) -> &[f32] {
        &self.gamma
    }
    /// Beta (offset).
    pub fn beta(&self) -> &[f32] {
        &self.beta
    }
    /// Running (moving) mean.
    pub fn running_mean(&self) -> &[f32] {
        &self.running_mean
    }
    /// Running (moving) variance.
    pub fn running_var(&self) -> &[f32] {
        &self.running_var
    }
    /// Training forward passes so far (PyTorch's `num_batches_tracked`).
    pub fn batches_tracked(&self) -> u64 {
        self.batches_tracked
    }
    /// Whether training-mode calls use batch statistics (Keras `trainable`).
    pub fn trainable(&self) -> bool {
        self.trainable
    }
    /// Freezes (`false`) or unfreezes the layer.
    pub fn set_trainable(&mut self, trainable: bool) {
        self.trainable = trainable;
    }
    /// Sets gamma (one value per channel).
    pub fn set_gamma(&mut self, values: &[f32]) -> Result<()> {
        set_channels(&mut self.gamma, "gamma", self.config.channels, values)
    }
    /// Sets beta (one value per channel).
    pub fn set_beta(&mut self, values: &[f32]) -> Result<()> {
        set_channels(&mut self.beta, "beta", self.config.channels, values)
    }
    /// Sets the running mean (one value per channel).
    pub fn set_running_mean(&mut self, values: &[f32]) -> Result<()> {
        set_channels(
            &mut self.running_mean,
            "running mean",
            self.config.channels,
            values,
        )
    }
    /// Sets the running variance (one value per channel).
    pub fn set_running_var(&mut self, values: &[f32]) -> Result<()> {
        set_channels(
            &mut self.running_var,
            "running variance",
            self.config.channels,
            values,
        )
    }

    /// Gamma of channel `c`, or 1 without `scale`.
    pub(crate) fn gamma_of(&self, c: usize) -> f32 {
        if self.config.scale {
            self.gamma[c]
        } else {
            1.0
        }
    }

    /// Beta of channel `c`, or 0 without `center`.
    pub(crate) fn beta_of(&self, c: usize) -> f32 {
        if self.config.center {
            self.beta[c]
        } else {
            0.0
        }
    }

    /// The geometry of `shape`, checking that `v` holds exactly its elements.
    pub(crate) fn geometry(
        &self,
        v: &[f32],
        shape: &[usize],
        what: &'static str,
    ) -> Result<Geometry> {
        let g = Geometry::new(shape, self.config.layout, self.config.channels)?;
        let len = g.elements().unwrap_or(usize::MAX);
        if v.len() != len {
            return Err(Error::LengthMismatch {
                what,
                expected: len,
                got: v.len(),
            });
        }
        Ok(g)
    }

    /// Checks a forward call and applies the frozen-layer rule and the batch-of-one policy:
    /// the geometry and the mode the pass really runs in.
    pub(crate) fn begin_forward(
        &self,
        x: &[f32],
        shape: &[usize],
        mode: Mode,
    ) -> Result<(Geometry, Mode)> {
        let g = self.geometry(x, shape, "x")?;
        let mode = self.config.resolve_mode(self.trainable, mode, &g, shape)?;
        Ok((g, mode))
    }

    /// Counts one training step and folds its batch statistics (`n` values per channel) into
    /// the running statistics, as the configured framework does (weights rounded to f32, as
    /// on the GPU).
    pub(crate) fn record_training(&mut self, mean: &[f64], var: &[f64], n: usize) {
        self.batches_tracked += 1;
        let (keep, fresh) = self.config.running_weights();
        let weights = (keep as f64, fresh as f64);
        for c in 0..mean.len() {
            let (m, v) = running_update(
                &self.config,
                weights,
                self.batches_tracked,
                n,
                (mean[c], var[c]),
                (self.running_mean[c] as f64, self.running_var[c] as f64),
            );
            self.running_mean[c] = m as f32;
            self.running_var[c] = v as f32;
        }
    }
}

/// One channel's running (mean, variance) after a training step that saw `n` values per
/// channel with batch statistics `batch`, given `(keep, fresh)` weights (`fresh < 0`: the
/// cumulative average over `tracked` steps) and the convention's variance correction.
pub fn running_update(
    config: &BatchNormConfig,
    (keep, fresh): (f64, f64),
    tracked: u64,
    n: usize,
    batch: (f64, f64),
    old: (f64, f64),
) -> (f64, f64) {
    let (keep, fresh) = if fresh < 0.0 {
        let f = 1.0 / tracked as f64;
        (1.0 - f, f)
    } else {
        (keep, fresh)
    };
    let corr = config.variance_correction(n) as f64;
    (
        keep * old.0 + fresh * batch.0,
        keep * old.1 + fresh * batch.1 * corr,
    )
}

/// The parameter and running-statistics accessors both CPU layers share (what `BatchNorm` has
/// on the GPU, as slices rather than readbacks), delegated to their `LayerState`.
macro_rules! layer_state_accessors {
    ($layer:ty) => {
        impl $layer {
            /// Gamma (scale).
            pub fn gamma(&self) -> &[f32] {
                self.state.gamma()
            }
            /// Beta (offset).
            pub fn beta(&self) -> &[f32] {
                self.state.beta()
            }
            /// Running (moving) mean.
            pub fn running_mean(&self) -> &[f32] {
                self.state.running_mean()
            }
            /// Running (moving) variance.
            pub fn running_var(&self) -> &[f32] {
                self.state.running_var()
            }
            /// Training forward passes so far (PyTorch's `num_batches_tracked`).
            pub fn batches_tracked(&self) -> u64 {
                self.state.batches_tracked()
            }
            /// Whether training-mode calls use batch statistics (Keras `trainable`).
            pub fn trainable(&self) -> bool {
                self.state.trainable()
            }
            /// Freezes (`false`) or unfreezes the layer.
            pub fn set_trainable(&mut self, trainable: bool) {
                self.state.set_trainable(trainable)
            }
            /// Sets gamma (one value per channel).
            pub fn set_gamma(&mut self, values: &[f32]) -> $crate::Result<()> {
                self.state.set_gamma(values)
            }
            /// Sets beta (one value per channel).
            pub fn set_beta(&mut self, values: &[f32]) -> $crate::Result<()> {
                self.state.set_beta(values)
            }
            /// Sets the running mean (one value per channel).
            pub fn set_running_mean(&mut self, values: &[f32]) -> $crate::Result<()> {
                self.state.set_running_mean(values)
            }
            /// Sets the running variance (one value per channel).
            pub fn set_running_var(&mut self, values: &[f32]) -> $crate::Result<()> {
                self.state.set_running_var(values)
            }
        }
    };
}

layer_state_accessors!(CpuBatchNorm);
layer_state_accessors!(FastCpuBatchNorm);
