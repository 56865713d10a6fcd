//! The CPU twin of `dropout.rs` (f64 or f32), with the shader's mask bit for bit.

use super::dropout::Dropout;
use crate::nn::error::Result;
use crate::nn::layer::{BackIo, CpuLayer};
use crate::nn::real::Real;

/// The dropout mask of `dropout.wgsl`, bit for bit: whether element `i` is kept at `step`.
pub(crate) fn dropout_keep(i: u32, step: u32, seed: u32, rate: f32) -> bool {
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

    fn apply<T: Real>(&self, mut v: Vec<T>, step: u64) -> Vec<T> {
        let Dropout { rate, seed, .. } = self.def;
        // f64: the reference's 1 / (1 - rate); f32: the shader's, in f32.
        let scale = if T::SINGLE {
            T::of_f32(1.0 / (1.0 - rate))
        } else {
            T::of(1.0 / (1.0 - rate as f64))
        };
        for (i, v) in v.iter_mut().enumerate() {
            *v = if dropout_keep(i as u32, step as u32, seed, rate) {
                *v * scale
            } else {
                T::ZERO
            };
        }
        v
    }
}

impl<T: Real> CpuLayer<T> for CpuDropout {
    fn forward(
        &mut self,
        _params: &mut [Vec<T>],
        x: Vec<T>,
        _rows: usize,
        training: bool,
        step: u64,
    ) -> Result<Vec<T>> {
        Ok(if training { self.apply(x, step) } else { x })
    }

    fn backward(
        &mut self,
        _params: &[Vec<T>],
        dy: Vec<T>,
        io: BackIo,
        _grads: &mut [Vec<T>],
    ) -> Result<Vec<T>> {
        Ok(self.apply(dy, io.step))
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer<T>> {
        Box::new(self.clone())
    }
}
