//! Synchronized batch norm: each rank holds a slice of the batch (any number of rows,
//! zero included) on its own device, and every rank normalizes with the statistics of the
//! whole batch, as `torch.nn.SyncBatchNorm` and Keras' `synchronized=True` do.
//!
//! Forward (training): each rank computes its per-channel (count, mean, M2) on its GPU and
//! reads them back; the ranks all-gather them (5 f64 per channel per rank) and every rank
//! merges them with Chan's formula in rank order, in f64, so all hold bit-identical
//! statistics that do not depend on timing; the global count drives the running statistics
//! (and PyTorch's unbiased correction). Backward exchanges the per-channel (Σdy, Σdy·x̂) the
//! same way (4 f64 per channel per rank). Each phase's GPU work is one submit. Every exchange
//! starts with a status header ([`Exchange`]), so a rank that failed makes every rank return
//! an error instead of leaving the others waiting; before its first exchange the ranks agree
//! on the layer's configuration (channels, convention, momentum, epsilon...), so two ranks
//! built differently get the same [`Error::RanksDisagree`] instead of merging mismatched
//! statistics.

use crate::batchnorm::LocalStatistics;
use crate::collective::Collective;
use crate::config::{BatchNormConfig, Mode, SingleSamplePolicy};
use crate::cpu::Moments;
use crate::error::{Error, Result};
use crate::exchange::Exchange;
use crate::tensor::{Tensor, TensorRef};
use crate::{BatchNorm, Context};

/// Bytes one rank sends per channel: forward, backward.
pub const SYNC_FORWARD_BYTES_PER_CHANNEL: usize = 5 * 8;
/// See [`SYNC_FORWARD_BYTES_PER_CHANNEL`].
pub const SYNC_BACKWARD_BYTES_PER_CHANNEL: usize = 4 * 8;

/// A batch-norm layer whose batch statistics span every rank of `comm`.
pub struct SyncBatchNorm<C: Collective> {
    layer: BatchNorm,
    comm: C,
    ctx: Context,
    /// The ranks have agreed on the configuration (before the first exchange).
    agreed: bool,
}

impl<C: Collective> SyncBatchNorm<C> {
    /// The layer on this rank's device; every rank builds it with the same configuration.
    pub fn new(ctx: &Context, config: BatchNormConfig, comm: C) -> Result<Self> {
        Ok(SyncBatchNorm {
            layer: BatchNorm::new(ctx, config)?,
            comm,
            ctx: ctx.clone(),
            agreed: false,
        })
    }

    /// The layer (its parameters, running statistics and gradients: the same on every rank).
    pub fn layer(&self) -> &BatchNorm {
        &self.layer
    }

    /// The layer, to set parameters or freeze it (`set_trainable`).
    pub fn layer_mut(&mut self) -> &mut BatchNorm {
        &mut self.layer
    }

    /// The transport.
    pub fn collective(&self) -> &C {
        &self.comm
    }

    /// Records and runs a synchronized forward of this rank's slice: `Some((x, y))`, or
    /// `None` for a rank with no rows (it still takes part, and its running statistics
    /// advance). Inference uses the running statistics and exchanges nothing.
    pub fn forward(
        &mut self,
        tensors: Option<(TensorRef<'_>, TensorRef<'_>)>,
        mode: Mode,
    ) -> Result<()> {
        let exchanges = self.exchanges(mode);
        let mut ex = Exchange::new(&mut self.comm);
        if exchanges {
            agree_once(&mut ex, &mut self.agreed, self.layer.config())?;
        }
        sync_forward(&self.ctx, &mut self.layer, &mut ex, tensors, mode)
    }

