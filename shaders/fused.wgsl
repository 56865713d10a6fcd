// Small tensors, in one dispatch: when one split covers every value of a channel (the plan's
// choice, by size), the workgroup of a channel block owns its channels whole. It computes
// their statistics, finalizes them (running statistics, fold) from one thread per channel,
// and normalizes, with a storage barrier between: pivot + stats + finalize + normalize in
// one dispatch instead of four; backward reduce + finalize + dx in one instead of three.
// The math is the split path's, function for function.

// Training: the pivot is each channel's first value.
fn fused_training_body(t: u32, g: u32, sg_size: u32) {
    let w = tile(t, g);
    let own = w.valid && w.c < p.channels;
    var pivot = 0.0;
    if (own) {
        pivot = x[w.c * p.inner];
    }
    stats_tree(w, t, sg_size, pivot);
    if (own && w.lane_r == 0u) {
        state[w.c].fold.x = pivot;
        finish_training(w.c, tree[t]);
    }
    storageBarrier();
    normalize_tile(w);
}

// Inference needs no reduction: every thread forms its channel's fold from the running
// statistics itself (the same arithmetic as the one it writes for backward), so there is no
// barrier between the fold and the sweep.
fn fused_inference_body(t: u32, g: u32) {
    let w = tile(t, g);
    if (!w.valid || w.c >= p.channels) {
        return;
    }
    if (w.lane_r == 0u) {
        finish_inference(w.c);
    }
    normalize_tile_with(w, inference_fold(w.c));
}

fn fused_backward_body(t: u32, g: u32, sg_size: u32) {
    let w = tile(t, g);
    reduce_tree(w, t, sg_size);
    if (w.valid && w.c < p.channels && w.lane_r == 0u) {
        finish_backward(w.c, tree[t]);
    }
    storageBarrier();
    dx_tile(w);
}

@compute @workgroup_size(WG)
fn fused_inference(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    fused_inference_body(t, linear_group(wid, nwg));
}
