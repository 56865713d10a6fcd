// One thread per channel: the small steps between the streaming kernels. Forward training
// merges the split partials, updates the running statistics and folds gamma/beta into a
// per-channel scale and shift; inference folds the running statistics instead; backward
// merges the gradient partials into dgamma/dbeta and the coefficients of dx.

// Bindings: `channel_bindings.wgsl` (this module) or `fused_bindings.wgsl` (the fused
// kernels of small tensors, which call the `finish_*` functions from one workgroup).

fn gamma(c: u32) -> f32 {
    return select(1.0, chan[c], (p.flags & FLAG_SCALE) != 0u);
}

fn beta(c: u32) -> f32 {
    return select(0.0, chan[p.channels + c], (p.flags & FLAG_CENTER) != 0u);
}

@compute @workgroup_size(CHANNEL_WG)
fn finalize_training(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.channels) {
        return;
    }
    // Merge in split order: the result does not depend on scheduling.
    var acc = vec4<f32>(0.0);
    for (var s = 0u; s < p.total_splits; s++) {
        acc = chan_merge(acc, partials[s * p.channels + c]);
    }
    finish_training(c, acc);
}

// Channel c's batch statistics `acc` (count, mean - pivot, M2, poisoned) become its running
// statistics and its fold; the pivot is in state[c].fold.x.
fn finish_training(c: u32, acc: vec4<f32>) {
    // A channel that saw NaN or infinity, or whose statistics left f32's range, is NaN
    // throughout (mean, variance, output, running statistics, gradients) on every backend.
    let poisoned = acc.w > 0.0 || non_finite(acc.y) || non_finite(acc.z);
    let nan = bitcast<f32>(NAN_BITS);
    let m2 = acc.z / acc.x;
    let var_b = select(select(m2, 0.0, m2 < 0.0), nan, poisoned); // clamp at 0
    let inv_std = select(1.0 / sqrt(var_b + p.eps), nan, poisoned);
    let scale = gamma(c) * inv_std;
    let old = state[c];
    let pivot = select(old.fold.x, nan, poisoned);
    let mean_d = select(acc.y, nan, poisoned);

    let tracked = old.stats.w + 1.0;
    var keep = p.keep;
    var fresh = p.fresh;
    if (fresh < 0.0) { // cumulative moving average (PyTorch momentum=None)
        fresh = 1.0 / tracked;
        keep = 1.0 - fresh;
    }
    let mean = pivot + mean_d;
    let rm = 2u * p.channels + c;
    let rv = 3u * p.channels + c;
    chan[rm] = select(chan[rm] * keep + mean * fresh, nan, poisoned);
    chan[rv] = select(chan[rv] * keep + var_b * p.var_correction * fresh, nan, poisoned);

    state[c].fold = vec4<f32>(pivot, scale, beta(c) - mean_d * scale, 0.0);
    state[c].grad.w = 1.0;
    state[c].stats = vec4<f32>(mean_d, inv_std, var_b, tracked);
}

@compute @workgroup_size(CHANNEL_WG)
fn finalize_inference(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.channels) {
        return;
    }
    finish_inference(c);
}

// Channel c's fold from its running statistics: (pivot, scale, shift), and the inverse std.
fn inference_fold(c: u32) -> vec4<f32> {
    let running_mean = chan[2u * p.channels + c];
    let running_var = chan[3u * p.channels + c];
    let inv_std = 1.0 / sqrt(running_var + p.eps);
    return vec4<f32>(running_mean, gamma(c) * inv_std, beta(c), inv_std);
}

// Channel c's fold from its running statistics, into its state (for backward).
fn finish_inference(c: u32) {
    let f = inference_fold(c);
    let running_var = chan[3u * p.channels + c];
    let inv_std = f.w;
    state[c].fold = vec4<f32>(f.xyz, 0.0);
    state[c].grad.w = 0.0;
    state[c].stats = vec4<f32>(0.0, inv_std, running_var, state[c].stats.w);
}

@compute @workgroup_size(CHANNEL_WG)
fn finalize_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.channels) {
        return;
    }
    var acc = vec4<f32>(0.0);
    for (var s = 0u; s < p.total_splits; s++) {
        acc += partials[s * p.channels + c];
    }
    finish_backward(c, acc);
}

// Channel c's gradient sums `acc` (sum dy, sum dy x_hat) become dgamma, dbeta and the
// coefficients of dx.
fn finish_backward(c: u32, acc: vec4<f32>) {
    let dbeta = acc.x;
    let dgamma = acc.y;
    grads[c] = dgamma;
    grads[p.channels + c] = dbeta;

    let st = state[c];
    let g = gamma(c) * st.stats.y;
    if (st.grad.w == 1.0) {
        // training: dx = g/n * (n dy - dbeta - x_hat dgamma), x_hat = (x - pivot - mean_d) inv_std
        let b = -g * dgamma * st.stats.y / p.n;
        let cc = -g * dbeta / p.n - b * st.stats.x;
        state[c].grad = vec4<f32>(g, b, cc, 1.0);
    } else {
        // inference statistics are constants: dx = g dy
        state[c].grad = vec4<f32>(g, 0.0, 0.0, 0.0);
    }
}
