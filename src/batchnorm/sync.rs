//! The engine's half of synchronized batch norm (`crate::sync_batchnorm` holds the other): a
//! training forward and a backward cut in two where every rank must see the others'
//! per-channel partials. Phase one records the pivots and split statistics (or the gradient
//! sums) and submits; the rank's partials come back merged in split order in f64; after the
//! exchange, phase two writes the global values where the finalize kernels read them and
//! records finalize and the streaming pass. Always the split path: the fused kernels finish a
//! channel inside one dispatch and leave no point to exchange at.

use super::*;
use crate::cpu::Moments;

/// Per-channel statistics of a batch in f64: a rank's own (what it sends) or the merge of
/// every rank's (what all of them apply). `mean` is absolute; `pivot` is the sample the GPU
/// subtracted before summing (the global one: the first non-empty rank's).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LocalStatistics {
    pub count: Vec<f64>,
    pub mean: Vec<f64>,
    pub m2: Vec<f64>,
    pub poisoned: Vec<bool>,
    pub pivot: Vec<f64>,
}

/// The split path's bind groups of one call (one per chunk); `shared`: an input shares the
/// output's buffer.
struct Split {
    shared: bool,
    groups: Vec<wgpu::BindGroup>,
}

/// A synchronized forward between its phases.
pub(crate) struct SyncForward {
    prep: Arc<Prepared>,
    split: Split,
    shape: Vec<usize>,
    /// The channel states as phase one left them (pivots set).
    state: Vec<f32>,
}

/// A synchronized backward between its phases.
pub(crate) struct SyncBackward {
    prep: Arc<Prepared>,
    split: Split,
}

/// Floats of one `ChannelState` (three vec4: fold, grad, stats); the pivot is the first.
const STATE_FLOATS: usize = (CHANNEL_STATE_BYTES / 4) as usize;

