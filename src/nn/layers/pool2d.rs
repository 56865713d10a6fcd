//! `MaxPooling2D`, `AveragePooling2D` and `GlobalAveragePooling2D` over NHWC feature maps, on
//! the GPU through `shaders/nn/pool2d.wgsl` (one thread per output forward, one per input
//! backward). CPU twin: `pool2d_cpu.rs`.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::elementwise::{slots, Binds};
use super::pool2d_cpu::CpuPool;
use crate::nn::error::Result;
use crate::nn::layer::{gpu_u32, CpuLayer, GpuLayer, Io, LayerDef, ELEM_WG};
use crate::nn::shape::{Padding, Shape};
use crate::pipeline::{self, Kernel};
use crate::{Context, Mode};

/// A pooling window as the user lists it (Keras' `pool_size`, `strides`, `padding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2D {
    /// `[ph, pw]`.
    pub pool_size: [usize; 2],
    /// `[sh, sw]` (Keras' default: the pool size).
    pub strides: [usize; 2],
    pub padding: Padding,
}

impl Pool2D {
    /// A `k x k` window with stride `k` and `valid` padding: Keras' defaults.
    pub fn new(k: usize) -> Pool2D {
        Pool2D {
            pool_size: [k, k],
            strides: [k, k],
            padding: Padding::Valid,
        }
    }

    /// The same window with `padding`.
    pub fn padding(self, padding: Padding) -> Pool2D {
        Pool2D { padding, ..self }
    }

    /// The same window with strides `[s, s]`.
    pub fn stride(self, s: usize) -> Pool2D {
        Pool2D {
            strides: [s, s],
            ..self
        }
    }
}

/// Which reduction a window takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolKind {
    Max,
    Average,
    /// An average over the whole map; the output is a flat `[channels]` vector.
    GlobalAverage,
}

/// The definition: a window on a known input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pool {
    pub kind: PoolKind,
    pub window: Pool2D,
    /// Input `[h, w, c]`.
    pub input: [usize; 3],
    /// Output `[oh, ow]`.
    pub out: [usize; 2],
    /// Padding before the first row and column.
    pub pad: [usize; 2],
}

/// The shader with its workgroup size.
pub(crate) fn source() -> String {
    format!(
        "const ELEM_WG: u32 = {ELEM_WG}u;\n{}",
        include_str!("../../../shaders/nn/pool2d.wgsl")
    )
}

/// Mirror of `Pool` in `pool2d.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Uniform {
    batch: u32,
    h: u32,
    w: u32,
    c: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    pt: u32,
    pl: u32,
    kind: u32,
    _pad: [u32; 3],
}

struct Kernels {
    forward: Kernel,
    backward: Kernel,
}

impl Kernels {
    fn new(device: &wgpu::Device) -> Self {
        let [forward, backward] = pipeline::kernels(
            device,
            "nn.pool2d",
            &source(),
            ["pool_forward", "pool_backward"],
            &slots::<Uniform>(),
        );
        Kernels { forward, backward }
    }
}

impl LayerDef for Pool {
    fn keras_name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "max_pooling2d",
            PoolKind::Average => "average_pooling2d",
            PoolKind::GlobalAverage => "global_average_pooling2d",
        }
    }

    fn describe(&self) -> String {
        let [kh, kw] = self.window.pool_size;
        match self.kind {
            PoolKind::Max => format!("MaxPooling2D {kh}x{kw}"),
            PoolKind::Average => format!("AveragePooling2D {kh}x{kw}"),
            PoolKind::GlobalAverage => "GlobalAveragePooling2D".into(),
        }
    }

    fn output_shape(&self) -> Shape {
        match self.kind {
            PoolKind::GlobalAverage => Shape::Flat(self.input[2]),
            _ => Shape::image(self.out[0], self.out[1], self.input[2]),
        }
    }

    fn gpu(
        &self,
        ctx: &Context,
        _params: &wgpu::Buffer,
        _grads: &wgpu::Buffer,
        _at: usize,
    ) -> Result<Box<dyn GpuLayer>> {
        Ok(Box::new(GpuPool {
            def: *self,
            kernels: ctx.cached(Kernels::new),
            unused: ctx.storage("nn.pool2d.unused", 16)?,
            binds: Binds::default(),
        }))
    }

    fn cpu(&self) -> Box<dyn CpuLayer> {
        Box::new(CpuPool::new(*self))
    }

    fn cpu_f32(&self) -> Result<Box<dyn CpuLayer<f32>>> {
        Ok(Box::new(CpuPool::new(*self)))
    }
}

struct GpuPool {
    def: Pool,
    kernels: Arc<Kernels>,
    unused: wgpu::Buffer,
    binds: Binds,
}

impl GpuLayer for GpuPool {
    fn prepare(&mut self, ctx: &Context, io: &Io<'_>) -> Result<()> {
        let d = &self.def;
        let [h, w, c] = d.input;
        let n = |what: &str, v: usize| gpu_u32(&format!("pooling {what}"), v);
        let u = ctx.uniform(
            "nn.pool2d",
            &Uniform {
                batch: n("batch", io.rows)?,
                h: n("input height", h)?,
                w: n("input width", w)?,
                c: n("channels", c)?,
                oh: n("output height", d.out[0])?,
                ow: n("output width", d.out[1])?,
                kh: n("pool height", d.window.pool_size[0])?,
                kw: n("pool width", d.window.pool_size[1])?,
                sh: n("vertical stride", d.window.strides[0])?,
                sw: n("horizontal stride", d.window.strides[1])?,
                pt: n("top padding", d.pad[0])?,
                pl: n("left padding", d.pad[1])?,
                kind: u32::from(d.kind != PoolKind::Max),
                _pad: [0; 3],
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
                [io.input.into(), io.d_output.into(), io.d_input.into()],
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
        let len = io.rows * self.output_len();
        self.binds
            .dispatch(ctx, enc, &self.kernels.forward, 0, io.rows, len)
    }

    fn backward(
        &mut self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
    ) -> Result<()> {
        if io.first {
            return Ok(());
        }
        let len = io.rows * self.def.input.iter().product::<usize>();
        self.binds
            .dispatch(ctx, enc, &self.kernels.backward, 1, io.rows, len)
    }
}

impl GpuPool {
    fn output_len(&self) -> usize {
        self.def.out[0] * self.def.out[1] * self.def.input[2]
    }
}
