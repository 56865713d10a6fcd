//! The batch-norm layer: encode level (records into the caller's encoder, never submits) and
//! a convenience level on top of it (submits, returns host data).

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{BatchNormConfig, Mode};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::kernels::{Kernels, Params, CHANNEL_STATE_BYTES, FLAG_CENTER, FLAG_RELU, FLAG_SCALE};
use crate::plan::{grid, Chunk, Plan, CHANNEL_WORKGROUP};
use crate::tensor::{Tensor, TensorRef};

mod sync;
pub(crate) use sync::LocalStatistics;

/// Uniforms and the per-channel bind group of one geometry: immutable once built, so calls of
/// different shapes can share one encoder.
#[derive(Debug)]
struct Prepared {
    plan: Plan,
    params: Vec<wgpu::Buffer>,
    /// Host copies of `params` (a synchronized call rewrites the batch count of the first).
    uniforms: Vec<Params>,
    channel_group: wgpu::BindGroup,
}

/// Geometries whose uniforms a layer keeps; past this the cache starts over, so a layer
/// called with ever new shapes stays bounded.
const PREPARED_LIMIT: usize = 32;

/// What the last forward pass left for backward.
#[derive(Debug, Clone)]
struct LastForward {
    mode: Mode,
    shape: Vec<usize>,
}

/// The bind groups one call's tensors need.
#[derive(Debug)]
enum Groups {
    /// Small tensors: one group, one dispatch per pass.
    Fused(wgpu::BindGroup),
    /// One group per chunk; `shared`: an input shares the output's buffer.
    Split {
        shared: bool,
        groups: Vec<wgpu::BindGroup>,
    },
}

/// A call's tensors bound once by [`BatchNorm::bind_forward`] or
/// [`BatchNorm::bind_backward`], replayed by the `encode_*_bound` methods with nothing built
/// per call. It holds its tensors' buffers: the caller decides how long they live.
#[derive(Debug)]
pub struct BoundCall {
    layer: u64,
    epoch: u64,
    geometry: Geometry,
    shape: Vec<usize>,
    tensors: [(wgpu::Buffer, u64); 3],
    groups: Groups,
}

/// Identities of layers, so a bound call is replayed only by the layer that made it.
static NEXT_LAYER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Regions of caller buffers that hold a layer's per-channel values and gradients (see
/// [`BatchNorm::with_parameters`]).
#[derive(Debug, Clone)]
pub struct ParamBinding {
    /// Holds `[gamma | beta | running mean | running variance]`, C f32 each.
    pub params: wgpu::Buffer,
    /// Byte offset of gamma in `params`.
    pub params_offset: u64,
    /// Receives `[dgamma | dbeta]`, C f32 each.
    pub grads: wgpu::Buffer,
    /// Byte offset of dgamma in `grads`.
    pub grads_offset: u64,
}

/// Batch normalization over one channel axis, with running statistics, on the GPU.
#[derive(Debug)]
pub struct BatchNorm {
    config: BatchNormConfig,
    ctx: Context,
    kernels: Arc<Kernels>,
    /// `[gamma | beta | running mean | running variance]` at `chan_at` (ours or the caller's).
    chan: wgpu::Buffer,
    chan_at: u64,
    /// `ChannelState` per channel.
    state: wgpu::Buffer,
    /// `[dgamma | dbeta]` at `grads_at` (ours or the caller's).
    grads: wgpu::Buffer,
    grads_at: u64,
    /// Split partials; grows with the largest plan seen.
    partials: wgpu::Buffer,
    prepared: HashMap<Geometry, Arc<Prepared>>,
    /// This layer's identity, and how many times its partials buffer was replaced (what
    /// bound calls' groups depend on).
    id: u64,
    epoch: u64,
    last: Option<LastForward>,
    batches_tracked: u64,
    trainable: bool,
    timestamps: Option<(wgpu::QuerySet, u32)>,
}

