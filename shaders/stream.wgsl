// Kernels that stream over the tensor: per-channel statistics, the fused normalize-scale-shift
// (+ReLU), and the backward pair. Entry points live in `entry_subgroup.wgsl` or
// `entry_workgroup.wgsl` (whichever the adapter supports) hold the two reduction entry points.

// Bindings: `stream_bindings.wgsl` (this module) or `fused_bindings.wgsl`.

var<workgroup> tree: array<vec4<f32>, WG>;

// The pivot of each channel is its first element in the batch (chunk 0).
fn pivot_body(c: u32) {
    if (c < p.channels) {
        state[c].fold.x = x[c * p.inner];
    }
}

// Which channel and rows a streaming workgroup owns, and this thread's lanes. Every
// streaming kernel uses the same tiles: a thread keeps one channel, so its per-channel
// constants are loaded once, and walks that channel's values with a division-free cursor.
struct Tile {
    valid: bool,   // the workgroup has work (uniform across the workgroup)
    c: u32,        // channel of this thread
    lane_r: u32,   // row lane of this thread
    k0: u32,       // first value (of outer * inner) of this thread
    k1: u32,       // end of the split's values
    split: u32,
}

fn tile(t: u32, g: u32) -> Tile {
    var r: Tile;
    let blocks = (p.channels + p.cw - 1u) / p.cw;
    r.valid = g < p.stats_groups;
    let block = g % blocks;
    r.split = g / blocks;
    r.c = block * p.cw + t % p.cw;
    r.lane_r = t / p.cw;
    let start = r.split * p.rows_per_split;
    r.k0 = start + r.lane_r;
    r.k1 = min(start + p.rows_per_split, p.rows);
    return r;
}

// Walks k, k + step, ... of one channel as (outer o, inner i) without a division per step.
struct Cursor {
    o: u32,
    i: u32,
    dout: u32,
    di: u32,
}

fn cursor(k0: u32, step: u32) -> Cursor {
    return Cursor(k0 / p.inner, k0 % p.inner, step / p.inner, step % p.inner);
}

fn address(cur: Cursor, c: u32) -> u32 {
    return (cur.o * p.channels + c) * p.inner + cur.i;
}

fn advance(cur: ptr<function, Cursor>) {
    (*cur).o += (*cur).dout;
    (*cur).i += (*cur).di;
    if ((*cur).i >= p.inner) {
        (*cur).i -= p.inner;
        (*cur).o += 1u;
    }
}

// Per-channel (count, mean - pivot, M2, poisoned) of one split: Welford per thread on
// pivot-shifted values, then Chan merges inside the subgroup and across the workgroup. The
// split's total is left in tree[t] of the threads with lane_r == 0.
fn stats_tree(w: Tile, t: u32, sg_size: u32, pivot: f32) {
    let step = WG / p.cw;
    var acc = vec4<f32>(0.0);
    if (w.valid && w.c < p.channels) {
        var cnt = 0.0;
        var mean = 0.0;
        var m2 = 0.0;
        var poisoned = non_finite(pivot);
        var cur = cursor(w.k0, step);
        for (var k = w.k0; k < w.k1; k += step) {
            let v = x[address(cur, w.c)];
            advance(&cur);
            poisoned = poisoned || non_finite(v);
            let d = v - pivot;
            cnt += 1.0;
            let delta = d - mean;
            mean += delta / cnt;
            m2 += delta * (d - mean);
        }
        // Squares past f32's range (|x - pivot| near 1.8e19) poison the channel too.
        poisoned = poisoned || non_finite(mean) || non_finite(m2);
        acc = vec4<f32>(cnt, mean, m2, select(0.0, 1.0, poisoned));
    }
    acc = subgroup_merge_stats(acc, p.cw, sg_size);
    tree[t] = acc;
    for (var s = step / 2u; s >= subgroup_span(p.cw, sg_size) && s > 0u; s /= 2u) {
        workgroupBarrier();
        if (w.lane_r < s) {
            tree[t] = chan_merge(tree[t], tree[t + s * p.cw]);
        }
    }
    workgroupBarrier();
}

