// Training dropout, forward and backward alike: dst = src * keep / (1 - rate). The mask is
// recomputed from (element, step, seed), so backward needs nothing stored. The step is the
// count of steps before this one (the loss counts each step between forward and backward). Driven by `src/nn/layers/dropout.rs`; its CPU twin reproduces
// `keep` bit for bit.

struct Dropout {
    len: u32,    // elements (rows * width)
    seed: u32,   // layer seed
    rate: f32,
    scale: f32,  // 1 / (1 - rate)
    back: u32,   // 1 in backward: the loss has counted this step since the forward
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> e: Dropout;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> tick: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

// A stateless hash (PCG output permutation) of element, step and seed.
fn keep(i: u32, step: u32) -> bool {
    var h = i * 747796405u + 2891336453u + e.seed * 277803737u + step * 2654435761u;
    h = ((h >> ((h >> 28u) + 4u)) ^ h) * 277803737u;
    h = (h >> 22u) ^ h;
    return f32(h >> 8u) * (1.0 / 16777216.0) >= e.rate;
}

@compute @workgroup_size(ELEM_WG)
fn dropout(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = id.x + id.y * n.x * ELEM_WG;
    if (i >= e.len) {
        return;
    }
    dst[i] = select(0.0, src[i] * e.scale, keep(i, tick[0] - e.back));
}
