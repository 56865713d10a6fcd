// The trivial streaming kernel: y = x * a + b, one read and one write per element. It is
// the floor of any inference pass on an adapter (8 bytes per element, nothing else), so
// `bnorm bench` reports every batch-norm pass as a fraction of its bytes-normalized
// throughput. Driven by `src/bench.rs`, which prepends REF_WG.

struct Ref {
    len: u32,
    _pad: u32,
    a: f32,
    b: f32,
}

@group(0) @binding(0) var<uniform> u: Ref;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(REF_WG)
fn stream_reference(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = id.x + id.y * n.x * REF_WG;
    if (i < u.len) {
        y[i] = fma(x[i], u.a, u.b);
    }
}
