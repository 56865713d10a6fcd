//! The CPU twin of `flatten.rs`: the identity on row-major values.

use crate::nn::error::Result;
use crate::nn::layer::{BackIo, CpuLayer};
use crate::nn::real::Real;

#[derive(Debug, Clone)]
pub(crate) struct CpuFlatten;

impl<T: Real> CpuLayer<T> for CpuFlatten {
    fn forward(
        &mut self,
        _params: &mut [Vec<T>],
        x: Vec<T>,
        _rows: usize,
        _training: bool,
        _step: u64,
    ) -> Result<Vec<T>> {
        Ok(x)
    }

    fn backward(
        &mut self,
        _params: &[Vec<T>],
        g: Vec<T>,
        _io: BackIo,
        _grads: &mut [Vec<T>],
    ) -> Result<Vec<T>> {
        Ok(g)
    }

    fn boxed_clone(&self) -> Box<dyn CpuLayer<T>> {
        Box::new(self.clone())
    }
}
