//! The CPU reference: the same layer computed on the CPU with f64 accumulation (exact
//! two-pass statistics), multi-threaded over channels. It is the oracle of every GPU test;
//! it favours obvious correctness over speed (see `fast.rs` for the fast path).

use rayon::prelude::*;

use super::LayerState;
use crate::config::{BatchNormConfig, Mode};
use crate::error::{Error, Result};
use crate::geometry::Geometry;

/// Per-channel statistics of one forward pass, in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Mean used to normalize.
    pub mean: Vec<f64>,
    /// Biased variance used to normalize.
    pub var: Vec<f64>,
    /// `1 / sqrt(var + eps)`.
    pub inv_std: Vec<f64>,
}

/// Gradients of one backward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients {
    /// Gradient with respect to the input.
    pub dx: Vec<f32>,
    /// Gradient with respect to gamma.
    pub dgamma: Vec<f32>,
    /// Gradient with respect to beta.
    pub dbeta: Vec<f32>,
}

/// Per-channel mean and biased variance of `x`, two-pass in f64 (a channel with a non-finite
/// value, or whose squared deviations sum past f32's range, gets NaN for both: the engine's
/// rule, `finite_or_nan` in `cpu/mod.rs`).
pub fn channel_moments<T: Copy + Into<f64> + Sync>(x: &[T], g: &Geometry) -> (Vec<f64>, Vec<f64>) {
    let n = g.per_channel() as f64;
    (0..g.channels)
        .into_par_iter()
        .map(|c| {
            let values = || {
                (0..g.outer)
                    .flat_map(move |o| (0..g.inner).map(move |i| x[g.index(o, c, i)].into()))
            };
            let mean = values().sum::<f64>() / n;
            let m2 = values().map(|v| (v - mean) * (v - mean)).sum::<f64>();
            super::finite_or_nan(mean, m2, n)
        })
        .unzip()
}

/// `y = (x - mean) * (gamma * inv_std) + beta`, then ReLU when fused, in f64.
pub fn normalize<T: Copy + Into<f64> + Sync>(
    x: &[T],
    g: &Geometry,
    stats: &Stats,
    gamma: &[f64],
    beta: &[f64],
    relu: bool,
) -> Vec<f64> {
    let scale: Vec<f64> = (0..g.channels)
        .map(|c| gamma[c] * stats.inv_std[c])
        .collect();
    let mut y = vec![0.0f64; x.len()];
    let row = g.channels * g.inner;
    y.par_chunks_mut(row).enumerate().for_each(|(o, yrow)| {
        for c in 0..g.channels {
            for i in 0..g.inner {
                let k = c * g.inner + i;
                let v = (x[o * row + k].into() - stats.mean[c]) * scale[c] + beta[c];
                yrow[k] = if relu && v < 0.0 { 0.0 } else { v };
            }
        }
    });
    y
}

/// The backward pass in f64: `(dx, dgamma, dbeta)` for a forward that normalized `x` with
/// `stats` in `mode` (inference statistics are constants: dx = gamma * inv_std * dy).
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Copy + Into<f64> + Sync>(
    x: &[T],
    dy: &[T],
    g: &Geometry,
    stats: &Stats,
    mode: Mode,
    gamma: &[f64],
    beta: &[f64],
    relu: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = g.per_channel() as f64;
    let xhat = |c: usize, idx: usize| (x[idx].into() - stats.mean[c]) * stats.inv_std[c];
    let masked = |c: usize, idx: usize| {
        let y = xhat(c, idx) * gamma[c] + beta[c];
        if relu && y <= 0.0 {
            0.0
        } else {
            dy[idx].into()
        }
    };
    let sums: Vec<(f64, f64)> = (0..g.channels)
        .into_par_iter()
        .map(|c| {
            let mut s = (0.0, 0.0);
            for o in 0..g.outer {
                for i in 0..g.inner {
                    let idx = g.index(o, c, i);
                    let d = masked(c, idx);
                    s.0 += d;
                    s.1 += d * xhat(c, idx);
                }
            }
            s
        })
        .collect();
    let training = mode == Mode::Training;
    let mut dx = vec![0.0f64; x.len()];
    let row = g.channels * g.inner;
    dx.par_chunks_mut(row).enumerate().for_each(|(o, drow)| {
        for c in 0..g.channels {
            let k = gamma[c] * stats.inv_std[c];
            let (dbeta, dgamma) = sums[c];
            for i in 0..g.inner {
                let idx = g.index(o, c, i);
                let d = masked(c, idx);
                drow[c * g.inner + i] = if training {
                    k / n * (n * d - dbeta - xhat(c, idx) * dgamma)
                } else {
                    k * d
                };
            }
        }
    });
    (
        dx,
        sums.iter().map(|s| s.1).collect(),
        sums.iter().map(|s| s.0).collect(),
    )
}

