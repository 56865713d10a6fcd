//! The one pipeline and bind-group factory, for the engine's kernels and for any layer built
//! on the engine: a kernel is a compute pipeline plus its bind-group layout, described by its
//! slots in binding order; a bind group binds buffer regions to those slots in the same order.

use std::num::NonZeroU64;

/// How a kernel binds one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A uniform buffer of this many bytes.
    Uniform(u64),
    /// A read-only storage buffer of at least this many bytes.
    Read(u64),
    /// A writable storage buffer of at least this many bytes.
    Write(u64),
}

/// A compute pipeline and its bind-group layout.
#[derive(Debug)]
pub struct Kernel {
    /// The pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// Its only bind group's layout.
    pub layout: wgpu::BindGroupLayout,
}

/// The bind-group layout of `slots`, in binding order.
pub fn layout(device: &wgpu::Device, label: &str, slots: &[Slot]) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (ty, min) = match *s {
                Slot::Uniform(n) => (wgpu::BufferBindingType::Uniform, n),
                Slot::Read(n) => (wgpu::BufferBindingType::Storage { read_only: true }, n),
                Slot::Write(n) => (wgpu::BufferBindingType::Storage { read_only: false }, n),
            };
            wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty,
                    has_dynamic_offset: false,
                    min_binding_size: NonZeroU64::new(min),
                },
                count: None,
            }
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    })
}

/// The pipeline of `entry` in `module` over one bind group of `layout`.
pub fn pipeline(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    module: &wgpu::ShaderModule,
    entry: &str,
) -> wgpu::ComputePipeline {
    specialized(device, layout, module, entry, &[])
}

/// The pipeline of `entry` with the module's override constants set to `constants`: sizes
/// a kernel divides by become compile-time constants (multiplications instead of divisions).
pub fn specialized(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    module: &wgpu::ShaderModule,
    entry: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
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
            constants,
            // Every kernel writes its workgroup memory before it reads it.
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    })
}

/// Compiles a WGSL module.
pub fn module(device: &wgpu::Device, label: &str, source: &str) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    })
}

/// The kernels of `entries` in one WGSL module, all with the same slots and so one shared
/// bind-group layout (a bind group made for one serves them all): what a driver file builds
/// once per device (see `Context::cached`).
pub fn kernels<const N: usize>(
    device: &wgpu::Device,
    label: &str,
    source: &str,
    entries: [&str; N],
    slots: &[Slot],
) -> [Kernel; N] {
    let module = module(device, label, source);
    let layout = layout(device, label, slots);
    entries.map(|entry| Kernel {
        pipeline: pipeline(device, &layout, &module, entry),
        layout: layout.clone(),
    })
}

/// A region of a buffer to bind: the whole buffer when `size` is `None`.
#[derive(Debug, Clone, Copy)]
pub struct Region<'a> {
    /// The buffer.
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset (a multiple of the device's storage offset alignment).
    pub offset: u64,
    /// Bytes, or the rest of the buffer.
    pub size: Option<u64>,
}

impl<'a> Region<'a> {
    /// `len` f32 values from float `offset` of `buffer`.
    pub fn floats(buffer: &'a wgpu::Buffer, offset: usize, len: usize) -> Self {
        Region {
            buffer,
            offset: offset as u64 * 4,
            size: Some(len as u64 * 4),
        }
    }
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

/// Binds `regions` to the slots of `layout` in order.
pub fn bind(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    regions: &[Region<'_>],
) -> wgpu::BindGroup {
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
        label: Some(label),
        layout,
        entries: &entries,
    })
}

/// Records one dispatch of `kernel` with `group`.
pub fn dispatch(
    pass: &mut wgpu::ComputePass<'_>,
    kernel: &Kernel,
    group: &wgpu::BindGroup,
    (x, y): (u32, u32),
) {
    pass.set_pipeline(&kernel.pipeline);
    pass.set_bind_group(0, group, &[]);
    pass.dispatch_workgroups(x, y, 1);
    crate::work::dispatch();
}

/// Begins a compute pass (counted).
pub fn begin_pass<'e>(
    enc: &'e mut wgpu::CommandEncoder,
    desc: &wgpu::ComputePassDescriptor<'_>,
) -> wgpu::ComputePass<'e> {
    crate::work::pass();
    enc.begin_compute_pass(desc)
}

/// Records a buffer copy (counted).
pub fn copy(enc: &mut wgpu::CommandEncoder, from: &wgpu::Buffer, to: &wgpu::Buffer, bytes: u64) {
    crate::work::copy();
    enc.copy_buffer_to_buffer(from, 0, to, 0, bytes);
}

/// Workgroups for `threads` threads in groups of `size`, folded into a 2-D grid past
/// `max_dim` per dimension (kernels recover the flat index as `x + y * groups_x * size`).
pub fn groups_1d(threads: usize, size: usize, max_dim: u32) -> (u32, u32) {
    let g = threads.div_ceil(size).max(1) as u32;
    crate::plan::grid(g, max_dim)
}
