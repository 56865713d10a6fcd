//! The buffers of one batch size (input, activations, their gradients, the loss dispatches),
//! and what every layer of a batch plan shares. (The engine's `src/plan.rs` is another thing:
//! how one batch-norm call is cut into chunks and grids.)

use crate::nn::binding_limits;
use crate::nn::error::Result;
use crate::nn::layer::{Io, LayerDef};
use crate::nn::loss::{Loss, LossIo, LossMode};
use crate::pipeline::Region;
use crate::Context;

/// The activation buffers and loss dispatches of one batch size.
pub(crate) struct BatchPlan {
    pub rows: usize,
    pub x: wgpu::Buffer,
    pub labels: wgpu::Buffer,
    pub acts: Vec<wgpu::Buffer>,
    pub dacts: Vec<wgpu::Buffer>,
    /// The input gradient of the first layer, which nothing reads.
    pub scratch: wgpu::Buffer,
    /// Training, evaluation and prediction.
    pub losses: [Loss; 3],
}

/// The network's shared buffers, as layers see them.
pub(crate) struct Shared<'a> {
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub tick: &'a wgpu::Buffer,
    pub at: &'a [usize],
}

impl Shared<'_> {
    /// What layer `i` reads and writes at the plan's batch size.
    pub fn io<'b>(&'b self, plan: &'b BatchPlan, i: usize) -> Io<'b> {
        Io {
            rows: plan.rows,
            input: if i == 0 { &plan.x } else { &plan.acts[i - 1] },
            output: &plan.acts[i],
            d_output: &plan.dacts[i],
            d_input: if i == 0 {
                &plan.scratch
            } else {
                &plan.dacts[i - 1]
            },
            first: i == 0,
            params: self.params,
            grads: self.grads,
            at: self.at[i],
            tick: self.tick,
        }
    }
}

/// The model's buffers a plan's loss dispatches bind.
pub(crate) struct PlanBuffers<'a> {
    /// Training metrics at 0, evaluation metrics at `eval_metrics`.
    pub metrics: &'a wgpu::Buffer,
    pub eval_metrics: u64,
    /// Byte offset of the per-batch losses in `metrics`.
    pub batch_losses: u64,
    pub tick: &'a wgpu::Buffer,
}

impl BatchPlan {
    /// The buffers of batch size `rows` for a network of `defs` on `input` features.
    pub fn new(
        ctx: &Context,
        rows: usize,
        input: usize,
        defs: &[Box<dyn LayerDef>],
        model: PlanBuffers<'_>,
    ) -> Result<BatchPlan> {
        // Every buffer's size, checked against the device before any is allocated.
        let batch = |n: usize, what: &dyn Fn() -> String| {
            binding_limits::floats(
                ctx,
                || format!("a batch of {rows} rows of {} (use a smaller batch)", what()),
                rows.checked_mul(n),
            )
        };
        let input_bytes = batch(input, &|| format!("the input ({input} values per row)"))?;
        let label_bytes = batch(1, &|| "labels".into())?;
        let mut output_bytes = Vec::with_capacity(defs.len());
        for (i, d) in defs.iter().enumerate() {
            let what = || format!("layer {i}'s output {}", d.output_shape());
            output_bytes.push(batch(d.output_width(), &what)?);
        }
        let x = ctx.storage("nn.x", input_bytes)?;
        let labels = ctx.storage("nn.labels", label_bytes)?;
        let mut acts = Vec::new();
        let mut dacts = Vec::new();
        let scratch = ctx.storage("nn.dx0", input_bytes)?;
        for (d, &bytes) in defs.iter().zip(&output_bytes) {
            if d.is_view() {
                // The same memory under another shape: the previous buffers, shared.
                let before =
                    |v: &Vec<wgpu::Buffer>, first: &wgpu::Buffer| v.last().unwrap_or(first).clone();
                acts.push(before(&acts, &x));
                dacts.push(before(&dacts, &scratch));
                continue;
            }
            acts.push(ctx.storage("nn.act", bytes)?);
            dacts.push(ctx.storage("nn.dact", bytes)?);
        }
        let last = defs.len() - 1;
        let loss = |mode, at: u64| {
            Loss::new(
                ctx,
                mode,
                LossIo {
                    rows,
                    classes: defs[last].output_width(),
                    logits: &acts[last],
                    labels: &labels,
                    out: &dacts[last],
                    metrics: Region {
                        buffer: model.metrics,
                        offset: at,
                        size: Some(16),
                    },
                    batch_losses: Region {
                        buffer: model.metrics,
                        offset: model.batch_losses,
                        size: None,
                    },
                    tick: model.tick,
                },
            )
        };
        let losses = [
            loss(LossMode::Training, 0)?,
            loss(LossMode::Metrics, model.eval_metrics)?,
            loss(LossMode::Probabilities, model.eval_metrics)?,
        ];
        Ok(BatchPlan {
            rows,
            x,
            labels,
            acts,
            dacts,
            scratch,
            losses,
        })
    }
}
