//! `Dense(units)`: `y = x · kernel + bias` (then ReLU when one is fused), on the GPU through
//! `shaders/nn/dense.wgsl`: a tiled GEMM, column sums for the bias gradient, the ReLU mask.
//! CPU twin: `dense_cpu.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::dense_cpu::CpuDense;
use crate::nn::error::Result;
use crate::nn::layer::{aligned, CpuLayer, GpuLayer, Init, Io, LayerDef, Param, ELEM_WG};
use crate::pipeline::{self, bind, dispatch, groups_1d, Kernel, Region, Slot};
use crate::{Context, Mode};

/// Output tile of a GEMM workgroup (T x T threads).
const TILE: u32 = 16;
/// Threads of a column-sum workgroup.
const COLSUM_WG: u32 = 64;

/// The shader with its sizes.
pub(crate) fn source() -> String {
    format!(
        "const T: u32 = {TILE}u;\nconst COLSUM_WG: u32 = {COLSUM_WG}u;\nconst ELEM_WG: u32 = {ELEM_WG}u;\n{}",
        include_str!("../../../shaders/nn/dense.wgsl")
    )
}

/// Mirror of `Gemm` in `dense.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Gemm {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
}

const TRANS_A: u32 = 1;
const TRANS_B: u32 = 2;
const BIAS: u32 = 4;
const RELU: u32 = 8;

/// The pipelines of `dense.wgsl`, built once per device.
struct Kernels {
    gemm: Kernel,
    colsum: Kernel,
    relu_mask: Kernel,
}

impl Kernels {
    fn new(device: &wgpu::Device) -> Self {
        let slots = [
            Slot::Uniform(16),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Write(4),
        ];
        let entries = ["gemm", "colsum", "relu_mask"];
        let [gemm, colsum, relu_mask] =
            pipeline::kernels(device, "nn.dense", &source(), entries, &slots);
        Kernels {
            gemm,
            colsum,
            relu_mask,
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

    fn output_width(&self) -> usize {
        self.out
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

    fn gpu(
        &self,
        ctx: &Context,
        _params: &wgpu::Buffer,
        _grads: &wgpu::Buffer,
        _at: usize,
    ) -> Result<Box<dyn GpuLayer>> {
        Ok(Box::new(GpuDense {
            def: *self,
            kernels: ctx.cached(Kernels::new),
            unused: ctx.storage("nn.dense.unused", 16)?,
            binds: HashMap::new(),
        }))
    }

    fn cpu(&self) -> Box<dyn CpuLayer> {
        Box::new(CpuDense::new(*self))
    }
}

/// The bind groups of one batch size.
struct Binds {
    forward: wgpu::BindGroup,
    mask: Option<wgpu::BindGroup>,
    d_kernel: wgpu::BindGroup,
    d_bias: wgpu::BindGroup,
    d_input: Option<wgpu::BindGroup>,
}

struct GpuDense {
    def: Dense,
    kernels: Arc<Kernels>,
    /// Bound to the read-only slots a kernel does not use.
    unused: wgpu::Buffer,
    binds: HashMap<usize, Binds>,
}

impl GpuLayer for GpuDense {
    fn prepare(&mut self, ctx: &Context, io: &Io<'_>) -> Result<()> {
        let (rows, Dense { inp, out, relu }) = (io.rows, self.def);
        let gemm = |m: usize, n: usize, k: usize, flags: u32| {
            let g = Gemm {
                m: m as u32,
                n: n as u32,
                k: k as u32,
                flags,
            };
            ctx.uniform("nn.dense.gemm", &g)
        };
        let forward_u = gemm(rows, out, inp, BIAS | if relu { RELU } else { 0 })?;
        let d_kernel_u = gemm(inp, out, rows, TRANS_A)?;
        let rows_u = gemm(rows, out, 0, 0)?;
        let d_input_u = gemm(rows, inp, out, TRANS_B)?;
        let kernel = Region::floats(io.params, io.at, inp * out);
        let bias = Region::floats(io.params, io.at + self.def.bias_at(), out);
        let d_kernel = Region::floats(io.grads, io.at, inp * out);
        let d_bias = Region::floats(io.grads, io.at + self.def.bias_at(), out);
        let (dev, k) = (ctx.device(), &*self.kernels);
        let none = &self.unused;
        let binds = Binds {
            forward: bind(
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
            ),
            mask: relu.then(|| {
                bind(
                    dev,
                    "nn.dense.mask",
                    &k.relu_mask.layout,
                    &[
                        (&rows_u).into(),
                        none.into(),
                        io.output.into(),
                        none.into(),
                        io.d_output.into(),
                    ],
                )
            }),
            d_kernel: bind(
                dev,
                "nn.dense.d_kernel",
                &k.gemm.layout,
                &[
                    (&d_kernel_u).into(),
                    io.input.into(),
                    io.d_output.into(),
                    none.into(),
                    d_kernel,
                ],
            ),
            d_bias: bind(
                dev,
                "nn.dense.d_bias",
                &k.colsum.layout,
                &[
                    (&rows_u).into(),
                    io.d_output.into(),
                    none.into(),
                    none.into(),
                    d_bias,
                ],
            ),
            d_input: (!io.first).then(|| {
                bind(
                    dev,
                    "nn.dense.d_input",
                    &k.gemm.layout,
                    &[
                        (&d_input_u).into(),
                        io.d_output.into(),
                        kernel,
                        none.into(),
                        io.d_input.into(),
                    ],
                )
            }),
        };
        self.binds.insert(rows, binds);
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
        let mut pass = enc.begin_compute_pass(&Default::default());
        dispatch(
            &mut pass,
            &self.kernels.gemm,
            &b.forward,
            tiles(self.def.out, io.rows),
        );
        Ok(())
    }

    fn backward(
        &mut self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
    ) -> Result<()> {
        let (b, k) = (&self.binds[&io.rows], &*self.kernels);
        let Dense { inp, out, .. } = self.def;
        let max = ctx.plan_limits().max_groups_per_dim;
        let mut pass = enc.begin_compute_pass(&Default::default());
        if let Some(mask) = &b.mask {
            let groups = groups_1d(io.rows * out, ELEM_WG as usize, max);
            dispatch(&mut pass, &k.relu_mask, mask, groups);
        }
        dispatch(&mut pass, &k.gemm, &b.d_kernel, tiles(out, inp));
        let colsum_groups = (out.div_ceil(COLSUM_WG as usize) as u32, 1);
        dispatch(&mut pass, &k.colsum, &b.d_bias, colsum_groups);
        if let Some(d_input) = &b.d_input {
            dispatch(&mut pass, &k.gemm, d_input, tiles(inp, io.rows));
        }
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
