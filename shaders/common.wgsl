// Definitions shared by every batch-norm kernel. The host concatenates this file in front of
// `stream.wgsl` (kernels that walk the tensor) and `channel.wgsl` (one thread per channel),
// after a prelude generated from `src/plan.rs` that defines the workgroup sizes once:
// WG (threads per streaming workgroup) and CHANNEL_WG (channels per finalize workgroup).

const FLAG_RELU: u32 = 1u;
const FLAG_CENTER: u32 = 2u;
const FLAG_SCALE: u32 = 4u;

// Per call and per chunk of the tensor. The tensor is viewed as [outer, channels, inner]
// (channels-last: inner = 1); a chunk is a range of `outer` bound at a byte offset.
struct Params {
    channels: u32,
    inner: u32,
    rows: u32,           // elements per channel inside this chunk (chunk outer * inner)
    cw: u32,             // channel lanes of a stats workgroup (power of two); rows per step = WG / cw
    splits: u32,         // row splits of this chunk
    split_base: u32,     // index of this chunk's first split among all splits
    total_splits: u32,   // splits of all chunks: what the finalize step merges
    rows_per_split: u32,
    stats_groups: u32,   // workgroups of every streaming dispatch (folded into 2-D)
    _pad3: u32,
    elems: u32,          // elements in this chunk
    flags: u32,
    n: f32,              // elements per channel in the whole batch
    eps: f32,
    keep: f32,           // running stat <- keep * old + fresh * new
    fresh: f32,          // < 0: cumulative average, fresh = 1 / batches tracked
    var_correction: f32, // n / (n - 1) for an unbiased running variance, else 1
    _pad0: f32,
    _pad1: f32,
    _pad2: f32,
}

// What every later kernel needs to know about one channel.
struct ChannelState {
    // pivot p (first sample in training, running mean in inference), scale, shift:
    // y = (x - p) * scale + shift. Subtracting the pivot first keeps y exact when the
    // mean is huge compared with the spread.
    fold: vec4<f32>,
    // dx = a * dy + b * (x - p) + c; w = 1 when the last forward ran in training mode.
    grad: vec4<f32>,
    // batch mean minus pivot, inverse std, biased batch variance, batches tracked.
    stats: vec4<f32>,
}

// NaN or infinity, by bits: shader compilers may assume finite math and fold `x != x` or
// `inf - inf` away (Mesa's GL path does), so non-finite values are tracked explicitly.
fn non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

const NAN_BITS: u32 = 0x7fc00000u;

// Chan et al.'s merge of two (count, mean, M2, poisoned) partials; exact for empty sides.
// `poisoned` (w = 1) marks a partial that saw a non-finite value or overflowed: it stays
// set through every merge, and the finalize step turns the channel into NaN.
fn chan_merge(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    let n = a.x + b.x;
    if (n == 0.0) {
        return a;
    }
    let d = b.y - a.y;
    let wb = b.x / n;
    let mean = a.y + d * wb;
    let m2 = a.z + b.z + d * d * a.x * wb;
    let poisoned = max(a.w, b.w) > 0.0 || non_finite(mean) || non_finite(m2);
    return vec4<f32>(n, mean, m2, select(0.0, 1.0, poisoned));
}

// The 2-D grid folds a linear workgroup index past the 65,535-per-dimension limit.
fn linear_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// ReLU that lets NaN through, as torch.relu and keras.activations.relu do.
fn relu(v: f32) -> f32 {
    return select(v, 0.0, v < 0.0);
}
