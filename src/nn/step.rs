//! The one-workgroup training step (`shaders/nn/step.wgsl`): when a network's whole step is
//! small (the tutorial's is ~7k multiply-adds forward), gather, forward, loss, backward and the
//! optimizer run as one dispatch of one workgroup, phases separated by storage barriers,
//! activations in one arena buffer. A launch costs more than such a step's arithmetic on any
//! adapter (~45 µs per dispatch on lavapipe, a few µs on a discrete GPU), so the general path's
//! 9 dispatches become 1 (tiny-cuda-nn's fully fused MLP, extended to batch norm, the loss and
//! the optimizer). Each layer emits its own phases (`LayerDef::step_code`); a network with a
//! layer that has none, or too large a step, takes the general path. One pipeline per network:
//! sizes and offsets are run-time arguments. Same results as the general path up to
//! round-off: batch norm's statistics are summed in another order; the loss and the optimizer
//! are the general path's own WGSL functions (the same bits, the loss's sum in the same tree
//! while a batch has no more rows than the workgroup has threads).

use std::collections::HashMap;

use crate::nn::error::Result;
use crate::nn::gpu_data::GpuData;
use crate::nn::layer::LayerDef;
use crate::nn::loss;
use crate::nn::loss::BATCH_LOSSES;
use crate::nn::optimizer::{self, GpuOptimizer};
use crate::nn::step_code::{StepIo, NONE};
use crate::pipeline::{self, bind, Region, Slot};
use crate::Context;

/// Threads of the step's workgroup on a GPU, and on a CPU adapter (direct kernels), where each
/// barrier switches through every SIMD group of the workgroup on one core: fewer threads,
/// cheaper barriers (0.45 against 0.55 ms per tutorial step on lavapipe).
const STEP_WG: u32 = 256;
const STEP_WG_CPU: u32 = 32;

/// Largest step taken in one workgroup, in forward multiply-adds (the backward is about
/// twice that): past it, a step has enough work to fill more than one workgroup.
const STEP_MAX_MACS: usize = 1 << 16;

/// Storage buffers the step binds.
const STORAGE_BINDINGS: u32 = 10;

/// What the step binds of the model.
pub(crate) struct StepModel<'a> {
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub optimizer: &'a GpuOptimizer,
    pub metrics: &'a wgpu::Buffer,
    pub params_len: usize,
}

/// The buffers of one (rows, rows per batch): the arena and the arguments.
struct Sized {
    arena: wgpu::Buffer,
    dims: wgpu::Buffer,
    /// The bind group of the current data set (its id).
    group: Option<(u64, wgpu::BindGroup)>,
}

/// The one-workgroup step of a model: one pipeline (built on first use), the buffers of each
/// batch size.
pub(crate) struct FusedStep {
    /// Threads of the workgroup.
    wg: u32,
    layout: wgpu::BindGroupLayout,
    pipeline: (String, wgpu::ComputePipeline),
    /// By (rows, rows per training batch); `None`: that size takes the general path.
    sizes: HashMap<(usize, usize), Option<Sized>>,
    adam: bool,
    uniform: wgpu::Buffer,
    buffers: [wgpu::Buffer; 6],
    max_binding: u64,
}

impl FusedStep {
    /// The step of a model, its pipeline built (so the first training step does not wait for
    /// a compile), or `None` when the adapter cannot run it or a layer has no step phases.
    pub fn new(
        ctx: &Context,
        model: StepModel<'_>,
        (input, defs, at): (usize, &[Box<dyn LayerDef>], &[usize]),
    ) -> Option<FusedStep> {
        let limits = ctx.device().limits();
        let wg = if ctx.direct_kernels() {
            STEP_WG_CPU
        } else {
            STEP_WG
        };
        if limits.max_storage_buffers_per_shader_stage < STORAGE_BINDINGS
            || limits.max_compute_invocations_per_workgroup < wg
            || limits.max_compute_workgroup_size_x < wg
            || (limits.max_compute_workgroup_storage_size as u64) < 2 * wg as u64 * 4
            || model.params_len > u32::MAX as usize
        {
            return None;
        }
        let slots = [
            Slot::Uniform(32),
            Slot::Write(4),
            Slot::Write(4),
            Slot::Write(4),
            Slot::Write(4),
            Slot::Write(4),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Read(4),
            Slot::Write(16),
            Slot::Write(4),
            // The arguments: their count depends on the network (checked at dispatch).
            Slot::Uniform(0),
        ];
        let (uniform, m, v) = model.optimizer.state();
        let adam = model.optimizer.is_adam();
        // The source depends on the network only: a batch of two rows stands for any.
        let source = program((2, 2), input, defs, at, (wg, adam))?.source;
        let layout = pipeline::layout(ctx.device(), "nn.step", &slots);
        let module = pipeline::module(ctx.device(), "nn.step", &source);
        let compiled = pipeline::specialized(ctx.device(), &layout, &module, "step", &[]);
        Some(FusedStep {
            wg,
            layout,
            pipeline: (source, compiled),
            sizes: HashMap::new(),
            adam,
            uniform: uniform.clone(),
            buffers: [
                model.params.clone(),
                model.grads.clone(),
                m.clone(),
                v.clone(),
                model.optimizer.tick().clone(),
                model.metrics.clone(),
            ],
            max_binding: limits.max_storage_buffer_binding_size,
        })
    }