    /// Records and runs a synchronized backward of the last forward: `Some((x, dy, dx))`, or
    /// `None` for a rank with no rows. dgamma and dbeta are the whole batch's, the same on
    /// every rank (a data-parallel optimizer must not sum them again).
    pub fn backward(
        &mut self,
        tensors: Option<(TensorRef<'_>, TensorRef<'_>, TensorRef<'_>)>,
    ) -> Result<()> {
        let mut ex = Exchange::new(&mut self.comm);
        agree_once(&mut ex, &mut self.agreed, self.layer.config())?;
        sync_backward(&mut self.layer, &mut ex, tensors)
    }

    /// Takes part in the current exchange as a rank that failed (so the others return an
    /// error instead of waiting), and returns the failure.
    fn fail<T>(&mut self, e: Error) -> Result<T> {
        Err(Exchange::new(&mut self.comm).fail(e))
    }

    /// Host in, host out: this rank's rows `x` of `shape` (zero rows allowed); returns `y`.
    pub fn forward_host(&mut self, x: &[f32], shape: &[usize], mode: Mode) -> Result<Vec<f32>> {
        if shape.contains(&0) {
            self.forward(None, mode)?;
            return Ok(Vec::new());
        }
        let tensors = Tensor::from_slice(&self.ctx, shape, x)
            .and_then(|xt| Ok((xt, Tensor::zeros(&self.ctx, shape)?)));
        let (xt, y) = match tensors {
            Ok(t) => t,
            Err(e) if self.exchanges(mode) => return self.fail(e),
            Err(e) => return Err(e),
        };
        self.forward(Some((xt.as_ref(), y.as_ref())), mode)?;
        y.to_vec(&self.ctx)
    }

    /// Whether a forward in `mode` exchanges anything (training on a trainable layer).
    fn exchanges(&self, mode: Mode) -> bool {
        mode == Mode::Training && self.layer.trainable()
    }

    /// Host in, host out: `(dx, dgamma, dbeta)` for the last forward, whose input was `x`.
    pub fn backward_host(
        &mut self,
        x: &[f32],
        dy: &[f32],
        shape: &[usize],
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let dx = if shape.contains(&0) {
            self.backward(None)?;
            Vec::new()
        } else {
            let tensors = Tensor::from_slice(&self.ctx, shape, x).and_then(|xt| {
                let dyt = Tensor::from_slice(&self.ctx, shape, dy)?;
                Ok((xt, dyt, Tensor::zeros(&self.ctx, shape)?))
            });
            let (xt, dyt, dx) = match tensors {
                Ok(t) => t,
                Err(e) => return self.fail(e),
            };
            self.backward(Some((xt.as_ref(), dyt.as_ref(), dx.as_ref())))?;
            dx.to_vec(&self.ctx)?
        };
        Ok((dx, self.layer.dgamma()?, self.layer.dbeta()?))
    }
}

/// The ranks' agreement on the configuration, before this layer's first exchange.
fn agree_once<C: Collective + ?Sized>(
    ex: &mut Exchange<'_, C>,
    agreed: &mut bool,
    config: &BatchNormConfig,
) -> Result<()> {
    if !*agreed {
        ex.agree(Ok::<_, Error>(config_fields(config)))?;
        *agreed = true;
    }
    Ok(())
}

/// What two ranks' layers must share before they exchange statistics: every field of the
/// configuration (a Keras layer and a PyTorch one, or 3 channels and 4, would merge
/// mismatched numbers without a word).
pub(crate) fn config_fields(c: &BatchNormConfig) -> Vec<(String, String)> {
    [
        ("channels", c.channels.to_string()),
        ("layout", format!("{:?}", c.layout)),
        ("convention", format!("{:?}", c.convention)),
        ("momentum", format!("{:?}", c.momentum)),
        ("epsilon", format!("{:?}", c.epsilon)),
        ("center", c.center.to_string()),
        ("scale", c.scale.to_string()),
        ("single-sample policy", format!("{:?}", c.single_sample)),
        ("fused ReLU", c.relu.to_string()),
    ]
    .into_iter()
    .map(|(n, v)| (format!("the batch-norm layer's {n}"), v))
    .collect()
}

/// A synchronized forward of `layer` over `comm` (see [`SyncBatchNorm::forward`]).
pub(crate) fn sync_forward<C: Collective + ?Sized>(
    ctx: &Context,
    layer: &mut BatchNorm,
    ex: &mut Exchange<'_, C>,
    tensors: Option<(TensorRef<'_>, TensorRef<'_>)>,
    mode: Mode,
) -> Result<()> {
    let mode = if layer.trainable() {
        mode
    } else {
        Mode::Inference
    };
    if mode == Mode::Inference {
        if let Some((x, y)) = tensors {
            let mut enc = ctx.device().create_command_encoder(&Default::default());
            layer.encode_forward(&mut enc, x, y, mode)?;
            ctx.submit(enc)?;
        }
        return Ok(());
    }
    let c = layer.config().channels;
    let (call, local) = match tensors {
        Some((x, y)) => match layer.sync_statistics(x, y) {
            Ok((call, local)) => (Some(call), Ok(local)),
            Err(e) => (None, Err(e)),
        },
        None => (None, Ok(LocalStatistics::empty(c))),
    };
    let all = ex.gather_equal(local.map(|l| l.pack()))?;
    let global = LocalStatistics::merge_ranks(&all, c);
    let n = global.count.first().copied().unwrap_or(0.0);
    if n == 0.0 {
        return Err(Error::Collective("no rank has any rows".into()));
    }
    if n == 1.0 && layer.config().single_sample == SingleSamplePolicy::Error {
        return Err(Error::SingleSample(vec![1, c]));
    }
    match call {
        Some(call) => layer.sync_normalize(call, &global),
        None => layer.sync_normalize_empty(&global),
    }
}

/// A synchronized backward of `layer` over `comm` (see [`SyncBatchNorm::backward`]).
pub(crate) fn sync_backward<C: Collective + ?Sized>(
    layer: &mut BatchNorm,
    ex: &mut Exchange<'_, C>,
    tensors: Option<(TensorRef<'_>, TensorRef<'_>, TensorRef<'_>)>,
) -> Result<()> {
    let c = layer.config().channels;
    let (call, local) = match tensors {
        Some((x, dy, dx)) => match layer.sync_gradient_sums(x, dy, dx) {
            Ok((call, sums)) => (Some(call), Ok(sums)),
            Err(e) => (None, Err(e)),
        },
        None => (None, Ok(vec![[0.0; 4]; c])),
    };
    let all = ex.gather_equal(local.map(|s| s.concat()))?;
    // Summed in rank order: the same bits on every rank.
    let mut sums = vec![[0.0f64; 4]; c];
    for rank in &all {
        for (s, r) in sums.iter_mut().zip(rank.chunks_exact(4)) {
            for (a, b) in s.iter_mut().zip(r) {
                *a += b;
            }
        }
    }
    match call {
        Some(call) => layer.sync_dx(call, &sums),
        None => layer.sync_gradients_empty(&sums),
    }
}

impl LocalStatistics {
    /// A rank with no rows.
    pub(crate) fn empty(c: usize) -> Self {
        LocalStatistics {
            count: vec![0.0; c],
            mean: vec![0.0; c],
            m2: vec![0.0; c],
            poisoned: vec![false; c],
            pivot: vec![0.0; c],
        }
    }

    /// What a rank sends: per channel (count, mean, M2, poisoned, pivot).
    pub(crate) fn pack(&self) -> Vec<f64> {
        (0..self.count.len())
            .flat_map(|c| {
                [
                    self.count[c],
                    self.mean[c],
                    self.m2[c],
                    if self.poisoned[c] { 1.0 } else { 0.0 },
                    self.pivot[c],
                ]
            })
            .collect()
    }

    /// Every rank's statistics merged in rank order (Chan, f64); the pivot is the first
    /// non-empty rank's.
    pub(crate) fn merge_ranks(all: &[Vec<f64>], c: usize) -> Self {
        let mut g = LocalStatistics::empty(c);
        let mut pivot_set = vec![false; c];
        for rank in all {
            for (ch, v) in rank.chunks_exact(5).enumerate().take(c) {
                let merged = Moments {
                    n: g.count[ch],
                    mean: g.mean[ch],
                    m2: g.m2[ch],
                }
                .merge(Moments {
                    n: v[0],
                    mean: v[1],
                    m2: v[2],
                });
                (g.count[ch], g.mean[ch], g.m2[ch]) = (merged.n, merged.mean, merged.m2);
                g.poisoned[ch] |= v[3] != 0.0 || !v[1].is_finite() || !v[2].is_finite();
                if v[0] > 0.0 && !pivot_set[ch] {
                    g.pivot[ch] = v[4];
                    pivot_set[ch] = true;
                }
            }
        }
        g
    }
}
