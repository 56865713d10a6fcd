//! `Sequential`: a small network trained on the GPU. One training step (gather, forward,
//! loss, backward, optimizer) is one encoder and one submit; loss and accuracy accumulate on
//! the GPU and are read back once per epoch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::{BatchNormConfig, Mode};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::nn::data::Dataset;
use crate::nn::kernels::{
    bind, groups_1d, ElemParams, GemmParams, Kernel, NnKernels, OptParams, Region, XentParams,
    BIAS, RELU, TRANS_A, TRANS_B,
};
use crate::nn::spec::{
    self, glorot_uniform, Block, EpochMetrics, FitOptions, History, LayerSpec, Optimizer, Weight,
};
use crate::{BatchNorm, TensorRef};

/// Parameter regions start at multiples of 64 floats: 256 bytes, any device's binding alignment.
const ALIGN_FLOATS: usize = 64;
/// Largest batch of one evaluation / prediction submit.
const EVAL_ROWS: usize = 1024;
/// Batch sizes whose buffers are kept at once.
const MAX_PLANS: usize = 16;
/// Byte offset of the evaluation metrics in the metrics buffer (training metrics at 0).
const EVAL_METRICS: u64 = 256;

/// Where the parameters of a block live in the flat buffers (float offsets).
#[derive(Debug, Clone, Copy)]
enum Slots {
    Dense { w: usize, b: usize },
    Norm { gb: usize, bn: usize },
    Dropout,
}

/// A dataset resident on the GPU.
struct GpuData {
    id: u64,
    rows: usize,
    x: wgpu::Buffer,
    labels: wgpu::Buffer,
    order: wgpu::Buffer,
}

/// Buffers and bind groups of one batch size.
struct Plan {
    rows: usize,
    x: wgpu::Buffer,
    labels: wgpu::Buffer,
    acts: Vec<wgpu::Buffer>,
    dacts: Vec<wgpu::Buffer>,
    scratch: wgpu::Buffer,
    gather_u: wgpu::Buffer,
    binds: Vec<Binds>,
    xent: [wgpu::BindGroup; 3],
}

enum Binds {
    Dense {
        fwd: wgpu::BindGroup,
        mask: Option<wgpu::BindGroup>,
        dw: wgpu::BindGroup,
        db: wgpu::BindGroup,
        dx: Option<wgpu::BindGroup>,
        dims: (usize, usize),
    },
    Norm,
    Dropout {
        fwd: wgpu::BindGroup,
        bwd: wgpu::BindGroup,
    },
}

/// A Keras-style sequential classifier on the GPU.
pub struct Sequential {
    ctx: Context,
    blocks: Vec<Block>,
    slots: Vec<Slots>,
    input: usize,
    params_len: usize,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    tick: wgpu::Buffer,
    metrics: wgpu::Buffer,
    /// The mean loss of each training batch of the current epoch, read once per epoch.
    batch_losses: wgpu::Buffer,
    dummy: wgpu::Buffer,
    dummy_out: wgpu::Buffer,
    norms: Vec<BatchNorm>,
    optimizer: Optimizer,
    opt_group: wgpu::BindGroup,
    plans: HashMap<usize, Arc<Plan>>,
    gathers: HashMap<(usize, u64), wgpu::BindGroup>,
    next_data_id: u64,
}

fn storage(ctx: &Context, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
    ctx.create_buffer(
        label,
        bytes,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
    )
}

fn uniform<T: bytemuck::Pod>(ctx: &Context, value: &T) -> Result<wgpu::Buffer> {
    let b = ctx.create_buffer(
        "nn.uniform",
        std::mem::size_of::<T>() as u64,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    )?;
    ctx.write(&b, 0, bytemuck::bytes_of(value))?;
    Ok(b)
}

fn region(buffer: &wgpu::Buffer, offset_floats: usize, len: usize) -> Region<'_> {
    Region {
        buffer,
        offset: offset_floats as u64 * 4,
        size: Some(len as u64 * 4),
    }
}

fn dispatch(
    pass: &mut wgpu::ComputePass<'_>,
    k: &Kernel,
    group: &wgpu::BindGroup,
    (x, y): (u32, u32),
) {
    pass.set_pipeline(&k.pipeline);
    pass.set_bind_group(0, group, &[]);
    pass.dispatch_workgroups(x, y, 1);
}

