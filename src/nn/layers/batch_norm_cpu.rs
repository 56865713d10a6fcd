//! The f64 twin of `batch_norm.rs`: the engine's own CPU reference (its statistics,
//! normalization, backward and running-statistics update), in f64 throughout, for any
//! configuration the engine supports.

use crate::cpu::{backward, normalize, running_update, stats_for, Stats};
use crate::nn::error::Result;
use crate::nn::layer::CpuLayer;
use crate::{BatchNormConfig, Geometry, Mode};

#[derive(Debug, Clone)]
pub(crate) struct CpuNorm {
    config: BatchNormConfig,
    /// Positions per sample (`h * w` of a feature map).
    positions: usize,
    tracked: u64,
    last: Option<(Vec<f64>, Stats, Mode)>,
}

impl CpuNorm {
    pub fn new(config: BatchNormConfig, positions: usize) -> Self {
        CpuNorm {
            config,
            positions,
            tracked: 0,
            last: None,
        }
    }

    fn geometry(&self, rows: usize) -> Result<(Geometry, [usize; 2])> {
        let shape = [rows * self.positions, self.config.channels];
        Ok((
            Geometry::new(&shape, self.config.layout, self.config.channels)?,
            shape,
        ))
    }

    /// Gamma and beta as the configuration applies them (`scale: false`: 1, `center:
    /// false`: 0).
    fn affine(&self, params: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
        let c = self.config.channels;
        (
            if self.config.scale {
                params[0].clone()
            } else {
                vec![1.0; c]
            },
            if self.config.center {
                params[1].clone()
            } else {
                vec![0.0; c]
            },
        )
    }
}

impl CpuLayer for CpuNorm {
    fn forward(
        &mut self,
        params: &mut [Vec<f64>],
        x: Vec<f64>,
        rows: usize,
        training: bool,
        _step: u64,
    ) -> Result<Vec<f64>> {
        let (g, shape) = self.geometry(rows)?;
        let mode = if training {
            Mode::Training
        } else {
            Mode::Inference
        };
        let mode = self.config.resolve_mode(true, mode, &g, &shape)?;
        let eps = self.config.epsilon as f64;
        let stats = stats_for(&x, &g, mode, &params[2], &params[3], eps);
        if mode == Mode::Training {
            self.tracked += 1;
            let weights = self.config.running_weights_f64();
            let (mean, var) = params.split_at_mut(3);
            let batch = stats.mean.iter().zip(&stats.var);
            for ((rm, rv), (&m, &v)) in mean[2].iter_mut().zip(var[0].iter_mut()).zip(batch) {
                (*rm, *rv) = running_update(
                    &self.config,
                    weights,
                    self.tracked,
                    g.per_channel(),
                    (m, v),
                    (*rm, *rv),
                );
            }
        }
        let (gamma, beta) = self.affine(params);
        let y = normalize(&x, &g, &stats, &gamma, &beta, self.config.relu);
        self.last = Some((x, stats, mode));
        Ok(y)
    }

    fn backward(
        &mut self,
        params: &[Vec<f64>],
        dy: Vec<f64>,
        rows: usize,
        _step: u64,
        grads: &mut [Vec<f64>],
    ) -> Result<Vec<f64>> {
        let (g, _) = self.geometry(rows)?;
        let (x, stats, mode) = self
            .last
            .as_ref()
            .ok_or(crate::Error::BackwardBeforeForward)?;
        let (gamma, beta) = self.affine(params);
        let (dx, dgamma, dbeta) =
            backward(x, &dy, &g, stats, *mode, &gamma, &beta, self.config.relu);
        for c in 0..g.channels {
            if self.config.scale {
                grads[0][c] += dgamma[c];
            }
            if self.config.center {
                grads[1][c] += dbeta[c];
            }
        }
        Ok(dx)
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer> {
        Box::new(self.clone())
    }
}
