// Bindings of the streaming module (`stream.wgsl`).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<ChannelState>;
@group(0) @binding(5) var<storage, read_write> partials: array<vec4<f32>>;
