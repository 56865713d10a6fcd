//! The CPU twin of `pool2d.rs` (f64 or f32): the same windows, the same first-maximum rule, averages over
//! the positions inside the image.

use super::pool2d::{Pool, PoolKind};
use crate::nn::error::Result;
use crate::nn::layer::{BackIo, CpuLayer};
use crate::nn::real::Real;

#[derive(Debug, Clone)]
pub(crate) struct CpuPool<T> {
    def: Pool,
    input: Vec<T>,
}

impl<T: Real> CpuPool<T> {
    pub fn new(def: Pool) -> Self {
        CpuPool {
            def,
            input: Vec::new(),
        }
    }

    /// Rows and columns of output `(oy, ox)`'s window inside the image.
    fn window(&self, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let d = &self.def;
        let [kh, kw] = d.window.pool_size;
        let [sh, sw] = d.window.strides;
        let (sy, sx) = (
            (oy * sh) as isize - d.pad[0] as isize,
            (ox * sw) as isize - d.pad[1] as isize,
        );
        let clip = |a: isize, n: usize| a.clamp(0, n as isize) as usize;
        (
            clip(sy, d.input[0])..clip(sy + kh as isize, d.input[0]),
            clip(sx, d.input[1])..clip(sx + kw as isize, d.input[1]),
        )
    }

    /// For every output value of sample `b`: the input positions it reads, and the weight
    /// each gets in the output (1 for the first maximum, 1/count for an average).
    fn visit(&self, x: &[T], b: usize, mut f: impl FnMut(usize, usize, T)) {
        let d = &self.def;
        let ([h, w, c], [oh, ow]) = (d.input, d.out);
        let base = b * h * w * c;
        for oy in 0..oh {
            for ox in 0..ow {
                let (ys, xs) = self.window(oy, ox);
                let count = T::of((ys.len() * xs.len()) as f64);
                for ch in 0..c {
                    let out = ((b * oh + oy) * ow + ox) * c + ch;
                    let at = |iy: usize, ix: usize| base + (iy * w + ix) * c + ch;
                    if d.kind == PoolKind::Max {
                        let mut best = at(ys.start, xs.start);
                        for iy in ys.clone() {
                            for ix in xs.clone() {
                                // The first NaN wins, as on the GPU (NaN propagates).
                                let v = x[at(iy, ix)];
                                if !x[best].is_nan() && (v.is_nan() || v > x[best]) {
                                    best = at(iy, ix);
                                }
                            }
                        }
                        f(out, best, T::ONE);
                    } else {
                        for iy in ys.clone() {
                            for ix in xs.clone() {
                                f(out, at(iy, ix), T::ONE / count);
                            }
                        }
                    }
                }
            }
        }
    }
}

impl<T: Real> CpuLayer<T> for CpuPool<T> {
    fn forward(
        &mut self,
        _params: &mut [Vec<T>],
        x: Vec<T>,
        rows: usize,
        _training: bool,
        _step: u64,
    ) -> Result<Vec<T>> {
        let d = &self.def;
        let mut y = vec![T::ZERO; rows * d.out[0] * d.out[1] * d.input[2]];
        for b in 0..rows {
            self.visit(&x, b, |out, i, weight| {
                if d.kind == PoolKind::Max {
                    y[out] = x[i];
                } else {
                    y[out] += x[i] * weight;
                }
            });
        }
        self.input = x;
        Ok(y)
    }

    fn backward(
        &mut self,
        _params: &[Vec<T>],
        g: Vec<T>,
        io: BackIo,
        _grads: &mut [Vec<T>],
    ) -> Result<Vec<T>> {
        let mut dx = vec![T::ZERO; self.input.len()];
        for b in 0..io.rows {
            self.visit(&self.input, b, |out, i, weight| dx[i] += g[out] * weight);
        }
        Ok(dx)
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer<T>> {
        Box::new(self.clone())
    }
}
