// The optimizers' update of one parameter, shared by the optimizer kernel
// (`optimizer.wgsl`) and the one-workgroup training step (`step.wgsl`): both bind `o`,
// `params`, `grads`, `m`, `v` and `tick` under these names, so both give the same bits.
// Driven by `src/nn/optimizer.rs`; CPU twin in `optimizer_cpu.rs`.
struct Opt {
    len: u32,
    _pad: u32,
    lr: f32,
    beta1: f32,      // Adam; SGD: momentum
    beta2: f32,
    epsilon: f32,
    // 1 - beta formed in f64 on the host and rounded once, as Keras forms `1 - self.beta_1`
    // from Python floats (1 - f32(0.9) would differ in the last bits).
    one_minus_beta1: f32,
    one_minus_beta2: f32,
}

// --- beta^t rounded correctly to f32, with integer arithmetic only ----------------------
// WGSL's pow has no precision guarantee (exp2(t log2 b) on most drivers: 6e-5 off at t = 1
// once 1 - b^t cancels). Keras rounds beta^t correctly; so do we, identically on every
// backend: the mantissa power is carried in 64 bits (hi, lo) with a binary exponent, by
// squaring, truncating below bit 64 (2^-63 relative per product), then rounded to nearest.

// Full 32 x 32 -> 64-bit product as (hi, lo), from 16-bit halves.
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    return vec2<u32>(a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u), (p00 & 0xffffu) | (mid << 16u));
}

// A number m * 2^e with a 64-bit mantissa m = (hi, lo) whose top bit is set.
struct Wide {
    hi: u32,
    lo: u32,
    e: i32,
}

// The top 64 bits of a 64 x 64-bit product, renormalized.
fn wide_mul(a: Wide, b: Wide) -> Wide {
    let hh = mul_wide(a.hi, b.hi);
    let hl = mul_wide(a.hi, b.lo);
    let lh = mul_wide(a.lo, b.hi);
    let ll = mul_wide(a.lo, b.lo);
    // Bits 32..63: carries only.
    let s1 = ll.x + hl.y;
    let s2 = s1 + lh.y;
    let c1 = u32(s1 < ll.x) + u32(s2 < s1);
    let w1 = s2;
    // Bits 64..95.
    let t1 = hh.y + hl.x;
    let t2 = t1 + lh.x;
    let t3 = t2 + c1;
    let c2 = u32(t1 < hh.y) + u32(t2 < t1) + u32(t3 < t2);
    let w2 = t3;
    // Bits 96..127.
    let w3 = hh.x + c2;
    if ((w3 & 0x80000000u) == 0u) {
        return Wide((w3 << 1u) | (w2 >> 31u), (w2 << 1u) | (w1 >> 31u), a.e + b.e + 63);
    }
    return Wide(w3, w2, a.e + b.e + 64);
}

// base^t for 0 <= base < 1 and t >= 1, correctly rounded; results below f32's normal range
// flush to 0 (1 - base^t is then 1 in f32 either way).
fn pow_rounded(base: f32, t: u32) -> f32 {
    let bits = bitcast<u32>(base);
    let biased = i32((bits >> 23u) & 0xffu);
    if (biased == 0 || t == 0u) {
        return select(0.0, 1.0, t == 0u);
    }
    let mant = (bits & 0x7fffffu) | 0x800000u;
    var b = Wide(mant << 8u, 0u, biased - 127 - 23 - 40);
    var r = Wide(0x80000000u, 0u, -63);
    var k = t;
    loop {
        if ((k & 1u) != 0u) {
            r = wide_mul(r, b);
        }
        k = k >> 1u;
        if (k == 0u) {
            break;
        }
        b = wide_mul(b, b);
        // Both factors are <= 1: once b is below 2^-200, so is the result.
        if (b.e < -300) {
            return 0.0;
        }
    }
    // Round the 64-bit mantissa to 24 bits, to nearest, ties to even.
    var m24 = r.hi >> 8u;
    let rest = r.hi & 0xffu;
    if (rest > 0x80u || (rest == 0x80u && (r.lo != 0u || (m24 & 1u) == 1u))) {
        m24 = m24 + 1u;
    }
    var exponent = r.e + 40 + 23 + 127;
    if (m24 == 0x1000000u) {
        m24 = 0x800000u;
        exponent = exponent + 1;
    }
    if (exponent <= 0) {
        return 0.0;
    }
    return bitcast<f32>((u32(exponent) << 23u) | (m24 & 0x7fffffu));
}

// Keras: alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t), t the 1-based step, in f32.
// Every thread computes it (a few dozen integer operations): no separate dispatch.
fn adam_alpha(t: u32) -> f32 {
    return o.lr * sqrt(1.0 - pow_rounded(o.beta2, t)) / (1.0 - pow_rounded(o.beta1, t));
}

// m += (g - m)(1 - b1); v += (g² - v)(1 - b2); p -= (m alpha) / (sqrt(v) + eps): Keras' order.
fn adam_at(i: u32, alpha: f32) {
    let g = grads[i];
    let mi = m[i] + (g - m[i]) * o.one_minus_beta1;
    let vi = v[i] + (g * g - v[i]) * o.one_minus_beta2;
    m[i] = mi;
    v[i] = vi;
    params[i] -= mi * alpha / (sqrt(vi) + o.epsilon);
}

// Keras SGD: m = momentum m - lr g; p += m (plain p -= lr g when momentum is 0).
fn sgd_at(i: u32) {
    let mi = o.beta1 * m[i] - o.lr * grads[i];
    m[i] = mi;
    params[i] += mi;
}
