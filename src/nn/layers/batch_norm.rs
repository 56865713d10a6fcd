//! `BatchNormalization()`: the engine's [`BatchNorm`](crate::BatchNorm) bound to the layer's
//! region of the network's parameter buffer (`[gamma | beta | moving mean | moving
//! variance]`) and gradient buffer (`[dgamma | dbeta]`): the network's buffers are the only
//! copy, updated in place by the optimizer. Any [`BatchNormConfig`] convention works (Keras'
//! by default). CPU twin: `batch_norm_cpu.rs`, on the engine's own CPU reference.

use super::batch_norm_cpu::CpuNorm;
use crate::nn::error::Result;
use crate::nn::layer::{CpuLayer, GpuLayer, Init, Io, LayerDef, Param};
use crate::{BatchNorm, BatchNormConfig, Context, Mode, ParamBinding, TensorRef};

/// The definition: a configuration whose `channels` is the input width.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Norm {
    pub config: BatchNormConfig,
}

impl LayerDef for Norm {
    fn keras_name(&self) -> &'static str {
        "batch_normalization"
    }

    fn describe(&self) -> String {
        format!("BN{}", if self.config.relu { "+ReLU" } else { "" })
    }

    fn output_width(&self) -> usize {
        self.config.channels
    }

    /// Contiguous, as the engine binds them: one region of 4 C floats.
    fn params(&self) -> Vec<Param> {
        let c = self.config.channels;
        let p = |name, slot: usize, trainable, init| Param {
            name,
            shape: vec![c],
            trainable,
            offset: slot * c,
            init,
        };
        vec![
            p("gamma", 0, true, Init::Ones),
            p("beta", 1, true, Init::Zeros),
            p("moving_mean", 2, false, Init::Zeros),
            p("moving_variance", 3, false, Init::Ones),
        ]
    }

    fn fuse_relu(&mut self) -> bool {
        !std::mem::replace(&mut self.config.relu, true)
    }

    fn gpu(
        &self,
        ctx: &Context,
        params: &wgpu::Buffer,
        grads: &wgpu::Buffer,
        at: usize,
    ) -> Result<Box<dyn GpuLayer>> {
        let binding = ParamBinding {
            params: params.clone(),
            params_offset: at as u64 * 4,
            grads: grads.clone(),
            grads_offset: at as u64 * 4,
        };
        Ok(Box::new(GpuNorm {
            layer: BatchNorm::with_parameters(ctx, self.config.clone(), binding)?,
        }))
    }

    fn cpu(&self) -> Box<dyn CpuLayer> {
        Box::new(CpuNorm::new(self.config.clone()))
    }
}

struct GpuNorm {
    layer: BatchNorm,
}

impl GpuLayer for GpuNorm {
    fn prepare(&mut self, _ctx: &Context, _io: &Io<'_>) -> Result<()> {
        Ok(())
    }

    fn forget(&mut self) {}

    fn forward(
        &mut self,
        _ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
        mode: Mode,
    ) -> Result<()> {
        let shape = [io.rows, self.layer.config().channels];
        self.layer.encode_forward(
            enc,
            TensorRef::new(io.input, &shape),
            TensorRef::new(io.output, &shape),
            mode,
        )?;
        Ok(())
    }

    fn backward(
        &mut self,
        _ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
    ) -> Result<()> {
        let shape = [io.rows, self.layer.config().channels];
        self.layer.encode_backward(
            enc,
            TensorRef::new(io.input, &shape),
            TensorRef::new(io.d_output, &shape),
            TensorRef::new(io.d_input, &shape),
        )?;
        Ok(())
    }
}
