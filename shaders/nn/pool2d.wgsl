// MaxPooling2D, AveragePooling2D and GlobalAveragePooling2D over NHWC feature maps, forward
// and backward. Max: the first largest value of the window in row-major order (XLA's and
// TF's choice) takes the whole gradient. Average: over the window's positions inside the
// image (Keras' `same` padding does not count the padding). Backward is a gather, one thread
// per input value over the windows that contain it: no atomics, a fixed order. Driven by
// `src/nn/layers/pool2d.rs`; CPU twin in `pool2d_cpu.rs`.

struct Pool {
    batch: u32, h: u32, w: u32, c: u32,
    oh: u32, ow: u32, kh: u32, kw: u32,
    sh: u32, sw: u32, pt: u32, pl: u32,
    kind: u32,  // 0: max, 1: average
    _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> pl: Pool;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // [batch, h, w, c]
@group(0) @binding(2) var<storage, read> dy: array<f32>;       // backward: [batch, oh, ow, c]
@group(0) @binding(3) var<storage, read_write> dst: array<f32>; // forward: y; backward: dx

fn flat(id: vec3<u32>, n: vec3<u32>) -> u32 {
    return id.x + id.y * n.x * ELEM_WG;
}

// The window of output (oy, ox), clipped to the image: [y0, y1) x [x0, x1).
fn window(oy: u32, ox: u32) -> vec4<u32> {
    let sy = i32(oy * pl.sh) - i32(pl.pt);
    let sx = i32(ox * pl.sw) - i32(pl.pl);
    let y0 = u32(max(sy, 0));
    let x0 = u32(max(sx, 0));
    let y1 = u32(clamp(sy + i32(pl.kh), 0, i32(pl.h)));
    let x1 = u32(clamp(sx + i32(pl.kw), 0, i32(pl.w)));
    return vec4<u32>(y0, x0, y1, x1);
}

// NaN, by bits (shader compilers may fold `v != v` away; Mesa's GL path does).
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Flat input index (within the sample's channel plane) of the window's first maximum; a NaN
// wins over every number (the first NaN), so NaN propagates as XLA's and TF's max pooling do.
fn argmax(base: u32, ch: u32, win: vec4<u32>) -> u32 {
    var best = x[base + (win.x * pl.w + win.y) * pl.c + ch];
    var at = win.x * pl.w + win.y;
    for (var iy = win.x; iy < win.z; iy++) {
        for (var ix = win.y; ix < win.w; ix++) {
            let v = x[base + (iy * pl.w + ix) * pl.c + ch];
            if (!is_nan(best) && (is_nan(v) || v > best)) {
                best = v;
                at = iy * pl.w + ix;
            }
        }
    }
    return at;
}

@compute @workgroup_size(ELEM_WG)
fn pool_forward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = flat(id, n);
    if (i >= pl.batch * pl.oh * pl.ow * pl.c) {
        return;
    }
    let ch = i % pl.c;
    let ox = (i / pl.c) % pl.ow;
    let oy = (i / (pl.c * pl.ow)) % pl.oh;
    let b = i / (pl.c * pl.ow * pl.oh);
    let base = b * pl.h * pl.w * pl.c;
    let win = window(oy, ox);
    if (pl.kind == 0u) {
        dst[i] = x[base + argmax(base, ch, win) * pl.c + ch];
        return;
    }
    var sum = 0.0;
    for (var iy = win.x; iy < win.z; iy++) {
        for (var ix = win.y; ix < win.w; ix++) {
            sum += x[base + (iy * pl.w + ix) * pl.c + ch];
        }
    }
    dst[i] = sum / f32((win.z - win.x) * (win.w - win.y));
}

@compute @workgroup_size(ELEM_WG)
fn pool_backward(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = flat(id, n);
    if (i >= pl.batch * pl.h * pl.w * pl.c) {
        return;
    }
    let ch = i % pl.c;
    let ix = (i / pl.c) % pl.w;
    let iy = (i / (pl.c * pl.w)) % pl.h;
    let b = i / (pl.c * pl.w * pl.h);
    let base = b * pl.h * pl.w * pl.c;
    // Outputs whose window holds row iy: oy s - pt <= iy < oy s - pt + kh.
    let ny = iy + pl.pt;
    let nx = ix + pl.pl;
    let oy0 = select(0u, (ny + 1u - pl.kh + pl.sh - 1u) / pl.sh, ny + 1u > pl.kh);
    let ox0 = select(0u, (nx + 1u - pl.kw + pl.sw - 1u) / pl.sw, nx + 1u > pl.kw);
    let oy1 = min(ny / pl.sh + 1u, pl.oh);
    let ox1 = min(nx / pl.sw + 1u, pl.ow);
    var acc = 0.0;
    for (var oy = oy0; oy < oy1; oy++) {
        for (var ox = ox0; ox < ox1; ox++) {
            let win = window(oy, ox);
            let g = dy[((b * pl.oh + oy) * pl.ow + ox) * pl.c + ch];
            if (pl.kind == 0u) {
                if (argmax(base, ch, win) == iy * pl.w + ix) {
                    acc += g;
                }
            } else {
                acc += g / f32((win.z - win.x) * (win.w - win.y));
            }
        }
    }
    dst[i] = acc;
}
