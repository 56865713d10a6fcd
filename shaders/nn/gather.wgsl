// The batch gather: rows of the GPU-resident data set, in the epoch's order, into the
// network's input buffer. The first position is `start + batches seen * batch`: training
// reads the batch count the loss keeps on the GPU, so a whole epoch of steps can be recorded
// into one encoder with no host write between them; inference writes `start` per chunk.
// Driven by `src/nn/gather.rs`.

struct Gather {
    rows: u32,   // batch rows
    cols: u32,   // features per row
    start: u32,  // first position in `order` (inference)
    batch: u32,  // rows per training batch (0 in inference)
}

@group(0) @binding(0) var<uniform> e: Gather;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;  // row order of the epoch
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst_labels: array<u32>;
// The training metrics: [loss sum, correct, rows seen, batches seen].
@group(0) @binding(6) var<storage, read> counter: array<f32>;

// dst[r, :] = src[order[first + r], :], dst_labels[r] = labels[order[first + r]].
@compute @workgroup_size(ELEM_WG)
fn gather(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = id.x + id.y * n.x * ELEM_WG;
    if (i >= e.rows * e.cols) {
        return;
    }
    let r = i / e.cols;
    let c = i % e.cols;
    let s = order[e.start + u32(counter[3]) * e.batch + r];
    dst[i] = src[s * e.cols + c];
    if (c == 0u) {
        dst_labels[r] = labels[s];
    }
}
