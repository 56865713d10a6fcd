//! What a layer is, in the spirit of Burn's and candle's `Module`: a definition that declares
//! its parameters (Keras names, shapes, trainable or not, where they sit in the layer's region
//! of the network's one parameter buffer) and its output width, and builds two twins: a GPU
//! layer that records its forward and backward passes into the caller's encoder, and an f64
//! CPU layer that computes the same (the oracle of the tests and the `--device cpu` path).
//!
//! Adding a layer: a shader under `shaders/nn/` if it needs one, its driver in
//! `layers/<name>.rs` (the definition and the GPU twin), its CPU twin in
//! `layers/<name>_cpu.rs`, one line in `registry.rs`, and its tests.

use std::fmt::Debug;

use crate::nn::error::{Error, Result};
use crate::nn::init::glorot_uniform;
use crate::nn::real::Real;
use crate::nn::shape::Shape;
use crate::nn::step_code::{StepCode, StepIo};
use crate::{Context, Mode};

/// Threads of the elementwise kernels' workgroups (gather, dropout, activations, the
/// optimizer, the ReLU mask), handed to their WGSL as `ELEM_WG`.
pub(crate) const ELEM_WG: u32 = 256;

/// Floats between parameter regions: 256 bytes, any device's storage offset alignment.
pub(crate) const ALIGN_FLOATS: usize = 64;

/// `n` rounded up to the region alignment.
pub(crate) fn aligned(n: usize) -> usize {
    n.div_ceil(ALIGN_FLOATS) * ALIGN_FLOATS
}

/// `v` as the u32 a shader takes. Sizes are proven to fit where the layer is defined
/// (`registry.rs`) and batch sizes where a plan is made, so this refuses only what those
/// checks missed, in words, and never truncates.
pub(crate) fn gpu_u32(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::Model(format!(
            "{what} {v} exceeds the 32-bit sizes the GPU kernels take"
        ))
    })
}

/// How a parameter starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Init {
    Zeros,
    Ones,
    /// Keras' glorot uniform, from the model seed and the layer's ordinal among its kind.
    GlorotUniform,
}

/// One parameter or state tensor of a layer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Param {
    /// Keras' name inside the layer: `kernel`, `bias`, `gamma`, `moving_mean`...
    pub name: &'static str,
    pub shape: Vec<usize>,
    /// Updated by the optimizer (false: state, such as moving statistics).
    pub trainable: bool,
    /// Floats from the start of the layer's region.
    pub offset: usize,
    pub init: Init,
}

impl Param {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Initial values: `seed` is the model's, `ordinal` the layer's among its kind.
    pub fn initial(&self, seed: u64, ordinal: usize) -> Vec<f32> {
        match self.init {
            Init::Zeros => vec![0.0; self.len()],
            Init::Ones => vec![1.0; self.len()],
            Init::GlorotUniform => {
                // Keras' fans: the last two axes, times the window of a convolution kernel
                // ([kh, kw, in, out]).
                let n = self.shape.len();
                let (fan_in, fan_out) = match n {
                    0 => (1, 1),
                    1 => (self.shape[0], self.shape[0]),
                    _ => {
                        let window: usize = self.shape[..n - 2].iter().product();
                        (self.shape[n - 2] * window, self.shape[n - 1] * window)
                    }
                };
                glorot_uniform(seed, ordinal, self.len(), fan_in, fan_out)
            }
        }
    }
}

/// Where one layer's passes read and write, for one batch size: the network's activation
/// buffers and the layer's regions (float offsets) of the parameter and gradient buffers.
pub(crate) struct Io<'a> {
    pub rows: usize,
    /// `[rows, input width]`.
    pub input: &'a wgpu::Buffer,
    /// `[rows, output width]`.
    pub output: &'a wgpu::Buffer,
    /// The loss's gradient with respect to the output (backward may change it in place).
    pub d_output: &'a wgpu::Buffer,
    /// Receives the gradient with respect to the input (a scratch buffer for the first
    /// layer, which `first` marks: nothing reads it, so a layer may skip it).
    pub d_input: &'a wgpu::Buffer,
    pub first: bool,
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    /// Float offset of this layer's region in `params` and `grads`.
    pub at: usize,
    /// The optimizer's step counter (`[u32]`), for layers whose training pass depends on it.
    pub tick: &'a wgpu::Buffer,
}