    /// Drops the buffers of every batch size (the pipeline stays).
    pub fn forget_sizes(&mut self) {
        self.sizes.clear();
    }

    /// Binds the model's new metrics buffer (grown for an epoch's batch losses) from the next
    /// step on: the old one is no longer read.
    pub fn set_metrics(&mut self, metrics: &wgpu::Buffer) {
        self.buffers[5] = metrics.clone();
        self.sizes.clear();
    }

    /// Records one step of `rows` rows on the next batch of `data` (batches of `batch`
    /// rows): one dispatch. `false` (nothing recorded) when this network, batch size or data
    /// set cannot take it.
    pub fn encode(
        &mut self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        data: &GpuData,
        (rows, batch): (usize, usize),
        (input, defs, at): (usize, &[Box<dyn LayerDef>], &[usize]),
    ) -> Result<bool> {
        if data.x.size() > self.max_binding {
            return Ok(false);
        }
        if !self.sizes.contains_key(&(rows, batch)) {
            let sized = self.build(ctx, (rows, batch), input, defs, at)?;
            self.sizes.insert((rows, batch), sized);
        }
        let Some(Some(sized)) = self.sizes.get_mut(&(rows, batch)) else {
            return Ok(false);
        };
        let (_, pipeline) = &self.pipeline;
        // The bind group of the current data set: a new data set binds anew.
        if sized.group.as_ref().is_some_and(|(id, _)| *id != data.id) {
            sized.group = None;
        }
        let (_, group) = sized.group.get_or_insert_with(|| {
            let [params, grads, m, v, tick, metrics] = &self.buffers;
            let regions: [Region<'_>; 12] = [
                (&self.uniform).into(),
                params.into(),
                grads.into(),
                m.into(),
                v.into(),
                tick.into(),
                (&data.x).into(),
                (&data.labels).into(),
                (&data.order).into(),
                metrics.into(),
                (&sized.arena).into(),
                (&sized.dims).into(),
            ];
            (
                data.id,
                bind(ctx.device(), "nn.step", &self.layout, &regions),
            )
        });
        let mut pass = pipeline::begin_pass(enc, &Default::default());
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &*group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
        crate::work::dispatch();
        Ok(true)
    }

    /// The arena and arguments of one size.
    fn build(
        &mut self,
        ctx: &Context,
        (rows, batch): (usize, usize),
        input: usize,
        defs: &[Box<dyn LayerDef>],
        at: &[usize],
    ) -> Result<Option<Sized>> {
        let Some(Program {
            source,
            floats,
            args,
        }) = program((rows, batch), input, defs, at, (self.wg, self.adam))
        else {
            return Ok(None);
        };
        let bytes = floats as u64 * 4;
        if bytes > self.max_binding {
            return Ok(None);
        }
        // The source depends on the network only: every size shares the pipeline.
        if source != self.pipeline.0 {
            return Ok(None);
        }
        let dims = ctx.uniform_bytes("nn.step.dims", bytemuck::cast_slice(&args))?;
        Ok(Some(Sized {
            arena: ctx.storage("nn.step.arena", bytes.max(4))?,
            dims,
            group: None,
        }))
    }
}

/// The step's WGSL, its arena's size in floats and its run-time arguments.
struct Program {
    source: String,
    floats: usize,
    args: Vec<u32>,
}

