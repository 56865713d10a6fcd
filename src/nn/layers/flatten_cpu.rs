//! The f64 twin of `flatten.rs`: the identity on row-major values.

use crate::nn::error::Result;
use crate::nn::layer::CpuLayer;

#[derive(Debug, Clone)]
pub(crate) struct CpuFlatten;

impl CpuLayer for CpuFlatten {
    fn forward(
        &mut self,
        _params: &mut [Vec<f64>],
        x: Vec<f64>,
        _rows: usize,
        _training: bool,
        _step: u64,
    ) -> Result<Vec<f64>> {
        Ok(x)
    }

    fn backward(
        &mut self,
        _params: &[Vec<f64>],
        g: Vec<f64>,
        _rows: usize,
        _step: u64,
        _grads: &mut [Vec<f64>],
    ) -> Result<Vec<f64>> {
        Ok(g)
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer> {
        Box::new(self.clone())
    }
}
