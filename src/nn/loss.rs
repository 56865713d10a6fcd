//! Softmax fused with categorical cross-entropy (`shaders/nn/loss.wgsl`): the batch's loss and
//! correct predictions accumulate on the GPU, each training batch's mean loss lands in its
//! slot, the gradient of the logits is written in place. CPU twin: `loss_cpu.rs`.

use bytemuck::{Pod, Zeroable};

use crate::nn::error::Result;
use crate::nn::layer::gpu_u32;
use crate::pipeline::{self, bind, dispatch, Kernel, Region, Slot};
use crate::Context;

/// Byte offset of the evaluation metrics in a model's metrics buffer (training metrics at 0):
/// the layout the loss writes and both the model and the one-workgroup step read.
pub(crate) const EVAL_METRICS: u64 = 256;
/// Byte offset of the epoch's per-batch losses in the metrics buffer: all of an epoch's
/// numbers come back in one readback.
pub(crate) const BATCH_LOSSES: u64 = 512;

/// Threads of the loss's one workgroup.
const LOSS_WG: u32 = 256;

/// Threads of the workgroup that runs the loss, prepended to the shared row math: what the
/// loss kernel and the one-workgroup training step (`step.rs`) both include.
pub(crate) fn xent_source(wg: u32) -> String {
    format!(
        "const LOSS_WG: u32 = {wg}u;\n{}",
        include_str!("../../shaders/nn/softmax_xent.wgsl")
    )
}

/// The loss kernel's shader.
pub(crate) fn source() -> String {
    format!(
        "{}\n{}",
        xent_source(LOSS_WG),
        include_str!("../../shaders/nn/loss.wgsl")
    )
}

/// What one loss dispatch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LossMode {
    /// Loss and metrics only (evaluation).
    Metrics = 0,
    /// Also the gradient of the logits, and the batch's loss in its slot (training).
    Training = 1,
    /// Also the probabilities (prediction).
    Probabilities = 2,
}

/// Mirror of `Xent` in `loss.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Uniform {
    rows: u32,
    classes: u32,
    mode: u32,
    inv_rows: f32,
}

struct Kernels {
    xent: Kernel,
}

impl Kernels {
    fn new(device: &wgpu::Device) -> Self {
        let slots = [
            Slot::Uniform(16),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Write(4),
            Slot::Write(16),
            Slot::Write(4),
            Slot::Write(4),
        ];
        let [xent] = pipeline::kernels(device, "nn.loss", &source(), ["softmax_xent"], &slots);
        Kernels { xent }
    }
}

/// One prepared loss dispatch.
pub(crate) struct Loss {
    kernels: std::sync::Arc<Kernels>,
    group: wgpu::BindGroup,
    uniform: wgpu::Buffer,
    rows: usize,
}

/// The buffers a loss dispatch binds.
pub(crate) struct LossIo<'a> {
    pub rows: usize,
    pub classes: usize,
    pub logits: &'a wgpu::Buffer,
    pub labels: &'a wgpu::Buffer,
    /// Gradient of the logits (training) or probabilities (prediction).
    pub out: &'a wgpu::Buffer,
    /// `[loss sum, correct, rows seen, batches seen]`.
    pub metrics: Region<'a>,
    /// The batch-loss slots (written in training only).
    pub batch_losses: Region<'a>,
    /// The optimizer's step counter, which a training batch increments.
    pub tick: &'a wgpu::Buffer,
}

impl Loss {
    pub fn new(ctx: &Context, mode: LossMode, io: LossIo<'_>) -> Result<Self> {
        let kernels = ctx.cached(Kernels::new);
        let u = ctx.uniform(
            "nn.loss",
            &Uniform {
                rows: gpu_u32("loss rows", io.rows)?,
                classes: gpu_u32("classes", io.classes)?,
                mode: mode as u32,
                inv_rows: 1.0 / io.rows as f32,
            },
        )?;
        let group = bind(
            ctx.device(),
            "nn.loss",
            &kernels.xent.layout,
            &[
                (&u).into(),
                io.logits.into(),
                io.labels.into(),
                io.out.into(),
                io.metrics,
                io.batch_losses,
                io.tick.into(),
            ],
        );
        Ok(Loss {
            kernels,
            group,
            uniform: u,
            rows: io.rows,
        })
    }

    /// Divides the batch loss and the gradient by `rows` instead of this dispatch's own rows
    /// (data-parallel training: each rank's share of the global batch's mean). Applied at the
    /// next submit; `None` restores the own rows.
    pub fn set_normalizer(&self, ctx: &Context, rows: Option<usize>) -> Result<()> {
        let inv = 1.0 / rows.unwrap_or(self.rows) as f32;
        Ok(ctx.write(&self.uniform, 12, bytemuck::bytes_of(&inv))?)
    }

    pub fn encode(&self, enc: &mut wgpu::CommandEncoder) {
        let mut pass = pipeline::begin_pass(enc, &Default::default());
        dispatch(&mut pass, &self.kernels.xent, &self.group, (1, 1));
    }
}
