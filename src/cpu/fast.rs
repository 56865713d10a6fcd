//! The fast CPU path: f32 data, multi-threaded (rayon), loops the compiler vectorizes, and
//! cache blocking where the layout allows it.
//!
//! Statistics: each short block (128 rows, or 4096 values of a plane) is summed in f32 lanes,
//! shifted by the mean so far, and merged with Chan's formula in f64. When that shift would
//! cancel (the block's mean farther from it than its spread: an outlier first sample,
//! drifting data) the block is summed again around its own mean while it sits in cache, so
//! the result stays within f32 round-off of float64 whatever the data. Channels-first tensors are processed one channel at a time: that channel's planes
//! (N × H·W values) stay in L2 between the statistics and the normalize pass, so DRAM sees x
//! once. Channels-last tensors need all rows before any can be normalized: two sweeps.

use rayon::prelude::*;

use super::LayerState;
use crate::config::{BatchNormConfig, Mode};
use crate::error::{Error, Result};
use crate::geometry::Geometry;

/// Rows of a channels-last block summed in f32 before a Chan merge in f64.
const ROW_BLOCK: usize = 128;
/// Rows whose mean is the pivot of a task's first block.
const PIVOT_ROWS: usize = 16;
/// Tensors up to this many elements run on the calling thread: waking the thread pool costs
/// more than the work.
const SEQUENTIAL_MAX: usize = 1 << 16;
/// Lanes of the plane kernels: independent accumulators the compiler keeps in SIMD registers.
const LANES: usize = 16;
/// Values of a plane summed in f32 lanes before the sums move to f64.
const PLANE_BLOCK: usize = 4096;

