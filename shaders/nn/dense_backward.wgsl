// A Dense layer's whole backward pass in one dispatch: the workgroups split into three roles,
// by index, each a tile of one product. With G = dY masked by the fused ReLU (read on the fly:
// no separate mask pass, dY is not rewritten):
//   dW = Xᵀ · G (tiles of [inp, out]),  db = column sums of G,  dX = G · Wᵀ (tiles of
//   [rows, inp]; skipped for the first layer, whose input gradient nothing reads).
// The products keep `dense.wgsl`'s tile order and fma chain. Driven by
// `src/nn/layers/dense.rs`, which prepends T (the tile).

struct Back {
    rows: u32,
    inp: u32,
    out: u32,
    flags: u32,    // 1: ReLU fused into the forward; 2: first layer (no dX)
    bias_at: u32,  // index of db[0] in `d_params` (after dW)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const RELU: u32 = 1u;
const FIRST: u32 = 2u;

@group(0) @binding(0) var<uniform> bk: Back;
@group(0) @binding(1) var<storage, read> input: array<f32>;     // X [rows, inp]
@group(0) @binding(2) var<storage, read> output: array<f32>;    // Y [rows, out]
@group(0) @binding(3) var<storage, read> d_output: array<f32>;  // dY [rows, out]
@group(0) @binding(4) var<storage, read> kernel: array<f32>;    // W [inp, out]
// The layer's gradient region: dW [inp, out] at 0, db [out] at bias_at.
@group(0) @binding(5) var<storage, read_write> d_params: array<f32>;
@group(0) @binding(6) var<storage, read_write> d_input: array<f32>;

var<workgroup> tile_a: array<array<f32, T>, T>;
var<workgroup> tile_b: array<array<f32, T>, T>;

// G[r, j]: dY where the ReLU passed the value (y > 0), 0 past the edges.
fn grad(r: u32, j: u32) -> f32 {
    if (r >= bk.rows || j >= bk.out) {
        return 0.0;
    }
    let e = r * bk.out + j;
    if ((bk.flags & RELU) != 0u && !(output[e] > 0.0)) {
        return 0.0;
    }
    return d_output[e];
}

fn x_at(r: u32, i: u32) -> f32 {
    if (r >= bk.rows || i >= bk.inp) {
        return 0.0;
    }
    return input[r * bk.inp + i];
}

fn w_at(i: u32, j: u32) -> f32 {
    if (i >= bk.inp || j >= bk.out) {
        return 0.0;
    }
    return kernel[i * bk.out + j];
}

fn tiles(n: u32) -> u32 {
    return (n + T - 1u) / T;
}

// Roles by workgroup index, one shared product loop with its barriers at the top level:
// dW = Xᵀ·G, db = 1ᵀ·G (a product with a row of ones: fma(1, g, acc) adds g exactly as a
// plain sum would, rows in order), dX = G·Wᵀ. (A per-thread loop after the barriers instead
// made this kernel 50x slower on lavapipe.)
@compute @workgroup_size(T, T)
fn dense_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wid.x + wid.y * nwg.x;
    let n_dw = tiles(bk.out) * tiles(bk.inp);
    let n_db = tiles(bk.out);
    let is_dw = wg < n_dw;
    let is_db = !is_dw && wg < n_dw + n_db;
    let is_dx = !is_dw && !is_db && (bk.flags & FIRST) == 0u;
    // The output element of this thread: dW[row, col], db[col] (row 0), or dX[row, col].
    var t = wg;
    var col_tiles = tiles(bk.out);
    if (is_db) {
        t = wg - n_dw;
    } else if (!is_dw) {
        t = wg - n_dw - n_db;
        col_tiles = tiles(bk.inp);
    }
    let row = (t / col_tiles) * T + lid.y;
    let col = (t % col_tiles) * T + lid.x;
    // dW and db sum over rows, dX over outputs.
    var depth = 0u;
    if (is_dw || is_db) {
        depth = bk.rows;
    } else if (is_dx) {
        depth = bk.out;
    }
    var acc = 0.0;
    for (var t0 = 0u; t0 < depth; t0 += T) {
        if (is_dw) {
            tile_a[lid.y][lid.x] = x_at(t0 + lid.x, row);
            tile_b[lid.y][lid.x] = grad(t0 + lid.y, col);
        } else if (is_db) {
            tile_a[lid.y][lid.x] = select(0.0, 1.0, t0 + lid.x < bk.rows);
            tile_b[lid.y][lid.x] = grad(t0 + lid.y, col);
        } else {
            tile_a[lid.y][lid.x] = grad(row, t0 + lid.x);
            tile_b[lid.y][lid.x] = w_at(col, t0 + lid.y);
        }
        workgroupBarrier();
        for (var s = 0u; s < T; s++) {
            acc = fma(tile_a[lid.y][s], tile_b[s][lid.x], acc);
        }
        workgroupBarrier();
    }
    if (is_dw && row < bk.inp && col < bk.out) {
        d_params[row * bk.out + col] = acc;
    }
    if (is_db && lid.y == 0u && col < bk.out) {
        d_params[bk.bias_at + col] = acc;
    }
    if (is_dx && row < bk.rows && col < bk.inp) {
        d_input[row * bk.inp + col] = acc;
    }
}