/// A layer definition: shapes and parameters, and the factory of its two twins.
pub(crate) trait LayerDef: Debug + Send + Sync {
    /// Keras' base name of the layer's weights: `dense`, `batch_normalization`, `dropout`.
    fn keras_name(&self) -> &'static str;
    /// The summary's description: `Dense+ReLU`, `BN`, `Dropout 0.3`.
    fn describe(&self) -> String;
    /// The per-sample shape of its output.
    fn output_shape(&self) -> Shape;
    /// Values per sample of its output.
    fn output_width(&self) -> usize {
        self.output_shape().len()
    }
    /// A view (Flatten): its output is its input's buffer, and it records nothing.
    fn is_view(&self) -> bool {
        false
    }
    /// Parameters in Keras' order, with their offsets in the layer's region.
    fn params(&self) -> Vec<Param> {
        Vec::new()
    }
    /// Floats of the layer's region.
    fn region_len(&self) -> usize {
        self.params()
            .iter()
            .map(|p| p.offset + p.len())
            .max()
            .unwrap_or(0)
    }
    /// The fusion rule: absorbs a ReLU that follows (false: it cannot).
    fn fuse_relu(&mut self) -> bool {
        false
    }
    /// Whether its outputs can be the softmax logits of the loss (a Dense layer without
    /// activation).
    fn gives_logits(&self) -> bool {
        false
    }
    /// Its phases in the one-workgroup training step (`step.rs`); `None` (the default) keeps
    /// a network with this layer on the general path.
    fn step_code(&self, _io: &mut StepIo) -> Option<StepCode> {
        None
    }
    /// The GPU twin, with its parameters at float `at` of `params` / `grads`.
    fn gpu(
        &self,
        ctx: &Context,
        params: &wgpu::Buffer,
        grads: &wgpu::Buffer,
        at: usize,
    ) -> Result<Box<dyn GpuLayer>>;
    /// The CPU twin in f64 (the reference model).
    fn cpu(&self) -> Box<dyn CpuLayer>;
    /// The f32 CPU twin (the fast CPU path; batch norm's checks its configuration again).
    fn cpu_f32(&self) -> Result<Box<dyn CpuLayer<f32>>>;
}

/// A layer on the GPU: records into the caller's encoder, never submits.
pub(crate) trait GpuLayer: Send + Sync {
    /// Builds what the passes at batch size `io.rows` bind (kept until `forget`).
    fn prepare(&mut self, ctx: &Context, io: &Io<'_>) -> Result<()>;
    /// Drops everything `prepare` built (the network's buffers of those batch sizes go).
    fn forget(&mut self);
    fn forward(
        &mut self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
        mode: Mode,
    ) -> Result<()>;
    /// A batch-norm layer, for data-parallel training: its engine layer and the positions per
    /// sample (`h * w` of a feature map), so the step can synchronize it across ranks.
    fn synchronized(&mut self) -> Option<(&mut crate::BatchNorm, usize)> {
        None
    }
    /// Backward of the last forward: the parameter gradients into `io.grads`, and the input
    /// gradient into `io.d_input` when there is one.
    fn backward(
        &mut self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        io: &Io<'_>,
    ) -> Result<()>;
}

/// What a CPU layer's backward pass is told besides its tensors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BackIo {
    pub rows: usize,
    /// The optimizer's step count (dropout's mask).
    pub step: u64,
    /// The network's first layer: its input gradient is not needed.
    pub first: bool,
}

/// A layer on the CPU, in `T` (f64: the reference, the GPU layer's oracle; f32: the fast CPU
/// path): the GPU layer's twin.
pub(crate) trait CpuLayer<T: Real = f64>: Debug + Send + Sync {
    /// `x` is `[rows, input]`; returns `[rows, output]` and keeps what backward needs.
    /// `params` are the layer's tensors in `LayerDef::params` order (state may change).
    fn forward(
        &mut self,
        params: &mut [Vec<T>],
        x: Vec<T>,
        rows: usize,
        training: bool,
        step: u64,
    ) -> Result<Vec<T>>;
    /// Returns the input gradient, or may return an empty one when `io.first` (nothing reads
    /// the first layer's); adds each trainable tensor's gradient into `grads` (`params`
    /// order; non-trainable entries are left alone).
    fn backward(
        &mut self,
        params: &[Vec<T>],
        dy: Vec<T>,
        io: BackIo,
        grads: &mut [Vec<T>],
    ) -> Result<Vec<T>>;
    fn boxed_clone(&self) -> Box<dyn CpuLayer<T>>;
}

impl<T: Real> Clone for Box<dyn CpuLayer<T>> {
    fn clone(&self) -> Self {
        self.boxed_clone()
    }
}
