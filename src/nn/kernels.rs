//! Pipelines of the network kernels (`shaders/nn/`), built once per device, and small helpers
//! to bind buffer regions to them.

use std::num::NonZeroU64;

use bytemuck::{Pod, Zeroable};

/// Dense layers: tiled GEMM, column sums, ReLU mask.
pub const DENSE_WGSL: &str = include_str!("../../shaders/nn/dense.wgsl");
/// Softmax + categorical cross-entropy with on-GPU metrics.
pub const LOSS_WGSL: &str = include_str!("../../shaders/nn/loss.wgsl");
/// Adam and SGD over the flat parameter buffer.
pub const OPTIMIZER_WGSL: &str = include_str!("../../shaders/nn/optimizer.wgsl");
/// Batch gather and dropout.
pub const DATA_WGSL: &str = include_str!("../../shaders/nn/data.wgsl");

/// Mirror of `Gemm` in `dense.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub flags: u32,
}

pub(crate) const TRANS_A: u32 = 1;
pub(crate) const TRANS_B: u32 = 2;
pub(crate) const BIAS: u32 = 4;
pub(crate) const RELU: u32 = 8;

/// Mirror of `Xent` in `loss.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct XentParams {
    pub rows: u32,
    pub classes: u32,
    pub mode: u32,
    pub inv_rows: f32,
}

/// Mirror of `Opt` in `optimizer.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct OptParams {
    pub len: u32,
    pub _pad: u32,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
}

/// Mirror of `Elem` in `data.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct ElemParams {
    pub rows: u32,
    pub cols: u32,
    pub start: u32,
    pub seed: u32,
    pub rate: f32,
    pub scale: f32,
    pub _pad: [u32; 2],
}

/// How a kernel binds one slot.
#[derive(Clone, Copy)]
pub(crate) enum Slot {
    Uniform(u64),
    Read,
    Write,
}

/// A pipeline and its bind-group layout.
#[derive(Debug)]
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

fn kernel(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
    slots: &[Slot],
) -> Kernel {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match s {
                    Slot::Uniform(_) => wgpu::BufferBindingType::Uniform,
                    Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Slot::Write => wgpu::BufferBindingType::Storage { read_only: false },
                },
                has_dynamic_offset: false,
                min_binding_size: NonZeroU64::new(match s {
                    Slot::Uniform(n) => *n,
                    _ => 4,
                }),
            },
            count: None,
        })
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(entry),
        entries: &entries,
    });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(entry),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: Some(&pl),
        module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    });
    Kernel { pipeline, layout }
}

/// Every network kernel of one device.
#[derive(Debug)]
pub(crate) struct NnKernels {
    pub gemm: Kernel,
    pub colsum: Kernel,
    pub relu_mask: Kernel,
    pub xent: Kernel,
    pub adam_tick: Kernel,
    pub adam: Kernel,
    pub sgd_tick: Kernel,
    pub sgd: Kernel,
    pub gather: Kernel,
    pub dropout: Kernel,
}

impl NnKernels {
    pub fn new(device: &wgpu::Device) -> Self {
        let module = |label: &str, src: &str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            })
        };
        let dense = module("nn.dense", DENSE_WGSL);
        let loss = module("nn.loss", LOSS_WGSL);
        let opt = module("nn.optimizer", OPTIMIZER_WGSL);
        let data = module("nn.data", DATA_WGSL);
        use Slot::*;
        let gemm_slots = [Uniform(16), Read, Read, Read, Write];
        let opt_slots = [Uniform(32), Write, Read, Write, Write, Write];
        let data_slots = [Uniform(32), Read, Read, Read, Write, Write];
        NnKernels {
            gemm: kernel(device, &dense, "gemm", &gemm_slots),
            colsum: kernel(device, &dense, "colsum", &gemm_slots),
            relu_mask: kernel(device, &dense, "relu_mask", &gemm_slots),
            xent: kernel(
                device,
                &loss,
                "softmax_xent",
                &[Uniform(16), Read, Read, Write, Write, Write],
            ),
            adam_tick: kernel(device, &opt, "adam_tick", &opt_slots),
            adam: kernel(device, &opt, "adam", &opt_slots),
            sgd_tick: kernel(device, &opt, "sgd_tick", &opt_slots),
            sgd: kernel(device, &opt, "sgd", &opt_slots),
            gather: kernel(device, &data, "gather", &data_slots),
            dropout: kernel(device, &data, "dropout", &data_slots),
        }
    }
}

/// A region of a buffer to bind: whole buffer when `size` is `None`.
#[derive(Clone, Copy)]
pub(crate) struct Region<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: Option<u64>,
}

impl<'a> From<&'a wgpu::Buffer> for Region<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> Self {
        Region {
            buffer,
            offset: 0,
            size: None,
        }
    }
}

/// Binds `regions` to the slots of `k` in order.
pub(crate) fn bind(device: &wgpu::Device, k: &Kernel, regions: &[Region<'_>]) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = regions
        .iter()
        .enumerate()
        .map(|(i, r)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: r.buffer,
                offset: r.offset,
                size: r.size.and_then(wgpu::BufferSize::new),
            }),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &k.layout,
        entries: &entries,
    })
}

/// A 1-D dispatch of `threads` threads in workgroups of `size`, folded into 2-D.
pub(crate) fn groups_1d(threads: usize, size: usize, max_dim: u32) -> (u32, u32) {
    let g = threads.div_ceil(size).max(1) as u32;
    crate::plan::grid(g, max_dim)
}
