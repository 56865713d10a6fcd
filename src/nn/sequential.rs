//! `Sequential`: a small network trained on the GPU, as a loop over its layers. A training
//! step (gather, forward, loss, backward, optimizer) is recorded into the caller's encoder
//! (`sequential_epoch.rs` submits an epoch's steps in chunks); loss and accuracy accumulate
//! on the GPU and are read back once per epoch. Every parameter lives in
//! one buffer (each layer's region at a 256-byte aligned offset), which the optimizer updates
//! in place: there is no other copy.

use std::collections::HashMap;
use std::sync::Arc;

use crate::nn::batch_plan::{BatchPlan, PlanBuffers, Shared};
use crate::nn::binding_limits;
use crate::nn::data::Dataset;
use crate::nn::error::{Error, Result};
use crate::nn::gather::{DataIo, Gather, Start};
use crate::nn::gpu_data::GpuData;
use crate::nn::layer::{aligned, GpuLayer, LayerDef};
use crate::nn::loss::{BATCH_LOSSES, EVAL_METRICS};
use crate::nn::optimizer::{GpuOptimizer, Optimizer};
use crate::nn::registry::{self, LayerSpec};
use crate::nn::shape::Shape;
use crate::nn::step::{FusedStep, StepModel};

use crate::pipeline::Region;
use crate::{Context, Mode};

/// Largest batch of one evaluation / prediction submit.
const EVAL_ROWS: usize = 1024;
/// Batch sizes whose buffers are kept at once.
const MAX_PLANS: usize = 16;
/// Rows of a Dense layer's GEMM tile: a batch spans at most this many times the device's
/// workgroups per grid dimension.
const ROWS_PER_GROUP: usize = 16;

/// A Keras-style sequential classifier on the GPU.
pub struct Sequential {
    pub(super) ctx: Context,
    pub(super) defs: Vec<Box<dyn LayerDef>>,
    layers: Vec<Box<dyn GpuLayer>>,
    /// Float offset of each layer's region in `params` and `grads`.
    pub(super) at: Vec<usize>,
    input: usize,
    input_shape: Shape,
    pub(super) params_len: usize,
    pub(super) params: wgpu::Buffer,
    pub(super) grads: wgpu::Buffer,
    pub(super) optimizer: GpuOptimizer,
    /// `[training metrics | evaluation metrics | the mean loss of each training batch of the
    /// current epoch]`, at 0, `EVAL_METRICS` and `BATCH_LOSSES`.
    pub(super) metrics: wgpu::Buffer,
    plans: HashMap<usize, Arc<BatchPlan>>,
    /// Gathers by (batch rows, data set, inference).
    gathers: HashMap<(usize, u64, bool), Gather>,
    next_data_id: u64,
    /// The one-workgroup step (`None`: this network or adapter cannot take it).
    fused: Option<FusedStep>,
    fused_on: bool,
}

impl Sequential {
    /// Builds the network for `input` (a number of features, or an NHWC image shape
    /// `[h, w, c]`) with Glorot-uniform kernels drawn from `seed`, zero biases, and BatchNorm
    /// layers at their initial values.
    pub fn new(
        ctx: &Context,
        input: impl Into<Shape>,
        layers: &[LayerSpec],
        seed: u64,
        optimizer: Optimizer,
    ) -> Result<Self> {
        let input = input.into();
        let defs = registry::resolve(input, layers)?;
        optimizer.validate()?;
        ctx.guard("building the model", || {
            Self::build(ctx, input, defs, seed, optimizer)
        })
    }

