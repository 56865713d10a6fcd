//! WGSL sources, bind-group layouts and compute pipelines, built once per device.

use bytemuck::{Pod, Zeroable};

use crate::pipeline::{self, Slot};

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
/// Bindings of the streaming module.
const STREAM_BINDINGS_WGSL: &str = include_str!("../shaders/stream_bindings.wgsl");
/// Bindings of the per-channel module.
const CHANNEL_BINDINGS_WGSL: &str = include_str!("../shaders/channel_bindings.wgsl");
/// Bindings of the fused module: both of the above.
const FUSED_BINDINGS_WGSL: &str = include_str!("../shaders/fused_bindings.wgsl");
/// Small tensors in one dispatch per pass.
const FUSED_WGSL: &str = include_str!("../shaders/fused.wgsl");
const FUSED_ENTRY_SUBGROUP_WGSL: &str = include_str!("../shaders/fused_entry_subgroup.wgsl");
const FUSED_ENTRY_WORKGROUP_WGSL: &str = include_str!("../shaders/fused_entry_workgroup.wgsl");

/// The workgroup sizes, written once (in `plan.rs`) and handed to WGSL as constants.
fn prelude() -> String {
    format!(
        "const WG: u32 = {}u;\nconst CHANNEL_WG: u32 = {}u;\n",
        crate::plan::WORKGROUP,
        crate::plan::CHANNEL_WORKGROUP
    )
}

/// The WGSL of the streaming module, with or without subgroup operations.
pub fn stream_source(subgroups: bool) -> String {
    let entry = if subgroups {
        ENTRY_SUBGROUP_WGSL
    } else {
        ENTRY_WORKGROUP_WGSL
    };
    [
        &prelude(),
        COMMON_WGSL,
        STREAM_BINDINGS_WGSL,
        STREAM_WGSL,
        entry,
    ]
    .join("\n")
}

/// The WGSL of the per-channel module.
pub fn channel_source() -> String {
    [&prelude(), COMMON_WGSL, CHANNEL_BINDINGS_WGSL, CHANNEL_WGSL].join("\n")
}

