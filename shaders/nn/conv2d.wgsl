// Conv2D forward as an implicit GEMM: Y[m, co] = Σ_k A[m, k] · K[k, co] (+ bias, + ReLU), with
// m = (sample, oy, ox) and k = (ky, kx, ci). A is never stored: a tile of it is gathered from
// the NHWC input on the fly (zero outside the image: the `same` padding), so the only memory
// traffic is the input, the kernel and the output. The kernel's Keras layout [kh, kw, in, out]
// is already the [K, out] matrix. Backward: `conv2d_backward.wgsl`. Driven by
// `src/nn/layers/conv2d.rs`, which prepends the tile size T.

// The layer's geometry, fixed per pipeline (override constants): divisions by them compile
// to multiplications, which matters where each tile load decodes an index.
override H: u32 = 1u;
override W: u32 = 1u;
override CIN: u32 = 1u;
override OH: u32 = 1u;
override OW: u32 = 1u;
override COUT: u32 = 1u;
override KH: u32 = 1u;
override KW: u32 = 1u;
override SH: u32 = 1u;
override SW: u32 = 1u;
override PT: u32 = 0u;
override PL: u32 = 0u;

struct Conv {
    batch: u32,
    flags: u32,
    bias_at: u32,
    _pad: u32,
}

const BIAS: u32 = 1u;
const RELU: u32 = 2u;

@group(0) @binding(0) var<uniform> cv: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // [batch, h, w, cin]
@group(0) @binding(2) var<storage, read> weights: array<f32>;  // kernel [K, cout] at 0, bias at bias_at
@group(0) @binding(3) var<storage, read_write> y: array<f32>;  // [batch, oh, ow, cout]

var<workgroup> tile_a: array<array<f32, T>, T>;
var<workgroup> tile_b: array<array<f32, T>, T>;

// The input value patch element k of output position m sees (0 in the padding).
fn patch_at(m: u32, k: u32) -> f32 {
    if (m >= cv.batch * OH * OW || k >= KH * KW * CIN) {
        return 0.0;
    }
    let ci = k % CIN;
    let kx = (k / CIN) % KW;
    let ky = k / (CIN * KW);
    let ox = m % OW;
    let oy = (m / OW) % OH;
    let b = m / (OW * OH);
    let iy = i32(oy * SH + ky) - i32(PT);
    let ix = i32(ox * SW + kx) - i32(PL);
    if (iy < 0 || ix < 0 || u32(iy) >= H || u32(ix) >= W) {
        return 0.0;
    }
    return x[((b * H + u32(iy)) * W + u32(ix)) * CIN + ci];
}

fn kernel_at(k: u32, co: u32) -> f32 {
    if (k >= KH * KW * CIN || co >= COUT) {
        return 0.0;
    }
    return weights[k * COUT + co];
}

// One T x T output tile per workgroup, tiles numbered across a folded 2-D grid.
@compute @workgroup_size(T, T)
fn conv2d_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wid.x + wid.y * nwg.x;
    let col_tiles = (COUT + T - 1u) / T;
    let row = (wg / col_tiles) * T + lid.y;
    let col = (wg % col_tiles) * T + lid.x;
    let depth = KH * KW * CIN;
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
    if (row < cv.batch * OH * OW && col < COUT) {
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
const Q: u32 = 4u;

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
    let quads = (COUT + Q - 1u) / Q;
    if (i >= cv.batch * OH * OW * quads) {
        return;
    }
    let co = (i % quads) * Q;
    let m = i / quads;
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
