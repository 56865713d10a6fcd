//! The f64 twin of `conv2d.rs`: direct loops over output positions (in parallel over taps or
//! samples for large layers), each output summed as bias, then taps `(ky, kx, ci)` in order.

use rayon::prelude::*;

use super::conv2d::Conv;
use crate::nn::error::Result;
use crate::nn::layer::CpuLayer;

/// Multiply-adds below which the loops stay on the calling thread.
const PARALLEL_FROM: usize = 1 << 16;

#[derive(Debug, Clone)]
pub(crate) struct CpuConv {
    def: Conv,
    input: Vec<f64>,
    output: Vec<f64>,
}

impl CpuConv {
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
fn each_chunk(v: &mut [f64], len: usize, parallel: bool, f: impl Fn(usize, &mut [f64]) + Sync) {
    if len == 0 {
        return;
    }
    if parallel {
        v.par_chunks_mut(len).enumerate().for_each(|(i, r)| f(i, r));
    } else {
        v.chunks_mut(len).enumerate().for_each(|(i, r)| f(i, r));
    }
}

impl CpuLayer for CpuConv {
    fn forward(
        &mut self,
        params: &mut [Vec<f64>],
        x: Vec<f64>,
        rows: usize,
        _training: bool,
        _step: u64,
    ) -> Result<Vec<f64>> {
        let d = self.def;
        let ([h, w, cin], [oh, ow], cout) = (d.input, d.out, d.spec.filters);
        let [kh, kw] = d.spec.kernel_size;
        let k = &params[0];
        let bias = d.spec.use_bias.then(|| &params[1]);
        let mut y = vec![0.0; rows * oh * ow * cout];
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
                        out.iter_mut().for_each(|o| *o = o.max(0.0));
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
        mut g: Vec<f64>,
        rows: usize,
        _step: u64,
        grads: &mut [Vec<f64>],
    ) -> Result<Vec<f64>> {
        let d = self.def;
        let ([h, w, cin], [oh, ow], cout) = (d.input, d.out, d.spec.filters);
        let [kh, kw] = d.spec.kernel_size;
        if d.relu {
            for (g, &y) in g.iter_mut().zip(&self.output) {
                if y <= 0.0 {
                    *g = 0.0;
                }
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
        let mut dx = vec![0.0; rows * h * w * cin];
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
                                let s: f64 = gr.iter().zip(kr).map(|(&g, &kv)| g * kv).sum();
                                dxs[(iy * w + ix) * cin + ci] += s;
                            }
                        }
                    }
                }
            }
        });
        Ok(dx)
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer> {
        Box::new(self.clone())
    }
}
