//! WGSL sources, bind-group layouts and compute pipelines, built once per device.

use std::num::NonZeroU64;

use bytemuck::{Pod, Zeroable};

/// Shared definitions of every module.
pub const COMMON_WGSL: &str = include_str!("../shaders/common.wgsl");
/// Streaming kernels: pivot, stats, normalize, backward reduce, dx.
pub const STREAM_WGSL: &str = include_str!("../shaders/stream.wgsl");
/// Reduction entry points using subgroup operations.
pub const ENTRY_SUBGROUP_WGSL: &str = include_str!("../shaders/entry_subgroup.wgsl");
/// Reduction entry points using workgroup memory only.
pub const ENTRY_WORKGROUP_WGSL: &str = include_str!("../shaders/entry_workgroup.wgsl");
/// Per-channel finalize kernels.
pub const CHANNEL_WGSL: &str = include_str!("../shaders/channel.wgsl");

/// The WGSL of the streaming module, with or without subgroup operations.
pub fn stream_source(subgroups: bool) -> String {
    let entry = if subgroups {
        ENTRY_SUBGROUP_WGSL
    } else {
        ENTRY_WORKGROUP_WGSL
    };
    [COMMON_WGSL, STREAM_WGSL, entry].join("\n")
}

/// The WGSL of the per-channel module.
pub fn channel_source() -> String {
    [COMMON_WGSL, CHANNEL_WGSL].join("\n")
}

pub(crate) const FLAG_RELU: u32 = 1;
pub(crate) const FLAG_CENTER: u32 = 2;
pub(crate) const FLAG_SCALE: u32 = 4;

/// Mirror of `Params` in `shaders/common.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
pub(crate) struct Params {
    pub channels: u32,
    pub inner: u32,
    pub rows: u32,
    pub cw: u32,
    pub splits: u32,
    pub split_base: u32,
    pub total_splits: u32,
    pub rows_per_split: u32,
    pub stats_groups: u32,
    pub _pad3: u32,
    pub elems: u32,
    pub flags: u32,
    pub n: f32,
    pub eps: f32,
    pub keep: f32,
    pub fresh: f32,
    pub var_correction: f32,
    pub _pad: [f32; 3],
}

/// Bytes of `ChannelState` in `shaders/common.wgsl`.
pub(crate) const CHANNEL_STATE_BYTES: u64 = 48;

/// Pipelines of one device.
#[derive(Debug)]
pub struct Kernels {
    pub(crate) stream_layout: wgpu::BindGroupLayout,
    pub(crate) channel_layout: wgpu::BindGroupLayout,
    pub(crate) pivot: wgpu::ComputePipeline,
    pub(crate) stats: wgpu::ComputePipeline,
    pub(crate) normalize: wgpu::ComputePipeline,
    pub(crate) reduce: wgpu::ComputePipeline,
    pub(crate) dx: wgpu::ComputePipeline,
    pub(crate) finalize_training: wgpu::ComputePipeline,
    pub(crate) finalize_inference: wgpu::ComputePipeline,
    pub(crate) finalize_backward: wgpu::ComputePipeline,
    /// Whether the reductions use subgroup operations.
    pub subgroups: bool,
}

fn storage(binding: u32, read_only: bool, min: u64) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: NonZeroU64::new(min),
        },
        count: None,
    }
}

fn uniform(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: NonZeroU64::new(std::mem::size_of::<Params>() as u64),
        },
        count: None,
    }
}

impl Kernels {
    /// Compiles both modules and every pipeline for `device`.
    pub fn new(device: &wgpu::Device, subgroups: bool) -> Self {
        let stream_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("bn.stream"),
            entries: &[
                uniform(0),
                storage(1, true, 4),
                storage(2, true, 4),
                storage(3, false, 4),
                storage(4, false, CHANNEL_STATE_BYTES),
                storage(5, false, 16),
            ],
        });
        let channel_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("bn.channel"),
            entries: &[
                uniform(0),
                storage(1, false, 16),
                storage(2, false, CHANNEL_STATE_BYTES),
                storage(3, true, 16),
                storage(4, false, 8),
            ],
        });
        let stream_src = stream_source(subgroups);
        let stream_module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("bn.stream"),
            source: wgpu::ShaderSource::Wgsl(stream_src.into()),
        });
        let channel_module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("bn.channel"),
            source: wgpu::ShaderSource::Wgsl(channel_source().into()),
        });
        let pipeline =
            |layout: &wgpu::BindGroupLayout, module: &wgpu::ShaderModule, entry: &str| {
                let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(entry),
                    bind_group_layouts: &[Some(layout)],
                    immediate_size: 0,
                });
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: Some(&pl),
                    module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &[],
                        // Every workgroup variable is written before it is read.
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
            };
        let s = |e| pipeline(&stream_layout, &stream_module, e);
        let c = |e| pipeline(&channel_layout, &channel_module, e);
        Kernels {
            pivot: s("pivot"),
            stats: s("stats"),
            normalize: s("normalize"),
            reduce: s("reduce"),
            dx: s("dx"),
            finalize_training: c("finalize_training"),
            finalize_inference: c("finalize_inference"),
            finalize_backward: c("finalize_backward"),
            stream_layout,
            channel_layout,
            subgroups,
        }
    }
}
