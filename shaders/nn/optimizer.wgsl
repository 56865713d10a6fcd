// Optimizers over one flat parameter buffer (every layer's parameters at 256-byte aligned
// offsets), one thread per parameter; the update itself is `optimizer_update.wgsl`. The step
// counter lives on the GPU, so a step needs no host data. Driven by `src/nn/optimizer.rs`.

@group(0) @binding(0) var<uniform> o: Opt;
@group(0) @binding(1) var<storage, read_write> params: array<f32>;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
// [steps taken (u32)]: the training loss counts the step (one thread, before backward), so
// the update reads the current step's number and needs no dispatch of its own.
@group(0) @binding(5) var<storage, read> tick: array<u32>;

fn index(id: vec3<u32>, n: vec3<u32>) -> u32 {
    return id.x + id.y * n.x * ELEM_WG;
}

@compute @workgroup_size(ELEM_WG)
fn adam(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = index(id, n);
    if (i >= o.len) {
        return;
    }
    adam_at(i, adam_alpha(tick[0]));
}

@compute @workgroup_size(ELEM_WG)
fn sgd(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = index(id, n);
    if (i >= o.len) {
        return;
    }
    sgd_at(i);
}