    fn build(
        ctx: &Context,
        input_shape: Shape,
        defs: Vec<Box<dyn LayerDef>>,
        seed: u64,
        optimizer: Optimizer,
    ) -> Result<Self> {
        let input = input_shape.len();
        let mut at = Vec::with_capacity(defs.len());
        let mut len = Some(0usize);
        for d in &defs {
            at.push(len.unwrap_or(0));
            len = len.and_then(|l| l.checked_add(aligned(d.region_len())));
        }
        // Parameters, gradients and both optimizer moments are each this large, and each is
        // bound whole: checked before any is allocated.
        let what = || {
            let n = len.map_or("too many".into(), |n| n.to_string());
            format!("the parameters ({n} values, with gradients and optimizer state as large)")
        };
        let bytes = binding_limits::floats(ctx, what, len)?;
        let len = len.unwrap_or(0);
        let params = ctx.storage("nn.params", bytes)?;
        let grads = ctx.storage("nn.grads", bytes)?;
        for ((d, &a), (_, ordinal)) in defs.iter().zip(&at).zip(registry::names(&defs)) {
            for p in d.params() {
                let values = p.initial(seed, ordinal);
                ctx.write(
                    &params,
                    (a + p.offset) as u64 * 4,
                    bytemuck::cast_slice(&values),
                )?;
            }
        }
        let layers = defs
            .iter()
            .zip(&at)
            .map(|(d, &a)| d.gpu(ctx, &params, &grads, a))
            .collect::<Result<Vec<_>>>()?;
        let optimizer = GpuOptimizer::new(ctx, optimizer, &params, &grads, len)?;
        let metrics = ctx.storage("nn.metrics", BATCH_LOSSES + 256)?;
        let model = StepModel {
            params: &params,
            grads: &grads,
            optimizer: &optimizer,
            metrics: &metrics,
            params_len: len,
        };
        let fused = FusedStep::new(ctx, model, (input, &defs, &at));
        Ok(Sequential {
            ctx: ctx.clone(),
            defs,
            layers,
            at,
            input,
            input_shape,
            params_len: len,
            params,
            grads,
            optimizer,
            metrics,
            plans: HashMap::new(),
            gathers: HashMap::new(),
            next_data_id: 0,
            fused,
            fused_on: true,
        })
    }

    /// Input features (values per sample).
    pub fn input_features(&self) -> usize {
        self.input
    }

    /// The per-sample input shape.
    pub fn input_shape(&self) -> Shape {
        self.input_shape
    }

    /// Output classes.
    pub fn classes(&self) -> usize {
        self.defs.last().map_or(0, |d| d.output_width())
    }

    /// A Keras-like table of the layers.
    pub fn summary(&self) -> String {
        registry::summary(&self.defs)
    }

    /// The buffers and bind groups of batch size `rows`, built once (guarded: bind groups on a
    /// lost device must not reach a caller's error handler).
    pub(super) fn plan(&mut self, rows: usize) -> Result<Arc<BatchPlan>> {
        if let Some(p) = self.plans.get(&rows) {
            return Ok(p.clone());
        }
        let max_rows = self.ctx.plan_limits().max_groups_per_dim as usize * ROWS_PER_GROUP;
        if rows > max_rows {
            return Err(Error::Model(format!(
                "a batch of {rows} rows exceeds the device's {max_rows}"
            )));
        }
        // Training uses one or two batch sizes; predictions of many sizes must not pile up.
        if self.plans.len() >= MAX_PLANS {
            self.forget_plans();
        }
        let ctx = self.ctx.clone();
        let plan = Arc::new(ctx.guard("building a batch plan", || self.build_plan(rows))?);
        self.plans.insert(rows, plan.clone());
        Ok(plan)
    }

    /// Whether a small network trains in one dispatch per step (`step.rs`; on by default).
    /// Off, every step takes the general path: a dispatch or two per layer. Both give the
    /// same results up to round-off.
    pub fn set_fused_steps(&mut self, on: bool) {
        self.fused_on = on;
    }

    pub(super) fn forget_plans(&mut self) {
        self.plans.clear();
        if let Some(step) = &mut self.fused {
            step.forget_sizes();
        }
        self.gathers.clear();
        for l in &mut self.layers {
            l.forget();
        }
    }

    fn build_plan(&mut self, rows: usize) -> Result<BatchPlan> {
        let plan = BatchPlan::new(
            &self.ctx,
            rows,
            self.input,
            &self.defs,
            PlanBuffers {
                metrics: &self.metrics,
                eval_metrics: EVAL_METRICS,
                batch_losses: BATCH_LOSSES,
                tick: self.optimizer.tick(),
            },
        )?;
        let (ctx, layers, shared) = self.parts();
        for (i, layer) in layers.iter_mut().enumerate() {
            layer.prepare(ctx, &shared.io(&plan, i))?;
        }
        Ok(plan)
    }