impl BatchNorm {
    /// Builds the layer: gamma 1, beta 0, running mean 0, running variance 1.
    pub fn new(ctx: &Context, config: BatchNormConfig) -> Result<Self> {
        config.validate()?;
        let c = config.channels as u64;
        let chan = ctx.create_buffer("bn.channel_params", 16 * c, Self::PARAM_USAGE)?;
        let grads = ctx.create_buffer("bn.grads", 8 * c, Self::PARAM_USAGE)?;
        Self::build(
            ctx,
            config,
            ParamBinding {
                params: chan,
                params_offset: 0,
                grads,
                grads_offset: 0,
            },
        )
    }

    /// Usage a parameter or gradient buffer needs.
    pub const PARAM_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
        .union(wgpu::BufferUsages::COPY_DST)
        .union(wgpu::BufferUsages::COPY_SRC);

    /// Builds the layer on regions of the caller's buffers: its per-channel values live at
    /// `binding.params` (written here with the initial values) and its gradients at
    /// `binding.grads`, so an optimizer or a network can own the only copy. Offsets must be
    /// multiples of `min_storage_buffer_offset_alignment`; buffers need
    /// [`BatchNorm::PARAM_USAGE`].
    pub fn with_parameters(
        ctx: &Context,
        config: BatchNormConfig,
        binding: ParamBinding,
    ) -> Result<Self> {
        config.validate()?;
        let c = config.channels as u64;
        let align = ctx.plan_limits().offset_alignment;
        for (what, buffer, offset, bytes) in [
            ("parameters", &binding.params, binding.params_offset, 16 * c),
            ("gradients", &binding.grads, binding.grads_offset, 8 * c),
        ] {
            if !buffer.usage().contains(Self::PARAM_USAGE) {
                return Err(Error::BufferUsage {
                    what,
                    missing: Self::PARAM_USAGE - buffer.usage(),
                });
            }
            if !offset.is_multiple_of(align) {
                return Err(Error::MisalignedOffset {
                    what,
                    offset,
                    alignment: align,
                });
            }
            let available = buffer.size().saturating_sub(offset);
            if bytes > available {
                return Err(Error::BufferTooSmall {
                    what,
                    needed: bytes,
                    available,
                });
            }
        }
        Self::build(ctx, config, binding)
    }

