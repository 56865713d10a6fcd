//! The batch gather (`shaders/nn/gather.wgsl`): rows of the GPU-resident data set, in the
//! epoch's order, into the network's input. A training gather finds its batch from the batch
//! count the loss keeps on the GPU (no write per step); an inference gather is told its
//! start row.

use bytemuck::{Pod, Zeroable};

use crate::nn::error::Result;
use crate::nn::layer::{gpu_u32, ELEM_WG};
use crate::pipeline::{self, bind, dispatch, groups_1d, Kernel, Region, Slot};
use crate::Context;

/// The shader with its workgroup size.
pub(crate) fn source() -> String {
    format!(
        "const ELEM_WG: u32 = {ELEM_WG}u;\n{}",
        include_str!("../../shaders/nn/gather.wgsl")
    )
}

/// Mirror of `Gather` in `gather.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Uniform {
    rows: u32,
    cols: u32,
    start: u32,
    batch: u32,
}

/// Byte offset of `start` in the uniform.
const START_AT: u64 = 8;

struct Kernels {
    gather: Kernel,
}

impl Kernels {
    fn new(device: &wgpu::Device) -> Self {
        let slots = [
            Slot::Uniform(16),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Write(4),
            Slot::Write(4),
            Slot::Read(16),
        ];
        let [gather] = pipeline::kernels(device, "nn.gather", &source(), ["gather"], &slots);
        Kernels { gather }
    }
}

/// The data set's buffers on the GPU.
pub(crate) struct DataIo<'a> {
    pub x: &'a wgpu::Buffer,
    pub labels: &'a wgpu::Buffer,
    pub order: &'a wgpu::Buffer,
}

/// Where a gather's rows start.
pub(crate) enum Start<'a> {
    /// At `batches seen * batch`, from the training metrics the loss updates.
    Counted { metrics: Region<'a>, batch: usize },
    /// At the row the host writes before each submit (inference).
    Written { metrics: Region<'a> },
}

/// A gather of `rows` rows of one data set into one batch's input buffers.
pub(crate) struct Gather {
    kernels: std::sync::Arc<Kernels>,
    uniform: wgpu::Buffer,
    group: wgpu::BindGroup,
    elements: usize,
}

impl Gather {
    pub fn new(
        ctx: &Context,
        rows: usize,
        cols: usize,
        data: DataIo<'_>,
        start: Start<'_>,
        (x, labels): (&wgpu::Buffer, &wgpu::Buffer),
    ) -> Result<Self> {
        let kernels = ctx.cached(Kernels::new);
        let (batch, metrics) = match start {
            Start::Counted { metrics, batch } => (batch, metrics),
            // A zero batch: the count (whatever it is) does not move the start.
            Start::Written { metrics } => (0, metrics),
        };
        let uniform = ctx.uniform(
            "nn.gather",
            &Uniform {
                rows: gpu_u32("gathered rows", rows)?,
                cols: gpu_u32("input features", cols)?,
                start: 0,
                batch: gpu_u32("batch size", batch)?,
            },
        )?;
        let group = bind(
            ctx.device(),
            "nn.gather",
            &kernels.gather.layout,
            &[
                (&uniform).into(),
                data.x.into(),
                data.labels.into(),
                data.order.into(),
                x.into(),
                labels.into(),
                metrics,
            ],
        );
        Ok(Gather {
            kernels,
            uniform,
            group,
            elements: rows * cols,
        })
    }

    /// Sets the start row of an inference gather (applied at the next submit).
    pub fn set_start(&self, ctx: &Context, start: usize) -> Result<()> {
        let start = gpu_u32("start row", start)?;
        Ok(ctx.write(&self.uniform, START_AT, bytemuck::bytes_of(&start))?)
    }

    /// Records the gather.
    pub fn encode(&self, ctx: &Context, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        let max = ctx.plan_limits().max_groups_per_dim;
        let mut pass = pipeline::begin_pass(enc, &Default::default());
        let groups = groups_1d(self.elements, ELEM_WG as usize, max);
        dispatch(&mut pass, &self.kernels.gather, &self.group, groups);
        Ok(())
    }
}