    /// The context, the layers, and what they share: borrowed apart, so a loop over the
    /// layers can hand each its `Io`.
    pub(super) fn parts(&mut self) -> (&Context, &mut [Box<dyn GpuLayer>], Shared<'_>) {
        (
            &self.ctx,
            &mut self.layers,
            Shared {
                params: &self.params,
                grads: &self.grads,
                tick: self.optimizer.tick(),
                at: &self.at,
            },
        )
    }

    /// Uploads a data set for one call. The gathers of earlier calls are dropped here, so a
    /// model keeps at most the data of its current call alive.
    pub(super) fn upload(&mut self, data: &Dataset, first_of_call: bool) -> Result<GpuData> {
        if first_of_call {
            self.gathers.clear();
        }
        crate::nn::registry::check_outputs(self.classes(), data)?;
        data.check_for(self.input, self.classes())?;
        self.next_data_id += 1;
        GpuData::upload(&self.ctx, data, self.next_data_id)
    }

    /// Records the gather of rows `start..start + plan.rows` of `data` (in its order).
    /// Records the gather of a batch of `data`: a training batch finds its rows from the
    /// batch count on the GPU; an inference chunk starts at `start` (`Some`).
    pub(super) fn encode_gather(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        plan: &BatchPlan,
        data: &GpuData,
        start: Option<usize>,
        batch: usize,
    ) -> Result<()> {
        let key = (plan.rows, data.id, start.is_some());
        if !self.gathers.contains_key(&key) {
            let io = DataIo {
                x: &data.x,
                labels: &data.labels,
                order: &data.order,
            };
            let metrics = |at: u64| Region {
                buffer: &self.metrics,
                offset: at,
                size: Some(16),
            };
            let from = match start {
                Some(_) => Start::Written {
                    metrics: metrics(EVAL_METRICS),
                },
                None => Start::Counted {
                    metrics: metrics(0),
                    batch,
                },
            };
            let targets = (&plan.x, &plan.labels);
            let g = Gather::new(&self.ctx, plan.rows, self.input, io, from, targets)?;
            self.gathers.insert(key, g);
        }
        let g = &self.gathers[&key];
        if let Some(start) = start {
            g.set_start(&self.ctx, start)?;
        }
        g.encode(&self.ctx, enc)
    }

    fn encode_forward(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        plan: &BatchPlan,
        mode: Mode,
    ) -> Result<()> {
        let (ctx, layers, shared) = self.parts();
        for (i, layer) in layers.iter_mut().enumerate() {
            layer.forward(ctx, enc, &shared.io(plan, i), mode)?;
        }
        Ok(())
    }

    fn encode_backward(&mut self, enc: &mut wgpu::CommandEncoder, plan: &BatchPlan) -> Result<()> {
        let (ctx, layers, shared) = self.parts();
        for (i, layer) in layers.iter_mut().enumerate().rev() {
            layer.backward(ctx, enc, &shared.io(plan, i))?;
        }
        Ok(())
    }

    /// Records one training step on the next batch of `data` (in its current order; the
    /// batch count on the GPU says which): gather, forward (batch statistics), loss,
    /// backward, optimizer. `first` starts the epoch's metrics.
    pub(super) fn record_step(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        data: &GpuData,
        (rows, batch): (usize, usize),
        first: bool,
    ) -> Result<()> {
        let ctx = self.ctx.clone();
        ctx.guard("a training step", || {
            if first {
                enc.clear_buffer(&self.metrics, 0, Some(16));
            }
            if self.encode_fused(enc, data, rows, batch)? {
                return Ok(());
            }
            let plan = self.plan(rows)?;
            self.encode_gather(enc, &plan, data, None, batch)?;
            self.encode_forward(enc, &plan, Mode::Training)?;
            plan.losses[0].encode(enc);
            self.encode_backward(enc, &plan)?;
            self.optimizer.encode(&ctx, enc);
            Ok(())
        })
    }

