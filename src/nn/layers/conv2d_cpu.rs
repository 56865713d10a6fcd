//! The CPU twin of `conv2d.rs` (f64 or f32): direct loops over output positions (in parallel over taps or
//! samples for large layers), each output summed as bias, then taps `(ky, kx, ci)` in order.

use rayon::prelude::*;

use super::conv2d::Conv;
use crate::nn::error::Result;
use crate::nn::layer::{BackIo, CpuLayer};
use crate::nn::real::Real;

/// Multiply-adds below which the loops stay on the calling thread.
const PARALLEL_FROM: usize = 1 << 16;

#[derive(Debug, Clone)]
pub(crate) struct CpuConv<T> {
    def: Conv,
    input: Vec<T>,
    output: Vec<T>,
}

impl<T> CpuConv<T> {
    pub fn new(def: Conv) -> Self {
        CpuConv {
            def,
            input: Vec::new(),
            output: Vec::new(),
        }
    }

    /// The input position tap `(ky, kx)` of output `(oy, ox)` reads, if inside the image.
    fn source(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let d = &self.def;
        let iy = (oy * d.spec.strides[0] + ky).checked_sub(d.pad[0])?;
        let ix = (ox * d.spec.strides[1] + kx).checked_sub(d.pad[1])?;
        (iy < d.input[0] && ix < d.input[1]).then_some((iy, ix))
    }

    fn parallel(&self, rows: usize) -> bool {
        rows * self.def.out[0] * self.def.out[1] * self.def.taps() * self.def.spec.filters
            >= PARALLEL_FROM
    }
}

/// `f` on each `len`-long chunk of `v` with its index (in parallel when `parallel`).
fn each_chunk<T: Real>(
    v: &mut [T],
    len: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    if len == 0 {
        return;
    }
    if parallel {
        v.par_chunks_mut(len).enumerate().for_each(|(i, r)| f(i, r));
    } else {
        v.chunks_mut(len).enumerate().for_each(|(i, r)| f(i, r));
    }
}

impl<T: Real> CpuLayer<T> for CpuConv<T> {
    fn forward(
        &mut self,
        params: &mut [Vec<T>],
        x: Vec<T>,
        rows: usize,
        _training: bool,
        _step: u64,
    ) -> Result<Vec<T>> {
        let d = self.def;
        let ([h, w, cin], [oh, ow], cout) = (d.input, d.out, d.spec.filters);
        let [kh, kw] = d.spec.kernel_size;
        let k = &params[0];
        let bias = d.spec.use_bias.then(|| &params[1]);
        let mut y = vec![T::ZERO; rows * oh * ow * cout];
        each_chunk(&mut y, oh * ow * cout, self.parallel(rows), |b, ys| {
            let xs = &x[b * h * w * cin..(b + 1) * h * w * cin];
            for oy in 0..oh {
                for ox in 0..ow {
                    let out = &mut ys[(oy * ow + ox) * cout..(oy * ow + ox + 1) * cout];
                    if let Some(bias) = bias {
                        out.copy_from_slice(bias);
                    }
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let Some((iy, ix)) = self.source(oy, ox, ky, kx) else {
                                continue;
                            };
                            for ci in 0..cin {
                                let v = xs[(iy * w + ix) * cin + ci];
                                let kr = &k[((ky * kw + kx) * cin + ci) * cout..][..cout];
                                for (o, &kv) in out.iter_mut().zip(kr) {
                                    *o += v * kv;
                                }
                            }
                        }
                    }
                    if d.relu {
                        // As the shader's ReLU: below 0 becomes 0, NaN stays.
                        out.iter_mut()
                            .filter(|o| **o < T::ZERO)
                            .for_each(|o| *o = T::ZERO);
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
        params: &[Vec<T>],
        mut g: Vec<T>,
        io: BackIo,
        grads: &mut [Vec<T>],
    ) -> Result<Vec<T>> {
        let rows = io.rows;
        let d = self.def;
        let ([h, w, cin], [oh, ow], cout) = (d.input, d.out, d.spec.filters);
        let [kh, kw] = d.spec.kernel_size;
        if d.relu {
            for (g, &y) in g.iter_mut().zip(&self.output) {
                *g = if y <= T::ZERO { T::ZERO } else { *g };
            }
        }
        let (x, k) = (&self.input, &params[0]);
        // db = Σ g over samples and positions in order.
        if let Some(db) = grads.get_mut(1) {
            for gr in g.chunks_exact(cout) {
                db.iter_mut().zip(gr).for_each(|(d, &g)| *d += g);
            }
        }
        // dK[tap, :] += x · g over samples and output positions in order; taps in parallel.
        let parallel = self.parallel(rows);
        each_chunk(&mut grads[0], cout, parallel, |tap, row| {
            let (ci, kx, ky) = (tap % cin, (tap / cin) % kw, tap / (cin * kw));
            for b in 0..rows {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let Some((iy, ix)) = self.source(oy, ox, ky, kx) else {
                            continue;
                        };
                        let v = x[((b * h + iy) * w + ix) * cin + ci];
                        let m = (b * oh + oy) * ow + ox;
                        let gr = &g[m * cout..(m + 1) * cout];
                        row.iter_mut().zip(gr).for_each(|(d, &g)| *d += v * g);
                    }
                }
            }
        });
        // dX: every output position scatters g · Kᵀ onto the inputs its window reads.
        if io.first {
            return Ok(Vec::new());
        }
        let mut dx = vec![T::ZERO; rows * h * w * cin];
        each_chunk(&mut dx, h * w * cin, self.parallel(rows), |b, dxs| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let m = (b * oh + oy) * ow + ox;
                    let gr = &g[m * cout..(m + 1) * cout];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let Some((iy, ix)) = self.source(oy, ox, ky, kx) else {
                                continue;
                            };
                            for ci in 0..cin {
                                let kr = &k[((ky * kw + kx) * cin + ci) * cout..][..cout];
                                let s: T = gr.iter().zip(kr).map(|(&g, &kv)| g * kv).sum();
                                dxs[(iy * w + ix) * cin + ci] += s;
                            }
                        }
                    }
                }
            }
        });
        Ok(dx)
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer<T>> {
        Box::new(self.clone())
    }
}
