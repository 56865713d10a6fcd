//! The f64 twin of `activation.rs`.

use super::activation::Activation;
use crate::nn::error::Result;
use crate::nn::layer::CpuLayer;

#[derive(Debug, Clone)]
pub(crate) struct CpuActivation {
    function: Activation,
    output: Vec<f64>,
}

impl CpuActivation {
    pub fn new(function: Activation) -> Self {
        CpuActivation {
            function,
            output: Vec::new(),
        }
    }
}

impl CpuLayer for CpuActivation {
    fn forward(
        &mut self,
        _params: &mut [Vec<f64>],
        x: Vec<f64>,
        _rows: usize,
        _training: bool,
        _step: u64,
    ) -> Result<Vec<f64>> {
        let f: fn(f64) -> f64 = match self.function {
            Activation::Sigmoid => |x| 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => f64::tanh,
        };
        self.output = x.into_iter().map(f).collect();
        Ok(self.output.clone())
    }

    fn backward(
        &mut self,
        _params: &[Vec<f64>],
        dy: Vec<f64>,
        _rows: usize,
        _step: u64,
        _grads: &mut [Vec<f64>],
    ) -> Result<Vec<f64>> {
        let derivative: fn(f64) -> f64 = match self.function {
            Activation::Sigmoid => |y| y * (1.0 - y),
            Activation::Tanh => |y| 1.0 - y * y,
        };
        Ok(dy
            .iter()
            .zip(&self.output)
            .map(|(d, &y)| d * derivative(y))
            .collect())
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer> {
        Box::new(self.clone())
    }
}
