// Entry points of the fused kernels with subgroup operations.

@compute @workgroup_size(WG)
fn fused_training(@builtin(subgroup_id) sid: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sg: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    fused_training_body(sid * sg + lane, linear_group(wid, nwg), sg);
}

@compute @workgroup_size(WG)
fn fused_backward(@builtin(subgroup_id) sid: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sg: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    fused_backward_body(sid * sg + lane, linear_group(wid, nwg), sg);
}
