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

/// Per-channel mean and biased variance of `x`, two-pass in f64.
pub fn channel_moments(x: &[f32], g: &Geometry) -> (Vec<f64>, Vec<f64>) {
    let n = g.per_channel() as f64;
    (0..g.channels)
        .into_par_iter()
        .map(|c| {
            let values = || {
                (0..g.outer)
                    .flat_map(move |o| (0..g.inner).map(move |i| x[g.index(o, c, i)] as f64))
            };
            let mean = values().sum::<f64>() / n;
            let var = values().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            super::finite_or_nan(mean, var)
        })
        .unzip()
}

/// The CPU twin of [`BatchNorm`](crate::BatchNorm).
#[derive(Debug, Clone)]
pub struct CpuBatchNorm {
    /// Configuration, parameters and running statistics.
    pub state: LayerState,
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

    fn gamma_of(&self, c: usize) -> f64 {
        self.state.gamma_of(c) as f64
    }

    fn beta_of(&self, c: usize) -> f64 {
        self.state.beta_of(c) as f64
    }

    /// Forward pass; see [`BatchNorm::encode_forward`](crate::BatchNorm::encode_forward).
    pub fn forward(&mut self, x: &[f32], shape: &[usize], mode: Mode) -> Result<Vec<f32>> {
        let (g, mode) = self.state.begin_forward(x, shape, mode)?;
        let n = g.per_channel();
        let eps = self.state.config().epsilon as f64;
        let (mean, var) = match mode {
            Mode::Training => {
                let (mean, var) = channel_moments(x, &g);
                self.state.record_training(&mean, &var, n);
                (mean, var)
            }
            Mode::Inference => (
                self.state
                    .running_mean()
                    .iter()
                    .map(|&v| v as f64)
                    .collect(),
                self.state.running_var().iter().map(|&v| v as f64).collect(),
            ),
        };
        let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        let scale: Vec<f64> = (0..g.channels)
            .map(|c| self.gamma_of(c) * inv_std[c])
            .collect();
        let shift: Vec<f64> = (0..g.channels).map(|c| self.beta_of(c)).collect();
        let relu = self.state.config().relu;
        let mut y = vec![0.0f32; x.len()];
        let row = g.channels * g.inner;
        y.par_chunks_mut(row).enumerate().for_each(|(o, yrow)| {
            for c in 0..g.channels {
                for i in 0..g.inner {
                    let k = c * g.inner + i;
                    let v = (x[o * row + k] as f64 - mean[c]) * scale[c] + shift[c];
                    yrow[k] = if relu && v < 0.0 { 0.0 } else { v as f32 };
                }
            }
        });
        self.last = Some((mode, shape.to_vec(), Stats { mean, var, inv_std }));
        Ok(y)
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
        let len = x.len();
        let n = g.per_channel() as f64;
        let relu = self.state.config().relu;
        let xhat = |c: usize, idx: usize| (x[idx] as f64 - st.mean[c]) * st.inv_std[c];
        let masked = |c: usize, idx: usize| {
            let y = xhat(c, idx) * self.gamma_of(c) + self.beta_of(c);
            if relu && y <= 0.0 {
                0.0
            } else {
                dy[idx] as f64
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
        let training = *mode == Mode::Training;
        let mut dx = vec![0.0f32; len];
        let row = g.channels * g.inner;
        dx.par_chunks_mut(row).enumerate().for_each(|(o, drow)| {
            for c in 0..g.channels {
                let k = self.gamma_of(c) * st.inv_std[c];
                let (dbeta, dgamma) = sums[c];
                for i in 0..g.inner {
                    let idx = g.index(o, c, i);
                    let d = masked(c, idx);
                    let v = if training {
                        k / n * (n * d - dbeta - xhat(c, idx) * dgamma)
                    } else {
                        k * d
                    };
                    drow[c * g.inner + i] = v as f32;
                }
            }
        });
        Ok(Gradients {
            dx,
            dgamma: sums.iter().map(|s| s.1 as f32).collect(),
            dbeta: sums.iter().map(|s| s.0 as f32).collect(),
        })
    }
}
