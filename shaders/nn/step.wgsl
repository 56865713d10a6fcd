// A whole training step of a small network in one dispatch of one workgroup: gather the
// batch, every layer's forward, softmax cross-entropy, every layer's backward, the optimizer
// over every parameter; phases separated by storage barriers. tiny-cuda-nn's fully fused MLP
// in spirit: when a step is a few thousand multiply-adds, launches are the cost, so there is
// one. Driven by `src/nn/step.rs`, which prepends the network's constants and appends its
// layers' phases (`step_dense.wgsl`, `step_batch_norm.wgsl`, via the layers) and the
// generated `layers_forward` / `layers_backward`. The loss and the optimizer include the
// general path's own functions (`softmax_xent.wgsl`, `optimizer_update.wgsl`): same bits.
//
// Prepended by step.rs: STEP_WG (threads), INPUT (features), CLASSES, ADAM (else SGD),
// BATCH_LOSSES_AT (index of batch 0's loss in `metrics`), NONE, DIMS (vec4s of `dims`). Sizes
// and offsets that change with the batch size are run-time values in `dims` (one pipeline
// for every batch size; literal sizes would also let the compiler unroll the row loops, which
// costs more to compile than a short run trains): `d(0)` rows, `d(1)` rows per training batch,
// `d(2)` / `d(3)` the logits and their gradient in `arena`, `d(4)` 1 / rows (f32 bits, as the
// loss kernel's), then the layers' arguments.

@group(0) @binding(0) var<uniform> o: Opt;
@group(0) @binding(1) var<storage, read_write> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
// [steps taken]: counted once per step between forward and backward, as the loss kernel does.
@group(0) @binding(5) var<storage, read_write> tick: array<u32>;
@group(0) @binding(6) var<storage, read> data_x: array<f32>;
@group(0) @binding(7) var<storage, read> data_labels: array<u32>;
@group(0) @binding(8) var<storage, read> order: array<u32>;  // row order of the epoch
// [loss sum, correct, rows seen, batches seen], the epoch's batch losses at BATCH_LOSSES_AT.
@group(0) @binding(9) var<storage, read_write> metrics: array<f32>;
// Activations, their gradients and the layers' per-channel scratch, at offsets from step.rs.
// The input batch is at 0.
@group(0) @binding(10) var<storage, read_write> arena: array<f32>;
@group(0) @binding(11) var<uniform> dims: array<vec4<u32>, DIMS>;

fn d(i: u32) -> u32 {
    return dims[i / 4u][i % 4u];
}

// Position in `order` of this batch's first row.
var<private> first_row: u32;

fn logit(i: u32) -> f32 {
    return arena[d(2u) + i];
}

fn label(r: u32) -> u32 {
    return data_labels[order[first_row + r]];
}

fn set_out(i: u32, v: f32) {
    arena[d(3u) + i] = v;
}

// The batch's rows, in the epoch's order, into the network's input.
fn gather(t: u32) {
    for (var i = t; i < d(0u) * INPUT; i += STEP_WG) {
        let r = i / INPUT;
        arena[i] = data_x[order[first_row + r] * INPUT + i % INPUT];
    }
}

// The loss kernel's training mode: metrics, the batch's mean loss in its slot, the step
// counted, dlogits into the arena.
fn loss(t: u32) {
    let rows = d(0u);
    let inv_rows = bitcast<f32>(d(4u));
    let total = xent_rows(t, rows, CLASSES, XENT_TRAIN, inv_rows);
    if (t == 0u) {
        metrics[0] += total.x;
        metrics[1] += total.y;
        metrics[2] += f32(rows);
        let b = u32(metrics[3]);
        metrics[3] += 1.0;
        metrics[BATCH_LOSSES_AT + b] = total.x * inv_rows;
        tick[0] += 1u;
    }
}

fn optimize(t: u32) {
    if (ADAM) {
        let alpha = adam_alpha(tick[0]);
        for (var i = t; i < o.len; i += STEP_WG) {
            adam_at(i, alpha);
        }
    } else {
        for (var i = t; i < o.len; i += STEP_WG) {
            sgd_at(i);
        }
    }
}

@compute @workgroup_size(STEP_WG)
fn step(@builtin(local_invocation_index) t: u32) {
    // Training batch b starts at b * (rows per batch): the count the loss keeps, read before
    // this step's loss (behind barriers) counts it.
    first_row = u32(metrics[3]) * d(1u);
    gather(t);
    storageBarrier();
    layers_forward(t);
    loss(t);
    storageBarrier();
    layers_backward(t);
    optimize(t);
}
