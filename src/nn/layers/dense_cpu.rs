//! The f64 twin of `dense.rs`. Loops run in cache order (rows of x against rows of the
//! kernel) and over rows in parallel, with every output's sum taken in the same order as a
//! plain triple loop (bias, then k ascending; dW and db over rows ascending; dX over outputs
//! ascending): the oracle's values do not depend on the thread count.

use rayon::prelude::*;

use super::dense::Dense;
use crate::nn::error::Result;
use crate::nn::layer::CpuLayer;

/// Multiply-adds below which the loops stay on the calling thread.
const PARALLEL_FROM: usize = 1 << 16;

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

    fn parallel(&self, rows: usize) -> bool {
        rows * self.def.inp * self.def.out >= PARALLEL_FROM
    }
}

/// `f` on each chunk of `v` (in parallel when `parallel`), with the chunk's index.
fn rows_of(v: &mut [f64], width: usize, parallel: bool, f: impl Fn(usize, &mut [f64]) + Sync) {
    if parallel {
        v.par_chunks_mut(width)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    } else {
        v.chunks_mut(width).enumerate().for_each(|(i, r)| f(i, r));
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
        rows_of(&mut y, out, self.parallel(rows), |i, yr| {
            yr.copy_from_slice(bias);
            for (k, wr) in w.chunks_exact(out).enumerate() {
                let xk = x[i * inp + k];
                for (y, &wv) in yr.iter_mut().zip(wr) {
                    *y += xk * wv;
                }
            }
            if relu {
                for y in yr.iter_mut() {
                    if *y < 0.0 {
                        *y = 0.0;
                    }
                }
            }
        });
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
        let parallel = self.parallel(rows);
        let (x, d) = (&self.input, &d);
        // dW[k, :] += x[i, k] g[i, :], rows i in order.
        rows_of(&mut grads[0], out, parallel, |k, dw| {
            for (i, gr) in d.chunks_exact(out).enumerate() {
                let xik = x[i * inp + k];
                for (dw, &g) in dw.iter_mut().zip(gr) {
                    *dw += xik * g;
                }
            }
        });
        for gr in d.chunks_exact(out) {
            for (db, &g) in grads[1].iter_mut().zip(gr) {
                *db += g;
            }
        }
        // dX[i, k] = sum over outputs o in order of g[i, o] w[k, o].
        let w = &params[0];
        let mut dx = vec![0.0; rows * inp];
        rows_of(&mut dx, inp, parallel, |i, dxr| {
            let gr = &d[i * out..(i + 1) * out];
            for (dx, wr) in dxr.iter_mut().zip(w.chunks_exact(out)) {
                for (&g, &wv) in gr.iter().zip(wr) {
                    *dx += g * wv;
                }
            }
        });
        Ok(dx)
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer> {
        Box::new(self.clone())
    }
}
