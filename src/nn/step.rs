//! The one-workgroup training step (`shaders/nn/step.wgsl`): when a network's whole step is
//! small (the tutorial's is ~7k multiply-adds forward), gather, forward, loss, backward and the
//! optimizer run as one dispatch of one workgroup, phases separated by storage barriers,
//! activations in one arena buffer. A launch costs more than such a step's arithmetic on any
//! adapter (~45 µs per dispatch on lavapipe, a few µs on a discrete GPU), so the general path's
//! 9 dispatches become 1. Each layer emits its own phases (`LayerDef::step_code`); a network
//! with a layer that has none, or too large a step, takes the general path. Same results as
//! the general path up to round-off (batch norm's statistics are summed in another order; the
//! loss and the optimizer share its functions, so they give the same bits).

use std::collections::HashMap;

use crate::nn::error::Result;
use crate::nn::layer::LayerDef;
use crate::nn::loss::{self, LOSS_WG};
use crate::nn::optimizer::{self, GpuOptimizer};
use crate::nn::plan::GpuData;
use crate::nn::sequential::BATCH_LOSSES;
use crate::pipeline::{self, bind, Region, Slot};
use crate::Context;

/// Threads of the step's workgroup: the loss's, whose tree the step shares.
const STEP_WG: u32 = LOSS_WG;

/// Largest step taken in one workgroup, in forward multiply-adds (the backward is about
/// twice that): past it, a step has enough work to fill more than one workgroup.
const STEP_MAX_MACS: usize = 1 << 16;

/// Storage buffers the step binds.
const STORAGE_BINDINGS: u32 = 10;

/// Where one layer's phases read and write, as float offsets (`arena` for activations,
/// `params` / `grads` for the layer's region).
pub(crate) struct StepIo {
    pub rows: usize,
    pub input: usize,
    pub output: usize,
    pub d_output: usize,
    /// `None` for the first layer: nothing reads its input gradient.
    pub d_input: Option<usize>,
    /// The layer's region in `params` and `grads`.
    pub at: usize,
    /// The layer's scratch in `arena` (`StepCode::scratch` floats).
    pub scratch: usize,
}

impl StepIo {
    /// `d_input` as the phases take it (`NONE` when there is none).
    pub fn d_input_arg(&self) -> String {
        self.d_input.map_or("NONE".into(), |d| format!("{d}u"))
    }
}

/// A layer's part of the step: WGSL statements (each a phase, followed by a barrier) calling
/// the functions of its `library`.
pub(crate) struct StepCode {
    /// (name, source) of the layer kind's phase functions, included once per kind.
    pub library: (&'static str, &'static str),
    pub forward: Vec<String>,
    pub backward: Vec<String>,
    /// Floats of arena scratch it needs.
    pub scratch: usize,
    /// Forward multiply-adds of one step (what decides whether one workgroup is enough).
    pub macs: usize,
}

/// An f32 constant for WGSL, exact: its bits.
pub(crate) fn f32_literal(v: f32) -> String {
    format!("bitcast<f32>({}u)", v.to_bits())
}

/// What the step binds of the model.
pub(crate) struct StepModel<'a> {
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub optimizer: &'a GpuOptimizer,
    pub metrics: &'a wgpu::Buffer,
    pub params_len: usize,
}

/// The step of one batch size.
pub(crate) struct FusedStep {
    module: wgpu::ShaderModule,
    layout: wgpu::BindGroupLayout,
    arena: wgpu::Buffer,
    /// Pipelines by training batch size (where batch b starts).
    pipelines: HashMap<usize, wgpu::ComputePipeline>,
    /// The bind group of the current data set (its id).
    group: Option<(u64, wgpu::BindGroup)>,
    uniform: wgpu::Buffer,
    buffers: [wgpu::Buffer; 6],
    max_binding: u64,
}

