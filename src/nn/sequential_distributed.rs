//! Data-parallel training: every rank holds the model (same seed, same weights) and the data,
//! takes its share of every global batch (the same shuffle everywhere), runs forward and
//! backward on its own device with each batch-norm layer synchronized across ranks (the
//! statistics of the whole global batch), scales its loss by the global batch, and the ranks
//! sum their gradients in rank order before the same optimizer step: the weights stay
//! identical on every rank and follow single-process training on the same global batches.
//! Batch norm's own gradients are already the whole batch's (the synchronized backward
//! exchanged them) and are not summed again. Dropout masks are drawn per rank.

use crate::collective::Collective;
use crate::exchange::Exchange;
use crate::nn::contract;
use crate::nn::data::Dataset;
use crate::nn::error::{Error, Result};
use crate::nn::gpu_data::GpuData;
use crate::nn::loss::{BATCH_LOSSES, EVAL_METRICS};
use crate::nn::sequential::Sequential;
use crate::nn::spec::{run_epochs, EpochFn, EpochMetrics, FitOptions, History};
use crate::sync_batchnorm::{sync_backward, sync_forward};
use crate::{Mode, TensorRef};

/// The exchanges of one `fit_distributed` call.
type Ranks<'a, 'c> = Exchange<'a, dyn Collective + 'c>;

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
    ///
    /// It cannot leave a rank waiting: before any exchange of values the ranks agree on the
    /// contract (options, network, parameter layout, weights, data, device kind; see
    /// `nn/contract.rs`), and on a difference every rank returns the same
    /// [`crate::Error::RanksDisagree`]; after that, a rank that fails (an allocation, a GPU
    /// error) takes part in the next exchange as failed, and every rank returns an error.
    pub fn fit_distributed(
        &mut self,
        train: &Dataset,
        options: &FitOptions,
        validation: Option<&Dataset>,
        comm: &mut dyn Collective,
    ) -> Result<History> {
        let mut ex: Ranks<'_, '_> = Exchange::new(comm);
        let fields = options
            .validate()
            .and_then(|()| options.check_history(train.rows()))
            .and_then(|()| contract::fields(self, train, options, validation));
        ex.agree(fields)?;
        // Every rank has the same options, rows and ranks now: this refusal is everyone's.
        let ranks = ex.ranks();
        let rows = train.rows();
        let b = options.batch_size;
        let last = rows - (rows.div_ceil(b).max(1) - 1) * b;
        if b.min(last) < ranks {
            return Err(Error::Model(format!(
                "data-parallel training over {ranks} ranks needs at least one row per rank in every batch; batches of {b} rows over {rows} rows end with one of {last}"
            )));
        }
        // This rank's own allocations; a failure reaches the others at once.
        let setup = self.upload(train, true).and_then(|data| {
            let val = validation.map(|v| self.upload(v, false)).transpose()?;
            self.reserve_batch_losses(rows.div_ceil(b))?;
            Ok((data, val))
        });
        let (data, val) = match setup {
            Ok(s) => {
                ex.gather(Ok::<_, Error>(Vec::new()))?;
                s
            }
            Err(e) => return Err(ex.fail(e)),
        };
        // Fresh plans: their loss normalizers are set per step here and must not outlive fit.
        self.forget_plans();
        let history = run_epochs(
            self,
            options,
            rows,
            |model, order, _epoch, _callbacks| {
                // Whatever fails on this rank during the epoch reaches the others at the
                // latest in the epoch's last exchange (the metrics), which every rank reaches
                // unless an exchange has already failed everywhere.
                let local = model.distributed_epoch(&data, val.as_ref(), order, b, &mut ex);
                match local {
                    Err(e) if ex.settled() => Err(e),
                    local => model.distributed_metrics(local, val.is_some(), &mut ex),
                }
            },
            &mut EpochFn(|_, _: &History| {}),
        );
        self.forget_plans();
        history
    }

    /// One epoch's steps on this rank, in `order`; returns this rank's metrics to exchange
    /// (see [`Sequential::distributed_metrics`]).
    fn distributed_epoch(
        &mut self,
        data: &GpuData,
        val: Option<&GpuData>,
        order: &[u32],
        b: usize,
        ex: &mut Ranks<'_, '_>,
    ) -> Result<Vec<f64>> {
        let (rank, ranks) = (ex.rank(), ex.ranks());
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
        self.ctx
            .write(&data.order, 0, bytemuck::cast_slice(&local))?;
        for (i, shard) in shards.iter().enumerate() {
            self.distributed_step(data, *shard, i == 0, ex)?;
        }
        if let Some(v) = val {
            self.run_inference(v, None)?;
        }
        let floats = (BATCH_LOSSES / 4) as usize + shards.len();
        let m = self.ctx.read_f32(&self.metrics, 0, floats)?;
        let e = (EVAL_METRICS / 4) as usize;
        // [training loss, correct, rows | validation loss, correct, rows | each batch's loss]
        let mut metrics: Vec<f64> = m[..3].iter().map(|&v| v as f64).collect();
        metrics.extend(m[e..e + 3].iter().map(|&v| v as f64));
        metrics.extend(m[(BATCH_LOSSES / 4) as usize..].iter().map(|&v| v as f64));
        Ok(metrics)
    }

    /// One step on this rank's shard: gather, forward (each batch-norm layer synchronized),
    /// the loss over the global batch's rows, backward (likewise), the gradients summed
    /// across ranks, the optimizer. A submit at every synchronization point.
    fn distributed_step(
        &mut self,
        data: &GpuData,
        shard: Shard,
        first: bool,
        ex: &mut Ranks<'_, '_>,
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
                        sync_forward(&ctx, bn, ex, tensors, Mode::Training)?;
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
                        sync_backward(bn, ex, Some((t(io.input), t(io.d_output), t(io.d_input))))?;
                    }
                    None => layer.backward(&ctx, &mut enc, &io)?,
                }
            }
        }
        ctx.submit(enc)?;
        self.sum_gradients(&synchronized, ex)?;
        let mut enc = new_encoder();
        self.optimizer.encode(&ctx, &mut enc);
        ctx.submit(enc)?;
        Ok(())
    }

    /// Sums every rank's gradients in rank order (f64), except the synchronized layers',
    /// which are the whole batch's already.
    fn sum_gradients(&mut self, synchronized: &[bool], ex: &mut Ranks<'_, '_>) -> Result<()> {
        // A failure here reaches the others through the epoch's metrics exchange.
        let own = self.ctx.read_f32(&self.grads, 0, self.params_len)?;
        let local: Vec<f64> = own.iter().map(|&v| v as f64).collect();
        let all = ex.gather_equal(Ok::<_, Error>(local))?;
        let mut sum = vec![0.0f64; self.params_len];
        for rank in &all {
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
    /// `local` is this rank's, or its failure, which every rank then returns.
    fn distributed_metrics(
        &self,
        local: Result<Vec<f64>>,
        validation: bool,
        ex: &mut Ranks<'_, '_>,
    ) -> Result<EpochMetrics> {
        let all = ex.gather_equal(local)?;
        let own = &all[ex.rank()];
        let mut sum = vec![0.0f64; own.len()];
        for rank in &all {
            for (s, v) in sum.iter_mut().zip(rank) {
                *s += v;
            }
        }
        let ratio = |a: f64, n: f64| if n > 0.0 { a / n } else { f64::NAN };
        Ok(EpochMetrics {
            loss: ratio(sum[0], sum[2]),
            accuracy: ratio(sum[1], sum[2]),
            batch_loss: sum[6..].to_vec(),
            validation: validation.then(|| (ratio(own[3], own[5]), ratio(own[4], own[5]))),
        })
    }
}
