//! The CPU twin of `dense.rs`, in f64 (the oracle) or f32 (the fast CPU path). Every loop is
//! an axpy whose vector lanes run across independent outputs (columns of y, dW and dX; rows
//! of y for the narrow logits layer), so each output's sum is taken in the same order as a
//! plain triple loop (bias, then k ascending; dW and db over rows ascending; dX over outputs
//! ascending): the values do not depend on the thread count, the lanes or the CPU. Loops run
//! in cache order, in parallel over rows, compiled for AVX2 where the CPU has it
//! (`cpu::simd`).

use rayon::prelude::*;

use super::dense::Dense;
use crate::cpu::simd;
use crate::nn::error::Result;
use crate::nn::layer::{BackIo, CpuLayer};
use crate::nn::real::{keep_spare, overwritten, zeroed, Real};

/// Multiply-adds below which the loops stay on the calling thread.
const PARALLEL_FROM: usize = 1 << 16;

/// Layers with fewer outputs than this (the logits) put the vector lanes across rows (forward)
/// or inputs (dW) instead of outputs.
const NARROW: usize = 8;

/// Rows of x one narrow forward block holds in its lanes.
const LANES: usize = 8;

/// Outputs (of y, or of a row of dW) one register block accumulates: 8 AVX2 vectors of f32.
const BLOCK: usize = 64;

#[derive(Debug, Clone)]
pub(crate) struct CpuDense<T> {
    def: Dense,
    input: Vec<T>,
    /// The output, kept for the fused ReLU's mask.
    output: Vec<T>,
    /// A released buffer, for the next output or input gradient.
    spare: Vec<T>,
}

impl<T: Real> CpuDense<T> {
    pub fn new(def: Dense) -> Self {
        CpuDense {
            def,
            input: Vec::new(),
            output: Vec::new(),
            spare: Vec::new(),
        }
    }

    fn parallel(&self, rows: usize) -> bool {
        rows * self.def.inp * self.def.out >= PARALLEL_FROM
    }
}

/// `f` on each chunk of `v` (in parallel when `parallel`), with the chunk's index.
fn rows_of<T: Real>(v: &mut [T], width: usize, parallel: bool, f: impl Fn(usize, &mut [T]) + Sync) {
    if parallel {
        v.par_chunks_mut(width)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    } else {
        v.chunks_mut(width).enumerate().for_each(|(i, r)| f(i, r));
    }
}

/// ReLU as the shader computes it (below 0 becomes 0, NaN stays): a select, not a branch,
/// so random signs cost no mispredictions and the loops stay vectorized.
#[inline(always)]
fn relu_of<T: Real>(v: T) -> T {
    if v < T::ZERO {
        T::ZERO
    } else {
        v
    }
}

impl<T: Real> CpuLayer<T> for CpuDense<T> {
    fn forward(
        &mut self,
        params: &mut [Vec<T>],
        x: Vec<T>,
        rows: usize,
        _training: bool,
        _step: u64,
    ) -> Result<Vec<T>> {
        let Dense { inp, out, relu } = self.def;
        let (w, bias) = (&params[0], &params[1]);
        // Every output is written (bias first, then the products): no zeroing pass.
        let mut y = overwritten(&mut self.spare, rows * out);
        if out >= NARROW {
            // Rows in blocks: each row of the kernel feeds a block's rows while in cache.
            let block = (4096 / out).clamp(1, 64);
            rows_of(&mut y, block * out, self.parallel(rows), |b, yb| {
                simd(
                    #[inline(always)]
                    || {
                        for (r, yr) in yb.chunks_exact_mut(out).enumerate() {
                            let xr = &x[(b * block + r) * inp..][..inp];
                            // BLOCK outputs at a time stay in registers across every k; the
                            // columns past the last whole block go through memory.
                            let whole = out / BLOCK * BLOCK;
                            for j0 in (0..whole).step_by(BLOCK) {
                                let mut acc: [T; BLOCK] = std::array::from_fn(|j| bias[j0 + j]);
                                for (k, &xk) in xr.iter().enumerate() {
                                    let wr = &w[k * out + j0..][..BLOCK];
                                    for (a, &wv) in acc.iter_mut().zip(wr) {
                                        *a += xk * wv;
                                    }
                                }
                                if relu {
                                    acc = acc.map(relu_of);
                                }
                                yr[j0..j0 + BLOCK].copy_from_slice(&acc);
                            }
                            let rest = &mut yr[whole..];
                            rest.copy_from_slice(&bias[whole..]);
                            for (&xk, wr) in xr.iter().zip(w.chunks_exact(out)) {
                                for (y, &wv) in rest.iter_mut().zip(&wr[whole..]) {
                                    *y += xk * wv;
                                }
                            }
                            if relu {
                                rest.iter_mut().for_each(|y| *y = relu_of(*y));
                            }
                        }
                    },
                )
            });
        } else {
            // Few outputs (the logits): LANES rows at once, the lanes across rows (x's block
            // transposed so each k is one contiguous load).
            rows_of(&mut y, LANES * out, self.parallel(rows), |b, yb| {
                let n = yb.len() / out;
                let mut xt = vec![T::ZERO; inp * LANES];
                for r in 0..n {
                    for (k, &v) in x[(b * LANES + r) * inp..][..inp].iter().enumerate() {
                        xt[k * LANES + r] = v;
                    }
                }
                simd(
                    #[inline(always)]
                    || {
                        for j in 0..out {
                            let mut acc = [bias[j]; LANES];
                            for (xk, wk) in xt.chunks_exact(LANES).zip(w.chunks_exact(out)) {
                                let wv = wk[j];
                                for (a, &xv) in acc.iter_mut().zip(xk) {
                                    *a += xv * wv;
                                }
                            }
                            for (r, &a) in acc[..n].iter().enumerate() {
                                yb[r * out + j] = if relu { relu_of(a) } else { a };
                            }
                        }
                    },
                )
            });
        }
        keep_spare(&mut self.spare, std::mem::replace(&mut self.input, x));
        if relu {
            self.output.clone_from(&y);
        }
        Ok(y)
    }