    /// Records the step as one dispatch when the network and batch size allow (`false`:
    /// nothing recorded, take the general path).
    fn encode_fused(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        data: &GpuData,
        rows: usize,
        batch: usize,
    ) -> Result<bool> {
        if !self.fused_on {
            return Ok(false);
        }
        match &mut self.fused {
            Some(step) => {
                let network = (self.input, &self.defs[..], &self.at[..]);
                step.encode(&self.ctx, enc, data, (rows, batch), network)
            }
            _ => Ok(false),
        }
    }

    /// Inference over all of `data`: metrics into the evaluation slot, probabilities when
    /// `probs` is given.
    pub(super) fn run_inference(
        &mut self,
        data: &GpuData,
        mut probs: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        let mut start = 0;
        // Chunks whose activations fit the device's bindings.
        let widths = self.defs.iter().map(|d| d.output_width());
        let chunk = EVAL_ROWS.min(binding_limits::rows_fitting(
            &self.ctx,
            widths.chain([self.input]),
        ));
        while start < data.rows {
            let rows = chunk.min(data.rows - start);
            let plan = self.plan(rows)?;
            let ctx = self.ctx.clone();
            let probs = probs.as_deref_mut();
            ctx.guard("inference", || {
                let mut enc = ctx.device().create_command_encoder(&Default::default());
                if start == 0 {
                    enc.clear_buffer(&self.metrics, EVAL_METRICS, Some(16));
                }
                self.encode_gather(&mut enc, &plan, data, Some(start), 0)?;
                self.encode_forward(&mut enc, &plan, Mode::Inference)?;
                let which = if probs.is_some() { 2 } else { 1 };
                plan.losses[which].encode(&mut enc);
                match probs {
                    Some(p) => {
                        ctx.submit_and_wait(enc)?;
                        let out = &plan.dacts[self.defs.len() - 1];
                        p.extend(ctx.read_f32(out, 0, rows * self.classes())?);
                    }
                    None => {
                        ctx.submit(enc)?;
                    }
                }
                Ok::<_, Error>(())
            })?;
            start += rows;
        }
        Ok(())
    }

    /// Reads (training loss, accuracy, evaluation loss, accuracy) and the mean loss of the
    /// epoch's first `batches` batches: the one readback of an epoch.
    pub(super) fn read_metrics(&self, batches: usize) -> Result<([f64; 4], Vec<f64>)> {
        let floats = (BATCH_LOSSES / 4) as usize + batches;
        let m = self.ctx.read_f32(&self.metrics, 0, floats)?;
        let e = (EVAL_METRICS / 4) as usize;
        let ratio = |a: f32, n: f32| {
            if n > 0.0 {
                a as f64 / n as f64
            } else {
                f64::NAN
            }
        };
        let losses = m[(BATCH_LOSSES / 4) as usize..].iter().map(|&v| v as f64);
        Ok((
            [
                ratio(m[0], m[2]),
                ratio(m[1], m[2]),
                ratio(m[e], m[e + 2]),
                ratio(m[e + 1], m[e + 2]),
            ],
            losses.collect(),
        ))
    }

    /// Makes room for the per-batch losses of an epoch of `steps` batches.
    pub(super) fn reserve_batch_losses(&mut self, steps: usize) -> Result<()> {
        let floats = steps.checked_add(BATCH_LOSSES as usize / 4);
        let what = || format!("the losses of an epoch of {steps} batches (use larger batches)");
        let bytes = binding_limits::floats(&self.ctx, what, floats)?.next_multiple_of(256);
        if bytes > self.metrics.size() {
            self.metrics = self.ctx.storage("nn.metrics", bytes)?;
            // Every plan's losses and gathers, and the one-workgroup step, bind the old buffer.
            self.forget_plans();
            if let Some(step) = &mut self.fused {
                step.set_metrics(&self.metrics);
            }
        }
        Ok(())
    }

    /// The activations of every layer from the last inference at batch size `rows`.
    pub(super) fn read_activations(&mut self, rows: usize) -> Result<Vec<Vec<f32>>> {
        let plan = self.plan(rows)?;
        self.defs
            .iter()
            .zip(&plan.acts)
            .map(|(d, buf)| Ok(self.ctx.read_f32(buf, 0, rows * d.output_width())?))
            .collect()
    }
}
