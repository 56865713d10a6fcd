// Optimizers over one flat parameter buffer (every layer's parameters at 256-byte aligned
// offsets). The step counter lives on the GPU, so a step needs no host data.

struct Opt {
    len: u32,
    _pad: u32,
    lr: f32,
    beta1: f32,     // Adam; SGD: momentum
    beta2: f32,
    epsilon: f32,
    _pad1: f32,
    _pad2: f32,
}

@group(0) @binding(0) var<uniform> o: Opt;
@group(0) @binding(1) var<storage, read_write> params: array<f32>;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
// [steps taken, Adam's step size alpha]
@group(0) @binding(5) var<storage, read_write> tick: array<f32>;

// Keras: alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t) with t the 1-based step.
@compute @workgroup_size(1)
fn adam_tick() {
    let t = tick[0] + 1.0;
    tick[0] = t;
    tick[1] = o.lr * sqrt(1.0 - pow(o.beta2, t)) / (1.0 - pow(o.beta1, t));
}

fn index(id: vec3<u32>, n: vec3<u32>) -> u32 {
    return id.x + id.y * n.x * 256u;
}

// m += (g - m)(1 - b1); v += (g² - v)(1 - b2); p -= alpha m / (sqrt(v) + eps)
@compute @workgroup_size(256)
fn adam(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = index(id, n);
    if (i >= o.len) {
        return;
    }
    let g = grads[i];
    let mi = m[i] + (g - m[i]) * (1.0 - o.beta1);
    let vi = v[i] + (g * g - v[i]) * (1.0 - o.beta2);
    m[i] = mi;
    v[i] = vi;
    params[i] -= mi * tick[1] / (sqrt(vi) + o.epsilon);
}

@compute @workgroup_size(1)
fn sgd_tick() {
    tick[0] += 1.0;
}

// Keras SGD: m = momentum m - lr g; p += m (plain p -= lr g when momentum is 0).
@compute @workgroup_size(256)
fn sgd(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = index(id, n);
    if (i >= o.len) {
        return;
    }
    let mi = o.beta1 * m[i] - o.lr * grads[i];
    m[i] = mi;
    params[i] += mi;
}