/// The step for batches of `rows` rows (of `batch` per training batch) through `defs`
/// (regions at `at`), or `None` when a layer has no phases or the step is too large for one
/// workgroup.
fn program(
    (rows, batch): (usize, usize),
    input: usize,
    defs: &[Box<dyn LayerDef>],
    at: &[usize],
    (wg, adam): (u32, bool),
) -> Option<Program> {
    // The arena: the input, then each layer's output and its gradient, then scratch.
    let mut cursor = rows.checked_mul(input)?;
    let mut places = Vec::with_capacity(defs.len());
    let (mut prev, mut prev_d) = (0, None);
    for d in defs {
        let n = rows
            .checked_mul(d.output_width())
            .filter(|&n| n <= u32::MAX as usize / 4)?;
        places.push((prev, prev_d, cursor, cursor + n));
        (prev, prev_d) = (cursor, Some(cursor + n));
        cursor = cursor.checked_add(2 * n)?;
    }
    let (_, _, logits, dlogits) = places[places.len() - 1];
    let inv_rows = (1.0 / rows as f32).to_bits();
    let mut args = vec![u32::try_from(rows).ok()?, u32::try_from(batch).ok()?];
    args.extend([
        u32::try_from(logits).ok()?,
        u32::try_from(dlogits).ok()?,
        inv_rows,
    ]);
    let (mut library, mut forward, mut backward) = (Vec::new(), Vec::new(), Vec::new());
    let mut macs = 0usize;
    for (i, (d, &(input, d_input, output, d_output))) in defs.iter().zip(&places).enumerate() {
        let mut io = StepIo {
            rows,
            input,
            output,
            d_output,
            d_input,
            at: at[i],
            scratch: cursor,
            args,
        };
        let code = d.step_code(&mut io)?;
        args = io.into_args();
        cursor = cursor.checked_add(code.scratch)?;
        macs = macs.saturating_add(code.macs);
        if !library.iter().any(|(name, _)| *name == code.library.0) {
            library.push(code.library);
        }
        forward.extend(code.forward);
        backward.push(code.backward);
    }
    if macs > STEP_MAX_MACS || cursor > u32::MAX as usize {
        return None;
    }
    args.resize(args.len().next_multiple_of(4), 0);
    let barrier = |s: &String| format!("    {s}\n    storageBarrier();\n");
    let header = format!(
        "const STEP_WG: u32 = {wg}u;\nconst INPUT: u32 = {input}u;\n\
         const CLASSES: u32 = {classes}u;\nconst BATCH_LOSSES_AT: u32 = {losses}u;\n\
         const ADAM: bool = {adam};\nconst NONE: u32 = {NONE}u;\nconst DIMS: u32 = {dims}u;\n",
        classes = defs[defs.len() - 1].output_width(),
        losses = BATCH_LOSSES / 4,
        dims = args.len() / 4,
    );
    let library: Vec<&str> = library.iter().map(|(_, s)| *s).collect();
    let source = format!(
        "{header}{}\n{}\n{}\n{}\nfn layers_forward(t: u32) {{\n{}}}\n\n\
         fn layers_backward(t: u32) {{\n{}}}\n",
        optimizer::update_source(),
        loss::xent_source(wg),
        include_str!("../../shaders/nn/step.wgsl"),
        library.join("\n"),
        forward.iter().map(barrier).collect::<String>(),
        backward
            .iter()
            .rev()
            .flatten()
            .map(barrier)
            .collect::<String>(),
    );
    Some(Program {
        source,
        floats: cursor,
        args,
    })
}

/// The step of the tutorial network (batch 32, 20 features, BN): for shader validation. A
/// fixed network that always resolves and always takes the step: the `expect`s below can
/// only fire on a bug in this crate, which the shader tests would then show.
pub(crate) fn tutorial_source() -> String {
    let specs = crate::nn::tutorial_layers(true, 10, 3);
    let defs = crate::nn::registry::resolve(crate::nn::Shape::Flat(20), &specs)
        .expect("the tutorial network resolves");
    let mut at = Vec::new();
    let mut len = 0;
    for d in &defs {
        at.push(len);
        len += crate::nn::layer::aligned(d.region_len());
    }
    program((32, 32), 20, &defs, &at, (STEP_WG, true))
        .expect("the tutorial network takes the one-workgroup step")
        .source
}