    fn backward(
        &mut self,
        params: &[Vec<T>],
        mut dy: Vec<T>,
        io: BackIo,
        grads: &mut [Vec<T>],
    ) -> Result<Vec<T>> {
        let Dense { inp, out, relu } = self.def;
        let rows = io.rows;
        if relu {
            simd(
                #[inline(always)]
                || {
                    for (g, &y) in dy.iter_mut().zip(&self.output) {
                        *g = if y <= T::ZERO { T::ZERO } else { *g };
                    }
                },
            );
        }
        let parallel = self.parallel(rows);
        let (x, d) = (&self.input, &dy);
        let (dw, db) = grads.split_at_mut(1);
        let threads = if parallel {
            rayon::current_num_threads()
        } else {
            1
        };
        if out >= NARROW {
            // dW[k, :] += x[i, k] g[i, :], rows i in order: a task owns a block of dW's rows
            // (in cache) and streams the batch's rows of x and g past it.
            let krows = inp.div_ceil(2 * threads).max(1);
            rows_of(&mut dw[0], krows * out, parallel, |t, dwb| {
                let k0 = t * krows;
                simd(
                    #[inline(always)]
                    || {
                        for (kk, dwr) in dwb.chunks_exact_mut(out).enumerate() {
                            let k = k0 + kk;
                            // BLOCK entries of dW's row k stay in registers while every row of
                            // the batch streams past.
                            let whole = out / BLOCK * BLOCK;
                            for j0 in (0..whole).step_by(BLOCK) {
                                let mut acc: [T; BLOCK] = std::array::from_fn(|j| dwr[j0 + j]);
                                for (xr, gr) in x.chunks_exact(inp).zip(d.chunks_exact(out)) {
                                    let xik = xr[k];
                                    for (a, &g) in acc.iter_mut().zip(&gr[j0..j0 + BLOCK]) {
                                        *a += xik * g;
                                    }
                                }
                                dwr[j0..j0 + BLOCK].copy_from_slice(&acc);
                            }
                            let rest = &mut dwr[whole..];
                            for (xr, gr) in x.chunks_exact(inp).zip(d.chunks_exact(out)) {
                                let xik = xr[k];
                                for (dw, &g) in rest.iter_mut().zip(&gr[whole..]) {
                                    *dw += xik * g;
                                }
                            }
                        }
                    },
                )
            });
        } else {
            // Few outputs: dWᵀ[j, k0..k1] += g[i, j] x[i, k0..k1] (the lanes across k), rows
            // in order; a task owns a block of dW's rows (k0..k1) and adds it in at the end.
            let kb = if parallel {
                inp.div_ceil(2 * threads).max(1)
            } else {
                inp
            };
            rows_of(&mut dw[0], kb * out, parallel, |t, dwb| {
                let (k0, n) = (t * kb, dwb.len() / out);
                let mut acc = vec![T::ZERO; out * n];
                simd(
                    #[inline(always)]
                    || {
                        for (xr, gr) in x.chunks_exact(inp).zip(d.chunks_exact(out)) {
                            let xs = &xr[k0..k0 + n];
                            for (&g, ar) in gr.iter().zip(acc.chunks_exact_mut(n)) {
                                for (a, &xv) in ar.iter_mut().zip(xs) {
                                    *a += xv * g;
                                }
                            }
                        }
                    },
                );
                for (kk, dwr) in dwb.chunks_exact_mut(out).enumerate() {
                    for (j, dw) in dwr.iter_mut().enumerate() {
                        *dw += acc[j * n + kk];
                    }
                }
            });
        }
        for gr in d.chunks_exact(out) {
            for (db, &g) in db[0].iter_mut().zip(gr) {
                *db += g;
            }
        }
        if io.first {
            keep_spare(&mut self.spare, dy);
            return Ok(Vec::new());
        }
        // dX[i, :] = sum over outputs o in order of g[i, o] Wᵀ[o, :] (the lanes across k).
        let w = &params[0];
        let mut wt = vec![T::ZERO; out * inp];
        for (k, wr) in w.chunks_exact(out).enumerate() {
            for (j, &v) in wr.iter().enumerate() {
                wt[j * inp + k] = v;
            }
        }
        let mut dx = zeroed(&mut self.spare, rows * inp);
        rows_of(&mut dx, inp, parallel, |i, dxr| {
            let gr = &d[i * out..(i + 1) * out];
            simd(
                #[inline(always)]
                || {
                    for (&g, wtr) in gr.iter().zip(wt.chunks_exact(inp)) {
                        for (dx, &wv) in dxr.iter_mut().zip(wtr) {
                            *dx += g * wv;
                        }
                    }
                },
            )
        });
        keep_spare(&mut self.spare, dy);
        Ok(dx)
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer<T>> {
        Box::new(self.clone())
    }
}