fn stats_body(t: u32, g: u32, sg_size: u32) {
    let w = tile(t, g);
    var pivot = 0.0;
    if (w.valid && w.c < p.channels) {
        pivot = state[w.c].fold.x;
    }
    stats_tree(w, t, sg_size, pivot);
    if (w.valid && w.lane_r == 0u && w.c < p.channels) {
        partials[(p.split_base + w.split) * p.channels + w.c] = tree[t];
    }
}

// y = (x - pivot) * scale + shift, then ReLU when fused.
fn normalize_body(t: u32, g: u32) {
    normalize_tile(tile(t, g));
}

fn normalize_tile(w: Tile) {
    if (!w.valid || w.c >= p.channels) {
        return;
    }
    normalize_tile_with(w, state[w.c].fold);
}

// y = (x - f.x) * f.y + f.z over the tile's rows of its channel.
fn normalize_tile_with(w: Tile, f: vec4<f32>) {
    let step = WG / p.cw;
    let fuse_relu = (p.flags & FLAG_RELU) != 0u;
    var cur = cursor(w.k0, step);
    for (var k = w.k0; k < w.k1; k += step) {
        let e = address(cur, w.c);
        advance(&cur);
        let v = fma(x[e] - f.x, f.y, f.z);
        out[e] = select(v, relu(v), fuse_relu);
    }
}

// dy with the ReLU mask applied (the mask is recomputed from x: y > 0).
fn masked_dy(e: u32, xv: f32, f: vec4<f32>) -> f32 {
    let g = dy[e];
    if ((p.flags & FLAG_RELU) != 0u && !(fma(xv - f.x, f.y, f.z) > 0.0)) {
        return 0.0;
    }
    return g;
}

// Per-channel partial sums (sum dy, sum dy * x_hat) of one split, left in tree[t] of the
// threads with lane_r == 0.
fn reduce_tree(w: Tile, t: u32, sg_size: u32) {
    let step = WG / p.cw;
    var acc = vec4<f32>(0.0);
    if (w.valid && w.c < p.channels) {
        let st = state[w.c];
        var cur = cursor(w.k0, step);
        for (var k = w.k0; k < w.k1; k += step) {
            let e = address(cur, w.c);
            advance(&cur);
            let xv = x[e];
            let gy = masked_dy(e, xv, st.fold);
            let xhat = ((xv - st.fold.x) - st.stats.x) * st.stats.y;
            acc += vec4<f32>(gy, gy * xhat, 0.0, 0.0);
        }
    }
    acc = subgroup_add(acc, p.cw, sg_size);
    tree[t] = acc;
    for (var s = step / 2u; s >= subgroup_span(p.cw, sg_size) && s > 0u; s /= 2u) {
        workgroupBarrier();
        if (w.lane_r < s) {
            tree[t] = tree[t] + tree[t + s * p.cw];
        }
    }
    workgroupBarrier();
}

fn reduce_body(t: u32, g: u32, sg_size: u32) {
    let w = tile(t, g);
    reduce_tree(w, t, sg_size);
    if (w.valid && w.lane_r == 0u && w.c < p.channels) {
        partials[(p.split_base + w.split) * p.channels + w.c] = tree[t];
    }
}

// dx = a * dy + b * (x - pivot) + c with the coefficients the backward finalize folded.
fn dx_body(t: u32, g: u32) {
    dx_tile(tile(t, g));
}

fn dx_tile(w: Tile) {
    if (!w.valid || w.c >= p.channels) {
        return;
    }
    let step = WG / p.cw;
    let st = state[w.c];
    var cur = cursor(w.k0, step);
    for (var k = w.k0; k < w.k1; k += step) {
        let e = address(cur, w.c);
        advance(&cur);
        let xv = x[e];
        let gy = masked_dy(e, xv, st.fold);
        out[e] = fma(st.grad.x, gy, fma(st.grad.y, xv - st.fold.x, st.grad.z));
    }
}

@compute @workgroup_size(CHANNEL_WG)
fn pivot(@builtin(global_invocation_id) gid: vec3<u32>) {
    pivot_body(gid.x);
}

@compute @workgroup_size(WG)
fn normalize(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    normalize_body(t, linear_group(wid, nwg));
}

@compute @workgroup_size(WG)
fn dx(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dx_body(t, linear_group(wid, nwg));
}