/// The statistics a forward pass in `mode` normalizes with: the batch's (two-pass, f64) in
/// training, the running ones in inference.
pub fn stats_for<T: Copy + Into<f64> + Sync>(
    x: &[T],
    g: &Geometry,
    mode: Mode,
    running_mean: &[f64],
    running_var: &[f64],
    epsilon: f64,
) -> Stats {
    let (mean, var) = match mode {
        Mode::Training => channel_moments(x, g),
        Mode::Inference => (running_mean.to_vec(), running_var.to_vec()),
    };
    let inv_std = var.iter().map(|v| 1.0 / (v + epsilon).sqrt()).collect();
    Stats { mean, var, inv_std }
}

/// The CPU twin of [`BatchNorm`](crate::BatchNorm).
#[derive(Debug, Clone)]
pub struct CpuBatchNorm {
    /// Configuration, parameters and running statistics.
    pub(crate) state: LayerState,
    last: Option<(Mode, Vec<usize>, Stats)>,
}

impl CpuBatchNorm {
    /// Builds the layer with the framework initial values.
    pub fn new(config: BatchNormConfig) -> Result<Self> {
        Ok(Self {
            state: LayerState::new(config)?,
            last: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BatchNormConfig {
        self.state.config()
    }

    /// Statistics of the last forward pass.
    pub fn last_stats(&self) -> Option<&Stats> {
        self.last.as_ref().map(|l| &l.2)
    }

    fn gammas(&self) -> Vec<f64> {
        let c = self.state.config().channels;
        (0..c).map(|j| self.state.gamma_of(j) as f64).collect()
    }

    fn betas(&self) -> Vec<f64> {
        let c = self.state.config().channels;
        (0..c).map(|j| self.state.beta_of(j) as f64).collect()
    }

    /// Forward pass; see [`BatchNorm::encode_forward`](crate::BatchNorm::encode_forward).
    pub fn forward(&mut self, x: &[f32], shape: &[usize], mode: Mode) -> Result<Vec<f32>> {
        let (g, mode) = self.state.begin_forward(x, shape, mode)?;
        let running = |v: &[f32]| -> Vec<f64> { v.iter().map(|&v| v as f64).collect() };
        let stats = stats_for(
            x,
            &g,
            mode,
            &running(self.state.running_mean()),
            &running(self.state.running_var()),
            self.state.config().epsilon as f64,
        );
        if mode == Mode::Training {
            self.state
                .record_training(&stats.mean, &stats.var, g.per_channel());
        }
        let y = normalize(
            x,
            &g,
            &stats,
            &self.gammas(),
            &self.betas(),
            self.state.config().relu,
        );
        self.last = Some((mode, shape.to_vec(), stats));
        Ok(y.into_iter().map(|v| v as f32).collect())
    }

    /// Backward pass of the last forward, whose input was `x`.
    pub fn backward(&self, x: &[f32], dy: &[f32], shape: &[usize]) -> Result<Gradients> {
        let (mode, last_shape, st) = self.last.as_ref().ok_or(Error::BackwardBeforeForward)?;
        if shape != last_shape.as_slice() {
            return Err(Error::ShapeMismatch {
                what: "x",
                expected: last_shape.clone(),
                got: shape.to_vec(),
            });
        }
        let g = self.state.geometry(x, shape, "x")?;
        self.state.geometry(dy, shape, "dy")?;
        let (dx, dgamma, dbeta) = backward(
            x,
            dy,
            &g,
            st,
            *mode,
            &self.gammas(),
            &self.betas(),
            self.state.config().relu,
        );
        let round = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
        Ok(Gradients {
            dx: round(dx),
            dgamma: round(dgamma),
            dbeta: round(dbeta),
        })
    }
}
