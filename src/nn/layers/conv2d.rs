//! `Conv2D(filters, kernel_size, strides, padding)`: a 2-D convolution over NHWC feature maps
//! with Keras' kernel layout `[kh, kw, in, out]`, then bias and, when one is fused, ReLU. On
//! the GPU through `shaders/nn/conv2d.wgsl` (forward: an implicit GEMM, the patch matrix
//! gathered from the input tile by tile, never stored) and `shaders/nn/conv2d_backward.wgsl`
//! (the whole backward in one dispatch). CPU twin: `conv2d_cpu.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use bytemuck::{Pod, Zeroable};

use super::conv2d_cpu::CpuConv;
use crate::nn::error::Result;
use crate::nn::layer::{aligned, gpu_u32, CpuLayer, GpuLayer, Init, Io, LayerDef, Param};
use crate::nn::shape::{Padding, Shape};
use crate::pipeline::{self, bind, dispatch, Kernel, Region, Slot};
use crate::{Context, Mode};

/// Output tile of a workgroup (T x T threads).
const TILE: u32 = 16;
/// Threads of a workgroup of the direct kernels.
const DIRECT_WG: u32 = 64;
/// Channels per thread of the direct kernels (`Q` in their WGSL, which accumulates them in a
/// vec4: it is 4).
const DIRECT_CHANNELS: usize = 4;

/// A convolution as the user lists it (Keras' `Conv2D` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2D {
    /// Output channels.
    pub filters: usize,
    /// `[kh, kw]`.
    pub kernel_size: [usize; 2],
    /// `[sh, sw]` (Keras' default `(1, 1)`).
    pub strides: [usize; 2],
    pub padding: Padding,
    /// Whether the layer adds a bias (Keras' default; a convolution followed by batch norm
    /// may drop it, as the bias would be cancelled by the mean).
    pub use_bias: bool,
}

impl Conv2D {
    /// `Conv2D(filters, (k, k))` with stride 1, `valid` padding and a bias: Keras' defaults.
    pub fn new(filters: usize, k: usize) -> Conv2D {
        Conv2D {
            filters,
            kernel_size: [k, k],
            strides: [1, 1],
            padding: Padding::Valid,
            use_bias: true,
        }
    }

    /// The same convolution with `padding`.
    pub fn padding(self, padding: Padding) -> Conv2D {
        Conv2D { padding, ..self }
    }

    /// The same convolution with strides `[s, s]`.
    pub fn stride(self, s: usize) -> Conv2D {
        Conv2D {
            strides: [s, s],
            ..self
        }
    }
}

/// The definition: a convolution on a known input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Conv {
    pub spec: Conv2D,
    /// Input `[h, w, cin]`.
    pub input: [usize; 3],
    /// Output `[oh, ow]`.
    pub out: [usize; 2],
    /// Padding before the first row and column.
    pub pad: [usize; 2],
    pub relu: bool,
}

impl Conv {
    /// Rows of the kernel matrix: `kh * kw * cin`.
    pub fn taps(&self) -> usize {
        self.spec.kernel_size[0] * self.spec.kernel_size[1] * self.input[2]
    }

    /// Float offset of the bias in the layer's region (its own aligned binding).
    pub fn bias_at(&self) -> usize {
        aligned(self.taps() * self.spec.filters)
    }
}

/// Mirror of `Conv` in the two shaders (the geometry is in override constants).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Uniform {
    batch: u32,
    flags: u32,
    bias_at: u32,
    _pad: u32,
}

const BIAS: u32 = 1;
const RELU: u32 = 2;
const FIRST: u32 = 4;

/// A shader with its sizes and what the two share (`conv2d_common.wgsl`: geometry, uniform,
/// input, tiles, the patch matrix).
fn with_prelude(body: &str) -> String {
    format!(
        "const T: u32 = {TILE}u;\nconst DIRECT_WG: u32 = {DIRECT_WG}u;\nconst Q: u32 = {DIRECT_CHANNELS}u;\n{}\n{body}",
        include_str!("../../../shaders/nn/conv2d_common.wgsl")
    )
}

