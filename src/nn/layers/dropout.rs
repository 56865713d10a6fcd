//! `Dropout(rate)`: in training, each value is kept with probability `1 - rate` and scaled by
//! `1 / (1 - rate)`; in inference, a copy. The mask is a stateless hash of (element, step,
//! seed) in `shaders/nn/dropout.wgsl`, so backward recomputes it. CPU twin: `dropout_cpu.rs`.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::dropout_cpu::CpuDropout;
use super::elementwise::{slots, Binds};
use crate::nn::error::Result;
use crate::nn::layer::{gpu_u32, CpuLayer, GpuLayer, Io, LayerDef, ELEM_WG};
use crate::nn::shape::Shape;
use crate::pipeline::{self, Kernel};
use crate::{Context, Mode};

/// The shader with its workgroup size.
pub(crate) fn source() -> String {
    format!(
        "const ELEM_WG: u32 = {ELEM_WG}u;\n{}",
        include_str!("../../../shaders/nn/dropout.wgsl")
    )
}

/// Mirror of `Dropout` in `dropout.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Uniform {
    len: u32,
    seed: u32,
    rate: f32,
    scale: f32,
    back: u32,
    _pad: [u32; 3],
}

struct Kernels {
    dropout: Kernel,
}

impl Kernels {
    fn new(device: &wgpu::Device) -> Self {
        let [dropout] = pipeline::kernels(
            device,
            "nn.dropout",
            &source(),
            ["dropout"],
            &slots::<Uniform>(),
        );
        Kernels { dropout }
    }
}

/// The definition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dropout {
    pub shape: Shape,
    pub rate: f32,
    /// The layer's position in the model's list (its mask stream).
    pub seed: u32,
}

impl LayerDef for Dropout {
    fn keras_name(&self) -> &'static str {
        "dropout"
    }

    fn describe(&self) -> String {
        format!("Dropout {}", self.rate)
    }

    fn output_shape(&self) -> Shape {
        self.shape
    }

    fn gpu(
        &self,
        ctx: &Context,
        _params: &wgpu::Buffer,
        _grads: &wgpu::Buffer,
        _at: usize,
    ) -> Result<Box<dyn GpuLayer>> {
        Ok(Box::new(GpuDropout {
            def: *self,
            kernels: ctx.cached(Kernels::new),
            binds: Binds::default(),
        }))
    }

    fn cpu(&self) -> Box<dyn CpuLayer> {
        Box::new(CpuDropout::new(*self))
    }

    fn cpu_f32(&self) -> Result<Box<dyn CpuLayer<f32>>> {
        Ok(Box::new(CpuDropout::new(*self)))
    }
}

struct GpuDropout {
    def: Dropout,
    kernels: Arc<Kernels>,
    binds: Binds,
}

impl GpuLayer for GpuDropout {
    fn prepare(&mut self, ctx: &Context, io: &Io<'_>) -> Result<()> {
        let len = gpu_u32("dropout values", io.rows * self.def.shape.len())?;
        let uniform = |back| {
            let u = Uniform {
                len,
                seed: self.def.seed,
                rate: self.def.rate,
                scale: 1.0 / (1.0 - self.def.rate),
                back,
                _pad: [0; 3],
            };
            ctx.uniform("nn.dropout", &u)
        };
        // The same kernel both ways: the mask is recomputed from (element, step, seed).
        let k = &self.kernels.dropout;
        self.binds.insert(
            ctx,
            io.rows,
            [&uniform(0)?, &uniform(1)?],
            [k, k],
            [
                [io.input.into(), io.tick.into(), io.output.into()],
                [io.d_output.into(), io.tick.into(), io.d_input.into()],
            ],
        );
        Ok(())
    }

    fn forget(&mut self) {
        self.binds.clear();
    }

    fn forward(
        &mut self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
        mode: Mode,
    ) -> Result<()> {
        let len = io.rows * self.def.shape.len();
        if mode == Mode::Training {
            self.binds
                .dispatch(ctx, enc, &self.kernels.dropout, 0, io.rows, len)
        } else {
            pipeline::copy(enc, io.input, io.output, len as u64 * 4);
            Ok(())
        }
    }

    fn backward(
        &mut self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
    ) -> Result<()> {
        let len = io.rows * self.def.shape.len();
        self.binds
            .dispatch(ctx, enc, &self.kernels.dropout, 1, io.rows, len)
    }
}
