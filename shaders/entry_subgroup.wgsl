// Entry points for adapters with subgroup operations. Threads are numbered
// subgroup_id * subgroup_size + lane, so a shuffle-xor by a multiple of cw pairs two threads
// of the same channel whatever order the hardware gives subgroups; shuffles then replace the
// first log2(subgroup_size / cw) levels of the workgroup-memory tree.

// Rows already merged inside a subgroup: the tree starts at this stride.
fn subgroup_span(cw: u32, sg_size: u32) -> u32 {
    return max(sg_size / cw, 1u);
}

fn subgroup_merge_stats(v: vec4<f32>, cw: u32, sg_size: u32) -> vec4<f32> {
    var acc = v;
    for (var m = cw; m < sg_size; m *= 2u) {
        acc = chan_merge(acc, subgroupShuffleXor(acc, m));
    }
    return acc;
}

fn subgroup_add(v: vec4<f32>, cw: u32, sg_size: u32) -> vec4<f32> {
    var acc = v;
    for (var m = cw; m < sg_size; m *= 2u) {
        acc += subgroupShuffleXor(acc, m);
    }
    return acc;
}

@compute @workgroup_size(WG)
fn stats(@builtin(subgroup_id) sid: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sg: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    stats_body(sid * sg + lane, linear_group(wid, nwg), sg);
}

@compute @workgroup_size(WG)
fn reduce(@builtin(subgroup_id) sid: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sg: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    reduce_body(sid * sg + lane, linear_group(wid, nwg), sg);
}

