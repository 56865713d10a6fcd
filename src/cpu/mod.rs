//! The CPU side: an f64 reference (the oracle of every GPU test) and a fast f32 path (the CPU
//! side of the CPU-versus-GPU benchmark and of CPU training). Both share the layer semantics.

mod fast;
mod reference;

pub use fast::FastCpuBatchNorm;
pub use reference::{channel_moments, CpuBatchNorm, Gradients, Stats};

use crate::config::BatchNormConfig;

/// Applies one training step's batch statistics to the running statistics, as the configured
/// framework does (`batches_tracked` already counts this step).
pub(crate) fn update_running(
    config: &BatchNormConfig,
    running_mean: &mut [f32],
    running_var: &mut [f32],
    mean: &[f64],
    var: &[f64],
    n: usize,
    batches_tracked: u64,
) {
    let (keep, fresh) = config.running_weights();
    let (keep, fresh) = if fresh < 0.0 {
        let f = 1.0 / batches_tracked as f64;
        (1.0 - f, f)
    } else {
        (keep as f64, fresh as f64)
    };
    let corr = config.variance_correction(n) as f64;
    for c in 0..mean.len() {
        running_mean[c] = (keep * running_mean[c] as f64 + fresh * mean[c]) as f32;
        running_var[c] = (keep * running_var[c] as f64 + fresh * var[c] * corr) as f32;
    }
}