/// The forward shader, ready to compile.
pub(crate) fn source() -> String {
    with_prelude(include_str!("../../../shaders/nn/conv2d.wgsl"))
}

/// The backward shader, ready to compile.
pub(crate) fn backward_source() -> String {
    with_prelude(include_str!("../../../shaders/nn/conv2d_backward.wgsl"))
}

/// A convolution's geometry as the shaders' override constants.
type Geometry = [u32; 12];

/// A geometry and the kernels' form (direct or tiled).
type Key = (Geometry, bool);

const CONSTANTS: [&str; 12] = [
    "H", "W", "CIN", "OH", "OW", "COUT", "KH", "KW", "SH", "SW", "PT", "PL",
];

/// Geometries whose pipelines stay compiled after their last layer is dropped: a model
/// rebuilt with the same shapes (a test's twin, the CLI's no-BN twin) reuses them. Past it,
/// the least recently used go with their layers.
const KEPT_GEOMETRIES: usize = 8;

/// The specialized pipelines of a device: those of live layers (weak: they go when the last
/// layer of their geometry is dropped) and the `KEPT_GEOMETRIES` most recently used (strong).
/// A model's pipelines are held by its layers, so training never looks here.
#[derive(Default)]
struct ByGeometry {
    live: HashMap<Key, Weak<[Kernel; 2]>>,
    recent: VecDeque<(Key, Arc<[Kernel; 2]>)>,
}

impl ByGeometry {
    fn get(&mut self, key: &Key) -> Option<Arc<[Kernel; 2]>> {
        let k = self.live.get(key)?.upgrade()?;
        self.keep(*key, k.clone());
        Some(k)
    }

    /// Marks `key` most recently used, dropping the oldest past `KEPT_GEOMETRIES` and the
    /// entries of geometries no layer holds any more.
    fn keep(&mut self, key: Key, k: Arc<[Kernel; 2]>) {
        self.recent.retain(|(r, _)| *r != key);
        self.recent.push_front((key, k.clone()));
        self.recent.truncate(KEPT_GEOMETRIES);
        self.live.insert(key, Arc::downgrade(&k));
        self.live.retain(|_, w| w.strong_count() > 0);
    }
}

/// The two modules and their layouts, compiled once per device; a forward and a backward
/// pipeline per geometry, specialized from them.
struct Kernels {
    forward: (wgpu::ShaderModule, wgpu::BindGroupLayout),
    backward: (wgpu::ShaderModule, wgpu::BindGroupLayout),
    by_geometry: Mutex<ByGeometry>,
}

impl Kernels {
    fn new(device: &wgpu::Device) -> Self {
        let u = Slot::Uniform(std::mem::size_of::<Uniform>() as u64);
        let forward_slots = [u, Slot::Read(4), Slot::Read(4), Slot::Write(4)];
        let back_slots = [
            u,
            Slot::Read(4),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Write(4),
            Slot::Write(4),
        ];
        Kernels {
            forward: (
                pipeline::module(device, "nn.conv2d", &source()),
                pipeline::layout(device, "nn.conv2d", &forward_slots),
            ),
            backward: (
                pipeline::module(device, "nn.conv2d_backward", &backward_source()),
                pipeline::layout(device, "nn.conv2d_backward", &back_slots),
            ),
            by_geometry: Mutex::default(),
        }
    }

