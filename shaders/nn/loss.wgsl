// Softmax fused with categorical cross-entropy, one workgroup over the batch. The loss is
// -log p_y with log p clamped to [log 1e-7, log(1 - 1e-7)] as Keras clips probabilities,
// computed from log-softmax so it never overflows. Accumulates the batch's summed loss and
// correct predictions into `metrics` on the GPU: no readback per step.

struct Xent {
    rows: u32,
    classes: u32,
    mode: u32,      // 0: loss only; 1: loss and dlogits (training); 2: probabilities into `out`
    inv_rows: f32,  // the loss is the batch mean
}

@group(0) @binding(0) var<uniform> q: Xent;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// [loss sum, correct, rows seen, _]
@group(0) @binding(4) var<storage, read_write> metrics: array<f32>;

var<workgroup> part_loss: array<f32, 256>;
var<workgroup> part_hits: array<f32, 256>;

const LOG_EPS: f32 = -16.118095651; // log(1e-7)
const LOG_ONE_MINUS_EPS: f32 = -1.0000000494736474e-07; // log(1 - 1e-7)

@compute @workgroup_size(256)
fn softmax_xent(@builtin(local_invocation_index) t: u32) {
    let k = q.classes;
    var loss = 0.0;
    var hits = 0.0;
    for (var r = t; r < q.rows; r += 256u) {
        let base = r * k;
        var mx = logits[base];
        var arg = 0u;
        for (var j = 1u; j < k; j++) {
            let v = logits[base + j];
            if (v > mx) {
                mx = v;
                arg = j;
            }
        }
        var s = 0.0;
        for (var j = 0u; j < k; j++) {
            s += exp(logits[base + j] - mx);
        }
        let lse = mx + log(s);
        let y = labels[r];
        let logp = logits[base + y] - lse;
        let clamped = clamp(logp, LOG_EPS, LOG_ONE_MINUS_EPS);
        loss -= clamped;
        hits += select(0.0, 1.0, arg == y);
        if (q.mode == 1u) {
            // d(-log p_y)/dz = p - onehot, zero where the clamp holds (as Keras' clip).
            let live = select(0.0, 1.0, clamped == logp);
            for (var j = 0u; j < k; j++) {
                let p = exp(logits[base + j] - lse);
                out[base + j] = live * (p - select(0.0, 1.0, j == y)) * q.inv_rows;
            }
        } else if (q.mode == 2u) {
            for (var j = 0u; j < k; j++) {
                out[base + j] = exp(logits[base + j] - lse);
            }
        }
    }
    part_loss[t] = loss;
    part_hits[t] = hits;
    for (var s = 128u; s > 0u; s /= 2u) {
        workgroupBarrier();
        if (t < s) {
            part_loss[t] += part_loss[t + s];
            part_hits[t] += part_hits[t + s];
        }
    }
    if (t == 0u) {
        metrics[0] += part_loss[0];
        metrics[1] += part_hits[0];
        metrics[2] += f32(q.rows);
    }
}
