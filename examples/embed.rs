//! Embedding the engine in another wgpu program: the caller owns the device, the queue, the
//! buffers and the command encoder. The caller's own compute shader fills a buffer with
//! features, batch norm (+ReLU) normalizes them in the same encoder, and the whole step is
//! one submit. Only the final check reads anything back.
//!
//!     cargo run --release --example embed

use wgpu_batchnorm::wgpu;
use wgpu_batchnorm::{BatchNorm, BatchNormConfig, Context, ContextOptions, Mode, TensorRef};

const ROWS: usize = 4096;
const CHANNELS: usize = 16;

/// The caller's shader: feature c of row r is c * 10 + a hash-noise in [-c-1, c+1].
const PRODUCER: &str = r#"
@group(0) @binding(0) var<storage, read_write> features: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= arrayLength(&features)) { return; }
    let c = f32(i % 16u);
    let h = (i * 2654435761u) >> 8u;
    let u = f32(h) / 16777216.0 - 0.5;
    features[i] = c * 10.0 + 2.0 * u * (c + 1.0);
}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The caller's device: any wgpu program already has one.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;
    println!("caller's adapter: {}", adapter.get_info().name);

    // The caller's pipeline and buffers.
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("producer"),
        source: wgpu::ShaderSource::Wgsl(PRODUCER.into()),
    });
    let producer = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("producer"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bytes = (ROWS * CHANNELS * 4) as u64;
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let features = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("features"),
        size: bytes,
        usage,
        mapped_at_creation: false,
    });
    let normalized = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("normalized"),
        size: bytes,
        usage,
        mapped_at_creation: false,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &producer.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: features.as_entire_binding(),
        }],
    });

    // The engine on the caller's device.
    let ctx = Context::from_device(device.clone(), queue.clone(), ContextOptions::default());
    let mut bn = BatchNorm::new(&ctx, BatchNormConfig::keras(CHANNELS).with_relu(true))?;

    // One encoder: the caller's dispatch, then batch norm on its output. One submit.
    let shape = [ROWS, CHANNELS];
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&producer);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups((ROWS * CHANNELS).div_ceil(64) as u32, 1, 1);
    }
    bn.encode_forward(
        &mut encoder,
        TensorRef::new(&features, &shape),
        TensorRef::new(&normalized, &shape),
        Mode::Training,
    )?;
    queue.submit([encoder.finish()]);

    // Check: every channel of the pre-ReLU output has mean 0 and variance ~1, so after ReLU
    // about half of each channel is zero.
    let y = ctx.read_f32(&normalized, 0, ROWS * CHANNELS)?;
    let mean = bn.batch_mean()?;
    for c in [0, 7, 15] {
        let zeros = (0..ROWS).filter(|r| y[r * CHANNELS + c] == 0.0).count();
        println!(
            "channel {c:2}: batch mean {:8.3}, zeros after ReLU {:.1}%",
            mean[c],
            100.0 * zeros as f64 / ROWS as f64
        );
    }
    println!(
        "running mean after one step: {:?}",
        &bn.running_mean()?[..4]
    );
    Ok(())
}
