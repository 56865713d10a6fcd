// Entry points of the fused kernels without subgroup operations.

@compute @workgroup_size(WG)
fn fused_training(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    fused_training_body(t, linear_group(wid, nwg), 1u);
}

@compute @workgroup_size(WG)
fn fused_backward(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    fused_backward_body(t, linear_group(wid, nwg), 1u);
}
