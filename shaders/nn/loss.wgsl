// The loss kernel: softmax cross-entropy (`softmax_xent.wgsl`, prepended by `src/nn/loss.rs`)
// over a batch from one workgroup. Accumulates the batch's summed loss and correct
// predictions into `metrics` on the GPU, and each training batch's mean loss into its slot of
// `batch_losses`: no readback per step.

struct Xent {
    rows: u32,
    classes: u32,
    mode: u32,      // XENT_LOSS, XENT_TRAIN or XENT_PROBS (into `out`)
    inv_rows: f32,  // the loss is the batch mean
}

@group(0) @binding(0) var<uniform> q: Xent;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// [loss sum, correct, rows seen, batches seen]
@group(0) @binding(4) var<storage, read_write> metrics: array<f32>;
// Training: the mean loss of batch b of the epoch at [b].
@group(0) @binding(5) var<storage, read_write> batch_losses: array<f32>;
// [steps taken]: a training batch counts its step here, once, between forward and backward
// (the optimizer reads the step's number; dropout's backward reads one less).
@group(0) @binding(6) var<storage, read_write> tick: array<u32>;

fn logit(i: u32) -> f32 {
    return logits[i];
}

fn label(r: u32) -> u32 {
    return labels[r];
}

fn set_out(i: u32, v: f32) {
    out[i] = v;
}

@compute @workgroup_size(LOSS_WG)
fn softmax_xent(@builtin(local_invocation_index) t: u32) {
    let total = xent_rows(t, q.rows, q.classes, q.mode, q.inv_rows);
    if (t == 0u) {
        metrics[0] += total.x;
        metrics[1] += total.y;
        metrics[2] += f32(q.rows);
        if (q.mode == XENT_TRAIN) {
            let b = u32(metrics[3]);
            metrics[3] += 1.0;
            batch_losses[b] = total.x * q.inv_rows;
            tick[0] += 1u;
        }
    }
}
