//! The CPU twin of `activation.rs` (f64 or f32).

use super::activation::Activation;
use crate::nn::error::Result;
use crate::nn::layer::{BackIo, CpuLayer};
use crate::nn::real::Real;

#[derive(Debug, Clone)]
pub(crate) struct CpuActivation<T> {
    function: Activation,
    output: Vec<T>,
}

impl<T> CpuActivation<T> {
    pub fn new(function: Activation) -> Self {
        CpuActivation {
            function,
            output: Vec::new(),
        }
    }
}

impl<T: Real> CpuLayer<T> for CpuActivation<T> {
    fn forward(
        &mut self,
        _params: &mut [Vec<T>],
        x: Vec<T>,
        _rows: usize,
        _training: bool,
        _step: u64,
    ) -> Result<Vec<T>> {
        let f: fn(T) -> T = match self.function {
            Activation::Sigmoid => |x| T::ONE / (T::ONE + (-x).exp()),
            Activation::Tanh => T::tanh,
        };
        self.output = x.into_iter().map(f).collect();
        Ok(self.output.clone())
    }

    fn backward(
        &mut self,
        _params: &[Vec<T>],
        dy: Vec<T>,
        _io: BackIo,
        _grads: &mut [Vec<T>],
    ) -> Result<Vec<T>> {
        let derivative: fn(T) -> T = match self.function {
            Activation::Sigmoid => |y| y * (T::ONE - y),
            Activation::Tanh => |y| T::ONE - y * y,
        };
        Ok(dy
            .iter()
            .zip(&self.output)
            .map(|(&d, &y)| d * derivative(y))
            .collect())
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer<T>> {
        Box::new(self.clone())
    }
}
