// Softmax fused with categorical cross-entropy, one workgroup over the batch. The loss is
// -log p_y with p_y clipped to [1e-7, 1 - 1e-7] as Keras clips probabilities; the softmax
// subtracts the row's largest logit first, so it never overflows. Accumulates the batch's summed loss and
// correct predictions into `metrics` on the GPU, and each training batch's mean loss into its
// slot of `batch_losses`: no readback per step. A row whose logits are not all finite gives a
// NaN loss (a clamp would hide it), so a diverged run shows NaN, as in Keras.

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
// [loss sum, correct, rows seen, batches seen]
@group(0) @binding(4) var<storage, read_write> metrics: array<f32>;
// Training: the mean loss of batch b of the epoch at [b].
@group(0) @binding(5) var<storage, read_write> batch_losses: array<f32>;
// [steps taken]: a training batch counts its step here, once, between forward and backward
// (the optimizer reads the step's number; dropout's backward reads one less).
@group(0) @binding(6) var<storage, read_write> tick: array<u32>;

var<workgroup> part_loss: array<f32, LOSS_WG>;
var<workgroup> part_hits: array<f32, LOSS_WG>;

const EPS: f32 = 1e-7;                 // Keras' backend epsilon
const ONE_MINUS_EPS: f32 = 0.99999988; // f32(1 - 1e-7)

// NaN or infinity, by bits: compilers may fold `x != x` away under fast-math assumptions.
fn non_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

@compute @workgroup_size(LOSS_WG)
fn softmax_xent(@builtin(local_invocation_index) t: u32) {
    let k = q.classes;
    var loss = 0.0;
    var hits = 0.0;
    for (var r = t; r < q.rows; r += LOSS_WG) {
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
        // Keras' arithmetic: the softmax probability, clipped to [1e-7, 1 - 1e-7] in f32,
        // then its log. Which rows the clip holds decides which get a gradient, so the clip
        // is taken where Keras takes it (log space would move that edge by an ulp).
        let p_y = exp(logits[base + y] - mx) / s;
        let clipped = clamp(p_y, EPS, ONE_MINUS_EPS);
        let bad = non_finite(lse) || non_finite(p_y);
        loss -= select(log(clipped), bitcast<f32>(0x7fc00000u), bad);
        hits += select(0.0, 1.0, arg == y);
        if (q.mode == 1u) {
            // d(-log p_y)/dz = p - onehot, zero where the clip holds (as Keras' clip).
            let live = select(0.0, 1.0, clipped == p_y);
            for (var j = 0u; j < k; j++) {
                let p = exp(logits[base + j] - mx) / s;
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
    for (var s = LOSS_WG / 2u; s > 0u; s /= 2u) {
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
        if (q.mode == 1u) {
            let b = u32(metrics[3]);
            metrics[3] += 1.0;
            batch_losses[b] = part_loss[0] * q.inv_rows;
            tick[0] += 1u;
        }
    }
}