impl Sequential {
    /// Builds the network for `input` features with Glorot-uniform Dense kernels drawn from
    /// `seed`, zero biases, and Keras-default BatchNorm layers.
    pub fn new(
        ctx: &Context,
        input: usize,
        layers: &[LayerSpec],
        seed: u64,
        optimizer: Optimizer,
    ) -> Result<Self> {
        ctx.guard("building the model", || {
            Self::build(ctx, input, layers, seed, optimizer)
        })
    }

    fn build(
        ctx: &Context,
        input: usize,
        layers: &[LayerSpec],
        seed: u64,
        optimizer: Optimizer,
    ) -> Result<Self> {
        let blocks = spec::blocks(input, layers)?;
        optimizer.validate()?;
        let mut slots = Vec::new();
        let mut len = 0usize;
        let mut take = |n: usize| {
            let at = len;
            len += n.div_ceil(ALIGN_FLOATS) * ALIGN_FLOATS;
            at
        };
        let mut norms = Vec::new();
        for b in &blocks {
            slots.push(match *b {
                Block::Dense { inp, out, .. } => Slots::Dense {
                    w: take(inp * out),
                    b: take(out),
                },
                Block::Norm { channels, relu } => {
                    norms.push(BatchNorm::new(
                        ctx,
                        BatchNormConfig::keras(channels).with_relu(relu),
                    )?);
                    Slots::Norm {
                        gb: take(2 * channels),
                        bn: norms.len() - 1,
                    }
                }
                Block::Dropout { .. } => Slots::Dropout,
            });
        }
        let bytes = len as u64 * 4;
        let params = storage(ctx, "nn.params", bytes)?;
        let grads = storage(ctx, "nn.grads", bytes)?;
        let opt_m = storage(ctx, "nn.adam_m", bytes)?;
        let opt_v = storage(ctx, "nn.adam_v", bytes)?;
        let tick = storage(ctx, "nn.tick", 16)?;
        let metrics = storage(ctx, "nn.metrics", EVAL_METRICS + 16)?;
        let batch_losses = storage(ctx, "nn.batch_losses", 256)?;
        // Unused slots bind these: one for read-only slots, one for writable ones (a buffer
        // may not be bound both ways in one bind group).
        let dummy = storage(ctx, "nn.dummy", 16)?;
        let dummy_out = storage(ctx, "nn.dummy_out", 16)?;
        let (lr, beta1, beta2, epsilon) = match optimizer {
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
            } => (lr, beta1, beta2, epsilon),
            Optimizer::Sgd { lr, momentum } => (lr, momentum, 0.0, 0.0),
        };
        let opt_u = uniform(
            ctx,
            &OptParams {
                len: len as u32,
                _pad: 0,
                lr: lr as f32,
                beta1: beta1 as f32,
                beta2: beta2 as f32,
                epsilon: epsilon as f32,
                one_minus_beta1: spec::complement(beta1),
                one_minus_beta2: spec::complement(beta2),
            },
        )?;
        let k = ctx.nn_kernels();
        let opt_group = bind(
            ctx.device(),
            &k.adam,
            &[
                (&opt_u).into(),
                (&params).into(),
                (&grads).into(),
                (&opt_m).into(),
                (&opt_v).into(),
                (&tick).into(),
            ],
        );
        let model = Sequential {
            ctx: ctx.clone(),
            blocks,
            slots,
            input,
            params_len: len,
            params,
            grads,
            tick,
            metrics,
            batch_losses,
            dummy,
            dummy_out,
            norms,
            optimizer,
            opt_group,
            plans: HashMap::new(),
            gathers: HashMap::new(),
            next_data_id: 0,
        };
        let mut dense = 0;
        for (i, b) in model.blocks.clone().iter().enumerate() {
            match (*b, model.slots[i]) {
                (Block::Dense { inp, out, .. }, Slots::Dense { w, .. }) => {
                    model.write(w, &glorot_uniform(seed, dense, inp, out))?;
                    dense += 1;
                }
                (Block::Norm { channels, .. }, Slots::Norm { gb, .. }) => {
                    let mut g = vec![1.0f32; channels];
                    g.extend(std::iter::repeat_n(0.0, channels));
                    model.write(gb, &g)?;
                }
                _ => {}
            }
        }
        Ok(model)
    }

    fn write(&self, offset_floats: usize, values: &[f32]) -> Result<()> {
        self.ctx.write(
            &self.params,
            offset_floats as u64 * 4,
            bytemuck::cast_slice(values),
        )
    }

    /// Input features.
    pub fn input_features(&self) -> usize {
        self.input
    }

    /// Output classes.
    pub fn classes(&self) -> usize {
        self.blocks.last().map_or(0, Block::width)
    }

    /// A Keras-like table of the layers.
    pub fn summary(&self) -> String {
        spec::summary(self.input, &self.blocks)
    }

    /// The buffers and bind groups of batch size `rows`, built once (guarded: bind groups on a
    /// lost device must not reach a caller's error handler).
    fn plan(&mut self, rows: usize) -> Result<Arc<Plan>> {
        if let Some(p) = self.plans.get(&rows) {
            return Ok(p.clone());
        }
        let ctx = self.ctx.clone();
        ctx.guard("building a batch plan", || self.build_plan(rows))
    }

    fn build_plan(&mut self, rows: usize) -> Result<Arc<Plan>> {
        // Dense layers tile the batch in 16-row workgroups along one grid dimension.
        let max_rows = self.ctx.plan_limits().max_groups_per_dim as usize * 16;
        if rows > max_rows {
            return Err(Error::Model(format!(
                "a batch of {rows} rows exceeds the device's {max_rows}"
            )));
        }
        // Training uses one or two batch sizes; predictions of many sizes must not pile up.
        if self.plans.len() >= MAX_PLANS {
            self.plans.clear();
            self.gathers.clear();
        }
        let ctx = &self.ctx;
        let dev = ctx.device();
        let k: &NnKernels = ctx.nn_kernels();
        let x = storage(ctx, "nn.x", (rows * self.input * 4) as u64)?;
        let labels = storage(ctx, "nn.labels", (rows * 4) as u64)?;
        let mut acts = Vec::new();
        let mut dacts = Vec::new();
        for b in &self.blocks {
            acts.push(storage(ctx, "nn.act", (rows * b.width() * 4) as u64)?);
            dacts.push(storage(ctx, "nn.dact", (rows * b.width() * 4) as u64)?);
        }
        let scratch = storage(ctx, "nn.dx0", (rows * self.input * 4) as u64)?;
        let gather_u = uniform(
            ctx,
            &ElemParams {
                rows: rows as u32,
                cols: self.input as u32,
                start: 0,
                seed: 0,
                rate: 0.0,
                scale: 1.0,
                _pad: [0; 2],
            },
        )?;
        let mut binds = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            let input = if i == 0 { &x } else { &acts[i - 1] };
            let d_in = if i == 0 { &scratch } else { &dacts[i - 1] };
            binds.push(match (*b, self.slots[i]) {
                (Block::Dense { inp, out, relu }, Slots::Dense { w, b: bias }) => {
                    let gemm = |m: usize, n: usize, kk: usize, flags: u32| {
                        uniform(
                            ctx,
                            &GemmParams {
                                m: m as u32,
                                n: n as u32,
                                k: kk as u32,
                                flags,
                            },
                        )
                    };
                    let fwd_u = gemm(rows, out, inp, BIAS | if relu { RELU } else { 0 })?;
                    let dw_u = gemm(inp, out, rows, TRANS_A)?;
                    let rows_u = gemm(rows, out, 0, 0)?;
                    let dx_u = gemm(rows, inp, out, TRANS_B)?;
                    let wr = region(&self.params, w, inp * out);
                    Binds::Dense {
                        fwd: bind(
                            dev,
                            &k.gemm,
                            &[
                                (&fwd_u).into(),
                                input.into(),
                                wr,
                                region(&self.params, bias, out),
                                (&acts[i]).into(),
                            ],
                        ),
                        mask: relu.then(|| {
                            bind(
                                dev,
                                &k.relu_mask,
                                &[
                                    (&rows_u).into(),
                                    (&self.dummy).into(),
                                    (&acts[i]).into(),
                                    (&self.dummy).into(),
                                    (&dacts[i]).into(),
                                ],
                            )
                        }),
                        dw: bind(
                            dev,
                            &k.gemm,
                            &[
                                (&dw_u).into(),
                                input.into(),
                                (&dacts[i]).into(),
                                (&self.dummy).into(),
                                region(&self.grads, w, inp * out),
                            ],
                        ),
                        db: bind(
                            dev,
                            &k.colsum,
                            &[
                                (&rows_u).into(),
                                (&dacts[i]).into(),
                                (&self.dummy).into(),
                                (&self.dummy).into(),
                                region(&self.grads, bias, out),
                            ],
                        ),
                        dx: (i > 0).then(|| {
                            bind(
                                dev,
                                &k.gemm,
                                &[
                                    (&dx_u).into(),
                                    (&dacts[i]).into(),
                                    wr,
                                    (&self.dummy).into(),
                                    d_in.into(),
                                ],
                            )
                        }),
                        dims: (inp, out),
                    }
                }
                (Block::Dropout { width, rate, seed }, _) => {
                    let u = uniform(
                        ctx,
                        &ElemParams {
                            rows: rows as u32,
                            cols: width as u32,
                            start: 0,
                            seed,
                            rate,
                            scale: 1.0 / (1.0 - rate),
                            _pad: [0; 2],
                        },
                    )?;
                    Binds::Dropout {
                        fwd: bind(
                            dev,
                            &k.dropout,
                            &[
                                (&u).into(),
                                input.into(),
                                (&self.tick).into(),
                                (&self.dummy).into(),
                                (&acts[i]).into(),
                                (&self.dummy_out).into(),
                            ],
                        ),
                        bwd: bind(
                            dev,
                            &k.dropout,
                            &[
                                (&u).into(),
                                (&dacts[i]).into(),
                                (&self.tick).into(),
                                (&self.dummy).into(),
                                d_in.into(),
                                (&self.dummy_out).into(),
                            ],
                        ),
                    }
                }
                _ => Binds::Norm,
            });
        }
        let classes = self.classes();
        let last = self.blocks.len() - 1;
        let xent = |mode: u32, metrics_at: u64| -> Result<wgpu::BindGroup> {
            let u = uniform(
                ctx,
                &XentParams {
                    rows: rows as u32,
                    classes: classes as u32,
                    mode,
                    inv_rows: 1.0 / rows as f32,
                },
            )?;
            Ok(bind(
                dev,
                &k.xent,
                &[
                    (&u).into(),
                    (&acts[last]).into(),
                    (&labels).into(),
                    (&dacts[last]).into(),
                    Region {
                        buffer: &self.metrics,
                        offset: metrics_at,
                        size: Some(16),
                    },
                    if mode == 1 {
                        (&self.batch_losses).into()
                    } else {
                        (&self.dummy_out).into()
                    },
                ],
            ))
        };
        let xent = [xent(1, 0)?, xent(0, EVAL_METRICS)?, xent(2, EVAL_METRICS)?];
        let plan = Arc::new(Plan {
            rows,
            x,
            labels,
            acts,
            dacts,
            scratch,
            gather_u,
            binds,
            xent,
        });
        self.plans.insert(rows, plan.clone());
        Ok(plan)
    }

    /// Uploads a data set for one call. The gather bind groups of earlier calls are dropped
    /// here, so a model keeps at most the data of its current call alive.
    fn upload(&mut self, data: &Dataset, first_of_call: bool) -> Result<GpuData> {
        if first_of_call {
            self.gathers.clear();
        }
        data.check_for(self.input, self.classes())?;
        let x = storage(&self.ctx, "nn.data.x", (data.x().len() * 4) as u64)?;
        let labels = storage(&self.ctx, "nn.data.labels", (data.rows() * 4) as u64)?;
        let order = storage(&self.ctx, "nn.data.order", (data.rows() * 4) as u64)?;
        self.ctx.write(&x, 0, bytemuck::cast_slice(data.x()))?;
        self.ctx
            .write(&labels, 0, bytemuck::cast_slice(data.labels()))?;
        let identity: Vec<u32> = (0..data.rows() as u32).collect();
        self.ctx.write(&order, 0, bytemuck::cast_slice(&identity))?;
        self.next_data_id += 1;
        Ok(GpuData {
            id: self.next_data_id,
            rows: data.rows(),
            x,
            labels,
            order,
        })
    }

    /// Records the gather of rows `start..start + plan.rows` of `data` (in its order).
    fn encode_gather(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        plan: &Plan,
        data: &GpuData,
        start: usize,
    ) -> Result<()> {
        let k = self.ctx.nn_kernels();
        let key = (plan.rows, data.id);
        if !self.gathers.contains_key(&key) {
            let g = bind(
                self.ctx.device(),
                &k.gather,
                &[
                    (&plan.gather_u).into(),
                    (&data.x).into(),
                    (&data.labels).into(),
                    (&data.order).into(),
                    (&plan.x).into(),
                    (&plan.labels).into(),
                ],
            );
            self.gathers.insert(key, g);
        }
        // The start row is the one value that changes between steps of one batch size.
        self.ctx
            .write(&plan.gather_u, 8, bytemuck::bytes_of(&(start as u32)))?;
        let max = self.ctx.plan_limits().max_groups_per_dim;
        let mut pass = enc.begin_compute_pass(&Default::default());
        dispatch(
            &mut pass,
            &k.gather,
            &self.gathers[&key],
            groups_1d(plan.rows * self.input, 256, max),
        );
        Ok(())
    }

    fn encode_forward(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        plan: &Plan,
        mode: Mode,
    ) -> Result<()> {
        let k = self.ctx.nn_kernels();
        let max = self.ctx.plan_limits().max_groups_per_dim;
        for i in 0..self.blocks.len() {
            let input = if i == 0 { &plan.x } else { &plan.acts[i - 1] };
            match (&plan.binds[i], self.slots[i], &self.blocks[i]) {
                (
                    Binds::Dense {
                        fwd,
                        dims: (_, out),
                        ..
                    },
                    _,
                    _,
                ) => {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    dispatch(
                        &mut pass,
                        &k.gemm,
                        fwd,
                        (out.div_ceil(16) as u32, plan.rows.div_ceil(16) as u32),
                    );
                }
                (_, Slots::Norm { bn, .. }, &Block::Norm { channels, .. }) => {
                    let shape = [plan.rows, channels];
                    self.norms[bn].encode_forward(
                        enc,
                        TensorRef::new(input, &shape),
                        TensorRef::new(&plan.acts[i], &shape),
                        mode,
                    )?;
                }
                (Binds::Dropout { fwd, .. }, _, &Block::Dropout { width, .. }) => {
                    if mode == Mode::Training {
                        let mut pass = enc.begin_compute_pass(&Default::default());
                        dispatch(
                            &mut pass,
                            &k.dropout,
                            fwd,
                            groups_1d(plan.rows * width, 256, max),
                        );
                    } else {
                        enc.copy_buffer_to_buffer(
                            input,
                            0,
                            &plan.acts[i],
                            0,
                            (plan.rows * width * 4) as u64,
                        );
                    }
                }
                _ => return Err(Error::Model("internal: block and bindings disagree".into())),
            }
        }
        Ok(())
    }

    fn encode_backward(&mut self, enc: &mut wgpu::CommandEncoder, plan: &Plan) -> Result<()> {
        let k = self.ctx.nn_kernels();
        let max = self.ctx.plan_limits().max_groups_per_dim;
        for i in (0..self.blocks.len()).rev() {
            let input = if i == 0 { &plan.x } else { &plan.acts[i - 1] };
            let d_in = if i == 0 {
                &plan.scratch
            } else {
                &plan.dacts[i - 1]
            };
            match (&plan.binds[i], self.slots[i], &self.blocks[i]) {
                (
                    Binds::Dense {
                        mask,
                        dw,
                        db,
                        dx,
                        dims: (inp, out),
                        ..
                    },
                    _,
                    _,
                ) => {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    if let Some(mask) = mask {
                        dispatch(
                            &mut pass,
                            &k.relu_mask,
                            mask,
                            groups_1d(plan.rows * out, 256, max),
                        );
                    }
                    dispatch(
                        &mut pass,
                        &k.gemm,
                        dw,
                        (out.div_ceil(16) as u32, inp.div_ceil(16) as u32),
                    );
                    dispatch(&mut pass, &k.colsum, db, (out.div_ceil(64) as u32, 1));
                    if let Some(dx) = dx {
                        dispatch(
                            &mut pass,
                            &k.gemm,
                            dx,
                            (inp.div_ceil(16) as u32, plan.rows.div_ceil(16) as u32),
                        );
                    }
                }
                (_, Slots::Norm { gb, bn }, &Block::Norm { channels, .. }) => {
                    let shape = [plan.rows, channels];
                    let norm = &mut self.norms[bn];
                    norm.encode_backward(
                        enc,
                        TensorRef::new(input, &shape),
                        TensorRef::new(&plan.dacts[i], &shape),
                        TensorRef::new(d_in, &shape),
                    )?;
                    enc.copy_buffer_to_buffer(
                        norm.grads_buffer(),
                        0,
                        &self.grads,
                        gb as u64 * 4,
                        (2 * channels * 4) as u64,
                    );
                }
                (Binds::Dropout { bwd, .. }, _, &Block::Dropout { width, .. }) => {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    dispatch(
                        &mut pass,
                        &k.dropout,
                        bwd,
                        groups_1d(plan.rows * width, 256, max),
                    );
                }
                _ => return Err(Error::Model("internal: block and bindings disagree".into())),
            }
        }
        Ok(())
    }

    fn encode_update(&mut self, enc: &mut wgpu::CommandEncoder) {
        let k = self.ctx.nn_kernels();
        let max = self.ctx.plan_limits().max_groups_per_dim;
        let (tick, update) = match self.optimizer {
            Optimizer::Adam { .. } => (&k.adam_tick, &k.adam),
            Optimizer::Sgd { .. } => (&k.sgd_tick, &k.sgd),
        };
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            dispatch(&mut pass, tick, &self.opt_group, (1, 1));
            dispatch(
                &mut pass,
                update,
                &self.opt_group,
                groups_1d(self.params_len, 256, max),
            );
        }
        // BatchNorm layers read gamma/beta from their own buffers: copy the updated values.
        for (i, b) in self.blocks.iter().enumerate() {
            if let (Block::Norm { channels, .. }, Slots::Norm { gb, bn }) = (b, self.slots[i]) {
                enc.copy_buffer_to_buffer(
                    &self.params,
                    gb as u64 * 4,
                    self.norms[bn].channel_buffer(),
                    0,
                    (2 * channels * 4) as u64,
                );
            }
        }
    }

    fn encode_xent(&self, enc: &mut wgpu::CommandEncoder, plan: &Plan, which: usize) {
        let k = self.ctx.nn_kernels();
        let mut pass = enc.begin_compute_pass(&Default::default());
        dispatch(&mut pass, &k.xent, &plan.xent[which], (1, 1));
    }

    /// One training step on rows `start..start + rows` of `data` in its current order:
    /// gather, forward (batch statistics), loss, backward, optimizer: one encoder, one submit.
    fn step(&mut self, data: &GpuData, start: usize, rows: usize, first: bool) -> Result<()> {
        let ctx = self.ctx.clone();
        ctx.guard("a training step", || {
            self.record_step(data, start, rows, first)
        })
    }

    fn record_step(
        &mut self,
        data: &GpuData,
        start: usize,
        rows: usize,
        first: bool,
    ) -> Result<()> {
        let plan = self.plan(rows)?;
        let mut enc = self
            .ctx
            .device()
            .create_command_encoder(&Default::default());
        if first {
            enc.clear_buffer(&self.metrics, 0, Some(16));
        }
        self.encode_gather(&mut enc, &plan, data, start)?;
        self.encode_forward(&mut enc, &plan, Mode::Training)?;
        self.encode_xent(&mut enc, &plan, 0);
        self.encode_backward(&mut enc, &plan)?;
        self.encode_update(&mut enc);
        self.ctx.submit(enc)?;
        Ok(())
    }

    /// Inference over all of `data`: metrics into the evaluation slot, probabilities when
    /// `probs` is given.
    fn run_inference(&mut self, data: &GpuData, probs: Option<&mut Vec<f32>>) -> Result<()> {
        let ctx = self.ctx.clone();
        ctx.guard("inference", || self.record_inference(data, probs))
    }

    fn record_inference(&mut self, data: &GpuData, mut probs: Option<&mut Vec<f32>>) -> Result<()> {
        let mut start = 0;
        while start < data.rows {
            let rows = EVAL_ROWS.min(data.rows - start);
            let plan = self.plan(rows)?;
            let mut enc = self
                .ctx
                .device()
                .create_command_encoder(&Default::default());
            if start == 0 {
                enc.clear_buffer(&self.metrics, EVAL_METRICS, Some(16));
            }
            self.encode_gather(&mut enc, &plan, data, start)?;
            self.encode_forward(&mut enc, &plan, Mode::Inference)?;
            self.encode_xent(&mut enc, &plan, if probs.is_some() { 2 } else { 1 });
            if let Some(p) = probs.as_deref_mut() {
                self.ctx.submit_and_wait(enc)?;
                let classes = self.classes();
                p.extend(self.ctx.read_f32(
                    &plan.dacts[self.blocks.len() - 1],
                    0,
                    rows * classes,
                )?);
            } else {
                self.ctx.submit(enc)?;
            }
            start += rows;
        }
        Ok(())
    }

    /// Reads (training loss, accuracy, evaluation loss, accuracy): the one readback of an epoch.
    fn read_metrics(&self) -> Result<[f64; 4]> {
        let m = self
            .ctx
            .read_f32(&self.metrics, 0, (EVAL_METRICS / 4) as usize + 4)?;
        let e = (EVAL_METRICS / 4) as usize;
        let ratio = |a: f32, n: f32| {
            if n > 0.0 {
                a as f64 / n as f64
            } else {
                f64::NAN
            }
        };
        Ok([
            ratio(m[0], m[2]),
            ratio(m[1], m[2]),
            ratio(m[e], m[e + 2]),
            ratio(m[e + 1], m[e + 2]),
        ])
    }

    /// Trains on `train` and returns the per-epoch history; `on_epoch` sees each epoch's
    /// history as it completes (for progress bars).
    pub fn fit(
        &mut self,
        train: &Dataset,
        options: &FitOptions,
        validation: Option<&Dataset>,
        on_epoch: impl FnMut(usize, &History),
    ) -> Result<History> {
        options.validate()?;
        let data = self.upload(train, true)?;
        let val = validation.map(|v| self.upload(v, false)).transpose()?;
        let steps = data.rows.div_ceil(options.batch_size);
        self.reserve_batch_losses(steps)?;
        options.run_epochs(
            data.rows,
            |order| {
                self.ctx
                    .write(&data.order, 0, bytemuck::cast_slice(order))?;
                let mut start = 0;
                while start < data.rows {
                    let rows = options.batch_size.min(data.rows - start);
                    self.step(&data, start, rows, start == 0)?;
                    start += rows;
                }
                if let Some(v) = &val {
                    self.run_inference(v, None)?;
                }
                let [loss, accuracy, vloss, vacc] = self.read_metrics()?;
                let batch_loss = self
                    .ctx
                    .read_f32(&self.batch_losses, 0, steps)?
                    .into_iter()
                    .map(f64::from)
                    .collect();
                Ok(EpochMetrics {
                    loss,
                    accuracy,
                    batch_loss,
                    validation: val.as_ref().map(|_| (vloss, vacc)),
                })
            },
            on_epoch,
        )
    }

    /// Makes room for the per-batch losses of an epoch of `steps` batches.
    fn reserve_batch_losses(&mut self, steps: usize) -> Result<()> {
        let bytes = (steps as u64 * 4).next_multiple_of(256);
        if bytes > self.batch_losses.size() {
            self.batch_losses = storage(&self.ctx, "nn.batch_losses", bytes)?;
            // The training loss kernels of every plan bind the old buffer.
            self.plans.clear();
            self.gathers.clear();
        }
        Ok(())
    }

    /// Runs one training step on the given batch (rows in order): for step-by-step checks.
    pub fn train_batch(&mut self, batch: &Dataset) -> Result<()> {
        let data = self.upload(batch, true)?;
        self.step(&data, 0, data.rows, true)
    }

    /// (loss, accuracy) with BatchNorm in inference mode.
    pub fn evaluate(&mut self, data: &Dataset) -> Result<(f64, f64)> {
        let d = self.upload(data, true)?;
        self.run_inference(&d, None)?;
        let m = self.read_metrics()?;
        Ok((m[2], m[3]))
    }

    /// Class probabilities `[rows, classes]` with BatchNorm in inference mode.
    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        if self.input == 0 || !x.len().is_multiple_of(self.input) || x.is_empty() {
            return Err(Error::LengthMismatch {
                what: "predict input",
                expected: self.input,
                got: x.len(),
            });
        }
        let data = Dataset::for_prediction(x.to_vec(), self.input, self.classes());
        let d = self.upload(&data, true)?;
        let mut probs = Vec::new();
        self.run_inference(&d, Some(&mut probs))?;
        Ok(probs)
    }

    /// Every weight in Keras layout and order (kernels `[in, out]`, BN moving statistics too).
    pub fn weights(&self) -> Result<Vec<Weight>> {
        let flat = self.ctx.read_f32(&self.params, 0, self.params_len)?;
        let mut names = spec::weight_names(&self.blocks).into_iter();
        let mut out = Vec::new();
        let mut push =
            |values: Vec<f32>, names: &mut dyn Iterator<Item = (String, Vec<usize>, bool)>| {
                if let Some((name, shape, _)) = names.next() {
                    out.push(Weight {
                        name,
                        shape,
                        values,
                    });
                }
            };
        for (i, b) in self.blocks.iter().enumerate() {
            match (*b, self.slots[i]) {
                (Block::Dense { inp, out: o, .. }, Slots::Dense { w, b: bias }) => {
                    push(flat[w..w + inp * o].to_vec(), &mut names);
                    push(flat[bias..bias + o].to_vec(), &mut names);
                }
                (Block::Norm { channels: c, .. }, Slots::Norm { gb, bn }) => {
                    push(flat[gb..gb + c].to_vec(), &mut names);
                    push(flat[gb + c..gb + 2 * c].to_vec(), &mut names);
                    push(self.norms[bn].running_mean()?, &mut names);
                    push(self.norms[bn].running_var()?, &mut names);
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Sets one weight by its Keras name (see [`Sequential::weights`]); takes effect at the
    /// next submit.
    pub fn set_weight(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let names = spec::weight_names(&self.blocks);
        let index = names
            .iter()
            .position(|(n, _, _)| n == name)
            .ok_or_else(|| Error::Model(format!("no weight named {name:?}")))?;
        let expected: usize = names[index].1.iter().product();
        if values.len() != expected {
            return Err(Error::LengthMismatch {
                what: "weight values",
                expected,
                got: values.len(),
            });
        }
        // Walk the blocks to the tensor's place.
        let mut seen = 0;
        for (i, b) in self.blocks.iter().enumerate() {
            match (*b, self.slots[i]) {
                (Block::Dense { inp, out, .. }, Slots::Dense { w, b: bias }) => {
                    if index == seen {
                        self.write(w, values)?;
                    } else if index == seen + 1 {
                        self.write(bias, values)?;
                    }
                    let _ = (inp, out);
                    seen += 2;
                }
                (Block::Norm { channels: c, .. }, Slots::Norm { gb, bn }) => {
                    let norm = &self.norms[bn];
                    match index.checked_sub(seen) {
                        Some(0) => {
                            self.write(gb, values)?;
                            norm.set_gamma(values)?;
                        }
                        Some(1) => {
                            self.write(gb + c, values)?;
                            norm.set_beta(values)?;
                        }
                        Some(2) => norm.set_running_mean(values)?,
                        Some(3) => norm.set_running_var(values)?,
                        _ => {}
                    }
                    seen += 4;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Saves every weight to a safetensors file (written to a temporary name, then renamed, so
    /// a failure leaves no partial file).
    pub fn save(&self, path: &Path) -> Result<()> {
        save_weights(&self.weights()?, path)
    }

    /// Loads weights saved by [`Sequential::save`] (or any safetensors file with the same
    /// names and shapes).
    /// The whole file is checked (names, shapes, nothing missing or extra) before any
    /// weight changes.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let file = load_weights(path)?;
        spec::match_weights(&spec::weight_names(&self.blocks), &file).map_err(|why| {
            Error::Weights {
                path: path.display().to_string(),
                why,
            }
        })?;
        for w in file {
            self.set_weight(&w.name, &w.values)?;
        }
        Ok(())
    }
}

/// Writes weights as an f32 safetensors file, atomically.
pub fn save_weights(weights: &[Weight], path: &Path) -> Result<()> {
    let err = |why: String| Error::Weights {
        path: path.display().to_string(),
        why,
    };
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = weights
        .iter()
        .map(|w| {
            (
                w.name.clone(),
                bytemuck::cast_slice(&w.values).to_vec(),
                w.shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, b, s)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| err(e.to_string()))
        })
        .collect::<Result<_>>()?;
    let data = safetensors::serialize(views, None).map_err(|e| err(e.to_string()))?;
    crate::nn::write_atomically(path, &data).map_err(|e| err(e.to_string()))
}

/// Reads an f32 safetensors file.
pub fn load_weights(path: &Path) -> Result<Vec<Weight>> {
    let err = |why: String| Error::Weights {
        path: path.display().to_string(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(err(format!(
                    "{name}: dtype {:?}, expected F32",
                    view.dtype()
                )));
            }
            Ok(Weight {
                name,
                shape: view.shape().to_vec(),
                values: bytemuck::pod_collect_to_vec(view.data()),
            })
        })
        .collect()
}
