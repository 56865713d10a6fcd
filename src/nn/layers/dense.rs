//! `Dense(units)`: `y = x · kernel + bias` (then ReLU when one is fused), on the GPU through
//! `shaders/nn/dense.wgsl` (forward: one tiled GEMM with bias and ReLU) and
//! `shaders/nn/dense_backward.wgsl` (the whole backward in one dispatch). CPU twin:
//! `dense_cpu.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::dense_cpu::CpuDense;
use crate::nn::error::Result;
use crate::nn::layer::{aligned, gpu_u32, CpuLayer, GpuLayer, Init, Io, LayerDef, Param};
use crate::nn::shape::Shape;
use crate::nn::step_code::{StepCode, StepIo};
use crate::pipeline::{self, bind, dispatch, Kernel, Region, Slot};
use crate::{Context, Mode};

/// Output tile of a GEMM workgroup (T x T threads).
const TILE: u32 = 16;
/// Outputs per thread per dimension of the wide GEMM (a W x W tile, W = R T).
const REG: u32 = 4;

/// The forward shader with its tile sizes.
pub(crate) fn source() -> String {
    format!(
        "const T: u32 = {TILE}u;\nconst R: u32 = {REG}u;\nconst W: u32 = {}u;\nconst RR: u32 = {}u;\n{}",
        TILE * REG,
        REG * REG,
        include_str!("../../../shaders/nn/dense.wgsl")
    )
}

/// The backward shader with its tile size.
pub(crate) fn backward_source() -> String {
    format!(
        "const T: u32 = {TILE}u;\n{}",
        include_str!("../../../shaders/nn/dense_backward.wgsl")
    )
}

/// Mirror of `Back` in `dense_backward.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Back {
    rows: u32,
    inp: u32,
    out: u32,
    flags: u32,
    bias_at: u32,
    _pad: [u32; 3],
}

const BACK_RELU: u32 = 1;
const BACK_FIRST: u32 = 2;

/// Mirror of `Gemm` in `dense.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Gemm {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
}

const BIAS: u32 = 4;
const RELU: u32 = 8;

/// The pipelines of `dense.wgsl` and `dense_backward.wgsl`, built once per device.
struct Kernels {
    gemm: Kernel,
    gemm_wide: Kernel,
    backward: Kernel,
}

impl Kernels {
    fn new(device: &wgpu::Device) -> Self {
        let gemm_slots = [
            Slot::Uniform(16),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Write(4),
        ];
        let [gemm, gemm_wide] = pipeline::kernels(
            device,
            "nn.dense",
            &source(),
            ["gemm", "gemm_wide"],
            &gemm_slots,
        );
        let back_slots = [
            Slot::Uniform(32),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Write(4),
            Slot::Write(4),
        ];
        let [backward] = pipeline::kernels(
            device,
            "nn.dense_backward",
            &backward_source(),
            ["dense_backward"],
            &back_slots,
        );
        Kernels {
            gemm,
            gemm_wide,
            backward,
        }
    }
}

/// The definition: `inp` features in, `out` units out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dense {
    pub inp: usize,
    pub out: usize,
    pub relu: bool,
}

impl Dense {
    /// Float offset of the bias in the layer's region (its own aligned binding).
    fn bias_at(&self) -> usize {
        aligned(self.inp * self.out)
    }
}

impl LayerDef for Dense {
    fn keras_name(&self) -> &'static str {
        "dense"
    }

    fn describe(&self) -> String {
        format!("Dense{}", if self.relu { "+ReLU" } else { "" })
    }

    fn output_shape(&self) -> Shape {
        Shape::Flat(self.out)
    }

    fn params(&self) -> Vec<Param> {
        vec![
            Param {
                name: "kernel",
                shape: vec![self.inp, self.out],
                trainable: true,
                offset: 0,
                init: Init::GlorotUniform,
            },
            Param {
                name: "bias",
                shape: vec![self.out],
                trainable: true,
                offset: self.bias_at(),
                init: Init::Zeros,
            },
        ]
    }

    fn fuse_relu(&mut self) -> bool {
        !std::mem::replace(&mut self.relu, true)
    }

    fn gives_logits(&self) -> bool {
        !self.relu
    }

    fn step_code(&self, io: &mut StepIo) -> Option<StepCode> {
        let Dense { inp, out, relu } = *self;
        let shape = format!("{}, {}, {}", io.arg(io.rows)?, io.arg(inp)?, io.arg(out)?);
        let (x, y, dy) = (io.arg(io.input)?, io.arg(io.output)?, io.arg(io.d_output)?);
        let (w, b, dx) = (
            io.arg(io.at)?,
            io.arg(io.at + self.bias_at())?,
            io.d_input_arg()?,
        );
        Some(StepCode {
            library: ("dense", include_str!("../../../shaders/nn/step_dense.wgsl")),
            forward: vec![format!(
                "dense_forward(t, {shape}, {x}, {y}, {w}, {b}, {relu});"
            )],
            backward: vec![format!(
                "dense_backward(t, {shape}, {x}, {y}, {dy}, {dx}, {w}, {b}, {relu});"
            )],
            scratch: 0,
            macs: io.rows.saturating_mul(inp).saturating_mul(out),
        })
    }

    fn gpu(
        &self,
        ctx: &Context,
        _params: &wgpu::Buffer,
        _grads: &wgpu::Buffer,
        _at: usize,
    ) -> Result<Box<dyn GpuLayer>> {
        // The forward GEMM takes a workgroup per tile of 16 units along one grid dimension.
        let (tiles, max) = (
            self.out.div_ceil(TILE as usize),
            ctx.plan_limits().max_groups_per_dim,
        );
        if tiles > max as usize {
            return Err(crate::nn::Error::Model(format!(
                "Dense({}) needs {tiles} workgroups along one grid dimension on the GPU, more than the device's {max} (max_compute_workgroups_per_dimension): at most {} units",
                self.out,
                max as usize * TILE as usize
            )));
        }
        Ok(Box::new(GpuDense {
            def: *self,
            kernels: ctx.cached(Kernels::new),
            binds: HashMap::new(),
        }))
    }

    fn cpu(&self) -> Box<dyn CpuLayer> {
        Box::new(CpuDense::new(*self))
    }

    fn cpu_f32(&self) -> Result<Box<dyn CpuLayer<f32>>> {
        Ok(Box::new(CpuDense::new(*self)))
    }
}

