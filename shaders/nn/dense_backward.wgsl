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
    flags: u32,   // 1: ReLU fused into the forward; 2: first layer (no dX)
}

const RELU: u32 = 1u;
const FIRST: u32 = 2u;

@group(0) @binding(0) var<uniform> bk: Back;
@group(0) @binding(1) var<storage, read> input: array<f32>;     // X [rows, inp]
@group(0) @binding(2) var<storage, read> output: array<f32>;    // Y [rows, out]
@group(0) @binding(3) var<storage, read> d_output: array<f32>;  // dY [rows, out]
@group(0) @binding(4) var<storage, read> kernel: array<f32>;    // W [inp, out]
@group(0) @binding(5) var<storage, read_write> d_kernel: array<f32>;
@group(0) @binding(6) var<storage, read_write> d_bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> d_input: array<f32>;

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

@compute @workgroup_size(T, T)
fn dense_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let wg = wid.x + wid.y * nwg.x;
    let n_dw = tiles(bk.out) * tiles(bk.inp);
    let n_db = (bk.out + T * T - 1u) / (T * T);
    if (wg < n_dw) {
        // dW[i, j] = sum over rows of X[r, i] G[r, j].
        let i = (wg / tiles(bk.out)) * T + lid.y;
        let j = (wg % tiles(bk.out)) * T + lid.x;
        var acc = 0.0;
        for (var t0 = 0u; t0 < bk.rows; t0 += T) {
            tile_a[lid.y][lid.x] = x_at(t0 + lid.x, i);
            tile_b[lid.y][lid.x] = grad(t0 + lid.y, j);
            workgroupBarrier();
            for (var s = 0u; s < T; s++) {
                acc = fma(tile_a[lid.y][s], tile_b[s][lid.x], acc);
            }
            workgroupBarrier();
        }
        if (i < bk.inp && j < bk.out) {
            d_kernel[i * bk.out + j] = acc;
        }
    } else if (wg < n_dw + n_db) {
        // db[j] = sum over rows of G[r, j], rows in order.
        let j = (wg - n_dw) * T * T + lid.y * T + lid.x;
        if (j < bk.out) {
            var s = 0.0;
            for (var r = 0u; r < bk.rows; r++) {
                s += grad(r, j);
            }
            d_bias[j] = s;
        }
    } else if ((bk.flags & FIRST) == 0u) {
        // dX[r, i] = sum over outputs of G[r, j] W[i, j].
        let t = wg - n_dw - n_db;
        let r = (t / tiles(bk.inp)) * T + lid.y;
        let i = (t % tiles(bk.inp)) * T + lid.x;
        var acc = 0.0;
        for (var t0 = 0u; t0 < bk.out; t0 += T) {
            tile_a[lid.y][lid.x] = grad(r, t0 + lid.x);
            tile_b[lid.y][lid.x] = w_at(i, t0 + lid.y);
            workgroupBarrier();
            for (var s = 0u; s < T; s++) {
                acc = fma(tile_a[lid.y][s], tile_b[s][lid.x], acc);
            }
            workgroupBarrier();
        }
        if (r < bk.rows && i < bk.inp) {
            d_input[r * bk.inp + i] = acc;
        }
    }
}
