//! Data-parallel training: every rank holds the model (same seed, same weights) and the data,
//! takes its share of every global batch (the same shuffle everywhere), runs forward and
//! backward on its own device with each batch-norm layer synchronized across ranks (the
//! statistics of the whole global batch), scales its loss by the global batch, and the ranks
//! sum their gradients in rank order before the same optimizer step: the weights stay
//! identical on every rank and follow single-process training on the same global batches.
//! Batch norm's own gradients are already the whole batch's (the synchronized backward
//! exchanged them) and are not summed again. Dropout masks are drawn per rank.

use crate::collective::Collective;
use crate::nn::data::Dataset;
use crate::nn::error::{Error, Result};
use crate::nn::gpu_data::GpuData;
use crate::nn::loss::{BATCH_LOSSES, EVAL_METRICS};
use crate::nn::sequential::Sequential;
use crate::nn::spec::{run_epochs, EpochFn, EpochMetrics, FitOptions, History};
use crate::sync_batchnorm::{sync_backward, sync_forward};
use crate::{Mode, TensorRef};

/// One rank's part of one global batch.
#[derive(Debug, Clone, Copy)]
struct Shard {
    /// First row in this rank's epoch order.
    start: usize,
    rows: usize,
    /// Rows of the global batch.
    global: usize,
}

impl Sequential {
    /// Trains on `train` across the ranks of `comm` (every rank calls it with the same model,
    /// data and options; see the module's documentation). Every global batch must give each
    /// rank at least one row. Validation, when given, runs whole on every rank. Returns the
    /// same history on every rank.
    pub fn fit_distributed(
        &mut self,
        train: &Dataset,
        options: &FitOptions,
        validation: Option<&Dataset>,
        comm: &mut dyn Collective,
    ) -> Result<History> {
        options.validate()?;
        let (rank, ranks) = (comm.rank(), comm.ranks());
        let rows = train.rows();
        let b = options.batch_size;
        let last = rows - (rows.div_ceil(b).max(1) - 1) * b;
        if b.min(last) < ranks {
            return Err(Error::Model(format!(
                "data-parallel training over {ranks} ranks needs at least one row per rank in every batch; batches of {b} rows over {rows} rows end with one of {last}"
            )));
        }
        let data = self.upload(train, true)?;
        let val = validation.map(|v| self.upload(v, false)).transpose()?;
        self.reserve_batch_losses(rows.div_ceil(b))?;
        // Fresh plans: their loss normalizers are set per step here and must not outlive fit.
        self.forget_plans();
        let history = run_epochs(
            self,
            options,
            rows,
            |model, order, _epoch, _callbacks| {
                let mut local = Vec::with_capacity(order.len() / ranks + b);
                let mut shards = Vec::new();
                for batch in order.chunks(b) {
                    let n = batch.len();
                    let (lo, hi) = (n * rank / ranks, n * (rank + 1) / ranks);
                    shards.push(Shard {
                        start: local.len(),
                        rows: hi - lo,
                        global: n,
                    });
                    local.extend_from_slice(&batch[lo..hi]);
                }
                model
                    .ctx
                    .write(&data.order, 0, bytemuck::cast_slice(&local))?;
                for (i, shard) in shards.iter().enumerate() {
                    model.distributed_step(&data, *shard, i == 0, comm)?;
                }
                if let Some(v) = &val {
                    model.run_inference(v, None)?;
                }
                model.distributed_metrics(shards.len(), val.is_some(), comm)
            },
            &mut EpochFn(|_, _: &History| {}),
        );
        self.forget_plans();
        history
    }

