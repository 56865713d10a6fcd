//! Optimizers: the [`Optimizer`] a user picks, checked once for both models, and its GPU
//! driver over the network's one parameter buffer (`shaders/nn/optimizer.wgsl`). CPU twin:
//! `optimizer_cpu.rs`.

use bytemuck::{Pod, Zeroable};

use crate::nn::error::{Error, Result};
use crate::nn::layer::{gpu_u32, ELEM_WG};
use crate::pipeline::{self, bind, dispatch, groups_1d, Kernel, Slot};
use crate::Context;

/// The optimizer of a model. Hyperparameters are kept as the user wrote them (f64, like
/// Keras' Python floats) and rounded to f32 where Keras rounds them, so the GPU does Keras'
/// arithmetic: `1 - beta` is formed before rounding, `beta^t` from the rounded beta.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// Keras `Adam`.
    Adam {
        /// Learning rate (Keras 1e-3).
        lr: f64,
        /// β1 (0.9).
        beta1: f64,
        /// β2 (0.999).
        beta2: f64,
        /// ε (1e-7).
        epsilon: f64,
    },
    /// Keras `SGD`.
    Sgd {
        /// Learning rate (Keras 1e-2).
        lr: f64,
        /// Momentum (0).
        momentum: f64,
    },
}

impl Optimizer {
    /// Checks every hyperparameter; both models call it, so they refuse the same things.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64, range: &str| {
            Err(Error::Model(format!("{what} must be {range}, got {v}")))
        };
        let lr = match *self {
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
            } => {
                if !(0.0..1.0).contains(&beta1) {
                    return bad("Adam beta1", beta1, "within [0, 1)");
                }
                if !(0.0..1.0).contains(&beta2) {
                    return bad("Adam beta2", beta2, "within [0, 1)");
                }
                if !(epsilon.is_finite() && epsilon as f32 > 0.0) {
                    return bad("Adam epsilon", epsilon, "finite and > 0");
                }
                lr
            }
            Optimizer::Sgd { lr, momentum } => {
                if !(0.0..=1.0).contains(&momentum) {
                    return bad("SGD momentum", momentum, "within [0, 1]");
                }
                lr
            }
        };
        // Rounded to f32 on the GPU: a value that rounds to 0 or infinity is refused too.
        if !(lr.is_finite() && lr > 0.0 && (lr as f32).is_finite() && lr as f32 > 0.0) {
            return bad("the learning rate", lr, "finite and > 0 (as an f32)");
        }
        Ok(())
    }

    /// Keras' Adam defaults with a learning rate.
    pub fn adam(lr: f64) -> Self {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }

    /// SGD with momentum.
    pub fn sgd(lr: f64, momentum: f64) -> Self {
        Optimizer::Sgd { lr, momentum }
    }
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::adam(1e-3)
    }
}

/// The update of one parameter (Adam, SGD), which the one-workgroup training step
/// (`step.rs`) includes too.
pub(crate) fn update_source() -> &'static str {
    include_str!("../../shaders/nn/optimizer_update.wgsl")
}

/// The shader with its workgroup size.
pub(crate) fn source() -> String {
    format!(
        "const ELEM_WG: u32 = {ELEM_WG}u;\n{}\n{}",
        update_source(),
        include_str!("../../shaders/nn/optimizer.wgsl")
    )
}

/// Mirror of `Opt` in `optimizer.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Uniform {
    len: u32,
    _pad: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
}

struct Kernels {
    adam: Kernel,
    sgd: Kernel,
}

impl Kernels {
    fn new(device: &wgpu::Device) -> Self {
        let slots = [
            Slot::Uniform(32),
            Slot::Write(4),
            Slot::Read(4),
            Slot::Write(4),
            Slot::Write(4),
            Slot::Read(4),
        ];
        let [adam, sgd] =
            pipeline::kernels(device, "nn.optimizer", &source(), ["adam", "sgd"], &slots);
        Kernels { adam, sgd }
    }
}

/// The optimizer on the GPU: its state (moments, the step counter) and one bind group over
/// the network's parameters and gradients.
pub(crate) struct GpuOptimizer {
    /// What it was built from (the ranks of a data-parallel run compare it).
    config: Optimizer,
    kernels: std::sync::Arc<Kernels>,
    adam: bool,
    len: usize,
    group: wgpu::BindGroup,
    /// `[steps taken (u32)]`, counted by the training loss (see `loss.wgsl`).
    tick: wgpu::Buffer,
    /// The `Opt` uniform and the moments, which the one-workgroup step binds too.
    uniform: wgpu::Buffer,
    m: wgpu::Buffer,
    v: wgpu::Buffer,
}

impl GpuOptimizer {
    /// `len` floats of `params`, updated from `grads`, with an `optimizer` its caller has
    /// validated.
    pub fn new(
        ctx: &Context,
        optimizer: Optimizer,
        params: &wgpu::Buffer,
        grads: &wgpu::Buffer,
        len: usize,
    ) -> Result<Self> {
        let bytes = len as u64 * 4;
        let m = ctx.storage("nn.optimizer.m", bytes)?;
        let v = ctx.storage("nn.optimizer.v", bytes)?;
        let tick = ctx.storage("nn.optimizer.tick", 16)?;
        let (lr, beta1, beta2, epsilon, adam) = match optimizer {
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
            } => (lr, beta1, beta2, epsilon, true),
            Optimizer::Sgd { lr, momentum } => (lr, momentum, 0.0, 0.0, false),
        };
        // Keras forms `1 - self.beta_1` from Python floats, then meets a float32 tensor.
        let complement = |b: f64| (1.0 - b) as f32;
        let u = ctx.uniform(
            "nn.optimizer",
            &Uniform {
                len: gpu_u32("parameters", len)?,
                _pad: 0,
                lr: lr as f32,
                beta1: beta1 as f32,
                beta2: beta2 as f32,
                epsilon: epsilon as f32,
                one_minus_beta1: complement(beta1),
                one_minus_beta2: complement(beta2),
            },
        )?;
        let kernels = ctx.cached(Kernels::new);
        let group = bind(
            ctx.device(),
            "nn.optimizer",
            &kernels.adam.layout,
            &[
                (&u).into(),
                params.into(),
                grads.into(),
                (&m).into(),
                (&v).into(),
                (&tick).into(),
            ],
        );
        Ok(GpuOptimizer {
            config: optimizer,
            kernels,
            adam,
            len,
            group,
            tick,
            uniform: u,
            m,
            v,
        })
    }

    /// The optimizer it runs.
    pub fn config(&self) -> Optimizer {
        self.config
    }

    /// The step counter (`[u32]`): the training loss increments it, the update and layers
    /// whose training pass depends on the step read it.
    pub fn tick(&self) -> &wgpu::Buffer {
        &self.tick
    }

    /// Whether the update is Adam's (else SGD's).
    pub fn is_adam(&self) -> bool {
        self.adam
    }

    /// What the one-workgroup step binds: the `Opt` uniform, the moments `m` and `v`.
    pub fn state(&self) -> (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer) {
        (&self.uniform, &self.m, &self.v)
    }

    /// Records one step over every parameter: one dispatch.
    pub fn encode(&self, ctx: &Context, enc: &mut wgpu::CommandEncoder) {
        let k = &*self.kernels;
        let update = if self.adam { &k.adam } else { &k.sgd };
        let max = ctx.plan_limits().max_groups_per_dim;
        let mut pass = pipeline::begin_pass(enc, &Default::default());
        let groups = groups_1d(self.len, ELEM_WG as usize, max);
        dispatch(&mut pass, update, &self.group, groups);
    }
}
