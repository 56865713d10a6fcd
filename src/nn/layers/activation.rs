//! `Activation('sigmoid')` and `Activation('tanh')`: elementwise, through
//! `shaders/nn/activation.wgsl`; backward from the layer's own output. (ReLU is not one of
//! these: it fuses into the layer before it.) CPU twin: `activation_cpu.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::activation_cpu::CpuActivation;
use crate::nn::error::Result;
use crate::nn::layer::{CpuLayer, GpuLayer, Io, LayerDef, ELEM_WG};
use crate::pipeline::{self, bind, dispatch, groups_1d, Kernel, Slot};
use crate::{Context, Mode};

/// An elementwise activation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    /// The shader's `kind`.
    fn code(self) -> u32 {
        match self {
            Activation::Sigmoid => 0,
            Activation::Tanh => 1,
        }
    }
}

/// The shader with its workgroup size.
pub(crate) fn source() -> String {
    format!(
        "const ELEM_WG: u32 = {ELEM_WG}u;\n{}",
        include_str!("../../../shaders/nn/activation.wgsl")
    )
}

/// Mirror of `Act` in `activation.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Uniform {
    len: u32,
    kind: u32,
    _pad: [u32; 2],
}

struct Kernels {
    forward: Kernel,
    backward: Kernel,
}

impl Kernels {
    fn new(device: &wgpu::Device) -> Self {
        let module = pipeline::module(device, "nn.activation", &source());
        let slots = [
            Slot::Uniform(16),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Write(4),
        ];
        Kernels {
            forward: pipeline::kernel(device, &module, "activation_forward", &slots),
            backward: pipeline::kernel(device, &module, "activation_backward", &slots),
        }
    }
}

/// The definition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ActivationLayer {
    pub width: usize,
    pub function: Activation,
}

impl LayerDef for ActivationLayer {
    fn keras_name(&self) -> &'static str {
        "activation"
    }

    fn describe(&self) -> String {
        format!("{:?}", self.function)
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
        Ok(Box::new(GpuActivation {
            def: *self,
            kernels: ctx.cached(Kernels::new),
            unused: ctx.storage("nn.activation.unused", 16)?,
            binds: HashMap::new(),
        }))
    }

    fn cpu(&self) -> Box<dyn CpuLayer> {
        Box::new(CpuActivation::new(self.function))
    }
}

struct GpuActivation {
    def: ActivationLayer,
    kernels: Arc<Kernels>,
    unused: wgpu::Buffer,
    binds: HashMap<usize, (wgpu::BindGroup, wgpu::BindGroup)>,
}

impl GpuLayer for GpuActivation {
    fn prepare(&mut self, ctx: &Context, io: &Io<'_>) -> Result<()> {
        let u = ctx.uniform(
            "nn.activation",
            &Uniform {
                len: (io.rows * self.def.width) as u32,
                kind: self.def.function.code(),
                _pad: [0; 2],
            },
        )?;
        let k = &*self.kernels;
        let forward = bind(
            ctx.device(),
            "nn.activation.forward",
            &k.forward.layout,
            &[
                (&u).into(),
                io.input.into(),
                (&self.unused).into(),
                io.output.into(),
            ],
        );
        let backward = bind(
            ctx.device(),
            "nn.activation.backward",
            &k.backward.layout,
            &[
                (&u).into(),
                io.output.into(),
                io.d_output.into(),
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
        _mode: Mode,
    ) -> Result<()> {
        let max = ctx.plan_limits().max_groups_per_dim;
        let groups = groups_1d(io.rows * self.def.width, ELEM_WG as usize, max);
        let mut pass = enc.begin_compute_pass(&Default::default());
        dispatch(
            &mut pass,
            &self.kernels.forward,
            &self.binds[&io.rows].0,
            groups,
        );
        Ok(())
    }

    fn backward(
        &mut self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
    ) -> Result<()> {
        let max = ctx.plan_limits().max_groups_per_dim;
        let groups = groups_1d(io.rows * self.def.width, ELEM_WG as usize, max);
        let mut pass = enc.begin_compute_pass(&Default::default());
        dispatch(
            &mut pass,
            &self.kernels.backward,
            &self.binds[&io.rows].1,
            groups,
        );
        Ok(())
    }
}