/// Runs `f` compiled for AVX2 and FMA where the CPU has them (the kernels below are inlined
/// into it; PyTorch dispatches its CPU kernels the same way), else for the build's baseline.
/// The kernels' sums run in the same order either way (Rust never contracts a * b + c into
/// an FMA): the results are the same bits on every x86 CPU.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has both features, checked just above.
        return unsafe { avx2(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// (count, mean, M2) in f64: the fast path's blocks, and the ranks of a synchronized batch
/// norm (`crate::batchnorm::sync`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Moments {
    pub n: f64,
    pub mean: f64,
    pub m2: f64,
}

impl Moments {
    /// From sums of `d = x - pivot` and `d²` over `n` values.
    fn from_shifted(n: usize, s: f64, q: f64, pivot: f64) -> Self {
        let n = n as f64;
        let mean_d = s / n;
        let m2 = q - s * mean_d;
        Moments {
            n,
            mean: pivot + mean_d,
            // Clamp round-off below 0; NaN stays NaN.
            m2: if m2 < 0.0 { 0.0 } else { m2 },
        }
    }

    /// (mean, biased variance in f32) under the engine's non-finite rule.
    fn mean_var(&self) -> (f64, f32) {
        // Squared deviations summing past f32's range overflow on the GPU too.
        let (mean, var) = super::finite_or_nan(self.mean, self.m2, self.n);
        (mean, var as f32)
    }

    /// Chan's merge; exact when either side is empty (the other comes back unchanged).
    pub(crate) fn merge(self, o: Moments) -> Moments {
        if o.n == 0.0 {
            return self;
        }
        if self.n == 0.0 {
            return o;
        }
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        Moments {
            n,
            mean: self.mean + d * o.n / n,
            m2: self.m2 + o.m2 + d * d * self.n * o.n / n,
        }
    }
}

/// Sum of `v - pivot` and of its square over a contiguous slice, in `LANES` f32 lanes.
#[inline(always)]
fn plane_sums(v: &[f32], pivot: f32) -> (f64, f64) {
    let mut s = [0.0f32; LANES];
    let mut q = [0.0f32; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for ch in &mut chunks {
        for l in 0..LANES {
            let d = ch[l] - pivot;
            s[l] += d;
            q[l] += d * d;
        }
    }
    let (mut st, mut qt) = (0.0f64, 0.0f64);
    for l in 0..LANES {
        st += s[l] as f64;
        qt += q[l] as f64;
    }
    for &x in chunks.remainder() {
        let d = (x - pivot) as f64;
        st += d;
        qt += d * d;
    }
    (st, qt)
}

/// Whether sums shifted by a pivot lose digits: when the block's mean is farther from the
/// pivot than its spread (mean_d² > var, i.e. q > 2 M2), `q - s²/n` cancels. The block is
/// then summed again around its own mean, while it is still in cache.
#[inline]
fn cancels(n: usize, s: f64, q: f64) -> bool {
    s * s / n as f64 > 0.5 * q
}

/// Moments of one short block: one pass shifted by `pivot` (the mean so far), a second
/// around the block's own mean only when the first would cancel (an outlier pivot, drifting
/// data).
fn block_moments(v: &[f32], pivot: f32) -> Moments {
    let (s, q) = simd(
        #[inline(always)]
        || plane_sums(v, pivot),
    );
    if !cancels(v.len(), s, q) {
        return Moments::from_shifted(v.len(), s, q, pivot as f64);
    }
    let pivot = (pivot as f64 + s / v.len() as f64) as f32;
    let (s, q) = simd(
        #[inline(always)]
        || plane_sums(v, pivot),
    );
    Moments::from_shifted(v.len(), s, q, pivot as f64)
}

/// The pivot of the next block: the mean so far, or the block's first value.
#[inline]
fn next_pivot(acc: &Moments, first: f32) -> f32 {
    if acc.n > 0.0 && acc.mean.is_finite() {
        acc.mean as f32
    } else {
        first
    }
}

/// The moments of every channel of channels-last rows, as columns: every channel of a block
/// has the same count, so a block's merge is a few vector operations over the channels
/// (Chan's merge with scalar weights) rather than one division-heavy merge per channel.
struct Columns {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Columns {
    fn new(c: usize) -> Self {
        Columns {
            n: 0.0,
            mean: vec![0.0; c],
            m2: vec![0.0; c],
        }
    }

    /// Merges a block of `nb` rows from its sums of `d = x - pivot` and `d²` per channel.
    fn add_block(&mut self, nb: usize, s: &[f32], q: &[f32], pivot: &[f32]) {
        let nbf = nb as f64;
        let n = self.n + nbf;
        // The block's share of the merged count, and Chan's d² weight; with nothing merged
        // yet (self.n = 0) the block comes in exactly: weight 1, no cross term.
        let (w, k) = (nbf / n, self.n * nbf / n);
        let inv = 1.0 / nbf;
        let cols = self.mean.iter_mut().zip(self.m2.iter_mut());
        for ((((mean, m2), &s), &q), &p) in cols.zip(s).zip(q).zip(pivot) {
            let (s, q) = (s as f64, q as f64);
            let mean_d = s * inv;
            let bm2 = q - s * mean_d;
            // Clamp round-off below 0; NaN stays NaN.
            let bm2 = if bm2 < 0.0 { 0.0 } else { bm2 };
            let bmean = p as f64 + mean_d;
            if self.n == 0.0 {
                (*mean, *m2) = (bmean, bm2);
            } else {
                let d = bmean - *mean;
                *mean += d * w;
                *m2 += bm2 + d * d * k;
            }
        }
        self.n = n;
    }

    fn into_moments(self) -> Vec<Moments> {
        let n = self.n;
        self.mean
            .into_iter()
            .zip(self.m2)
            .map(|(mean, m2)| Moments { n, mean, m2 })
            .collect()
    }
}

/// Per-channel mean and biased variance of a channels-last `[rows, c]` tensor.
fn rows_moments(x: &[f32], c: usize) -> Vec<Moments> {
    let rows = x.len() / c;
    // Two tasks per thread: enough to balance, few enough that merging them stays cheap.
    let per_task = rows
        .div_ceil(rayon::current_num_threads() * 2)
        .max(ROW_BLOCK);
    let task = |task: &[f32]| {
        let mut acc = Columns::new(c);
        let mut s = vec![0.0f32; c];
        let mut q = vec![0.0f32; c];
        let mut pivot = vec![0.0f32; c];
        let sums = |block: &[f32], pivot: &[f32], s: &mut [f32], q: &mut [f32]| {
            s.fill(0.0);
            q.fill(0.0);
            for row in block.chunks_exact(c) {
                for (((s, q), &v), &p) in s.iter_mut().zip(q.iter_mut()).zip(row).zip(pivot) {
                    let d = v - p;
                    *s += d;
                    *q += d * d;
                }
            }
        };
        for block in task.chunks(ROW_BLOCK * c) {
            let nb = block.len() / c;
            // The pivot: the mean so far, or for a task's first block the mean of its first
            // rows (a single first value is more than one spread from the mean for a third
            // of the channels of normal data, and any of them sends the block through the
            // second pass).
            if acc.n == 0.0 {
                let head = nb.min(PIVOT_ROWS);
                pivot.fill(0.0);
                for row in block[..head * c].chunks_exact(c) {
                    for (p, &v) in pivot.iter_mut().zip(row) {
                        *p += v;
                    }
                }
                for (p, &first) in pivot.iter_mut().zip(block) {
                    *p = if p.is_finite() {
                        *p / head as f32
                    } else {
                        first
                    };
                }
            } else {
                for ((p, &m), &first) in pivot.iter_mut().zip(&acc.mean).zip(block) {
                    *p = if m.is_finite() { m as f32 } else { first };
                }
            }
            simd(
                #[inline(always)]
                || sums(block, &pivot, &mut s, &mut q),
            );
            if s.iter()
                .zip(&q)
                .any(|(&s, &q)| cancels(nb, s as f64, q as f64))
            {
                for (p, &s) in pivot.iter_mut().zip(&s) {
                    *p = (*p as f64 + s as f64 / nb as f64) as f32;
                }
                simd(
                    #[inline(always)]
                    || sums(block, &pivot, &mut s, &mut q),
                );
            }
            acc.add_block(nb, &s, &q, &pivot);
        }
        acc.into_moments()
    };
    if x.len() <= SEQUENTIAL_MAX {
        return task(x);
    }
    x.par_chunks(per_task * c).map(task).reduce(
        || vec![Moments::default(); c],
        |a, b| a.iter().zip(&b).map(|(a, b)| a.merge(*b)).collect(),
    )
}

/// Moments of one channel of a channels-first tensor from its planes.
fn planes_moments(planes: &[&[f32]]) -> Moments {
    let mut acc = Moments::default();
    for plane in planes {
        for block in plane.chunks(PLANE_BLOCK) {
            acc = acc.merge(block_moments(block, next_pivot(&acc, block[0])));
        }
    }
    acc
}

/// Per-channel `y = (x - p) * a + b`: subtracting the pivot `p` (the mean rounded to f32, or
/// the running mean) first keeps y exact when the mean dwarfs the spread.
#[derive(Debug, Clone, Default)]
struct Fold {
    p: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
}

#[inline(always)]
fn affine_row(x: &[f32], y: &mut [f32], f: &Fold, relu: bool) {
    let it = y.iter_mut().zip(x).zip(&f.p).zip(&f.a).zip(&f.b);
    if relu {
        for ((((y, &x), &p), &a), &b) in it {
            let v = (x - p) * a + b;
            *y = if v < 0.0 { 0.0 } else { v };
        }
    } else {
        for ((((y, &x), &p), &a), &b) in it {
            *y = (x - p) * a + b;
        }
    }
}

#[inline(always)]
fn affine_plane(x: &[f32], y: &mut [f32], (p, a, b): (f32, f32, f32), relu: bool) {
    if relu {
        for (y, &x) in y.iter_mut().zip(x) {
            let v = (x - p) * a + b;
            *y = if v < 0.0 { 0.0 } else { v };
        }
    } else {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = (x - p) * a + b;
        }
    }
}

/// Per-channel coefficients of dx = k*dy + kb*(x - p) + kc.
#[derive(Debug, Default)]
struct Coeffs {
    k: Vec<f32>,
    kb: Vec<f32>,
    kc: Vec<f32>,
}

/// dy masked by the fused ReLU: zero where y = (x - p)*a + b is not positive.
#[inline(always)]
fn masked<const RELU: bool>(x: f32, d: f32, p: f32, a: f32, b: f32) -> f32 {
    if RELU && (x - p) * a + b <= 0.0 {
        0.0
    } else {
        d
    }
}

/// One channels-last row of the backward reduction: sums of dy and dy * (x - mean).
#[inline(always)]
fn reduce_row<const RELU: bool>(
    x: &[f32],
    dy: &[f32],
    f: &Fold,
    r: &[f32],
    s: &mut [f32],
    q: &mut [f32],
) {
    let it = x
        .iter()
        .zip(dy)
        .zip(&f.p)
        .zip(&f.a)
        .zip(&f.b)
        .zip(r)
        .zip(s.iter_mut())
        .zip(q.iter_mut());
    for (((((((&x, &d), &p), &a), &b), &r), s), q) in it {
        let d = masked::<RELU>(x, d, p, a, b);
        *s += d;
        *q += d * ((x - p) - r);
    }
}

/// One channels-last row of dx.
#[inline(always)]
fn dx_row<const RELU: bool>(x: &[f32], dy: &[f32], dx: &mut [f32], f: &Fold, co: &Coeffs) {
    let it = x
        .iter()
        .zip(dy)
        .zip(&f.p)
        .zip(&f.a)
        .zip(&f.b)
        .zip(&co.k)
        .zip(&co.kb)
        .zip(&co.kc)
        .zip(dx.iter_mut());
    for ((((((((&x, &d), &p), &a), &b), &k), &kb), &kc), o) in it {
        let d = masked::<RELU>(x, d, p, a, b);
        *o = k * d + kb * (x - p) + kc;
    }
}

/// Rows of a channels-last task in the elementwise sweeps (~32 KiB of x).
fn task_rows(c: usize) -> usize {
    (8192 / c).max(1)
}

/// `y = (x - p) * a + b` per channel (+ReLU), parallel over rows or planes.
fn apply(x: &[f32], y: &mut [f32], g: &Geometry, f: &Fold, relu: bool) {
    let small = x.len() <= SEQUENTIAL_MAX;
    if g.inner == 1 {
        let chunk = task_rows(g.channels) * g.channels;
        let rows = |(yt, xt): (&mut [f32], &[f32])| {
            for (yr, xr) in yt
                .chunks_exact_mut(g.channels)
                .zip(xt.chunks_exact(g.channels))
            {
                simd(
                    #[inline(always)]
                    || affine_row(xr, yr, f, relu),
                );
            }
        };
        if small {
            rows((y, x));
        } else {
            y.par_chunks_mut(chunk)
                .zip(x.par_chunks(chunk))
                .for_each(rows);
        }
    } else {
        let plane = |(i, (yp, xp)): (usize, (&mut [f32], &[f32]))| {
            let c = i % g.channels;
            simd(
                #[inline(always)]
                || affine_plane(xp, yp, (f.p[c], f.a[c], f.b[c]), relu),
            );
        };
        if small {
            y.chunks_mut(g.inner)
                .zip(x.chunks(g.inner))
                .enumerate()
                .for_each(plane);
        } else {
            y.par_chunks_mut(g.inner)
                .zip(x.par_chunks(g.inner))
                .enumerate()
                .for_each(plane);
        }
    }
}

/// Splits a channels-first tensor into its planes, grouped by channel.
fn planes_by_channel<'a>(x: &'a [f32], g: &Geometry) -> Vec<Vec<&'a [f32]>> {
    let mut by = vec![Vec::with_capacity(g.outer); g.channels];
    for (i, p) in x.chunks_exact(g.inner).enumerate() {
        by[i % g.channels].push(p);
    }
    by
}