    fn build(ctx: &Context, config: BatchNormConfig, binding: ParamBinding) -> Result<Self> {
        let c = config.channels as u64;
        let storage = Self::PARAM_USAGE;
        let state = ctx.create_buffer("bn.state", CHANNEL_STATE_BYTES * c, storage)?;
        let partials = ctx.create_buffer("bn.partials", 16 * c, storage)?;
        let n = config.channels;
        let mut init = crate::memory::try_filled("initial channel values", 4 * n, 0.0f32)?;
        init[..n].fill(1.0);
        init[3 * n..].fill(1.0);
        ctx.write(
            &binding.params,
            binding.params_offset,
            bytemuck::cast_slice(&init),
        )?;
        Ok(Self {
            kernels: ctx.kernels().clone(),
            ctx: ctx.clone(),
            config,
            chan: binding.params,
            chan_at: binding.params_offset,
            state,
            grads: binding.grads,
            grads_at: binding.grads_offset,
            partials,
            prepared: HashMap::new(),
            id: NEXT_LAYER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            epoch: 0,
            last: None,
            batches_tracked: 0,
            trainable: true,
            timestamps: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BatchNormConfig {
        &self.config
    }

    /// A frozen layer (`false`) runs training-mode calls in inference mode, as Keras does
    /// with `trainable = False`.
    pub fn set_trainable(&mut self, trainable: bool) {
        self.trainable = trainable;
    }

    /// Whether training-mode calls use batch statistics.
    pub fn trainable(&self) -> bool {
        self.trainable
    }

    /// Makes every later pass write GPU timestamps at `index` (start) and `index + 1` (end) of
    /// `query_set` (needs `Features::TIMESTAMP_QUERY`); `None` stops it. Each call records one
    /// compute pass, so the difference is the GPU time of the whole call.
    pub fn set_timestamp_writes(&mut self, writes: Option<(wgpu::QuerySet, u32)>) {
        self.timestamps = writes;
    }

    fn pass_descriptor(&self, label: &'static str) -> wgpu::ComputePassDescriptor<'_> {
        wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes: self.timestamps.as_ref().map(|(q, i)| {
                wgpu::ComputePassTimestampWrites {
                    query_set: q,
                    beginning_of_pass_write_index: Some(*i),
                    end_of_pass_write_index: Some(i + 1),
                }
            }),
        }
    }

    /// The mode the last forward pass ran in (after the frozen-layer rule), if any.
    pub fn last_mode(&self) -> Option<Mode> {
        self.last.as_ref().map(|l| l.mode)
    }

    /// Training forward passes so far (PyTorch's `num_batches_tracked`).
    pub fn batches_tracked(&self) -> u64 {
        self.batches_tracked
    }

    fn geometry(&self, shape: &[usize]) -> Result<Geometry> {
        Geometry::new(shape, self.config.layout, self.config.channels)
    }

    fn prepared(&mut self, g: Geometry) -> Result<Arc<Prepared>> {
        if let Some(p) = self.prepared.get(&g) {
            return Ok(p.clone());
        }
        let plan = Plan::new(g, self.ctx.plan_limits())?;
        let needed = plan.total_splits as u64 * g.channels as u64 * 16;
        if needed > self.partials.size() {
            self.partials = self
                .ctx
                .create_buffer("bn.partials", needed, Self::PARAM_USAGE)?;
            // Everything bound to the old partials buffer is stale, bound calls included.
            self.prepared.clear();
            self.epoch += 1;
        }
        if self.prepared.len() >= PREPARED_LIMIT {
            self.prepared.clear();
        }
        let cfg = &self.config;
        let n = g.per_channel();
        let (keep, fresh) = cfg.running_weights();
        let flags = (cfg.relu as u32 * FLAG_RELU)
            | (cfg.center as u32 * FLAG_CENTER)
            | (cfg.scale as u32 * FLAG_SCALE);
        let mut params = Vec::with_capacity(plan.chunks.len());
        let mut uniforms = Vec::with_capacity(plan.chunks.len());
        for chunk in &plan.chunks {
            let p = Params {
                channels: g.channels as u32,
                inner: g.inner as u32,
                rows: chunk.rows,
                cw: plan.cw,
                splits: chunk.splits,
                split_base: chunk.split_base,
                total_splits: plan.total_splits,
                rows_per_split: chunk.rows_per_split,
                stats_groups: chunk.stats_groups,
                _pad3: 0,
                elems: chunk.elems,
                flags,
                n: n as f32,
                eps: cfg.epsilon,
                keep,
                fresh,
                var_correction: cfg.variance_correction(n),
                _pad: [0.0; 3],
            };
            let buf = self.ctx.create_buffer(
                "bn.params",
                std::mem::size_of::<Params>() as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            )?;
            self.ctx.write(&buf, 0, bytemuck::bytes_of(&p))?;
            params.push(buf);
            uniforms.push(p);
        }
        let channel_group = self
            .ctx
            .device()
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("bn.channel"),
                layout: &self.kernels.channel_layout,
                entries: &[
                    entry(0, &params[0], 0, None),
                    entry(1, &self.chan, self.chan_at, Some(16 * g.channels as u64)),
                    entry(2, &self.state, 0, None),
                    entry(3, &self.partials, 0, None),
                    entry(4, &self.grads, self.grads_at, Some(8 * g.channels as u64)),
                ],
            });
        let p = Arc::new(Prepared {
            plan,
            params,
            uniforms,
            channel_group,
        });
        self.prepared.insert(g, p.clone());
        Ok(p)
    }

    /// The bind groups of one call's tensors, one per chunk. Built per call and never
    /// cached: a cached bind group would keep the caller's buffers alive.
    fn stream_groups(
        &self,
        layout: &wgpu::BindGroupLayout,
        prep: &Prepared,
        x: &TensorRef<'_>,
        aux: &TensorRef<'_>,
        out: &TensorRef<'_>,
    ) -> Vec<wgpu::BindGroup> {
        prep.plan
            .chunks
            .iter()
            .zip(&prep.params)
            .map(|(chunk, params)| {
                fn bind<'b>(
                    binding: u32,
                    t: &TensorRef<'b>,
                    chunk: &Chunk,
                ) -> wgpu::BindGroupEntry<'b> {
                    entry(
                        binding,
                        t.buffer,
                        t.offset + chunk.byte_offset,
                        Some(chunk.byte_len),
                    )
                }
                self.ctx
                    .device()
                    .create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some("bn.stream"),
                        layout,
                        entries: &[
                            entry(0, params, 0, None),
                            bind(1, x, chunk),
                            bind(2, aux, chunk),
                            bind(3, out, chunk),
                            entry(4, &self.state, 0, None),
                            entry(5, &self.partials, 0, None),
                        ],
                    })
            })
            .collect()
    }

    /// The bind group of a fused call (a single chunk): the streaming tensors and the
    /// layer's per-channel buffers together. Built per call, like the streaming groups.
    fn fused_group(
        &self,
        layout: &wgpu::BindGroupLayout,
        prep: &Prepared,
        x: &TensorRef<'_>,
        aux: &TensorRef<'_>,
        out: &TensorRef<'_>,
    ) -> wgpu::BindGroup {
        let c = prep.plan.geometry.channels as u64;
        let chunk = &prep.plan.chunks[0];
        let len = Some(chunk.byte_len);
        self.ctx
            .device()
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("bn.fused"),
                layout,
                entries: &[
                    entry(0, &prep.params[0], 0, None),
                    entry(1, x.buffer, x.offset, len),
                    entry(2, aux.buffer, aux.offset, len),
                    entry(3, out.buffer, out.offset, len),
                    entry(4, &self.state, 0, None),
                    entry(5, &self.partials, 0, None),
                    entry(6, &self.chan, self.chan_at, Some(16 * c)),
                    entry(7, &self.grads, self.grads_at, Some(8 * c)),
                ],
            })
    }

    /// Validates one tensor argument against the geometry of `shape`.
    fn check_region(&self, what: &'static str, t: &TensorRef<'_>, shape: &[usize]) -> Result<()> {
        if t.shape != shape {
            return Err(Error::ShapeMismatch {
                what,
                expected: shape.to_vec(),
                got: t.shape.to_vec(),
            });
        }
        t.check(what, self.ctx.plan_limits().offset_alignment)?;
        Ok(())
    }

    /// Records a forward pass into `encoder`: `y = BN(x)` (then ReLU when fused). Training mode
    /// also updates the running statistics and saves the batch statistics for backward. Never
    /// submits. `x` and `y` must not overlap (they may be disjoint regions of one buffer).
    pub fn encode_forward(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        x: TensorRef<'_>,
        y: TensorRef<'_>,
        mode: Mode,
    ) -> Result<()> {
        let ctx = self.ctx.clone();
        ctx.guard("batch-norm forward", || {
            self.record_forward(encoder, x, y, mode)
        })
    }

    fn record_forward(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        x: TensorRef<'_>,
        y: TensorRef<'_>,
        mode: Mode,
    ) -> Result<()> {
        let g = self.check_forward(&x, &y)?;
        let prep = self.prepared(g)?;
        let groups = self.groups(&prep, &x, &x, &y);
        self.record_forward_groups(encoder, &prep, &groups, x.shape, mode)
    }

    /// Checks a forward call's tensors; their geometry.
    fn check_forward(&self, x: &TensorRef<'_>, y: &TensorRef<'_>) -> Result<Geometry> {
        let g = self.geometry(x.shape)?;
        self.check_region("x", x, x.shape)?;
        self.check_region("y", y, x.shape)?;
        if x.overlaps(y) {
            return Err(Error::Aliasing("forward: x and y"));
        }
        Ok(g)
    }

    /// Checks a backward call's tensors against `shape` (the forward's); their geometry.
    fn check_backward(
        &self,
        shape: &[usize],
        x: &TensorRef<'_>,
        dy: &TensorRef<'_>,
        dx: &TensorRef<'_>,
    ) -> Result<Geometry> {
        let g = self.geometry(x.shape)?;
        self.check_region("x", x, shape)?;
        self.check_region("dy", dy, shape)?;
        self.check_region("dx", dx, shape)?;
        if dx.overlaps(x) || dx.overlaps(dy) {
            return Err(Error::Aliasing("backward: dx and x/dy"));
        }
        Ok(g)
    }

    /// The bind groups of one call (`aux` is `x` in forward, `dy` in backward): the fused
    /// path's one group when one split covers a channel and no tensor shares the output's
    /// buffer, the split path's groups per chunk otherwise.
    fn groups(
        &self,
        prep: &Prepared,
        x: &TensorRef<'_>,
        aux: &TensorRef<'_>,
        out: &TensorRef<'_>,
    ) -> Groups {
        let shared = out.buffer == x.buffer || out.buffer == aux.buffer;
        if prep.plan.single_split().is_some() && !shared {
            let layout = &self.kernels.fused().layout;
            Groups::Fused(self.fused_group(layout, prep, x, aux, out))
        } else {
            let layout = &self.kernels.streaming(shared).layout;
            Groups::Split {
                shared,
                groups: self.stream_groups(layout, prep, x, aux, out),
            }
        }
    }

    fn record_forward_groups(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        prep: &Prepared,
        groups: &Groups,
        shape: &[usize],
        mode: Mode,
    ) -> Result<()> {
        let g = prep.plan.geometry;
        let mode = self.config.resolve_mode(self.trainable, mode, &g, shape)?;
        let k = &self.kernels;
        let max_dim = self.ctx.plan_limits().max_groups_per_dim;
        let mut pass = crate::pipeline::begin_pass(encoder, &self.pass_descriptor("bn.forward"));
        match groups {
            Groups::Fused(group) => {
                // One workgroup per channel block owns its channels whole: one dispatch.
                let fk = k.fused();
                let pipeline = match mode {
                    Mode::Training => &fk.training,
                    Mode::Inference => &fk.inference,
                };
                let chunk = &prep.plan.chunks[0];
                record(
                    &mut pass,
                    pipeline,
                    group,
                    grid(chunk.stats_groups, max_dim),
                );
            }
            Groups::Split { shared, groups } => {
                let sk = k.streaming(*shared);
                let channels = ((g.channels as u32).div_ceil(CHANNEL_WORKGROUP), 1);
                let finalize = if mode == Mode::Training {
                    record(&mut pass, &sk.pivot, &groups[0], channels);
                    record_chunks(&mut pass, &sk.stats, prep, groups, max_dim);
                    &k.finalize_training
                } else {
                    &k.finalize_inference
                };
                record(&mut pass, finalize, &prep.channel_group, channels);
                record_chunks(&mut pass, &sk.normalize, prep, groups, max_dim);
            }
        }
        drop(pass);
        if mode == Mode::Training {
            self.batches_tracked += 1;
        }
        self.last = Some(LastForward {
            mode,
            shape: shape.to_vec(),
        });
        Ok(())
    }

    /// Records the backward pass of the last forward into `encoder`: `dx` from `x` and `dy`
    /// (masked by the fused ReLU), and dgamma/dbeta into the layer's gradient buffer
    /// ([`BatchNorm::grads_region`]). `x` must be the input of that forward pass. Never submits.
    pub fn encode_backward(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        x: TensorRef<'_>,
        dy: TensorRef<'_>,
        dx: TensorRef<'_>,
    ) -> Result<()> {
        let ctx = self.ctx.clone();
        ctx.guard("batch-norm backward", || {
            self.record_backward(encoder, x, dy, dx)
        })
    }

    fn record_backward(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        x: TensorRef<'_>,
        dy: TensorRef<'_>,
        dx: TensorRef<'_>,
    ) -> Result<()> {
        let last = self.last.clone().ok_or(Error::BackwardBeforeForward)?;
        let g = self.check_backward(&last.shape, &x, &dy, &dx)?;
        let prep = self.prepared(g)?;
        let groups = self.groups(&prep, &x, &dy, &dx);
        self.record_backward_groups(encoder, &prep, &groups);
        Ok(())
    }

    fn record_backward_groups(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        prep: &Prepared,
        groups: &Groups,
    ) {
        let k = &self.kernels;
        let max_dim = self.ctx.plan_limits().max_groups_per_dim;
        let mut pass = crate::pipeline::begin_pass(encoder, &self.pass_descriptor("bn.backward"));
        match groups {
            Groups::Fused(group) => {
                let chunk = &prep.plan.chunks[0];
                let grid = grid(chunk.stats_groups, max_dim);
                record(&mut pass, &k.fused().backward, group, grid);
            }
            Groups::Split { shared, groups } => {
                let sk = k.streaming(*shared);
                let g = prep.plan.geometry;
                let channels = ((g.channels as u32).div_ceil(CHANNEL_WORKGROUP), 1);
                record_chunks(&mut pass, &sk.reduce, prep, groups, max_dim);
                record(
                    &mut pass,
                    &k.finalize_backward,
                    &prep.channel_group,
                    channels,
                );
                record_chunks(&mut pass, &sk.dx, prep, groups, max_dim);
            }
        }
    }

    /// Binds a forward call's tensors once, for a loop that runs them many times (a training
    /// step): [`BatchNorm::encode_forward_bound`] then records without building anything.
    /// The checks of [`BatchNorm::encode_forward`] run here. The caller owns the binding:
    /// dropping it releases the tensors it holds.
    pub fn bind_forward(&mut self, x: TensorRef<'_>, y: TensorRef<'_>) -> Result<BoundCall> {
        let g = self.check_forward(&x, &y)?;
        self.bind(g, [&x, &x, &y])
    }

    /// Binds a backward call's tensors once (see [`BatchNorm::bind_forward`]); `x`, `dy` and
    /// `dx` share the forward's shape, checked when the call is recorded.
    pub fn bind_backward(
        &mut self,
        x: TensorRef<'_>,
        dy: TensorRef<'_>,
        dx: TensorRef<'_>,
    ) -> Result<BoundCall> {
        let g = self.check_backward(x.shape, &x, &dy, &dx)?;
        self.bind(g, [&x, &dy, &dx])
    }

    fn bind(&mut self, g: Geometry, tensors: [&TensorRef<'_>; 3]) -> Result<BoundCall> {
        let prep = self.prepared(g)?;
        let [x, aux, out] = tensors;
        Ok(BoundCall {
            layer: self.id,
            epoch: self.epoch,
            geometry: g,
            shape: x.shape.to_vec(),
            tensors: tensors.map(|t| (t.buffer.clone(), t.offset)),
            groups: self.groups(&prep, x, aux, out),
        })
    }

    /// The prepared state and current groups of a bound call (rebuilt, from the tensors it
    /// holds, when the layer's partials buffer has been replaced since it was bound).
    fn bound(&mut self, call: &mut BoundCall) -> Result<Arc<Prepared>> {
        if call.layer != self.id {
            return Err(Error::ForeignBinding);
        }
        let prep = self.prepared(call.geometry)?;
        if call.epoch != self.epoch {
            let [x, aux, out] = call.tensors.each_ref().map(|(buffer, offset)| TensorRef {
                buffer,
                offset: *offset,
                shape: &call.shape,
            });
            call.groups = self.groups(&prep, &x, &aux, &out);
            call.epoch = self.epoch;
        }
        Ok(prep)
    }

    /// Records a forward pass of bound tensors (see [`BatchNorm::encode_forward`]).
    pub fn encode_forward_bound(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        call: &mut BoundCall,
        mode: Mode,
    ) -> Result<()> {
        let ctx = self.ctx.clone();
        ctx.guard("batch-norm forward", || {
            let prep = self.bound(call)?;
            let shape = call.shape.clone();
            self.record_forward_groups(encoder, &prep, &call.groups, &shape, mode)
        })
    }

    /// Records the backward pass of bound tensors for the last forward (see
    /// [`BatchNorm::encode_backward`]).
    pub fn encode_backward_bound(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        call: &mut BoundCall,
    ) -> Result<()> {
        let ctx = self.ctx.clone();
        ctx.guard("batch-norm backward", || {
            let last = self.last.clone().ok_or(Error::BackwardBeforeForward)?;
            if last.shape != call.shape {
                return Err(Error::ShapeMismatch {
                    what: "bound backward",
                    expected: last.shape,
                    got: call.shape.clone(),
                });
            }
            let prep = self.bound(call)?;
            self.record_backward_groups(encoder, &prep, &call.groups);
            Ok(())
        })
    }

    /// Runs a forward pass on a GPU tensor and returns the output tensor (one submit, no readback).
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let y = Tensor::zeros(&self.ctx, x.shape())?;
        let mut encoder = self
            .ctx
            .device()
            .create_command_encoder(&Default::default());
        self.encode_forward(&mut encoder, x.as_ref(), y.as_ref(), mode)?;
        self.ctx.submit_and_wait(encoder)?;
        Ok(y)
    }

    /// Runs backward for the last forward; returns dx (dgamma/dbeta: [`BatchNorm::dgamma`]...).
    pub fn backward(&mut self, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let dx = Tensor::zeros(&self.ctx, x.shape())?;
        let mut encoder = self
            .ctx
            .device()
            .create_command_encoder(&Default::default());
        self.encode_backward(&mut encoder, x.as_ref(), dy.as_ref(), dx.as_ref())?;
        self.ctx.submit_and_wait(encoder)?;
        Ok(dx)
    }

    /// Host in, host out: uploads `x`, runs forward, downloads `y`.
    pub fn forward_host(&mut self, x: &[f32], shape: &[usize], mode: Mode) -> Result<Vec<f32>> {
        self.geometry(shape)?;
        let xt = Tensor::from_slice(&self.ctx, shape, x)?;
        self.forward(&xt, mode)?.to_vec(&self.ctx)
    }

    /// Host in, host out: returns `(dx, dgamma, dbeta)` for the last forward, whose input was `x`.
    pub fn backward_host(
        &mut self,
        x: &[f32],
        dy: &[f32],
        shape: &[usize],
    ) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        self.geometry(shape)?;
        let xt = Tensor::from_slice(&self.ctx, shape, x)?;
        let dyt = Tensor::from_slice(&self.ctx, shape, dy)?;
        let dx = self.backward(&xt, &dyt)?.to_vec(&self.ctx)?;
        Ok((dx, self.dgamma()?, self.dbeta()?))
    }

    fn read_chan(&self, slot: u64) -> Result<Vec<f32>> {
        let c = self.config.channels;
        self.ctx
            .read_f32(&self.chan, self.chan_at + slot * c as u64 * 4, c)
    }

    fn write_chan(&self, slot: u64, what: &'static str, values: &[f32]) -> Result<()> {
        let c = self.config.channels;
        if values.len() != c {
            return Err(Error::LengthMismatch {
                what,
                expected: c,
                got: values.len(),
            });
        }
        self.ctx.write(
            &self.chan,
            slot * c as u64 * 4,
            bytemuck::cast_slice(values),
        )
    }

    /// Gamma (scale). Reads back.
    pub fn gamma(&self) -> Result<Vec<f32>> {
        self.read_chan(0)
    }
    /// Beta (offset). Reads back.
    pub fn beta(&self) -> Result<Vec<f32>> {
        self.read_chan(1)
    }
    /// Running (moving) mean. Reads back.
    pub fn running_mean(&self) -> Result<Vec<f32>> {
        self.read_chan(2)
    }
    /// Running (moving) variance. Reads back.
    pub fn running_var(&self) -> Result<Vec<f32>> {
        self.read_chan(3)
    }
    /// Sets gamma; takes effect at the next submit on the queue.
    pub fn set_gamma(&self, v: &[f32]) -> Result<()> {
        self.write_chan(0, "gamma", v)
    }
    /// Sets beta; takes effect at the next submit on the queue.
    pub fn set_beta(&self, v: &[f32]) -> Result<()> {
        self.write_chan(1, "beta", v)
    }
    /// Sets the running mean; takes effect at the next submit on the queue.
    pub fn set_running_mean(&self, v: &[f32]) -> Result<()> {
        self.write_chan(2, "running mean", v)
    }
    /// Sets the running variance; takes effect at the next submit on the queue.
    pub fn set_running_var(&self, v: &[f32]) -> Result<()> {
        self.write_chan(3, "running variance", v)
    }

    /// The buffer and byte offset of `[gamma | beta | running mean | running variance]`,
    /// C f32 each: for optimizers that update gamma/beta in place on the GPU.
    pub fn channel_region(&self) -> (&wgpu::Buffer, u64) {
        (&self.chan, self.chan_at)
    }

    /// The buffer and byte offset of `[dgamma | dbeta]`, C f32 each, written by each
    /// backward pass.
    pub fn grads_region(&self) -> (&wgpu::Buffer, u64) {
        (&self.grads, self.grads_at)
    }

    /// dgamma of the last backward pass. Reads back.
    pub fn dgamma(&self) -> Result<Vec<f32>> {
        self.ctx
            .read_f32(&self.grads, self.grads_at, self.config.channels)
    }

    /// dbeta of the last backward pass. Reads back.
    pub fn dbeta(&self) -> Result<Vec<f32>> {
        let c = self.config.channels;
        self.ctx
            .read_f32(&self.grads, self.grads_at + c as u64 * 4, c)
    }

    fn read_state(&self) -> Result<Vec<[f32; 12]>> {
        let c = self.config.channels;
        let raw = self.ctx.read_f32(&self.state, 0, c * 12)?;
        Ok(raw
            .chunks_exact(12)
            .map(|s| {
                let mut a = [0.0; 12];
                a.copy_from_slice(s);
                a
            })
            .collect())
    }

    /// Mean used by the last forward pass (batch mean in training). Reads back.
    pub fn batch_mean(&self) -> Result<Vec<f32>> {
        self.last.as_ref().ok_or(Error::NoStatistics)?;
        Ok(self.read_state()?.iter().map(|s| s[0] + s[8]).collect())
    }

    /// Biased variance used by the last forward pass (batch variance in training). Reads back.
    pub fn batch_var(&self) -> Result<Vec<f32>> {
        self.last.as_ref().ok_or(Error::NoStatistics)?;
        Ok(self.read_state()?.iter().map(|s| s[10]).collect())
    }

    /// `1 / sqrt(var + eps)` of the last forward pass (PyTorch's `save_invstd`). Reads back.
    pub fn saved_inv_std(&self) -> Result<Vec<f32>> {
        self.last.as_ref().ok_or(Error::NoStatistics)?;
        Ok(self.read_state()?.iter().map(|s| s[9]).collect())
    }
}

/// Records one dispatch (counted).
fn record(
    pass: &mut wgpu::ComputePass<'_>,
    pipeline: &wgpu::ComputePipeline,
    group: &wgpu::BindGroup,
    (x, y): (u32, u32),
) {
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, group, &[]);
    pass.dispatch_workgroups(x, y, 1);
    crate::work::dispatch();
}

/// Records `pipeline` over every chunk of the plan, each with its bind group.
fn record_chunks(
    pass: &mut wgpu::ComputePass<'_>,
    pipeline: &wgpu::ComputePipeline,
    prep: &Prepared,
    groups: &[wgpu::BindGroup],
    max_dim: u32,
) {
    for (chunk, group) in prep.plan.chunks.iter().zip(groups) {
        record(pass, pipeline, group, grid(chunk.stats_groups, max_dim));
    }
}

fn entry(
    binding: u32,
    buffer: &wgpu::Buffer,
    offset: u64,
    size: Option<u64>,
) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset,
            size: size.and_then(wgpu::BufferSize::new),
        }),
    }
}
