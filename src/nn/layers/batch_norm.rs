//! `BatchNormalization()`: the engine's [`BatchNorm`](crate::BatchNorm) bound to the layer's
//! region of the network's parameter buffer (`[gamma | beta | moving mean | moving
//! variance]`) and gradient buffer (`[dgamma | dbeta]`): the network's buffers are the only
//! copy, updated in place by the optimizer. Any [`BatchNormConfig`] convention works (Keras'
//! by default). CPU twin: `batch_norm_cpu.rs`, on the engine's own CPU reference.

use std::collections::HashMap;

use super::batch_norm_cpu::{CpuNorm, FastNorm};
use crate::nn::error::Result;
use crate::nn::layer::{CpuLayer, GpuLayer, Init, Io, LayerDef, Param};
use crate::nn::shape::Shape;
use crate::nn::step_code::{StepCode, StepIo};
use crate::{
    BatchNorm, BatchNormConfig, BoundCall, Context, Layout, Mode, ParamBinding, SingleSamplePolicy,
    TensorRef,
};

/// The definition: a configuration whose `channels` is the input's last axis; a feature map
/// `[h, w, c]` is normalized as `[rows * h * w, c]` (NHWC: statistics over the batch and
/// every position, per channel).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Norm {
    pub config: BatchNormConfig,
    pub shape: Shape,
}

impl LayerDef for Norm {
    fn keras_name(&self) -> &'static str {
        "batch_normalization"
    }

    fn describe(&self) -> String {
        format!("BN{}", if self.config.relu { "+ReLU" } else { "" })
    }

    fn output_shape(&self) -> Shape {
        self.shape
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

    /// Keras' and PyTorch's momentum conventions over channels-last values; the cumulative
    /// average and PyTorch's batch-of-one error stay on the general path.
    fn step_code(&self, io: &mut StepIo) -> Option<StepCode> {
        let cfg = &self.config;
        let n = io.rows.checked_mul(self.shape.positions())?;
        let (keep, fresh) = cfg.running_weights();
        if cfg.layout != Layout::ChannelsLast
            || fresh < 0.0
            || (n == 1 && cfg.single_sample == SingleSamplePolicy::Error)
        {
            return None;
        }
        let consts = format!(
            "BnConsts({}, {}, {}, {}, {}, {}, {})",
            io.f32_arg(cfg.epsilon),
            io.f32_arg(keep),
            io.f32_arg(fresh),
            io.f32_arg(cfg.variance_correction(n)),
            cfg.scale,
            cfg.center,
            cfg.relu
        );
        let shape = format!("{}, {}", io.arg(n)?, io.arg(cfg.channels)?);
        let (x, y, dy) = (io.arg(io.input)?, io.arg(io.output)?, io.arg(io.d_output)?);
        let (at, st) = (io.arg(io.at)?, io.arg(io.scratch)?);
        let mut backward = vec![format!(
            "bn_reduce(t, {shape}, {x}, {y}, {dy}, {at}, {st}, {consts});"
        )];
        if io.d_input.is_some() {
            let dx = io.d_input_arg()?;
            backward.push(format!(
                "bn_dx(t, {shape}, {x}, {y}, {dy}, {dx}, {st}, {consts});"
            ));
        }
        Some(StepCode {
            library: (
                "batch_norm",
                include_str!("../../../shaders/nn/step_batch_norm.wgsl"),
            ),
            forward: vec![
                format!("bn_stats(t, {shape}, {x}, {at}, {st}, {consts});"),
                format!("bn_normalize(t, {shape}, {x}, {y}, {st}, {consts});"),
            ],
            backward,
            scratch: 8 * cfg.channels,
            macs: n.saturating_mul(cfg.channels).saturating_mul(4),
        })
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
            positions: self.shape.positions(),
            layer: BatchNorm::with_parameters(ctx, self.config.clone(), binding)?,
            calls: HashMap::new(),
        }))
    }

    fn cpu(&self) -> Box<dyn CpuLayer> {
        Box::new(CpuNorm::new(self.config.clone(), self.shape.positions()))
    }

    fn cpu_f32(&self) -> Result<Box<dyn CpuLayer<f32>>> {
        Ok(Box::new(FastNorm::new(
            self.config.clone(),
            self.shape.positions(),
        )?))
    }
}

struct GpuNorm {
    /// Positions per sample (`h * w` of a feature map).
    positions: usize,
    layer: BatchNorm,
    /// The forward and backward calls of each batch size, bound once.
    calls: HashMap<usize, [BoundCall; 2]>,
}

impl GpuLayer for GpuNorm {
    fn prepare(&mut self, _ctx: &Context, io: &Io<'_>) -> Result<()> {
        let shape = [io.rows * self.positions, self.layer.config().channels];
        let t = |buffer| TensorRef::new(buffer, &shape);
        let forward = self.layer.bind_forward(t(io.input), t(io.output))?;
        let backward = self
            .layer
            .bind_backward(t(io.input), t(io.d_output), t(io.d_input))?;
        self.calls.insert(io.rows, [forward, backward]);
        Ok(())
    }

    fn forget(&mut self) {
        self.calls.clear();
    }

    fn synchronized(&mut self) -> Option<(&mut BatchNorm, usize)> {
        Some((&mut self.layer, self.positions))
    }

    fn forward(
        &mut self,
        _ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
        mode: Mode,
    ) -> Result<()> {
        let [call, _] = self.calls.get_mut(&io.rows).ok_or_else(unprepared)?;
        Ok(self.layer.encode_forward_bound(enc, call, mode)?)
    }

    fn backward(
        &mut self,
        _ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
    ) -> Result<()> {
        let [_, call] = self.calls.get_mut(&io.rows).ok_or_else(unprepared)?;
        Ok(self.layer.encode_backward_bound(enc, call)?)
    }
}

fn unprepared() -> crate::nn::Error {
    crate::nn::Error::Model("internal: a batch size used before it was prepared".into())
}
