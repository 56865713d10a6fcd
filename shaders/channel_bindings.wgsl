// Bindings of the per-channel module (`channel.wgsl`).

@group(0) @binding(0) var<uniform> p: Params;
// [gamma | beta | running mean | running variance], C values each.
@group(0) @binding(1) var<storage, read_write> chan: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<ChannelState>;
@group(0) @binding(3) var<storage, read> partials: array<vec4<f32>>;
// [dgamma | dbeta], C values each.
@group(0) @binding(4) var<storage, read_write> grads: array<f32>;
