// Elementwise activations (Keras `Activation('sigmoid')`, `Activation('tanh')`), forward and
// backward. Backward reads the layer's output: sigmoid' = y (1 - y), tanh' = 1 - y².
// Driven by `src/nn/layers/activation.rs`; CPU twin in `activation_cpu.rs`.

struct Act {
    len: u32,
    kind: u32,   // 0: sigmoid, 1: tanh
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> a: Act;
@group(0) @binding(1) var<storage, read> src: array<f32>;   // forward: x; backward: y
@group(0) @binding(2) var<storage, read> grad: array<f32>;  // backward: dy
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn flat(id: vec3<u32>, n: vec3<u32>) -> u32 {
    return id.x + id.y * n.x * ELEM_WG;
}

// Sigmoid without overflow for large |x|: exp of a non-positive number only.
fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}

@compute @workgroup_size(ELEM_WG)
fn activation_forward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = flat(id, n);
    if (i >= a.len) {
        return;
    }
    let x = src[i];
    dst[i] = select(sigmoid(x), tanh(x), a.kind == 1u);
}

@compute @workgroup_size(ELEM_WG)
fn activation_backward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = flat(id, n);
    if (i >= a.len) {
        return;
    }
    let y = src[i];
    let d = select(y * (1.0 - y), 1.0 - y * y, a.kind == 1u);
    dst[i] = grad[i] * d;
}