    /// One step on this rank's shard: gather, forward (each batch-norm layer synchronized),
    /// the loss over the global batch's rows, backward (likewise), the gradients summed
    /// across ranks, the optimizer. A submit at every synchronization point.
    fn distributed_step(
        &mut self,
        data: &GpuData,
        shard: Shard,
        first: bool,
        comm: &mut dyn Collective,
    ) -> Result<()> {
        let plan = self.plan(shard.rows)?;
        let ctx = self.ctx.clone();
        plan.losses[0].set_normalizer(&ctx, Some(shard.global))?;
        let new_encoder = || ctx.device().create_command_encoder(&Default::default());
        let mut enc = new_encoder();
        if first {
            enc.clear_buffer(&self.metrics, 0, Some(16));
        }
        self.encode_gather(&mut enc, &plan, data, Some(shard.start), 0)?;
        let mut synchronized = vec![false; self.defs.len()];
        {
            let (_, layers, shared) = self.parts();
            for (i, layer) in layers.iter_mut().enumerate() {
                let io = shared.io(&plan, i);
                match layer.synchronized() {
                    Some((bn, positions)) => {
                        synchronized[i] = true;
                        ctx.submit(std::mem::replace(&mut enc, new_encoder()))?;
                        let shape = [io.rows * positions, bn.config().channels];
                        let t = |b| TensorRef::new(b, &shape);
                        let tensors = Some((t(io.input), t(io.output)));
                        sync_forward(&ctx, bn, comm, tensors, Mode::Training)?;
                    }
                    None => layer.forward(&ctx, &mut enc, &io, Mode::Training)?,
                }
            }
            plan.losses[0].encode(&mut enc);
            for (i, layer) in layers.iter_mut().enumerate().rev() {
                let io = shared.io(&plan, i);
                match layer.synchronized() {
                    Some((bn, positions)) => {
                        ctx.submit(std::mem::replace(&mut enc, new_encoder()))?;
                        let shape = [io.rows * positions, bn.config().channels];
                        let t = |b| TensorRef::new(b, &shape);
                        sync_backward(
                            bn,
                            comm,
                            Some((t(io.input), t(io.d_output), t(io.d_input))),
                        )?;
                    }
                    None => layer.backward(&ctx, &mut enc, &io)?,
                }
            }
        }
        ctx.submit(enc)?;
        self.sum_gradients(&synchronized, comm)?;
        let mut enc = new_encoder();
        self.optimizer.encode(&ctx, &mut enc);
        ctx.submit(enc)?;
        Ok(())
    }

    /// Sums every rank's gradients in rank order (f64), except the synchronized layers',
    /// which are the whole batch's already.
    fn sum_gradients(&mut self, synchronized: &[bool], comm: &mut dyn Collective) -> Result<()> {
        let own = self.ctx.read_f32(&self.grads, 0, self.params_len)?;
        let local: Vec<f64> = own.iter().map(|&v| v as f64).collect();
        let all = comm.all_gather(&local)?;
        let mut sum = vec![0.0f64; self.params_len];
        for rank in all.chunks_exact(self.params_len.max(1)) {
            for (s, v) in sum.iter_mut().zip(rank) {
                *s += v;
            }
        }
        let mut out: Vec<f32> = sum.iter().map(|&v| v as f32).collect();
        for (i, d) in self.defs.iter().enumerate() {
            if synchronized[i] {
                let region = self.at[i]..self.at[i] + d.region_len();
                out[region.clone()].copy_from_slice(&own[region]);
            }
        }
        self.ctx.write(&self.grads, 0, bytemuck::cast_slice(&out))?;
        Ok(())
    }

    /// The epoch's training metrics summed over ranks (loss, correct, rows; each batch's
    /// loss), and this rank's validation metrics (every rank validates on the whole set).
    fn distributed_metrics(
        &self,
        batches: usize,
        validation: bool,
        comm: &mut dyn Collective,
    ) -> Result<EpochMetrics> {
        let floats = (BATCH_LOSSES / 4) as usize + batches;
        let m = self.ctx.read_f32(&self.metrics, 0, floats)?;
        let mut local: Vec<f64> = m[..3].iter().map(|&v| v as f64).collect();
        local.extend(m[(BATCH_LOSSES / 4) as usize..].iter().map(|&v| v as f64));
        let all = comm.all_gather(&local)?;
        let mut sum = vec![0.0f64; local.len()];
        for rank in all.chunks_exact(local.len()) {
            for (s, v) in sum.iter_mut().zip(rank) {
                *s += v;
            }
        }
        let e = (EVAL_METRICS / 4) as usize;
        let ratio = |a: f64, n: f64| if n > 0.0 { a / n } else { f64::NAN };
        Ok(EpochMetrics {
            loss: ratio(sum[0], sum[2]),
            accuracy: ratio(sum[1], sum[2]),
            batch_loss: sum[3..].to_vec(),
            validation: validation.then(|| {
                (
                    ratio(m[e] as f64, m[e + 2] as f64),
                    ratio(m[e + 1] as f64, m[e + 2] as f64),
                )
            }),
        })
    }
}
