//! A data set resident on the GPU for one call (inputs, labels, the epoch's row order), as
//! the gather and the one-workgroup step read it.

use crate::nn::binding_limits;
use crate::nn::data::Dataset;
use crate::nn::error::Result;
use crate::nn::layer::gpu_u32;
use crate::Context;

/// A data set resident on the GPU for one call.
pub(crate) struct GpuData {
    pub id: u64,
    pub rows: usize,
    pub x: wgpu::Buffer,
    pub labels: wgpu::Buffer,
    pub order: wgpu::Buffer,
}

impl GpuData {
    /// Uploads `data` with the identity order.
    pub fn upload(ctx: &Context, data: &Dataset, id: u64) -> Result<GpuData> {
        let rows = data.rows();
        let what = || {
            format!(
                "the data set ({rows} rows of {} values)",
                data.x().len() / rows.max(1)
            )
        };
        let x_bytes = binding_limits::floats(ctx, what, Some(data.x().len()))?;
        let row_bytes = binding_limits::floats(ctx, what, Some(rows))?;
        let x = ctx.storage("nn.data.x", x_bytes)?;
        let labels = ctx.storage("nn.data.labels", row_bytes)?;
        let order = ctx.storage("nn.data.order", row_bytes)?;
        ctx.write(&x, 0, bytemuck::cast_slice(data.x()))?;
        ctx.write(&labels, 0, bytemuck::cast_slice(data.labels()))?;
        let identity: Vec<u32> = (0..gpu_u32("data rows", rows)?).collect();
        ctx.write(&order, 0, bytemuck::cast_slice(&identity))?;
        Ok(GpuData {
            id,
            rows,
            x,
            labels,
            order,
        })
    }
}
