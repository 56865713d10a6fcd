//! A data set resident on the GPU for one call (inputs, labels, the epoch's row order), as
//! the gather and the one-workgroup step read it.

use crate::nn::data::Dataset;
use crate::nn::error::Result;
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
        let x = ctx.storage("nn.data.x", (data.x().len() * 4) as u64)?;
        let labels = ctx.storage("nn.data.labels", (data.rows() * 4) as u64)?;
        let order = ctx.storage("nn.data.order", (data.rows() * 4) as u64)?;
        ctx.write(&x, 0, bytemuck::cast_slice(data.x()))?;
        ctx.write(&labels, 0, bytemuck::cast_slice(data.labels()))?;
        let identity: Vec<u32> = (0..data.rows() as u32).collect();
        ctx.write(&order, 0, bytemuck::cast_slice(&identity))?;
        Ok(GpuData {
            id,
            rows: data.rows(),
            x,
            labels,
            order,
        })
    }
}
