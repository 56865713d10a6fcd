//! The f64 twin of `dense.rs`.

use super::dense::Dense;
use crate::nn::error::Result;
use crate::nn::layer::CpuLayer;

#[derive(Debug, Clone)]
pub(crate) struct CpuDense {
    def: Dense,
    input: Vec<f64>,
    output: Vec<f64>,
}

impl CpuDense {
    pub fn new(def: Dense) -> Self {
        CpuDense {
            def,
            input: Vec::new(),
            output: Vec::new(),
        }
    }
}

impl CpuLayer for CpuDense {
    fn forward(
        &mut self,
        params: &mut [Vec<f64>],
        x: Vec<f64>,
        rows: usize,
        _training: bool,
        _step: u64,
    ) -> Result<Vec<f64>> {
        let Dense { inp, out, relu } = self.def;
        let (w, bias) = (&params[0], &params[1]);
        let mut y = vec![0.0; rows * out];
        for i in 0..rows {
            for o in 0..out {
                let mut s = bias[o];
                for k in 0..inp {
                    s += x[i * inp + k] * w[k * out + o];
                }
                y[i * out + o] = if relu && s < 0.0 { 0.0 } else { s };
            }
        }
        self.input = x;
        self.output.clone_from(&y);
        Ok(y)
    }

    fn backward(
        &mut self,
        params: &[Vec<f64>],
        mut d: Vec<f64>,
        rows: usize,
        _step: u64,
        grads: &mut [Vec<f64>],
    ) -> Result<Vec<f64>> {
        let Dense { inp, out, relu } = self.def;
        if relu {
            for (g, &y) in d.iter_mut().zip(&self.output) {
                if y <= 0.0 {
                    *g = 0.0;
                }
            }
        }
        let w = &params[0];
        let mut dx = vec![0.0; rows * inp];
        for i in 0..rows {
            for o in 0..out {
                let g = d[i * out + o];
                grads[1][o] += g;
                for k in 0..inp {
                    grads[0][k * out + o] += self.input[i * inp + k] * g;
                    dx[i * inp + k] += g * w[k * out + o];
                }
            }
        }
        Ok(dx)
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer> {
        Box::new(self.clone())
    }
}
