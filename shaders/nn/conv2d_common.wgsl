// What the forward (`conv2d.wgsl`) and backward (`conv2d_backward.wgsl`) kernels of a
// Conv2D layer share: the geometry, the uniform, the input binding, the tiles and the patch
// matrix A (gathered from the input, never stored). `src/nn/layers/conv2d.rs` puts it in
// front of each.

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
const FIRST: u32 = 4u;

@group(0) @binding(0) var<uniform> cv: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;  // [batch, h, w, cin]

var<workgroup> tile_a: array<array<f32, T>, T>;
var<workgroup> tile_b: array<array<f32, T>, T>;

fn outputs() -> u32 {
    return cv.batch * OH * OW;
}

fn taps() -> u32 {
    return KH * KW * CIN;
}

fn tiles(n: u32) -> u32 {
    return (n + T - 1u) / T;
}

// Groups of Q channels (the direct kernels' threads per position; Q is 4, their vec4
// accumulators).
fn quads(n: u32) -> u32 {
    return (n + Q - 1u) / Q;
}

// A[m, k]: the input value tap k of output position m sees (0 in the padding).
fn patch_at(m: u32, k: u32) -> f32 {
    if (m >= outputs() || k >= taps()) {
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
