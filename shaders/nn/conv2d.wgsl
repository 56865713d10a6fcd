// Conv2D forward as an implicit GEMM: Y[m, co] = Σ_k A[m, k] · K[k, co] (+ bias, + ReLU), with
// m = (sample, oy, ox) and k = (ky, kx, ci). A is never stored: a tile of it is gathered from
// the NHWC input on the fly (zero outside the image: the `same` padding), so the only memory
// traffic is the input, the kernel and the output. The kernel's Keras layout [kh, kw, in, out]
// is already the [K, out] matrix. Backward: `conv2d_backward.wgsl`. Driven by
// `src/nn/layers/conv2d.rs`, which prepends the tile size T.

struct Conv {
    batch: u32, h: u32, w: u32, cin: u32,
    oh: u32, ow: u32, cout: u32, kh: u32,
    kw: u32, sh: u32, sw: u32, pt: u32,
    pl: u32, flags: u32, bias_at: u32, _pad: u32,
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
    if (m >= cv.batch * cv.oh * cv.ow || k >= cv.kh * cv.kw * cv.cin) {
        return 0.0;
    }
    let ci = k % cv.cin;
    let kx = (k / cv.cin) % cv.kw;
    let ky = k / (cv.cin * cv.kw);
    let ox = m % cv.ow;
    let oy = (m / cv.ow) % cv.oh;
    let b = m / (cv.ow * cv.oh);
    let iy = i32(oy * cv.sh + ky) - i32(cv.pt);
    let ix = i32(ox * cv.sw + kx) - i32(cv.pl);
    if (iy < 0 || ix < 0 || u32(iy) >= cv.h || u32(ix) >= cv.w) {
        return 0.0;
    }
    return x[((b * cv.h + u32(iy)) * cv.w + u32(ix)) * cv.cin + ci];
}

fn kernel_at(k: u32, co: u32) -> f32 {
    if (k >= cv.kh * cv.kw * cv.cin || co >= cv.cout) {
        return 0.0;
    }
    return weights[k * cv.cout + co];
}

// One T x T output tile per workgroup, tiles numbered across a folded 2-D grid.
@compute @workgroup_size(T, T)
fn conv2d_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wid.x + wid.y * nwg.x;
    let col_tiles = (cv.cout + T - 1u) / T;
    let row = (wg / col_tiles) * T + lid.y;
    let col = (wg % col_tiles) * T + lid.x;
    let depth = cv.kh * cv.kw * cv.cin;
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
    if (row < cv.batch * cv.oh * cv.ow && col < cv.cout) {
        if ((cv.flags & BIAS) != 0u) {
            acc += weights[cv.bias_at + col];
        }
        if ((cv.flags & RELU) != 0u) {
            acc = select(acc, 0.0, acc < 0.0);
        }
        y[row * cv.cout + col] = acc;
    }
}
