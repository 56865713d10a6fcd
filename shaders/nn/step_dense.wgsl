// A Dense layer's phases in the one-workgroup training step (`step.wgsl`), with `dense.wgsl`'s
// and `dense_backward.wgsl`'s arithmetic: each output's fma chain over k in order, the bias
// added after it, ReLU where the value is below 0; the gradients' chains over rows (dW, db)
// and outputs (dX) in order. Offsets are into `arena` (activations) and `params` / `grads`
// (the layer's region: kernel at w, bias at b). Emitted by `src/nn/layers/dense.rs`.

// y[r, j] = sum_k x[r, k] W[k, j] + b[j], then ReLU when `relu`.
fn dense_forward(t: u32, rows: u32, inp: u32, out: u32, x: u32, y: u32, w: u32, b: u32, relu: bool) {
    for (var e = t; e < rows * out; e += STEP_WG) {
        let r = e / out;
        let j = e % out;
        var acc = 0.0;
        for (var k = 0u; k < inp; k++) {
            acc = fma(arena[x + r * inp + k], params[w + k * out + j], acc);
        }
        acc += params[b + j];
        if (relu) {
            acc = select(acc, 0.0, acc < 0.0);
        }
        arena[y + e] = acc;
    }
}

// G = dY where the fused ReLU passed the value (y > 0).
fn dense_grad(y: u32, dy: u32, e: u32, relu: bool) -> f32 {
    if (relu && !(arena[y + e] > 0.0)) {
        return 0.0;
    }
    return arena[dy + e];
}

// dW = Xᵀ G, db = column sums of G, dX = G Wᵀ (not for the first layer: `dx` is NONE).
fn dense_backward(t: u32, rows: u32, inp: u32, out: u32, x: u32, y: u32, dy: u32, dx: u32, w: u32, b: u32, relu: bool) {
    for (var e = t; e < inp * out; e += STEP_WG) {
        let i = e / out;
        let j = e % out;
        var acc = 0.0;
        for (var r = 0u; r < rows; r++) {
            acc = fma(arena[x + r * inp + i], dense_grad(y, dy, r * out + j, relu), acc);
        }
        grads[w + e] = acc;
    }
    for (var j = t; j < out; j += STEP_WG) {
        var acc = 0.0;
        for (var r = 0u; r < rows; r++) {
            acc = fma(1.0, dense_grad(y, dy, r * out + j, relu), acc);
        }
        grads[b + j] = acc;
    }
    if (dx != NONE) {
        for (var e = t; e < rows * inp; e += STEP_WG) {
            let r = e / inp;
            let i = e % inp;
            var acc = 0.0;
            for (var j = 0u; j < out; j++) {
                acc = fma(dense_grad(y, dy, r * out + j, relu), params[w + i * out + j], acc);
            }
            arena[dx + e] = acc;
        }
    }
}