impl BatchNorm {
    /// The split path's groups of one call, whatever its size.
    fn split_groups(
        &mut self,
        g: Geometry,
        [x, aux, out]: [&TensorRef<'_>; 3],
    ) -> Result<(Arc<Prepared>, Split)> {
        let prep = self.prepared(g)?;
        let shared = out.buffer == x.buffer || out.buffer == aux.buffer;
        let layout = &self.kernels.streaming(shared).layout;
        let groups = self.stream_groups(layout, &prep, x, aux, out);
        Ok((prep, Split { shared, groups }))
    }

    fn read_partials(&self, prep: &Prepared) -> Result<Vec<f32>> {
        let c = prep.plan.geometry.channels;
        self.ctx
            .read_f32(&self.partials, 0, prep.plan.total_splits as usize * c * 4)
    }

    /// Phase one of a synchronized training forward: records and submits the pivots and the
    /// split statistics of `x`, and returns this rank's statistics.
    pub(crate) fn sync_statistics(
        &mut self,
        x: TensorRef<'_>,
        y: TensorRef<'_>,
    ) -> Result<(SyncForward, LocalStatistics)> {
        let g = self.check_forward(&x, &y)?;
        let (prep, split) = self.split_groups(g, [&x, &x, &y])?;
        let (shared, chunk_groups) = (&split.shared, &split.groups);
        let mut enc = self
            .ctx
            .device()
            .create_command_encoder(&Default::default());
        {
            let sk = self.kernels.streaming(*shared);
            let max_dim = self.ctx.plan_limits().max_groups_per_dim;
            let channels = ((g.channels as u32).div_ceil(CHANNEL_WORKGROUP), 1);
            let mut pass =
                crate::pipeline::begin_pass(&mut enc, &self.pass_descriptor("bn.sync.stats"));
            record(&mut pass, &sk.pivot, &chunk_groups[0], channels);
            record_chunks(&mut pass, &sk.stats, &prep, chunk_groups, max_dim);
        }
        self.ctx.submit_and_wait(enc)?;
        let partials = self.read_partials(&prep)?;
        let state = self
            .ctx
            .read_f32(&self.state, 0, g.channels * STATE_FLOATS)?;
        let c = g.channels;
        let mut local = LocalStatistics::default();
        for ch in 0..c {
            let pivot = state[ch * STATE_FLOATS] as f64;
            let (mut acc, mut poisoned) = (Moments::default(), false);
            for s in 0..prep.plan.total_splits as usize {
                let p = &partials[(s * c + ch) * 4..][..4];
                let (n, mean, m2) = (p[0] as f64, p[1] as f64, p[2] as f64);
                acc = acc.merge(Moments { n, mean, m2 });
                poisoned |= p[3] > 0.0 || !p[1].is_finite() || !p[2].is_finite();
            }
            local.count.push(acc.n);
            local.mean.push(pivot + acc.mean);
            local.m2.push(acc.m2);
            local.poisoned.push(poisoned);
            local.pivot.push(pivot);
        }
        let call = SyncForward {
            prep,
            split,
            shape: x.shape.to_vec(),
            state,
        };
        Ok((call, local))
    }

    /// Phase two: the global statistics where `finalize_training` reads them (one merged
    /// partial, the global pivot, the global count in the uniform: running statistics and
    /// the unbiased correction use it), then finalize and normalize, submitted.
    pub(crate) fn sync_normalize(
        &mut self,
        call: SyncForward,
        global: &LocalStatistics,
    ) -> Result<()> {
        let SyncForward {
            prep,
            split,
            shape,
            state,
        } = call;
        let kernels = self.kernels.clone();
        let normalize = &kernels.streaming(split.shared).normalize;
        self.finish_statistics(&prep, state, global, Some((normalize, &split.groups)))?;
        self.last = Some(LastForward {
            mode: Mode::Training,
            shape,
        });
        Ok(())
    }

    /// The end of a synchronized training forward on a rank with no rows: the running
    /// statistics and the batch count advance with everyone else's, through the same
    /// finalize kernel (the same arithmetic, so the same bits on the same kind of device).
    pub(crate) fn sync_normalize_empty(&mut self, global: &LocalStatistics) -> Result<()> {
        let c = self.config.channels;
        let g = Geometry::new(&[1, c], self.config.layout, c)?;
        let prep = self.prepared(g)?;
        let state = self.ctx.read_f32(&self.state, 0, c * STATE_FLOATS)?;
        self.finish_statistics(&prep, state, global, None)?;
        // The batch statistics are the global ones, readable as on every other rank.
        self.last = Some(LastForward {
            mode: Mode::Training,
            shape: vec![0, c],
        });
        Ok(())
    }

    /// Writes the global statistics and records finalize (and normalize, when given).
    fn finish_statistics(
        &mut self,
        prep: &Prepared,
        mut state: Vec<f32>,
        global: &LocalStatistics,
        normalize: Option<(&wgpu::ComputePipeline, &[wgpu::BindGroup])>,
    ) -> Result<()> {
        let (c, splits) = (prep.plan.geometry.channels, prep.plan.total_splits as usize);
        let mut partials = vec![0.0f32; splits * c * 4];
        for ch in 0..c {
            let mean_d = global.mean[ch] - global.pivot[ch];
            let poisoned = global.poisoned[ch] || !mean_d.is_finite() || !global.m2[ch].is_finite();
            partials[ch * 4..][..4].copy_from_slice(&[
                global.count[ch] as f32,
                mean_d as f32,
                global.m2[ch] as f32,
                if poisoned { 1.0 } else { 0.0 },
            ]);
            state[ch * STATE_FLOATS] = global.pivot[ch] as f32;
        }
        self.ctx
            .write(&self.partials, 0, bytemuck::cast_slice(&partials))?;
        self.ctx
            .write(&self.state, 0, bytemuck::cast_slice(&state))?;
        let n = global.count.first().copied().unwrap_or(0.0);
        let mut u = prep.uniforms[0];
        u.n = n as f32;
        u.var_correction = self.config.variance_correction(n as usize);
        self.ctx.write(&prep.params[0], 0, bytemuck::bytes_of(&u))?;
        let mut enc = self
            .ctx
            .device()
            .create_command_encoder(&Default::default());
        {
            let max_dim = self.ctx.plan_limits().max_groups_per_dim;
            let channels = ((c as u32).div_ceil(CHANNEL_WORKGROUP), 1);
            let desc = self.pass_descriptor("bn.sync.normalize");
            let mut pass = crate::pipeline::begin_pass(&mut enc, &desc);
            let finalize = &self.kernels.finalize_training;
            record(&mut pass, finalize, &prep.channel_group, channels);
            if let Some((pipeline, groups)) = normalize {
                record_chunks(&mut pass, pipeline, prep, groups, max_dim);
            }
        }
        self.ctx.submit(enc)?;
        self.batches_tracked += 1;
        Ok(())
    }

    /// Phase one of a synchronized backward: records and submits the gradient sums of the
    /// last (synchronized) forward, and returns this rank's per channel (split order, f64).
    pub(crate) fn sync_gradient_sums(
        &mut self,
        x: TensorRef<'_>,
        dy: TensorRef<'_>,
        dx: TensorRef<'_>,
    ) -> Result<(SyncBackward, Vec<[f64; 4]>)> {
        let last = self.last.clone().ok_or(Error::BackwardBeforeForward)?;
        let g = self.check_backward(&last.shape, &x, &dy, &dx)?;
        let (prep, split) = self.split_groups(g, [&x, &dy, &dx])?;
        let (shared, chunk_groups) = (&split.shared, &split.groups);
        let mut enc = self
            .ctx
            .device()
            .create_command_encoder(&Default::default());
        {
            let max_dim = self.ctx.plan_limits().max_groups_per_dim;
            let mut pass =
                crate::pipeline::begin_pass(&mut enc, &self.pass_descriptor("bn.sync.reduce"));
            record_chunks(
                &mut pass,
                &self.kernels.streaming(*shared).reduce,
                &prep,
                chunk_groups,
                max_dim,
            );
        }
        self.ctx.submit_and_wait(enc)?;
        let partials = self.read_partials(&prep)?;
        let c = g.channels;
        let sums = (0..c)
            .map(|ch| {
                let mut acc = [0.0f64; 4];
                for s in 0..prep.plan.total_splits as usize {
                    for (a, &p) in acc.iter_mut().zip(&partials[(s * c + ch) * 4..][..4]) {
                        *a += p as f64;
                    }
                }
                acc
            })
            .collect();
        Ok((SyncBackward { prep, split }, sums))
    }

    /// Phase two of a synchronized backward: the global sums where `finalize_backward` reads
    /// them, then finalize (dgamma, dbeta, the dx coefficients) and dx, submitted.
    pub(crate) fn sync_dx(&mut self, call: SyncBackward, sums: &[[f64; 4]]) -> Result<()> {
        let prep = &call.prep;
        let (c, splits) = (prep.plan.geometry.channels, prep.plan.total_splits as usize);
        let mut partials = vec![0.0f32; splits * c * 4];
        for (ch, s) in sums.iter().enumerate() {
            for (k, v) in s.iter().enumerate() {
                partials[ch * 4 + k] = *v as f32;
            }
        }
        self.ctx
            .write(&self.partials, 0, bytemuck::cast_slice(&partials))?;
        let Split { shared, groups } = &call.split;
        let mut enc = self
            .ctx
            .device()
            .create_command_encoder(&Default::default());
        {
            let k = &self.kernels;
            let max_dim = self.ctx.plan_limits().max_groups_per_dim;
            let channels = ((c as u32).div_ceil(CHANNEL_WORKGROUP), 1);
            let mut pass =
                crate::pipeline::begin_pass(&mut enc, &self.pass_descriptor("bn.sync.dx"));
            record(
                &mut pass,
                &k.finalize_backward,
                &prep.channel_group,
                channels,
            );
            record_chunks(&mut pass, &k.streaming(*shared).dx, prep, groups, max_dim);
        }
        self.ctx.submit(enc)?;
        Ok(())
    }

    /// The end of a synchronized backward on a rank with no rows: dgamma and dbeta are the
    /// global sums, as on every other rank.
    pub(crate) fn sync_gradients_empty(&mut self, sums: &[[f64; 4]]) -> Result<()> {
        let c = self.config.channels;
        let mut grads = vec![0.0f32; 2 * c];
        for (ch, s) in sums.iter().enumerate() {
            grads[ch] = s[1] as f32;
            grads[c + ch] = s[0] as f32;
        }
        self.ctx
            .write(&self.grads, self.grads_at, bytemuck::cast_slice(&grads))
    }
}
