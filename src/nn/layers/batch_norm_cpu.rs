//! The CPU twins of `batch_norm.rs`: in f64, the engine's own CPU reference (its statistics,
//! normalization, backward and running-statistics update), in f64 throughout; in f32, the
//! engine's fast CPU path (`FastCpuBatchNorm`: multi-threaded, AVX2). Both take any
//! configuration the engine supports.

use crate::cpu::{backward, normalize, running_update, stats_for, Stats};
use crate::nn::error::Result;
use crate::nn::layer::{BackIo, CpuLayer};
use crate::nn::real::{keep_spare, overwritten};
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
        io: BackIo,
        grads: &mut [Vec<f64>],
    ) -> Result<Vec<f64>> {
        let (g, _) = self.geometry(io.rows)?;
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

/// The f32 twin: the engine's fast CPU path, its state loaded from the layer's tensors
/// (gamma, beta, moving statistics) before each pass and the moving statistics stored back.
#[derive(Debug, Clone)]
pub(crate) struct FastNorm {
    layer: crate::cpu::FastCpuBatchNorm,
    positions: usize,
    input: Vec<f32>,
    /// A released buffer, for the next output or input gradient.
    spare: Vec<f32>,
}

impl FastNorm {
    pub fn new(config: BatchNormConfig, positions: usize) -> Result<Self> {
        Ok(FastNorm {
            layer: crate::cpu::FastCpuBatchNorm::new(config)?,
            positions,
            input: Vec::new(),
            spare: Vec::new(),
        })
    }

    fn shape(&self, rows: usize) -> [usize; 2] {
        [rows * self.positions, self.layer.config().channels]
    }

    fn load(&mut self, params: &[Vec<f32>]) -> Result<()> {
        let st = &mut self.layer.state;
        st.set_gamma(&params[0])?;
        st.set_beta(&params[1])?;
        st.set_running_mean(&params[2])?;
        st.set_running_var(&params[3])?;
        Ok(())
    }
}

impl CpuLayer<f32> for FastNorm {
    fn forward(
        &mut self,
        params: &mut [Vec<f32>],
        x: Vec<f32>,
        rows: usize,
        training: bool,
        _step: u64,
    ) -> Result<Vec<f32>> {
        self.load(params)?;
        let mode = if training {
            Mode::Training
        } else {
            Mode::Inference
        };
        let mut y = overwritten(&mut self.spare, x.len());
        self.layer
            .forward_into(&x, &self.shape(rows), mode, &mut y)?;
        params[2].copy_from_slice(self.layer.state.running_mean());
        params[3].copy_from_slice(self.layer.state.running_var());
        keep_spare(&mut self.spare, std::mem::replace(&mut self.input, x));
        Ok(y)
    }

    fn backward(
        &mut self,
        params: &[Vec<f32>],
        dy: Vec<f32>,
        io: BackIo,
        grads: &mut [Vec<f32>],
    ) -> Result<Vec<f32>> {
        self.load(params)?;
        let shape = self.shape(io.rows);
        let mut dx = overwritten(&mut self.spare, dy.len());
        self.layer
            .backward_into(&self.input, &dy, &shape, &mut dx)?;
        keep_spare(&mut self.spare, dy);
        let cfg = self.layer.config();
        let (dgamma, dbeta) = grads.split_at_mut(1);
        if cfg.scale {
            for (g, &d) in dgamma[0].iter_mut().zip(&self.layer.dgamma) {
                *g += d;
            }
        }
        if cfg.center {
            for (g, &d) in dbeta[0].iter_mut().zip(&self.layer.dbeta) {
                *g += d;
            }
        }
        Ok(dx)
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer<f32>> {
        Box::new(self.clone())
    }
}
