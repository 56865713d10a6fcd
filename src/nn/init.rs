//! Initial weights (Keras' glorot-uniform), from the model's seed: each tensor draws from its
//! own stream, so adding a layer without weights changes no other layer's initial weights.

use crate::nn::rng::Rng;

/// `count` glorot-uniform values for a tensor of the given fans (a convolution kernel's
/// fans include its window).
pub(crate) fn glorot_uniform(
    seed: u64,
    index: usize,
    count: usize,
    fan_in: usize,
    fan_out: usize,
) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
    let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(index as u64 + 1));
    (0..count)
        .map(|_| ((rng.uniform() * 2.0 - 1.0) * limit) as f32)
        .collect()
}
