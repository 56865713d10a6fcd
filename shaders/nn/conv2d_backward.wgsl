// A Conv2D layer's whole backward pass in one dispatch, as `dense_backward.wgsl` does it for
// Dense: the workgroups split into three roles by index, each a tile of one implicit product.
// With G = dY masked by the fused ReLU (read on the fly) and A the forward's patch matrix:
//   dK = Aᵀ · G (tiles of [K, cout], K = kh kw cin),  db = column sums of G,
//   dX[p, ci] = Σ over (ky, kx, co) of G at the output position whose window puts tap
//   (ky, kx) on input position p, times K[ky, kx, ci, co] (a gather: no atomics, so every
//   run sums in the same order). dX is skipped for the first layer. Driven by
//   `src/nn/layers/conv2d.rs`, which prepends T and `conv2d_common.wgsl`.

@group(0) @binding(2) var<storage, read> y: array<f32>;         // [batch, oh, ow, cout]
@group(0) @binding(3) var<storage, read> d_output: array<f32>;  // dY, like y
@group(0) @binding(4) var<storage, read> weights: array<f32>;   // kernel [K, cout]
// The layer's gradient region: dK [K, cout] at 0, db [cout] at bias_at.
@group(0) @binding(5) var<storage, read_write> d_params: array<f32>;
@group(0) @binding(6) var<storage, read_write> d_input: array<f32>;

// G[m, co]: dY where the ReLU passed the value (y > 0), 0 past the edges.
fn grad(m: u32, co: u32) -> f32 {
    if (m >= outputs() || co >= COUT) {
        return 0.0;
    }
    let e = m * COUT + co;
    if ((cv.flags & RELU) != 0u && !(y[e] > 0.0)) {
        return 0.0;
    }
    return d_output[e];
}

// The gradient reaching input position p through tap j = (ky, kx, co): G at the output
// whose window puts (ky, kx) on p, or 0 when no output does.
fn scattered(p: u32, j: u32) -> f32 {
    if (p >= cv.batch * H * W || j >= KH * KW * COUT) {
        return 0.0;
    }
    let co = j % COUT;
    let kx = (j / COUT) % KW;
    let ky = j / (COUT * KW);
    let ix = p % W;
    let iy = (p / W) % H;
    let b = p / (W * H);
    let ny = i32(iy + PT) - i32(ky);
    let nx = i32(ix + PL) - i32(kx);
    if (ny < 0 || nx < 0 || u32(ny) % SH != 0u || u32(nx) % SW != 0u) {
        return 0.0;
    }
    let oy = u32(ny) / SH;
    let ox = u32(nx) / SW;
    if (oy >= OH || ox >= OW) {
        return 0.0;
    }
    return grad((b * OH + oy) * OW + ox, co);
}

// K[ky, kx, ci, co] for tap j = (ky, kx, co) and input channel ci.
fn kernel_t(j: u32, ci: u32) -> f32 {
    if (j >= KH * KW * COUT || ci >= CIN) {
        return 0.0;
    }
    let co = j % COUT;
    let tap = j / COUT;
    return weights[(tap * CIN + ci) * COUT + co];
}

// Roles by workgroup index around one shared product loop, barriers at the top level.
@compute @workgroup_size(T, T)
fn conv2d_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wid.x + wid.y * nwg.x;
    let n_dk = tiles(COUT) * tiles(taps());
    let n_db = select(0u, tiles(COUT), (cv.flags & BIAS) != 0u);
    let is_dk = wg < n_dk;
    let is_db = !is_dk && wg < n_dk + n_db;
    let is_dx = !is_dk && !is_db && (cv.flags & FIRST) == 0u;
    var t = wg;
    var col_tiles = tiles(COUT);
    if (is_db) {
        t = wg - n_dk;
    } else if (!is_dk) {
        t = wg - n_dk - n_db;
        col_tiles = tiles(CIN);
    }
    let row = (t / col_tiles) * T + lid.y;
    let col = (t % col_tiles) * T + lid.x;
    var depth = 0u;
    if (is_dk || is_db) {
        depth = outputs();
    } else if (is_dx) {
        depth = KH * KW * COUT;
    }
    var acc = 0.0;
    for (var t0 = 0u; t0 < depth; t0 += T) {
        if (is_dk) {
            tile_a[lid.y][lid.x] = patch_at(t0 + lid.x, row);
            tile_b[lid.y][lid.x] = grad(t0 + lid.y, col);
        } else if (is_db) {
            tile_a[lid.y][lid.x] = select(0.0, 1.0, t0 + lid.x < outputs());
            tile_b[lid.y][lid.x] = grad(t0 + lid.y, col);
        } else {
            tile_a[lid.y][lid.x] = scattered(row, t0 + lid.x);
            tile_b[lid.y][lid.x] = kernel_t(t0 + lid.y, col);
        }
        workgroupBarrier();
        for (var s = 0u; s < T; s++) {
            acc = fma(tile_a[lid.y][s], tile_b[s][lid.x], acc);
        }
        workgroupBarrier();
    }
    if (is_dk && row < taps() && col < COUT) {
        d_params[row * COUT + col] = acc;
    }
    if (is_db && lid.y == 0u && col < COUT) {
        d_params[cv.bias_at + col] = acc;
    }
    if (is_dx && row < cv.batch * H * W && col < CIN) {
        d_input[row * CIN + col] = acc;
    }
}

