// Softmax fused with categorical cross-entropy over a batch, from one workgroup of LOSS_WG
// threads: shared by the loss kernel (`loss.wgsl`) and the one-workgroup training step
// (`step.wgsl`), so both give the same bits. The includer defines where the numbers live:
// `logit(i)`, `label(r)`, `set_out(i, v)`. The loss is -log p_y with p_y clipped to
// [1e-7, 1 - 1e-7] as Keras clips probabilities; the softmax subtracts the row's largest logit
// first, so it never overflows. A row whose logits are not all finite gives a NaN loss (a
// clamp would hide it), so a diverged run shows NaN, as in Keras.

var<workgroup> part_loss: array<f32, LOSS_WG>;
var<workgroup> part_hits: array<f32, LOSS_WG>;

const EPS: f32 = 1e-7;                 // Keras' backend epsilon
const ONE_MINUS_EPS: f32 = 0.99999988; // f32(1 - 1e-7)
const XENT_LOSS: u32 = 0u;             // loss and hits only
const XENT_TRAIN: u32 = 1u;            // and d loss / d logits (the batch mean's) into `out`
const XENT_PROBS: u32 = 2u;            // and the probabilities into `out`

// NaN or infinity, by bits: compilers may fold `x != x` away under fast-math assumptions.
fn non_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

// Thread t takes rows t, t + LOSS_WG, ...; the sums meet in a fixed tree. Returns (summed
// loss, correct predictions), valid in thread 0. Call from uniform control flow (barriers).
fn xent_rows(t: u32, rows: u32, k: u32, mode: u32, inv_rows: f32) -> vec2<f32> {
    var loss = 0.0;
    var hits = 0.0;
    for (var r = t; r < rows; r += LOSS_WG) {
        let base = r * k;
        var mx = logit(base);
        var arg = 0u;
        for (var j = 1u; j < k; j++) {
            let v = logit(base + j);
            if (v > mx) {
                mx = v;
                arg = j;
            }
        }
        var s = 0.0;
        for (var j = 0u; j < k; j++) {
            s += exp(logit(base + j) - mx);
        }
        let lse = mx + log(s);
        let y = label(r);
        // Keras' arithmetic: the softmax probability, clipped to [1e-7, 1 - 1e-7] in f32,
        // then its log. Which rows the clip holds decides which get a gradient, so the clip
        // is taken where Keras takes it (log space would move that edge by an ulp).
        let p_y = exp(logit(base + y) - mx) / s;
        let clipped = clamp(p_y, EPS, ONE_MINUS_EPS);
        let bad = non_finite(lse) || non_finite(p_y);
        loss -= select(log(clipped), bitcast<f32>(0x7fc00000u), bad);
        hits += select(0.0, 1.0, arg == y);
        if (mode == XENT_TRAIN) {
            // d(-log p_y)/dz = p - onehot, zero where the clip holds (as Keras' clip).
            let live = select(0.0, 1.0, clipped == p_y);
            for (var j = 0u; j < k; j++) {
                let p = exp(logit(base + j) - mx) / s;
                set_out(base + j, live * (p - select(0.0, 1.0, j == y)) * inv_rows);
            }
        } else if (mode == XENT_PROBS) {
            for (var j = 0u; j < k; j++) {
                set_out(base + j, exp(logit(base + j) - lse));
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
    return vec2<f32>(part_loss[0], part_hits[0]);
}