    /// The forward and backward kernels of one geometry, direct or tiled.
    fn of(&self, device: &wgpu::Device, g: Geometry, direct: bool) -> Arc<[Kernel; 2]> {
        let cached = self
            .by_geometry
            .lock()
            .ok()
            .and_then(|mut m| m.get(&(g, direct)));
        if let Some(k) = cached {
            return k;
        }
        let constants: Vec<(&str, f64)> = CONSTANTS
            .iter()
            .zip(g)
            .map(|(&n, v)| (n, v as f64))
            .collect();
        let build =
            |(module, layout): &(wgpu::ShaderModule, wgpu::BindGroupLayout), entry| Kernel {
                pipeline: pipeline::specialized(device, layout, module, entry, &constants),
                layout: layout.clone(),
            };
        let suffix = if direct { "_direct" } else { "" };
        let k = Arc::new([
            build(&self.forward, &format!("conv2d_forward{suffix}")),
            build(&self.backward, &format!("conv2d_backward{suffix}")),
        ]);
        if let Ok(mut m) = self.by_geometry.lock() {
            // Another thread may have built the same meanwhile: the first one stays.
            match m.get(&(g, direct)) {
                Some(first) => return first,
                None => m.keep((g, direct), k.clone()),
            }
        }
        k
    }

    /// Geometries with compiled pipelines.
    fn len(&self) -> usize {
        self.by_geometry.lock().map_or(0, |m| m.live.len())
    }
}

/// Geometries whose convolution pipelines `ctx` holds (the live layers' and the few kept):
/// for tests of the cache's bound.
#[doc(hidden)]
pub fn cached_conv_geometries(ctx: &Context) -> usize {
    ctx.cached(Kernels::new).len()
}

impl LayerDef for Conv {
    fn keras_name(&self) -> &'static str {
        "conv2d"
    }

    fn describe(&self) -> String {
        let [kh, kw] = self.spec.kernel_size;
        format!("Conv2D {kh}x{kw}{}", if self.relu { "+ReLU" } else { "" })
    }

    fn output_shape(&self) -> Shape {
        Shape::image(self.out[0], self.out[1], self.spec.filters)
    }

    fn params(&self) -> Vec<Param> {
        let [kh, kw] = self.spec.kernel_size;
        let mut p = vec![Param {
            name: "kernel",
            shape: vec![kh, kw, self.input[2], self.spec.filters],
            trainable: true,
            offset: 0,
            init: Init::GlorotUniform,
        }];
        if self.spec.use_bias {
            p.push(Param {
                name: "bias",
                shape: vec![self.spec.filters],
                trainable: true,
                offset: self.bias_at(),
                init: Init::Zeros,
            });
        }
        p
    }

    fn fuse_relu(&mut self) -> bool {
        !std::mem::replace(&mut self.relu, true)
    }

    fn gpu(
        &self,
        ctx: &Context,
        _params: &wgpu::Buffer,
        _grads: &wgpu::Buffer,
        _at: usize,
    ) -> Result<Box<dyn GpuLayer>> {
        let [h, w, cin] = self.input;
        let [kh, kw] = self.spec.kernel_size;
        let [sh, sw] = self.spec.strides;
        let sizes = [
            h,
            w,
            cin,
            self.out[0],
            self.out[1],
            self.spec.filters,
            kh,
            kw,
            sh,
            sw,
            self.pad[0],
            self.pad[1],
        ];
        let mut geometry: Geometry = [0; 12];
        for ((g, v), name) in geometry.iter_mut().zip(sizes).zip(CONSTANTS) {
            *g = gpu_u32(&format!("Conv2D {name}"), v)?;
        }
        Ok(Box::new(GpuConv {
            def: *self,
            kernels: ctx
                .cached(Kernels::new)
                .of(ctx.device(), geometry, ctx.direct_kernels()),
            direct: ctx.direct_kernels(),
            binds: HashMap::new(),
        }))
    }

    fn cpu(&self) -> Box<dyn CpuLayer> {
        Box::new(CpuConv::new(*self))
    }

    fn cpu_f32(&self) -> Result<Box<dyn CpuLayer<f32>>> {
        Ok(Box::new(CpuConv::new(*self)))
    }
}

