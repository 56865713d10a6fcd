// A Conv2D layer's whole backward pass in one dispatch, as `dense_backward.wgsl` does it for
// Dense: the workgroups split into three roles by index, each a tile of one implicit product.
// With G = dY masked by the fused ReLU (read on the fly) and A the forward's patch matrix:
//   dK = Aᵀ · G (tiles of [K, cout], K = kh kw cin),  db = column sums of G,
//   dX[p, ci] = Σ over (ky, kx, co) of G at the output position whose window puts tap
//   (ky, kx) on input position p, times K[ky, kx, ci, co] (a gather: no atomics, so every
//   run sums in the same order). dX is skipped for the first layer. Driven by
//   `src/nn/layers/conv2d.rs`, which prepends T.

struct Conv {
    batch: u32, h: u32, w: u32, cin: u32,
    oh: u32, ow: u32, cout: u32, kh: u32,
    kw: u32, sh: u32, sw: u32, pt: u32,
    pl: u32, flags: u32, bias_at: u32, _pad: u32,
}

const BIAS: u32 = 1u;
const RELU: u32 = 2u;
const FIRST: u32 = 4u;

@group(0) @binding(0) var<uniform> cv: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [batch, h, w, cin]
@group(0) @binding(2) var<storage, read> y: array<f32>;         // [batch, oh, ow, cout]
@group(0) @binding(3) var<storage, read> d_output: array<f32>;  // dY, like y
@group(0) @binding(4) var<storage, read> weights: array<f32>;   // kernel [K, cout]
// The layer's gradient region: dK [K, cout] at 0, db [cout] at bias_at.
@group(0) @binding(5) var<storage, read_write> d_params: array<f32>;
@group(0) @binding(6) var<storage, read_write> d_input: array<f32>;

var<workgroup> tile_a: array<array<f32, T>, T>;
var<workgroup> tile_b: array<array<f32, T>, T>;

fn outputs() -> u32 {
    return cv.batch * cv.oh * cv.ow;
}

fn taps() -> u32 {
    return cv.kh * cv.kw * cv.cin;
}

fn tiles(n: u32) -> u32 {
    return (n + T - 1u) / T;
}

// G[m, co]: dY where the ReLU passed the value (y > 0), 0 past the edges.
fn grad(m: u32, co: u32) -> f32 {
    if (m >= outputs() || co >= cv.cout) {
        return 0.0;
    }
    let e = m * cv.cout + co;
    if ((cv.flags & RELU) != 0u && !(y[e] > 0.0)) {
        return 0.0;
    }
    return d_output[e];
}

// A[m, k], as in the forward.
fn patch_at(m: u32, k: u32) -> f32 {
    if (m >= outputs() || k >= taps()) {
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

// The gradient reaching input position p through tap j = (ky, kx, co): G at the output
// whose window puts (ky, kx) on p, or 0 when no output does.
fn scattered(p: u32, j: u32) -> f32 {
    if (p >= cv.batch * cv.h * cv.w || j >= cv.kh * cv.kw * cv.cout) {
        return 0.0;
    }
    let co = j % cv.cout;
    let kx = (j / cv.cout) % cv.kw;
    let ky = j / (cv.cout * cv.kw);
    let ix = p % cv.w;
    let iy = (p / cv.w) % cv.h;
    let b = p / (cv.w * cv.h);
    let ny = i32(iy + cv.pt) - i32(ky);
    let nx = i32(ix + cv.pl) - i32(kx);
    if (ny < 0 || nx < 0 || u32(ny) % cv.sh != 0u || u32(nx) % cv.sw != 0u) {
        return 0.0;
    }
    let oy = u32(ny) / cv.sh;
    let ox = u32(nx) / cv.sw;
    if (oy >= cv.oh || ox >= cv.ow) {
        return 0.0;
    }
    return grad((b * cv.oh + oy) * cv.ow + ox, co);
}

// K[ky, kx, ci, co] for tap j = (ky, kx, co) and input channel ci.
fn kernel_t(j: u32, ci: u32) -> f32 {
    if (j >= cv.kh * cv.kw * cv.cout || ci >= cv.cin) {
        return 0.0;
    }
    let co = j % cv.cout;
    let tap = j / cv.cout;
    return weights[(tap * cv.cin + ci) * cv.cout + co];
}

// Roles by workgroup index around one shared product loop, barriers at the top level.
@compute @workgroup_size(T, T)
fn conv2d_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wid.x + wid.y * nwg.x;
    let n_dk = tiles(cv.cout) * tiles(taps());
    let n_db = select(0u, tiles(cv.cout), (cv.flags & BIAS) != 0u);
    let is_dk = wg < n_dk;
    let is_db = !is_dk && wg < n_dk + n_db;
    let is_dx = !is_dk && !is_db && (cv.flags & FIRST) == 0u;
    var t = wg;
    var col_tiles = tiles(cv.cout);
    if (is_db) {
        t = wg - n_dk;
    } else if (!is_dk) {
        t = wg - n_dk - n_db;
        col_tiles = tiles(cv.cin);
    }
    let row = (t / col_tiles) * T + lid.y;
    let col = (t % col_tiles) * T + lid.x;
    var depth = 0u;
    if (is_dk || is_db) {
        depth = outputs();
    } else if (is_dx) {
        depth = cv.kh * cv.kw * cv.cout;
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
    if (is_dk && row < taps() && col < cv.cout) {
        d_params[row * cv.cout + col] = acc;
    }
    if (is_db && lid.y == 0u && col < cv.cout) {
        d_params[cv.bias_at + col] = acc;
    }
    if (is_dx && row < cv.batch * cv.h * cv.w && col < cv.cin) {
        d_input[row * cv.cin + col] = acc;
    }
}
