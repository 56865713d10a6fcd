// Batch assembly and dropout: elementwise kernels around the layers.

struct Elem {
    rows: u32,   // batch rows
    cols: u32,   // features per row
    start: u32,  // gather: first position in `order`
    seed: u32,   // dropout: layer seed
    rate: f32,   // dropout rate
    scale: f32,  // 1 / (1 - rate)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> e: Elem;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> aux: array<u32>;    // gather: labels; dropout: tick
@group(0) @binding(3) var<storage, read> order: array<u32>;  // gather: row order of the epoch
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst_labels: array<u32>;

fn flat(id: vec3<u32>, n: vec3<u32>) -> u32 {
    return id.x + id.y * n.x * 256u;
}

// dst[r, :] = src[order[start + r], :], dst_labels[r] = labels[order[start + r]].
@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = flat(id, n);
    if (i >= e.rows * e.cols) {
        return;
    }
    let r = i / e.cols;
    let c = i % e.cols;
    let s = order[e.start + r];
    dst[i] = src[s * e.cols + c];
    if (c == 0u) {
        dst_labels[r] = aux[s];
    }
}

// A stateless hash (PCG output permutation) of element, step and seed.
fn keep(i: u32, step: u32) -> bool {
    var h = i * 747796405u + 2891336453u + e.seed * 277803737u + step * 2654435761u;
    h = ((h >> ((h >> 28u) + 4u)) ^ h) * 277803737u;
    h = (h >> 22u) ^ h;
    return f32(h >> 8u) * (1.0 / 16777216.0) >= e.rate;
}

// Training dropout, forward and backward alike: dst = src * keep / (1 - rate). The mask is
// recomputed from (element, step, seed), so backward needs nothing stored. The step is the
// optimizer's u32 counter.
@compute @workgroup_size(256)
fn dropout(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = flat(id, n);
    if (i >= e.rows * e.cols) {
        return;
    }
    let step = aux[0];
    dst[i] = select(0.0, src[i] * e.scale, keep(i, step));
}