/// The bind groups and workgroup grids of one batch size.
struct Binds {
    forward: wgpu::BindGroup,
    backward: wgpu::BindGroup,
    grids: [(u32, u32); 2],
}

struct GpuConv {
    def: Conv,
    /// Forward and backward, specialized to the layer's geometry.
    kernels: Arc<[Kernel; 2]>,
    /// Whether they are the direct form (one thread per value) or tiled.
    direct: bool,
    binds: HashMap<usize, Binds>,
}

impl GpuLayer for GpuConv {
    fn prepare(&mut self, ctx: &Context, io: &Io<'_>) -> Result<()> {
        let d = &self.def;
        let [h, w, cin] = d.input;
        let [oh, ow] = d.out;
        let cout = d.spec.filters;
        let flags = if d.spec.use_bias { BIAS } else { 0 }
            | if d.relu { RELU } else { 0 }
            | if io.first { FIRST } else { 0 };
        let u = ctx.uniform(
            "nn.conv2d",
            &Uniform {
                batch: gpu_u32("Conv2D batch", io.rows)?,
                flags,
                bias_at: gpu_u32("Conv2D bias offset", d.bias_at())?,
                _pad: 0,
            },
        )?;
        let region = d.bias_at() + if d.spec.use_bias { cout } else { 0 };
        let weights = Region::floats(io.params, io.at, region);
        let d_params = Region::floats(io.grads, io.at, region);
        let (dev, [kf, kb]) = (ctx.device(), &*self.kernels);
        let forward = bind(
            dev,
            "nn.conv2d.forward",
            &kf.layout,
            &[(&u).into(), io.input.into(), weights, io.output.into()],
        );
        let backward = bind(
            dev,
            "nn.conv2d.backward",
            &kb.layout,
            &[
                (&u).into(),
                io.input.into(),
                io.output.into(),
                io.d_output.into(),
                weights,
                d_params,
                io.d_input.into(),
            ],
        );
        let max = ctx.plan_limits().max_groups_per_dim;
        let grid = |n: usize| {
            Ok::<_, crate::nn::Error>(crate::plan::grid(gpu_u32("Conv2D workgroups", n)?, max))
        };
        // Direct: a thread per position and DIRECT_CHANNELS channels (db: per channel), roles
        // in order (dK, db, dX). Tiled: the same roles in tiles of T x T values. The first
        // layer has no dX.
        let (t, c, group) = if self.direct {
            (1, DIRECT_CHANNELS, DIRECT_WG as usize)
        } else {
            (TILE as usize, TILE as usize, 1)
        };
        let outputs = io.rows * oh * ow;
        let forward_tiles = cout.div_ceil(c) * outputs.div_ceil(t);
        let bias_tiles = if d.spec.use_bias { cout.div_ceil(t) } else { 0 };
        let dx_tiles = if io.first {
            0
        } else {
            cin.div_ceil(c) * (io.rows * h * w).div_ceil(t)
        };
        let backward_tiles = cout.div_ceil(c) * d.taps().div_ceil(t) + bias_tiles + dx_tiles;
        let (forward_tiles, backward_tiles) = (
            forward_tiles.div_ceil(group),
            backward_tiles.div_ceil(group),
        );
        self.binds.insert(
            io.rows,
            Binds {
                forward,
                backward,
                grids: [grid(forward_tiles)?, grid(backward_tiles)?],
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
        let mut pass = pipeline::begin_pass(enc, &Default::default());
        dispatch(&mut pass, &self.kernels[0], &b.forward, b.grids[0]);
        Ok(())
    }

    fn backward(
        &mut self,
        _ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
    ) -> Result<()> {
        let b = &self.binds[&io.rows];
        let mut pass = pipeline::begin_pass(enc, &Default::default());
        dispatch(&mut pass, &self.kernels[1], &b.backward, b.grids[1]);
        Ok(())
    }
}
