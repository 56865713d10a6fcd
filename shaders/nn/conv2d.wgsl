// Conv2D forward as an implicit GEMM: Y[m, co] = Σ_k A[m, k] · K[k, co] (+ bias, + ReLU), with
// m = (sample, oy, ox) and k = (ky, kx, ci). A is never stored: a tile of it is gathered from
// the NHWC input on the fly (zero outside the image: the `same` padding), so the only memory
// traffic is the input, the kernel and the output. The kernel's Keras layout [kh, kw, in, out]
// is already the [K, out] matrix. Backward: `conv2d_backward.wgsl`. Driven by
// `src/nn/layers/conv2d.rs`, which prepends the tile size T and `conv2d_common.wgsl`.

@group(0) @binding(2) var<storage, read> weights: array<f32>;  // kernel [K, cout] at 0, bias at bias_at
@group(0) @binding(3) var<storage, read_write> y: array<f32>;  // [batch, oh, ow, cout]

fn kernel_at(k: u32, co: u32) -> f32 {
    if (k >= taps() || co >= COUT) {
        return 0.0;
    }
    return weights[k * COUT + co];
}

// One T x T output tile per workgroup, tiles numbered across a folded 2-D grid.
@compute @workgroup_size(T, T)
fn conv2d_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wid.x + wid.y * nwg.x;
    let col_tiles = tiles(COUT);
    let row = (wg / col_tiles) * T + lid.y;
    let col = (wg % col_tiles) * T + lid.x;
    let depth = taps();
    var acc = 0.0;
    for (var t0 = 0u; t0 < depth; t0 += T) {
        tile_a[lid.y][lid.x] = patch_at(row, t0 + lid.x);
        tile_b[lid.y][lid.x] = kernel_at(t0 + lid.y, col);
        workgroupBarrier();
        for (var i = 0u; i < T; i++) {
            acc = fma(tile_a[lid.y][i], tile_b[i][lid.x], acc);
        }
        workgroupBarrier();
    }
    if (row < outputs() && col < COUT) {
        if ((cv.flags & BIAS) != 0u) {
            acc += weights[cv.bias_at + col];
        }
        if ((cv.flags & RELU) != 0u) {
            acc = select(acc, 0.0, acc < 0.0);
        }
        y[row * COUT + col] = acc;
    }
}

// The direct form for adapters that are CPUs (lavapipe, llvmpipe, SwiftShader): no workgroup
// memory and no barriers, which a CPU runs far faster (its caches do what the tiles do on a
// GPU). Each thread computes Q neighbouring output channels of one position, so every input
// value it loads feeds Q products. Taps in the same order as the tiled product, padding
// skipped (adding 0 * w leaves the sum as it is): the results are the same, bit for bit.
// (A branch, not `select`: a past-the-end channel must not read at all.)
fn w_or_0(at: u32, co: u32) -> f32 {
    if (co < COUT) {
        return weights[at];
    }
    return 0.0;
}

@compute @workgroup_size(DIRECT_WG)
fn conv2d_forward_direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * DIRECT_WG;
    if (i >= outputs() * quads(COUT)) {
        return;
    }
    let co = (i % quads(COUT)) * Q;
    let m = i / quads(COUT);
    let ox = m % OW;
    let oy = (m / OW) % OH;
    let b = m / (OW * OH);
    var acc = vec4<f32>(0.0);
    for (var ky = 0u; ky < KH; ky++) {
        let iy = i32(oy * SH + ky) - i32(PT);
        if (iy < 0 || u32(iy) >= H) {
            continue;
        }
        for (var kx = 0u; kx < KW; kx++) {
            let ix = i32(ox * SW + kx) - i32(PL);
            if (ix < 0 || u32(ix) >= W) {
                continue;
            }
            let xb = ((b * H + u32(iy)) * W + u32(ix)) * CIN;
            let wb = (ky * KW + kx) * CIN;
            for (var ci = 0u; ci < CIN; ci++) {
                let v = x[xb + ci];
                let w = (wb + ci) * COUT + co;
                acc = fma(vec4<f32>(v), vec4<f32>(w_or_0(w, co), w_or_0(w + 1u, co + 1u),
                          w_or_0(w + 2u, co + 2u), w_or_0(w + 3u, co + 3u)), acc);
            }
        }
    }
    for (var q = 0u; q < Q; q++) {
        if (co + q < COUT) {
            var out = acc[q];
            if ((cv.flags & BIAS) != 0u) {
                out += weights[cv.bias_at + co + q];
            }
            if ((cv.flags & RELU) != 0u) {
                out = select(out, 0.0, out < 0.0);
            }
            y[m * COUT + co + q] = out;
        }
    }
}
