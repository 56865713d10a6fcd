// A BatchNormalization layer's phases in the one-workgroup training step (`step.wgsl`), with
// the engine's arithmetic in its small-tensor form: statistics about a pivot (the channel's
// first value, so a huge mean with a tiny spread stays exact), here in two passes from one
// thread per channel (a batch of a small network is a few dozen rows), running statistics
// `keep * old + fresh * new`, the fold y = (x - pivot) scale + shift, and the backward
// coefficients dx = g dy + b (x - pivot) + c. A channel that meets NaN or infinity is NaN
// throughout, as in the engine. Layer region in `params`: [gamma | beta | moving mean |
// moving variance]; in `grads`: [dgamma | dbeta]; per-channel scratch `st` in `arena`:
// [pivot, scale, shift, mean - pivot, inverse std, g, b, c]. Emitted by
// `src/nn/layers/batch_norm.rs`.

struct BnConsts {
    eps: f32,
    keep: f32,
    fresh: f32,
    var_correction: f32,
    scale: bool,   // gamma is learned (else 1)
    center: bool,  // beta is learned (else 0)
    relu: bool,
}

fn bn_nonfinite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

// Statistics, running statistics and the fold of every channel: one thread per channel.
fn bn_stats(t: u32, n: u32, ch: u32, x: u32, at: u32, st: u32, k: BnConsts) {
    let nf = f32(n);
    for (var c = t; c < ch; c += STEP_WG) {
        let pivot = arena[x + c];
        var s = 0.0;
        for (var r = 0u; r < n; r++) {
            s += arena[x + r * ch + c] - pivot;
        }
        let mean_d = s / nf;
        var m2 = 0.0;
        for (var r = 0u; r < n; r++) {
            let d = arena[x + r * ch + c] - pivot - mean_d;
            m2 = fma(d, d, m2);
        }
        let nan = bitcast<f32>(0x7fc00000u);
        let poisoned = bn_nonfinite(mean_d) || bn_nonfinite(m2);
        let var_b = select(max(m2 / nf, 0.0), nan, poisoned);
        let inv_std = select(1.0 / sqrt(var_b + k.eps), nan, poisoned);
        let gamma = select(1.0, params[at + c], k.scale);
        let beta = select(0.0, params[at + ch + c], k.center);
        let scale = gamma * inv_std;
        let mean = pivot + mean_d;
        let rm = at + 2u * ch + c;
        let rv = at + 3u * ch + c;
        params[rm] = select(params[rm] * k.keep + mean * k.fresh, nan, poisoned);
        params[rv] = select(params[rv] * k.keep + var_b * k.var_correction * k.fresh, nan, poisoned);
        arena[st + 8u * c] = select(pivot, nan, poisoned);
        arena[st + 8u * c + 1u] = scale;
        arena[st + 8u * c + 2u] = beta - select(mean_d, nan, poisoned) * scale;
        arena[st + 8u * c + 3u] = select(mean_d, nan, poisoned);
        arena[st + 8u * c + 4u] = inv_std;
    }
}

fn bn_normalize(t: u32, n: u32, ch: u32, x: u32, y: u32, st: u32, k: BnConsts) {
    for (var e = t; e < n * ch; e += STEP_WG) {
        let c = e % ch;
        var v = (arena[x + e] - arena[st + 8u * c]) * arena[st + 8u * c + 1u] + arena[st + 8u * c + 2u];
        if (k.relu) {
            v = select(v, 0.0, v < 0.0);
        }
        arena[y + e] = v;
    }
}

// G = dY where the fused ReLU passed the value (y > 0).
fn bn_grad(y: u32, dy: u32, e: u32, k: BnConsts) -> f32 {
    if (k.relu && !(arena[y + e] > 0.0)) {
        return 0.0;
    }
    return arena[dy + e];
}

// dgamma, dbeta and the coefficients of dx, one thread per channel.
fn bn_reduce(t: u32, n: u32, ch: u32, x: u32, y: u32, dy: u32, at: u32, st: u32, k: BnConsts) {
    for (var c = t; c < ch; c += STEP_WG) {
        let pivot = arena[st + 8u * c];
        let mean_d = arena[st + 8u * c + 3u];
        let inv_std = arena[st + 8u * c + 4u];
        var dbeta = 0.0;
        var dgamma = 0.0;
        for (var r = 0u; r < n; r++) {
            let g = bn_grad(y, dy, r * ch + c, k);
            dbeta += g;
            dgamma = fma(g, (arena[x + r * ch + c] - pivot - mean_d) * inv_std, dgamma);
        }
        grads[at + c] = dgamma;
        grads[at + ch + c] = dbeta;
        let gamma = select(1.0, params[at + c], k.scale);
        let g = gamma * inv_std;
        let b = -g * dgamma * inv_std / f32(n);
        arena[st + 8u * c + 5u] = g;
        arena[st + 8u * c + 6u] = b;
        arena[st + 8u * c + 7u] = -g * dbeta / f32(n) - b * mean_d;
    }
}

fn bn_dx(t: u32, n: u32, ch: u32, x: u32, y: u32, dy: u32, dx: u32, st: u32, k: BnConsts) {
    for (var e = t; e < n * ch; e += STEP_WG) {
        let c = e % ch;
        let s = st + 8u * c;
        arena[dx + e] = arena[s + 5u] * bn_grad(y, dy, e, k) + arena[s + 6u] * (arena[x + e] - arena[s]) + arena[s + 7u];
    }
}
