// Dense layers forward: a tiled matrix multiply C = op(A) · op(B) (+ bias, + ReLU). The
// backward pass is `dense_backward.wgsl`. Driven by `src/nn/layers/dense.rs`, which prepends
// the tile size T so it is written once.

struct Gemm {
    m: u32,      // rows of C
    n: u32,      // columns of C
    k: u32,      // inner dimension
    flags: u32,  // 1: A is stored transposed ([k, m]); 2: B is stored transposed ([n, k]); 4: add bias; 8: ReLU
}

const TRANS_A: u32 = 1u;
const TRANS_B: u32 = 2u;
const BIAS: u32 = 4u;
const RELU: u32 = 8u;

@group(0) @binding(0) var<uniform> g: Gemm;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> tile_a: array<array<f32, T>, T>;
var<workgroup> tile_b: array<array<f32, T>, T>;

fn load_a(row: u32, col: u32) -> f32 {
    if (row >= g.m || col >= g.k) {
        return 0.0;
    }
    if ((g.flags & TRANS_A) != 0u) {
        return a[col * g.m + row];
    }
    return a[row * g.k + col];
}

fn load_b(row: u32, col: u32) -> f32 {
    if (row >= g.k || col >= g.n) {
        return 0.0;
    }
    if ((g.flags & TRANS_B) != 0u) {
        return b[col * g.k + row];
    }
    return b[row * g.n + col];
}

// T x T output tile per workgroup; both operands staged through workgroup memory.
@compute @workgroup_size(T, T)
fn gemm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.y * T + lid.y;
    let col = wid.x * T + lid.x;
    var acc = 0.0;
    for (var t0 = 0u; t0 < g.k; t0 += T) {
        tile_a[lid.y][lid.x] = load_a(row, t0 + lid.x);
        tile_b[lid.y][lid.x] = load_b(t0 + lid.y, col);
        workgroupBarrier();
        for (var i = 0u; i < T; i++) {
            acc = fma(tile_a[lid.y][i], tile_b[i][lid.x], acc);
        }
        workgroupBarrier();
    }
    if (row < g.m && col < g.n) {
        if ((g.flags & BIAS) != 0u) {
            acc += bias[col];
        }
        if ((g.flags & RELU) != 0u) {
            acc = select(acc, 0.0, acc < 0.0);
        }
        c[row * g.n + col] = acc;
    }
}

// The wide variant for layers of at least W x W outputs: each thread keeps R x R outputs in
// registers (rows ly + p T, columns lx + q T of a W x W tile, W = R T), so every value staged
// in workgroup memory feeds R products instead of one. Each output's fma chain runs over k in
// the same order as `gemm`'s: the results are the same, bit for bit.
var<workgroup> wide_a: array<array<f32, T>, W>;
var<workgroup> wide_b: array<array<f32, W>, T>;

@compute @workgroup_size(T, T)
fn gemm_wide(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * W;
    let col0 = wid.x * W;
    var acc: array<f32, RR>;
    for (var t0 = 0u; t0 < g.k; t0 += T) {
        for (var q = 0u; q < R; q++) {
            wide_a[lid.y + q * T][lid.x] = load_a(row0 + lid.y + q * T, t0 + lid.x);
            wide_b[lid.y][lid.x + q * T] = load_b(t0 + lid.y, col0 + lid.x + q * T);
        }
        workgroupBarrier();
        for (var i = 0u; i < T; i++) {
            for (var p = 0u; p < R; p++) {
                let a = wide_a[lid.y + p * T][i];
                for (var q = 0u; q < R; q++) {
                    acc[p * R + q] = fma(a, wide_b[i][lid.x + q * T], acc[p * R + q]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var p = 0u; p < R; p++) {
        for (var q = 0u; q < R; q++) {
            let row = row0 + lid.y + p * T;
            let col = col0 + lid.x + q * T;
            if (row < g.m && col < g.n) {
                var v = acc[p * R + q];
                if ((g.flags & BIAS) != 0u) {
                    v += bias[col];
                }
                if ((g.flags & RELU) != 0u) {
                    v = select(v, 0.0, v < 0.0);
                }
                c[row * g.n + col] = v;
            }
        }
    }
}