fn planes_by_channel_mut<'a>(y: &'a mut [f32], g: &Geometry) -> Vec<Vec<&'a mut [f32]>> {
    let mut by: Vec<Vec<&mut [f32]>> = (0..g.channels)
        .map(|_| Vec::with_capacity(g.outer))
        .collect();
    for (i, p) in y.chunks_exact_mut(g.inner).enumerate() {
        by[i % g.channels].push(p);
    }
    by
}

/// What a forward pass used, per channel.
#[derive(Debug, Clone)]
struct Saved {
    mode: Mode,
    shape: Vec<usize>,
    mean: Vec<f64>,
    var: Vec<f32>,
    inv_std: Vec<f32>,
}

/// The fast CPU twin of [`BatchNorm`](crate::BatchNorm): same semantics, f32 arithmetic.
#[derive(Debug, Clone)]
pub struct FastCpuBatchNorm {
    /// Configuration, parameters and running statistics.
    pub(crate) state: LayerState,
    /// dgamma of the last backward pass.
    pub dgamma: Vec<f32>,
    /// dbeta of the last backward pass.
    pub dbeta: Vec<f32>,
    saved: Option<Saved>,
}

impl FastCpuBatchNorm {
    /// Builds the layer with the framework initial values.
    pub fn new(config: BatchNormConfig) -> Result<Self> {
        let c = config.channels;
        Ok(Self {
            state: LayerState::new(config)?,
            dgamma: vec![0.0; c],
            dbeta: vec![0.0; c],
            saved: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BatchNormConfig {
        self.state.config()
    }

    /// Mean and biased variance the last forward pass used.
    pub fn last_stats(&self) -> Option<(&[f64], &[f32])> {
        self.saved.as_ref().map(|s| (&s.mean[..], &s.var[..]))
    }

    /// (pivot, scale, shift) of channel c for a mean (f64) and variance.
    fn fold_of(&self, c: usize, mean: f64, var: f32) -> (f32, f32, f32) {
        let p = mean as f32;
        let st = &self.state;
        let a = st.gamma_of(c) / (var + st.config().epsilon).sqrt();
        (
            p,
            a,
            (st.beta_of(c) as f64 - (mean - p as f64) * a as f64) as f32,
        )
    }

    fn fold(&self, mean: &[f64], var: &[f32]) -> Fold {
        let mut f = Fold::default();
        for c in 0..self.state.config().channels {
            let (p, a, b) = self.fold_of(c, mean[c], var[c]);
            f.p.push(p);
            f.a.push(a);
            f.b.push(b);
        }
        f
    }

    /// Forward pass into `y` (same length as `x`).
    pub fn forward_into(
        &mut self,
        x: &[f32],
        shape: &[usize],
        mode: Mode,
        y: &mut [f32],
    ) -> Result<()> {
        let (g, mode) = self.state.begin_forward(x, shape, mode)?;
        if y.len() != x.len() {
            return Err(Error::LengthMismatch {
                what: "y",
                expected: x.len(),
                got: y.len(),
            });
        }
        let n = g.per_channel();
        let eps = self.state.config().epsilon;
        let relu = self.state.config().relu;
        let (mean, var) = match mode {
            Mode::Inference => {
                let mean: Vec<f64> = self
                    .state
                    .running_mean()
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let var = self.state.running_var().to_vec();
                apply(x, y, &g, &self.fold(&mean, &var), relu);
                (mean, var)
            }
            Mode::Training if g.inner == 1 => {
                let (mean, var): (Vec<f64>, Vec<f32>) = rows_moments(x, g.channels)
                    .iter()
                    .map(Moments::mean_var)
                    .unzip();
                apply(x, y, &g, &self.fold(&mean, &var), relu);
                (mean, var)
            }
            Mode::Training => {
                // One channel at a time: its planes stay in cache from statistics to output.
                let xs = planes_by_channel(x, &g);
                let ys = planes_by_channel_mut(y, &g);
                #[allow(clippy::type_complexity)]
                let channel = |(c, (xp, mut yp)): (usize, (&Vec<&[f32]>, Vec<&mut [f32]>))| {
                    let (mean, var) = planes_moments(xp).mean_var();
                    let fold = self.fold_of(c, mean, var);
                    for (xv, yv) in xp.iter().zip(yp.iter_mut()) {
                        simd(
                            #[inline(always)]
                            || affine_plane(xv, yv, fold, relu),
                        );
                    }
                    (mean, var)
                };
                let stats: Vec<(f64, f32)> = if x.len() <= SEQUENTIAL_MAX {
                    xs.iter().zip(ys).enumerate().map(channel).collect()
                } else {
                    xs.par_iter()
                        .zip(ys.into_par_iter())
                        .enumerate()
                        .map(channel)
                        .collect()
                };
                stats.into_iter().unzip()
            }
        };
        if mode == Mode::Training {
            let v64: Vec<f64> = var.iter().map(|&v| v as f64).collect();
            self.state.record_training(&mean, &v64, n);
        }
        let inv_std = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        self.saved = Some(Saved {
            mode,
            shape: shape.to_vec(),
            mean,
            var,
            inv_std,
        });
        Ok(())
    }

    /// Forward pass returning `y`.
    pub fn forward(&mut self, x: &[f32], shape: &[usize], mode: Mode) -> Result<Vec<f32>> {
        let mut y = vec![0.0; x.len()];
        self.forward_into(x, shape, mode, &mut y)?;
        Ok(y)
    }

    /// Backward pass of the last forward (whose input was `x`) into `dx`; dgamma and dbeta
    /// land in the public fields.
    pub fn backward_into(
        &mut self,
        x: &[f32],
        dy: &[f32],
        shape: &[usize],
        dx: &mut [f32],
    ) -> Result<()> {
        let saved = self.saved.clone().ok_or(Error::BackwardBeforeForward)?;
        if shape != saved.shape.as_slice() {
            return Err(Error::ShapeMismatch {
                what: "x",
                expected: saved.shape,
                got: shape.to_vec(),
            });
        }
        let g = self.state.geometry(x, shape, "x")?;
        self.state.geometry(dy, shape, "dy")?;
        if dx.len() != x.len() {
            return Err(Error::LengthMismatch {
                what: "dx",
                expected: x.len(),
                got: dx.len(),
            });
        }
        let c = g.channels;
        let n = g.per_channel() as f32;
        let fold = self.fold(&saved.mean, &saved.var);
        // x - mean as (x - p) - r: p = mean rounded to f32 (exact subtraction), r the rest.
        let r: Vec<f32> = (0..c)
            .map(|j| (saved.mean[j] - fold.p[j] as f64) as f32)
            .collect();
        let relu = self.state.config().relu;
        let training = saved.mode == Mode::Training;
        let gam: Vec<f32> = (0..c).map(|j| self.state.gamma_of(j)).collect();
        // dx = k*dy + kb*(x - mean) + kc per channel, as on the GPU.
        let coeffs = |j: usize, dbeta: f32, dgamma: f32| {
            let k = gam[j] * saved.inv_std[j];
            if training {
                let kb = -k * dgamma * saved.inv_std[j] / n;
                (k, kb, -k * dbeta / n)
            } else {
                (k, 0.0, 0.0)
            }
        };
        let mask = |xv: f32, j: usize, d: f32| {
            if relu && (xv - fold.p[j]) * fold.a[j] + fold.b[j] <= 0.0 {
                0.0
            } else {
                d
            }
        };
        let mut dgamma = vec![0.0f32; c];
        let mut dbeta = vec![0.0f32; c];
        if g.inner == 1 {
            let per_task = g
                .outer
                .div_ceil(rayon::current_num_threads() * 4)
                .max(ROW_BLOCK);
            let small = x.len() <= SEQUENTIAL_MAX;
            let reduce = |(xt, dt): (&[f32], &[f32])| {
                let mut s = vec![0.0f64; 2 * c];
                let mut bs = vec![0.0f32; c];
                let mut bq = vec![0.0f32; c];
                for (xb, db) in xt.chunks(ROW_BLOCK * c).zip(dt.chunks(ROW_BLOCK * c)) {
                    bs.fill(0.0);
                    bq.fill(0.0);
                    for (xr, dr) in xb.chunks_exact(c).zip(db.chunks_exact(c)) {
                        if relu {
                            simd(
                                #[inline(always)]
                                || reduce_row::<true>(xr, dr, &fold, &r, &mut bs, &mut bq),
                            );
                        } else {
                            simd(
                                #[inline(always)]
                                || reduce_row::<false>(xr, dr, &fold, &r, &mut bs, &mut bq),
                            );
                        }
                    }
                    for j in 0..c {
                        s[j] += bs[j] as f64;
                        s[c + j] += bq[j] as f64;
                    }
                }
                s
            };
            let sums = if small {
                reduce((x, dy))
            } else {
                x.par_chunks(per_task * c)
                    .zip(dy.par_chunks(per_task * c))
                    .map(reduce)
                    .reduce(
                        || vec![0.0f64; 2 * c],
                        |a, b| a.iter().zip(&b).map(|(a, b)| a + b).collect(),
                    )
            };
            for j in 0..c {
                dbeta[j] = sums[j] as f32;
                dgamma[j] = (sums[c + j] * saved.inv_std[j] as f64) as f32;
            }
            let mut co = Coeffs::default();
            for j in 0..c {
                let (k, kb, kc) = coeffs(j, dbeta[j], dgamma[j]);
                co.k.push(k);
                co.kb.push(kb);
                // dx = k*dy + kb*((x - p) - r) + kc = k*dy + kb*(x - p) + (kc - kb*r)
                co.kc.push(kc - kb * r[j]);
            }
            let chunk = task_rows(c) * c;
            let rows = |(dxt, (xt, dt)): (&mut [f32], (&[f32], &[f32]))| {
                for ((dxr, xr), dr) in dxt
                    .chunks_exact_mut(c)
                    .zip(xt.chunks_exact(c))
                    .zip(dt.chunks_exact(c))
                {
                    if relu {
                        simd(
                            #[inline(always)]
                            || dx_row::<true>(xr, dr, dxr, &fold, &co),
                        );
                    } else {
                        simd(
                            #[inline(always)]
                            || dx_row::<false>(xr, dr, dxr, &fold, &co),
                        );
                    }
                }
            };
            if small {
                rows((dx, (x, dy)));
            } else {
                dx.par_chunks_mut(chunk)
                    .zip(x.par_chunks(chunk).zip(dy.par_chunks(chunk)))
                    .for_each(rows);
            }
        } else {
            // Per channel: reduce over its planes, then dx while they are still in cache.
            let xs = planes_by_channel(x, &g);
            let ds = planes_by_channel(dy, &g);
            let outs = planes_by_channel_mut(dx, &g);
            #[allow(clippy::type_complexity)]
            let channel = |(j, ((xp, dp), mut op)): (
                usize,
                ((&Vec<&[f32]>, &Vec<&[f32]>), Vec<&mut [f32]>),
            )| {
                let (p, rj) = (fold.p[j], r[j]);
                let (mut sb, mut sg) = (0.0f64, 0.0f64);
                // Lanes move to f64 every PLANE_BLOCK values: long planes keep f32 sums short.
                for (xplane, dplane) in xp.iter().zip(dp.iter()) {
                    for (xv, dv) in xplane.chunks(PLANE_BLOCK).zip(dplane.chunks(PLANE_BLOCK)) {
                        let (mut a, mut b) = ([0.0f32; LANES], [0.0f32; LANES]);
                        let (xc, dc) = (xv.chunks_exact(LANES), dv.chunks_exact(LANES));
                        let (xr, dr) = (xc.remainder(), dc.remainder());
                        for (xl, dl) in xc.zip(dc) {
                            for l in 0..LANES {
                                let d = mask(xl[l], j, dl[l]);
                                a[l] += d;
                                b[l] += d * ((xl[l] - p) - rj);
                            }
                        }
                        for (&xv, &dv) in xr.iter().zip(dr) {
                            let d = mask(xv, j, dv);
                            sb += d as f64;
                            sg += (d * ((xv - p) - rj)) as f64;
                        }
                        sb += a.iter().map(|&v| v as f64).sum::<f64>();
                        sg += b.iter().map(|&v| v as f64).sum::<f64>();
                    }
                }
                let (db, dg) = (sb as f32, (sg * saved.inv_std[j] as f64) as f32);
                let (k, kb, kc) = coeffs(j, db, dg);
                for ((o, xv), dv) in op.iter_mut().zip(xp.iter()).zip(dp.iter()) {
                    for ((o, &xv), &dv) in o.iter_mut().zip(xv.iter()).zip(dv.iter()) {
                        *o = k * mask(xv, j, dv) + kb * ((xv - p) - rj) + kc;
                    }
                }
                (dg, db)
            };
            let res: Vec<(f32, f32)> = if x.len() <= SEQUENTIAL_MAX {
                xs.iter()
                    .zip(ds.iter())
                    .zip(outs)
                    .enumerate()
                    .map(channel)
                    .collect()
            } else {
                xs.par_iter()
                    .zip(ds.par_iter())
                    .zip(outs.into_par_iter())
                    .enumerate()
                    .map(channel)
                    .collect()
            };
            for (j, (dg, db)) in res.into_iter().enumerate() {
                dgamma[j] = dg;
                dbeta[j] = db;
            }
        }
        self.dgamma = dgamma;
        self.dbeta = dbeta;
        Ok(())
    }

    /// Backward pass returning dx.
    pub fn backward(&mut self, x: &[f32], dy: &[f32], shape: &[usize]) -> Result<Vec<f32>> {
        let mut dx = vec![0.0; x.len()];
        self.backward_into(x, dy, shape, &mut dx)?;
        Ok(dx)
    }
}
