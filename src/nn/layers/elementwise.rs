//! What the elementwise layers (dropout, activations) share: their kernels' slots
//! (`uniform, a, b, out`), one forward and one backward bind group per batch size, and a 1-D
//! dispatch over `rows * width` values.

use std::collections::HashMap;

use crate::nn::error::Result;
use crate::nn::layer::ELEM_WG;
use crate::pipeline::{self, bind, dispatch, groups_1d, Kernel, Region, Slot};
use crate::Context;

/// Slots of an elementwise kernel: its uniform (of `T`), two inputs, one output.
pub(crate) fn slots<T>() -> [Slot; 4] {
    [
        Slot::Uniform(std::mem::size_of::<T>() as u64),
        Slot::Read(4),
        Slot::Read(4),
        Slot::Write(4),
    ]
}

/// The forward and backward bind groups of each batch size.
#[derive(Default)]
pub(crate) struct Binds {
    by_rows: HashMap<usize, [wgpu::BindGroup; 2]>,
}

impl Binds {
    /// Binds `(uniform, a, b, out)` for the forward and the backward kernel of `rows`.
    pub fn insert(
        &mut self,
        ctx: &Context,
        rows: usize,
        uniforms: [&wgpu::Buffer; 2],
        kernels: [&Kernel; 2],
        regions: [[Region<'_>; 3]; 2],
    ) {
        let [f, b] = [0, 1].map(|i| {
            let [a, x, out] = regions[i];
            bind(
                ctx.device(),
                "nn.elementwise",
                &kernels[i].layout,
                &[uniforms[i].into(), a, x, out],
            )
        });
        self.by_rows.insert(rows, [f, b]);
    }

    pub fn clear(&mut self) {
        self.by_rows.clear();
    }

    /// Records kernel `which` (0: forward, 1: backward) over `len` values at `rows`.
    pub fn dispatch(
        &self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        which: usize,
        rows: usize,
        len: usize,
    ) -> Result<()> {
        let max = ctx.plan_limits().max_groups_per_dim;
        let group = &self.by_rows[&rows][which];
        let mut pass = pipeline::begin_pass(enc, &Default::default());
        dispatch(
            &mut pass,
            kernel,
            group,
            groups_1d(len, ELEM_WG as usize, max),
        );
        Ok(())
    }
}
