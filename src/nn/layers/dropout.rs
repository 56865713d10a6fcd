//! `Dropout(rate)`: in training, each value is kept with probability `1 - rate` and scaled by
//! `1 / (1 - rate)`; in inference, a copy. The mask is a stateless hash of (element, step,
//! seed) in `shaders/nn/dropout.wgsl`, so backward recomputes it. CPU twin: `dropout_cpu.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::dropout_cpu::CpuDropout;
use crate::nn::error::Result;
use crate::nn::layer::{CpuLayer, GpuLayer, Io, LayerDef, ELEM_WG};
use crate::pipeline::{self, bind, dispatch, groups_1d, Kernel, Slot};
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
}

struct Kernels {
    dropout: Kernel,
}

impl Kernels {
    fn new(device: &wgpu::Device) -> Self {
        let module = pipeline::module(device, "nn.dropout", &source());
        let slots = [
            Slot::Uniform(16),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Write(4),
        ];
        Kernels {
            dropout: pipeline::kernel(device, &module, "dropout", &slots),
        }
    }
}

/// The definition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dropout {
    pub width: usize,
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

    fn output_width(&self) -> usize {
        self.width
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
            binds: HashMap::new(),
        }))
    }

    fn cpu(&self) -> Box<dyn CpuLayer> {
        Box::new(CpuDropout::new(*self))
    }
}

struct GpuDropout {
    def: Dropout,
    kernels: Arc<Kernels>,
    /// (forward, backward) bind groups of each batch size.
    binds: HashMap<usize, (wgpu::BindGroup, wgpu::BindGroup)>,
}

impl GpuLayer for GpuDropout {
    fn prepare(&mut self, ctx: &Context, io: &Io<'_>) -> Result<()> {
        let u = ctx.uniform(
            "nn.dropout",
            &Uniform {
                len: (io.rows * self.def.width) as u32,
                seed: self.def.seed,
                rate: self.def.rate,
                scale: 1.0 / (1.0 - self.def.rate),
            },
        )?;
        let layout = &self.kernels.dropout.layout;
        let dev = ctx.device();
        let forward = bind(
            dev,
            "nn.dropout.forward",
            layout,
            &[
                (&u).into(),
                io.input.into(),
                io.tick.into(),
                io.output.into(),
            ],
        );
        let backward = bind(
            dev,
            "nn.dropout.backward",
            layout,
            &[
                (&u).into(),
                io.d_output.into(),
                io.tick.into(),
                io.d_input.into(),
            ],
        );
        self.binds.insert(io.rows, (forward, backward));
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
        let len = io.rows * self.def.width;
        if mode == Mode::Training {
            let max = ctx.plan_limits().max_groups_per_dim;
            let mut pass = enc.begin_compute_pass(&Default::default());
            let groups = groups_1d(len, ELEM_WG as usize, max);
            dispatch(
                &mut pass,
                &self.kernels.dropout,
                &self.binds[&io.rows].0,
                groups,
            );
        } else {
            enc.copy_buffer_to_buffer(io.input, 0, io.output, 0, len as u64 * 4);
        }
        Ok(())
    }

    fn backward(
        &mut self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
    ) -> Result<()> {
        let max = ctx.plan_limits().max_groups_per_dim;
        let mut pass = enc.begin_compute_pass(&Default::default());
        let groups = groups_1d(io.rows * self.def.width, ELEM_WG as usize, max);
        dispatch(
            &mut pass,
            &self.kernels.dropout,
            &self.binds[&io.rows].1,
            groups,
        );
        Ok(())
    }
}