/// The bind groups of one batch size, and the backward's workgroup count.
struct Binds {
    forward: wgpu::BindGroup,
    backward: wgpu::BindGroup,
    backward_groups: u32,
}

struct GpuDense {
    def: Dense,
    kernels: Arc<Kernels>,
    binds: HashMap<usize, Binds>,
}

impl GpuLayer for GpuDense {
    fn prepare(&mut self, ctx: &Context, io: &Io<'_>) -> Result<()> {
        let (rows, Dense { inp, out, relu }) = (io.rows, self.def);
        let forward_u = ctx.uniform(
            "nn.dense.gemm",
            &Gemm {
                m: gpu_u32("Dense batch", rows)?,
                n: gpu_u32("Dense units", out)?,
                k: gpu_u32("Dense inputs", inp)?,
                flags: BIAS | if relu { RELU } else { 0 },
            },
        )?;
        let back_u = ctx.uniform(
            "nn.dense.backward",
            &Back {
                rows: gpu_u32("Dense batch", rows)?,
                inp: gpu_u32("Dense inputs", inp)?,
                out: gpu_u32("Dense units", out)?,
                flags: if relu { BACK_RELU } else { 0 } | if io.first { BACK_FIRST } else { 0 },
                bias_at: gpu_u32("Dense bias offset", self.def.bias_at())?,
                _pad: [0; 3],
            },
        )?;
        let kernel = Region::floats(io.params, io.at, inp * out);
        let bias = Region::floats(io.params, io.at + self.def.bias_at(), out);
        let d_params = Region::floats(io.grads, io.at, self.def.bias_at() + out);
        let (dev, k) = (ctx.device(), &*self.kernels);
        let forward = bind(
            dev,
            "nn.dense.forward",
            &k.gemm.layout,
            &[
                (&forward_u).into(),
                io.input.into(),
                kernel,
                bias,
                io.output.into(),
            ],
        );
        let backward = bind(
            dev,
            "nn.dense.backward",
            &k.backward.layout,
            &[
                (&back_u).into(),
                io.input.into(),
                io.output.into(),
                io.d_output.into(),
                kernel,
                d_params,
                io.d_input.into(),
            ],
        );
        // Workgroups by role: dW tiles, bias column tiles, dX tiles (none for the first layer).
        let t = TILE as usize;
        let d_input_tiles = if io.first {
            0
        } else {
            inp.div_ceil(t) * rows.div_ceil(t)
        };
        let backward_groups = out.div_ceil(t) * inp.div_ceil(t) + out.div_ceil(t) + d_input_tiles;
        self.binds.insert(
            rows,
            Binds {
                forward,
                backward,
                backward_groups: gpu_u32("Dense workgroups", backward_groups)?,
            },
        );
        Ok(())
    }

    fn forget(&mut self) {
        self.binds.clear();
    }

    fn forward(
        &mut self,
        _ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
        _mode: Mode,
    ) -> Result<()> {
        let b = &self.binds[&io.rows];
        let (out, rows) = (self.def.out, io.rows);
        let mut pass = pipeline::begin_pass(enc, &Default::default());
        // Wide layers keep R x R outputs per thread; small ones would leave most threads idle.
        let wide = (TILE * REG) as usize;
        if out >= wide && rows >= wide {
            let groups = (out.div_ceil(wide) as u32, rows.div_ceil(wide) as u32);
            dispatch(&mut pass, &self.kernels.gemm_wide, &b.forward, groups);
        } else {
            dispatch(&mut pass, &self.kernels.gemm, &b.forward, tiles(out, rows));
        }
        Ok(())
    }

    fn backward(
        &mut self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
    ) -> Result<()> {
        let b = &self.binds[&io.rows];
        let max = ctx.plan_limits().max_groups_per_dim;
        let mut pass = pipeline::begin_pass(enc, &Default::default());
        let groups = crate::plan::grid(b.backward_groups, max);
        dispatch(&mut pass, &self.kernels.backward, &b.backward, groups);
        Ok(())
    }
}

/// Workgroups of a GEMM with `cols` x `rows` outputs.
fn tiles(cols: usize, rows: usize) -> (u32, u32) {
    (
        cols.div_ceil(TILE as usize) as u32,
        rows.div_ceil(TILE as usize) as u32,
    )
}
