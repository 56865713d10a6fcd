// Entry points for adapters without subgroup operations: reductions go through workgroup
// memory alone.

fn subgroup_span(cw: u32, sg_size: u32) -> u32 {
    return 1u;
}

fn subgroup_merge_stats(v: vec4<f32>, cw: u32, sg_size: u32) -> vec4<f32> {
    return v;
}

fn subgroup_add(v: vec4<f32>, cw: u32, sg_size: u32) -> vec4<f32> {
    return v;
}

@compute @workgroup_size(WG)
fn stats(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    stats_body(t, linear_group(wid, nwg), 1u);
}

@compute @workgroup_size(WG)
fn reduce(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    reduce_body(t, linear_group(wid, nwg), 1u);
}