impl FusedStep {
    /// The step of `rows` rows for `defs` (regions at `at`), or `None` when the network or
    /// the adapter cannot take it.
    pub fn new(
        ctx: &Context,
        rows: usize,
        input: usize,
        defs: &[Box<dyn LayerDef>],
        at: &[usize],
        model: StepModel<'_>,
    ) -> Result<Option<FusedStep>> {
        let limits = ctx.device().limits();
        if limits.max_storage_buffers_per_shader_stage < STORAGE_BINDINGS
            || limits.max_compute_invocations_per_workgroup < STEP_WG
            || limits.max_compute_workgroup_size_x < STEP_WG
            || (limits.max_compute_workgroup_storage_size as u64) < 2 * STEP_WG as u64 * 4
            || model.params_len > u32::MAX as usize
        {
            return Ok(None);
        }
        let adam = model.optimizer.is_adam();
        let Some(Program { source, floats }) = program(rows, input, defs, at, adam) else {
            return Ok(None);
        };
        let bytes = floats as u64 * 4;
        if bytes > limits.max_storage_buffer_binding_size {
            return Ok(None);
        }
        let device = ctx.device();
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
        ];
        let (uniform, m, v) = model.optimizer.state();
        Ok(Some(FusedStep {
            module: pipeline::module(device, "nn.step", &source),
            layout: pipeline::layout(device, "nn.step", &slots),
            arena: ctx.storage("nn.step.arena", bytes.max(4))?,
            pipelines: HashMap::new(),
            group: None,
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
        }))
    }

    /// Records one step on the next batch of `data` (batches of `batch` rows): one dispatch.
    /// `false` (nothing recorded) when the data set is too large to bind whole.
    pub fn encode(
        &mut self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        data: &GpuData,
        batch: usize,
    ) -> Result<bool> {
        if data.x.size() > self.max_binding || batch > u32::MAX as usize {
            return Ok(false);
        }
        if self.group.as_ref().is_none_or(|(id, _)| *id != data.id) {
            let [params, grads, m, v, tick, metrics] = &self.buffers;
            let regions: [Region<'_>; 11] = [
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
                (&self.arena).into(),
            ];
            let group = bind(ctx.device(), "nn.step", &self.layout, &regions);
            self.group = Some((data.id, group));
        }
        let (module, layout) = (&self.module, &self.layout);
        let pipeline = self.pipelines.entry(batch).or_insert_with(|| {
            pipeline::specialized(
                ctx.device(),
                layout,
                module,
                "step",
                &[("BATCH", batch as f64)],
            )
        });
        let (_, group) = self.group.as_ref().expect("bound above");
        let mut pass = pipeline::begin_pass(enc, &Default::default());
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
        crate::work::dispatch();
        Ok(true)
    }
}

/// The step's WGSL and its arena's size in floats.
struct Program {
    source: String,
    floats: usize,
}

/// The step of `rows` rows for `defs` (regions at `at`), or `None` when a layer has no
/// phases or the step is too large for one workgroup.
fn program(
    rows: usize,
    input: usize,
    defs: &[Box<dyn LayerDef>],
    at: &[usize],
    adam: bool,
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
    let (mut library, mut forward, mut backward) = (Vec::new(), Vec::new(), Vec::new());
    let mut macs = 0usize;
    for (i, (d, &(input, d_input, output, d_output))) in defs.iter().zip(&places).enumerate() {
        let io = StepIo {
            rows,
            input,
            output,
            d_output,
            d_input,
            at: at[i],
            scratch: cursor,
        };
        let code = d.step_code(&io)?;
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
    let barrier = |s: &String| format!("    {s}\n    storageBarrier();\n");
    let (_, _, logits, dlogits) = places[places.len() - 1];
    let header = format!(
        "const STEP_WG: u32 = {STEP_WG}u;\nconst ROWS: u32 = {rows}u;\noverride BATCH: u32;\n\
         const INPUT: u32 = {input}u;\nconst CLASSES: u32 = {classes}u;\nconst X_AT: u32 = 0u;\n\
         const LOGITS_AT: u32 = {logits}u;\nconst DLOGITS_AT: u32 = {dlogits}u;\n\
         const BATCH_LOSSES_AT: u32 = {losses}u;\nconst ADAM: bool = {adam};\n\
         const NONE: u32 = 0xffffffffu;\n",
        classes = defs[defs.len() - 1].output_width(),
        losses = BATCH_LOSSES / 4,
    );
    let library: Vec<&str> = library.iter().map(|(_, s)| *s).collect();
    let source = format!(
        "{header}{}\n{}\n{}\n{}\nfn layers_forward(t: u32) {{\n{}}}\n\n\
         fn layers_backward(t: u32) {{\n{}}}\n",
        optimizer::update_source(),
        loss::xent_source(),
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
    })
}

/// The step of the tutorial network (batch 32, 20 features, BN): for shader validation.
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
    program(32, 20, &defs, &at, true)
        .expect("the tutorial network takes the one-workgroup step")
        .source
}