/// The WGSL of the fused module: the streaming and per-channel functions under one set of
/// bindings, with the fused entry points.
pub fn fused_source(subgroups: bool) -> String {
    let (entry, fused_entry) = if subgroups {
        (ENTRY_SUBGROUP_WGSL, FUSED_ENTRY_SUBGROUP_WGSL)
    } else {
        (ENTRY_WORKGROUP_WGSL, FUSED_ENTRY_WORKGROUP_WGSL)
    };
    [
        &prelude(),
        COMMON_WGSL,
        FUSED_BINDINGS_WGSL,
        STREAM_WGSL,
        entry,
        CHANNEL_WGSL,
        FUSED_WGSL,
        fused_entry,
    ]
    .join("\n")
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

/// The streaming pipelines and their layout.
#[derive(Debug)]
pub(crate) struct StreamKernels {
    pub(crate) layout: wgpu::BindGroupLayout,
    pub(crate) pivot: wgpu::ComputePipeline,
    pub(crate) stats: wgpu::ComputePipeline,
    pub(crate) normalize: wgpu::ComputePipeline,
    pub(crate) reduce: wgpu::ComputePipeline,
    pub(crate) dx: wgpu::ComputePipeline,
}

/// Pipelines of one device.
#[derive(Debug)]
pub struct Kernels {
    pub(crate) stream: StreamKernels,
    /// The streaming kernels with every tensor binding writable, built on first use: for
    /// inputs and outputs at disjoint regions of one buffer, which wgpu refuses to bind
    /// read-only and writable in one dispatch.
    shared: std::sync::OnceLock<StreamKernels>,
    /// One dispatch per pass for tensors one split covers; built on first use.
    fused: std::sync::OnceLock<FusedKernels>,
    device: wgpu::Device,
    pub(crate) channel_layout: wgpu::BindGroupLayout,
    pub(crate) finalize_training: wgpu::ComputePipeline,
    pub(crate) finalize_inference: wgpu::ComputePipeline,
    pub(crate) finalize_backward: wgpu::ComputePipeline,
    /// Whether the reductions use subgroup operations.
    pub subgroups: bool,
}

const PARAMS_BYTES: u64 = std::mem::size_of::<Params>() as u64;

impl StreamKernels {
    /// `writable_inputs`: x and dy declared `read_write` (see [`Kernels`]'s `shared`).
    fn new(device: &wgpu::Device, subgroups: bool, writable_inputs: bool) -> Self {
        let input = if writable_inputs {
            Slot::Write(4)
        } else {
            Slot::Read(4)
        };
        let layout = pipeline::layout(
            device,
            "bn.stream",
            &[
                Slot::Uniform(PARAMS_BYTES),
                input,
                input,
                Slot::Write(4),
                Slot::Write(CHANNEL_STATE_BYTES),
                Slot::Write(16),
            ],
        );
        let mut src = stream_source(subgroups);
        if writable_inputs {
            src = src
                .replace("var<storage, read> x:", "var<storage, read_write> x:")
                .replace("var<storage, read> dy:", "var<storage, read_write> dy:");
        }
        let module = pipeline::module(device, "bn.stream", &src);
        let s = |e| pipeline::pipeline(device, &layout, &module, e);
        StreamKernels {
            pivot: s("pivot"),
            stats: s("stats"),
            normalize: s("normalize"),
            reduce: s("reduce"),
            dx: s("dx"),
            layout,
        }
    }
}

/// The fused pipelines (`fused.wgsl`): stream, finalize and stream again in one dispatch.
#[derive(Debug)]
pub(crate) struct FusedKernels {
    pub(crate) layout: wgpu::BindGroupLayout,
    pub(crate) training: wgpu::ComputePipeline,
    pub(crate) inference: wgpu::ComputePipeline,
    pub(crate) backward: wgpu::ComputePipeline,
}

impl FusedKernels {
    fn new(device: &wgpu::Device, subgroups: bool) -> Self {
        let layout = pipeline::layout(
            device,
            "bn.fused",
            &[
                Slot::Uniform(PARAMS_BYTES),
                Slot::Read(4),
                Slot::Read(4),
                Slot::Write(4),
                Slot::Write(CHANNEL_STATE_BYTES),
                Slot::Write(16),
                Slot::Write(16),
                Slot::Write(8),
            ],
        );
        let module = pipeline::module(device, "bn.fused", &fused_source(subgroups));
        let f = |e| pipeline::pipeline(device, &layout, &module, e);
        FusedKernels {
            training: f("fused_training"),
            inference: f("fused_inference"),
            backward: f("fused_backward"),
            layout,
        }
    }
}

impl Kernels {
    /// The fused kernels of small tensors.
    pub(crate) fn fused(&self) -> &FusedKernels {
        self.fused
            .get_or_init(|| FusedKernels::new(&self.device, self.subgroups))
    }

    /// Compiles both modules and every pipeline for `device`.
    pub fn new(device: &wgpu::Device, subgroups: bool) -> Self {
        let channel_layout = pipeline::layout(
            device,
            "bn.channel",
            &[
                Slot::Uniform(PARAMS_BYTES),
                Slot::Write(16),
                Slot::Write(CHANNEL_STATE_BYTES),
                Slot::Read(16),
                Slot::Write(8),
            ],
        );
        let channel_module = pipeline::module(device, "bn.channel", &channel_source());
        let c = |e| pipeline::pipeline(device, &channel_layout, &channel_module, e);
        Kernels {
            stream: StreamKernels::new(device, subgroups, false),
            shared: std::sync::OnceLock::new(),
            fused: std::sync::OnceLock::new(),
            device: device.clone(),
            finalize_training: c("finalize_training"),
            finalize_inference: c("finalize_inference"),
            finalize_backward: c("finalize_backward"),
            channel_layout,
            subgroups,
        }
    }

    /// The streaming kernels for a call whose tensors do (`true`) or do not share a buffer.
    pub(crate) fn streaming(&self, shared_buffer: bool) -> &StreamKernels {
        if shared_buffer {
            self.shared
                .get_or_init(|| StreamKernels::new(&self.device, self.subgroups, true))
        } else {
            &self.stream
        }
    }
}
