//! `Activation('sigmoid')` and `Activation('tanh')`: elementwise, through
//! `shaders/nn/activation.wgsl`; backward from the layer's own output. (ReLU is not one of
//! these: it fuses into the layer before it.) CPU twin: `activation_cpu.rs`.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::activation_cpu::CpuActivation;
use super::elementwise::{slots, Binds};
use crate::nn::error::Result;
use crate::nn::layer::{gpu_u32, CpuLayer, GpuLayer, Io, LayerDef, ELEM_WG};
use crate::nn::shape::Shape;
use crate::pipeline::{self, Kernel};
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
        let entries = ["activation_forward", "activation_backward"];
        let [forward, backward] = pipeline::kernels(
            device,
            "nn.activation",
            &source(),
            entries,
            &slots::<Uniform>(),
        );
        Kernels { forward, backward }
    }
}

/// The definition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ActivationLayer {
    pub shape: Shape,
    pub function: Activation,
}

impl LayerDef for ActivationLayer {
    fn keras_name(&self) -> &'static str {
        "activation"
    }

    fn describe(&self) -> String {
        format!("{:?}", self.function)
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
        Ok(Box::new(GpuActivation {
            def: *self,
            kernels: ctx.cached(Kernels::new),
            unused: ctx.storage("nn.activation.unused", 16)?,
            binds: Binds::default(),
        }))
    }

    fn cpu(&self) -> Box<dyn CpuLayer> {
        Box::new(CpuActivation::new(self.function))
    }

    fn cpu_f32(&self) -> Result<Box<dyn CpuLayer<f32>>> {
        Ok(Box::new(CpuActivation::new(self.function)))
    }
}

struct GpuActivation {
    def: ActivationLayer,
    kernels: Arc<Kernels>,
    unused: wgpu::Buffer,
    binds: Binds,
}

impl GpuLayer for GpuActivation {
    fn prepare(&mut self, ctx: &Context, io: &Io<'_>) -> Result<()> {
        let u = ctx.uniform(
            "nn.activation",
            &Uniform {
                len: gpu_u32("activation values", io.rows * self.def.shape.len())?,
                kind: self.def.function.code(),
                _pad: [0; 2],
            },
        )?;
        let k = &*self.kernels;
        self.binds.insert(
            ctx,
            io.rows,
            [&u, &u],
            [&k.forward, &k.backward],
            [
                [io.input.into(), (&self.unused).into(), io.output.into()],
                // Backward from the layer's output: sigmoid' = y (1 - y), tanh' = 1 - y².
                [io.output.into(), io.d_output.into(), io.d_input.into()],
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
        _mode: Mode,
    ) -> Result<()> {
        let len = io.rows * self.def.shape.len();
        self.binds
            .dispatch(ctx, enc, &self.kernels.forward, 0, io.rows, len)
    }

    fn backward(
        &mut self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
    ) -> Result<()> {
        let len = io.rows * self.def.shape.len();
        self.binds
            .dispatch(ctx, enc, &self.kernels.backward, 1, io.rows, len)
    }
}