// The direct form for adapters that are CPUs (see `conv2d_forward_direct`): roles by thread
// index (dK, then db, then dX), no barriers; each dK and dX thread computes Q neighbouring
// channels, so every value it loads feeds Q products. Each sum runs in the tiled form's order.
// (Branches, not `select`: a past-the-end channel must not read at all.)
fn grad_or_0(m: u32, co: u32) -> f32 {
    if (co < COUT) {
        return grad(m, co);
    }
    return 0.0;
}

fn weight_or_0(at: u32, ci: u32) -> f32 {
    if (ci < CIN) {
        return weights[at];
    }
    return 0.0;
}

@compute @workgroup_size(DIRECT_WG)
fn conv2d_backward_direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * DIRECT_WG;
    let n_dk = taps() * quads(COUT);
    let n_db = select(0u, COUT, (cv.flags & BIAS) != 0u);
    let n_dx = select(cv.batch * H * W * quads(CIN), 0u, (cv.flags & FIRST) != 0u);
    if (i < n_dk) {
        // dK[tap, co..co+Q] over output positions in order.
        let co = (i % quads(COUT)) * Q;
        let tap = i / quads(COUT);
        let ci = tap % CIN;
        let kx = (tap / CIN) % KW;
        let ky = tap / (CIN * KW);
        var acc = vec4<f32>(0.0);
        var m = 0u;
        for (var b = 0u; b < cv.batch; b++) {
            for (var oy = 0u; oy < OH; oy++) {
                let iy = i32(oy * SH + ky) - i32(PT);
                for (var ox = 0u; ox < OW; ox++) {
                    let ix = i32(ox * SW + kx) - i32(PL);
                    if (iy >= 0 && ix >= 0 && u32(iy) < H && u32(ix) < W) {
                        let v = x[((b * H + u32(iy)) * W + u32(ix)) * CIN + ci];
                        let g = vec4<f32>(grad_or_0(m, co), grad_or_0(m, co + 1u),
                                          grad_or_0(m, co + 2u), grad_or_0(m, co + 3u));
                        acc = fma(vec4<f32>(v), g, acc);
                    }
                    m++;
                }
            }
        }
        for (var q = 0u; q < Q; q++) {
            if (co + q < COUT) {
                d_params[tap * COUT + co + q] = acc[q];
            }
        }
    } else if (i < n_dk + n_db) {
        let co = i - n_dk;
        var acc = 0.0;
        for (var m = 0u; m < outputs(); m++) {
            acc = fma(1.0, grad(m, co), acc);
        }
        d_params[cv.bias_at + co] = acc;
    } else if (i < n_dk + n_db + n_dx) {
        // dX[p, ci..ci+Q] over taps (ky, kx, co) in order.
        let e = i - n_dk - n_db;
        let ci = (e % quads(CIN)) * Q;
        let p = e / quads(CIN);
        let ix = p % W;
        let iy = (p / W) % H;
        let b = p / (W * H);
        var acc = vec4<f32>(0.0);
        for (var ky = 0u; ky < KH; ky++) {
            let ny = i32(iy + PT) - i32(ky);
            if (ny < 0 || u32(ny) % SH != 0u || u32(ny) / SH >= OH) {
                continue;
            }
            for (var kx = 0u; kx < KW; kx++) {
                let nx = i32(ix + PL) - i32(kx);
                if (nx < 0 || u32(nx) % SW != 0u || u32(nx) / SW >= OW) {
                    continue;
                }
                let m = (b * OH + u32(ny) / SH) * OW + u32(nx) / SW;
                let wb = ((ky * KW + kx) * CIN + ci) * COUT;
                for (var co = 0u; co < COUT; co++) {
                    let w = vec4<f32>(weight_or_0(wb + co, ci), weight_or_0(wb + COUT + co, ci + 1u),
                                      weight_or_0(wb + 2u * COUT + co, ci + 2u),
                                      weight_or_0(wb + 3u * COUT + co, ci + 3u));
                    acc = fma(vec4<f32>(grad(m, co)), w, acc);
                }
            }
        }
        for (var q = 0u; q < Q; q++) {
            if (ci + q < CIN) {
                d_input[p * CIN + ci + q] = acc[q];
            }
        }
    }
}
