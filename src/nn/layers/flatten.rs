//! `Flatten()`: an NHWC feature map read as a vector in the same order (Keras flattens
//! channels-last maps row by row, channels fastest, which is already their memory order). A
//! view: the network hands the next layer the same buffers, so it costs no pass at all. CPU
//! twin: `flatten_cpu.rs`.

use super::flatten_cpu::CpuFlatten;
use crate::nn::error::Result;
use crate::nn::layer::{CpuLayer, GpuLayer, Io, LayerDef};
use crate::nn::shape::Shape;
use crate::{Context, Mode};

/// The definition: the input's length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Flatten {
    pub len: usize,
}

impl LayerDef for Flatten {
    fn keras_name(&self) -> &'static str {
        "flatten"
    }

    fn describe(&self) -> String {
        "Flatten".into()
    }

    fn output_shape(&self) -> Shape {
        Shape::Flat(self.len)
    }

    fn is_view(&self) -> bool {
        true
    }

    fn gpu(
        &self,
        _ctx: &Context,
        _params: &wgpu::Buffer,
        _grads: &wgpu::Buffer,
        _at: usize,
    ) -> Result<Box<dyn GpuLayer>> {
        Ok(Box::new(GpuFlatten))
    }

    fn cpu(&self) -> Box<dyn CpuLayer> {
        Box::new(CpuFlatten)
    }

    fn cpu_f32(&self) -> Result<Box<dyn CpuLayer<f32>>> {
        Ok(Box::new(CpuFlatten))
    }
}

/// Nothing to record: its input and output are one buffer.
struct GpuFlatten;

impl GpuLayer for GpuFlatten {
    fn prepare(&mut self, _ctx: &Context, _io: &Io<'_>) -> Result<()> {
        Ok(())
    }

    fn forget(&mut self) {}

    fn forward(
        &mut self,
        _ctx: &Context,
        _enc: &mut wgpu::CommandEncoder,
        _io: &Io<'_>,
        _mode: Mode,
    ) -> Result<()> {
        Ok(())
    }

    fn backward(
        &mut self,
        _ctx: &Context,
        _enc: &mut wgpu::CommandEncoder,
        _io: &Io<'_>,
    ) -> Result<()> {
        Ok(())
    }
}
