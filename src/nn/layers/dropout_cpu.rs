//! The f64 twin of `dropout.rs`, with the shader's mask bit for bit.

use super::dropout::Dropout;
use crate::nn::error::Result;
use crate::nn::layer::CpuLayer;

/// The dropout mask of `dropout.wgsl`, bit for bit: whether element `i` is kept at `step`.
pub fn dropout_keep(i: u32, step: u32, seed: u32, rate: f32) -> bool {
    let mut h = i
        .wrapping_mul(747_796_405)
        .wrapping_add(2_891_336_453)
        .wrapping_add(seed.wrapping_mul(277_803_737))
        .wrapping_add(step.wrapping_mul(2_654_435_761));
    h = ((h >> ((h >> 28) + 4)) ^ h).wrapping_mul(277_803_737);
    h ^= h >> 22;
    (h >> 8) as f32 * (1.0 / 16_777_216.0) >= rate
}

#[derive(Debug, Clone)]
pub(crate) struct CpuDropout {
    def: Dropout,
}

impl CpuDropout {
    pub fn new(def: Dropout) -> Self {
        CpuDropout { def }
    }

    fn apply(&self, mut v: Vec<f64>, step: u64) -> Vec<f64> {
        let Dropout { rate, seed, .. } = self.def;
        let scale = 1.0 / (1.0 - rate as f64);
        for (i, v) in v.iter_mut().enumerate() {
            *v = if dropout_keep(i as u32, step as u32, seed, rate) {
                *v * scale
            } else {
                0.0
            };
        }
        v
    }
}

impl CpuLayer for CpuDropout {
    fn forward(
        &mut self,
        _params: &mut [Vec<f64>],
        x: Vec<f64>,
        _rows: usize,
        training: bool,
        step: u64,
    ) -> Result<Vec<f64>> {
        Ok(if training { self.apply(x, step) } else { x })
    }

    fn backward(
        &mut self,
        _params: &[Vec<f64>],
        dy: Vec<f64>,
        _rows: usize,
        step: u64,
        _grads: &mut [Vec<f64>],
    ) -> Result<Vec<f64>> {
        Ok(self.apply(dy, step))
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer> {
        Box::new(self.clone())
    }
}
