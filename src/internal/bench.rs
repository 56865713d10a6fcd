//! Measurement helpers shared by `bnorm bench` and the criterion benches: the three passes on
//! the CPU path and the GPU path, GPU time from timestamp queries, wall time from submit to
//! completion, and the copy bandwidth of each side measured in the same run.

use std::time::Instant;

use rayon::prelude::*;

use crate::config::{BatchNormConfig, Layout, Mode};
use crate::context::Context;
use crate::cpu::FastCpuBatchNorm;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::BatchNorm;

/// One of the three passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    /// Training forward: batch statistics, running-stat update, normalize.
    Forward,
    /// Inference forward: running statistics.
    Inference,
    /// Backward after a training forward.
    Backward,
}

impl Pass {
    /// All passes.
    pub const ALL: [Pass; 3] = [Pass::Forward, Pass::Inference, Pass::Backward];

    /// Bytes each element must cross the memory bus in the two-kernel design:
    /// forward reads x twice and writes y; inference reads x and writes y; backward reads x
    /// and dy twice and writes dx.
    pub fn bytes_per_element(self) -> u64 {
        match self {
            Pass::Forward => 12,
            Pass::Inference => 8,
            Pass::Backward => 20,
        }
    }

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Forward => "forward",
            Pass::Inference => "inference",
            Pass::Backward => "backward",
        }
    }

    /// Parses `forward`, `inference` or `backward`.
    pub fn parse(s: &str) -> Option<Pass> {
        Pass::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// A tensor shape and the layout of its channel axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The shape.
    pub shape: Vec<usize>,
    /// Where the channels are.
    pub layout: Layout,
}

impl Case {
    /// Parses `64x56x56x64` (channels-last), `64x64x56x56:first` or `32x10:last`, refusing
    /// (in words) a malformed shape, one whose size overflows, and one whose benchmark
    /// buffers (input, output, gradients and reference copies: 6 tensors) exceed the host
    /// memory available.
    pub fn parse(s: &str) -> std::result::Result<Case, String> {
        let hint = "e.g. 64x56x56x64 or 64x64x56x56:first";
        let (dims, layout) = match s.split_once(':') {
            Some((d, "first")) => (d, Layout::ChannelsFirst),
            Some((d, "last")) => (d, Layout::ChannelsLast),
            Some((_, l)) => return Err(format!("bad layout {l:?} in {s:?} (first or last)")),
            None => (s, Layout::ChannelsLast),
        };
        let shape: Option<Vec<usize>> = dims.split('x').map(|d| d.trim().parse().ok()).collect();
        let shape = shape.ok_or_else(|| format!("bad shape {s:?} ({hint})"))?;
        if shape.len() < 2 || shape.contains(&0) {
            return Err(format!(
                "bad shape {s:?}: needs at least 2 dimensions, none of them 0 ({hint})"
            ));
        }
        let elements = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| format!("shape {s:?} has more elements than can be counted"))?;
        crate::memory::check_host_bytes("the benchmark's tensors", elements.saturating_mul(4 * 6))
            .map_err(|e| format!("shape {s:?}: {e}"))?;
        Ok(Case { shape, layout })
    }

    /// Channels of the case.
    pub fn channels(&self) -> usize {
        match self.layout {
            Layout::ChannelsLast => *self.shape.last().unwrap_or(&1),
            Layout::ChannelsFirst => self.shape[1],
        }
    }

    /// Elements.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// `64x56x56x64:last`.
    pub fn label(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        let l = match self.layout {
            Layout::ChannelsLast => "last",
            Layout::ChannelsFirst => "first",
        };
        format!("{}:{l}", dims.join("x"))
    }

    /// Deterministic input: channel means and spreads that differ.
    pub fn data(&self, seed: u64) -> Vec<f32> {
        let c = self.channels();
        let inner = match self.layout {
            Layout::ChannelsLast => 1,
            Layout::ChannelsFirst => self.shape[2..].iter().product(),
        };
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..self.elements())
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                let ch = (i / inner) % c;
                ch as f32 * 0.5 + u * (1.0 + (ch % 5) as f32)
            })
            .collect()
    }
}

/// Median of a sample (seconds).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// CPU copy bandwidth: bytes read plus bytes written per second by a multi-threaded memcpy of
/// Seconds of runs a CPU timing fills at least (as timeit's autorange does), and its cap on runs.
pub const CPU_MIN_SECONDS: f64 = 0.2;
const CPU_MAX_REPS: usize = 10_000;

/// `bytes`, the median of `reps` runs.
pub fn cpu_copy_bandwidth(bytes: usize, reps: usize) -> f64 {
    let n = bytes / 4;
    let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mut dst = vec![0.0f32; n];
    let chunk = n.div_ceil(rayon::current_num_threads() * 4).max(1024);
    let times: Vec<f64> = (0..reps.max(1) + 1)
        .map(|_| {
            let t = Instant::now();
            dst.par_chunks_mut(chunk)
                .zip(src.par_chunks(chunk))
                .for_each(|(d, s)| d.copy_from_slice(s));
            t.elapsed().as_secs_f64()
        })
        .skip(1)
        .collect();
    std::hint::black_box(&dst);
    2.0 * (n * 4) as f64 / median(times)
}

/// A time as seen from the host (submit to completion) and, where the adapter has timestamp
/// queries, from the GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Median wall time, seconds.
    pub wall_s: f64,
    /// Median GPU time, seconds.
    pub gpu_s: Option<f64>,
}

impl Timing {
    /// The most precise time available: GPU time if measured, else wall time.
    pub fn best(&self) -> f64 {
        self.gpu_s.unwrap_or(self.wall_s)
    }
}

/// Reads `count` pairs of timestamps back and turns them into seconds.
fn read_timestamps(ctx: &Context, queries: &wgpu::QuerySet, count: u32) -> Result<Vec<f64>> {
    let bytes = count as u64 * 2 * 8;
    let resolve = ctx.create_buffer(
        "bn.timestamps",
        bytes,
        wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
    )?;
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    enc.resolve_query_set(queries, 0..count * 2, &resolve, 0);
    ctx.submit_and_wait(enc)?;
    let raw = pollster::block_on(ctx.read_bytes_async(&resolve, 0, bytes))?;
    let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
    let period = ctx.queue().get_timestamp_period() as f64 * 1e-9;
    Ok(ticks
        .chunks_exact(2)
        .map(|p| p[1].saturating_sub(p[0]) as f64 * period)
        .collect())
}

fn query_set(ctx: &Context, pairs: u32, feature: wgpu::Features) -> Option<wgpu::QuerySet> {
    ctx.device().features().contains(feature).then(|| {
        ctx.device().create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("bn.bench"),
            ty: wgpu::QueryType::Timestamp,
            count: pairs * 2,
        })
    })
}

/// Times `reps` submits of what `record` puts in an encoder (after one warm-up), each moving
/// `moved` bytes: bytes per second from the median wall time and, where the adapter has
/// `feature`, from timestamps. `record` gets the query set and the index of this
/// repetition's first timestamp (the second is the next), to write them its own way.
fn time_reps(
    ctx: &Context,
    reps: u32,
    moved: f64,
    feature: wgpu::Features,
    mut record: impl FnMut(&mut wgpu::CommandEncoder, Option<(&wgpu::QuerySet, u32)>),
) -> Result<Timing> {
    let queries = query_set(ctx, reps, feature);
    let mut walls = Vec::new();
    for r in 0..=reps {
        let mut enc = ctx.device().create_command_encoder(&Default::default());
        let q = queries.as_ref().filter(|_| r > 0).map(|q| (q, 2 * (r - 1)));
        record(&mut enc, q);
        let t = Instant::now();
        ctx.submit_and_wait(enc)?;
        if r > 0 {
            walls.push(t.elapsed().as_secs_f64());
        }
    }
    let gpu = match &queries {
        Some(q) => Some(median(read_timestamps(ctx, q, reps)?)),
        None => None,
    };
    Ok(Timing {
        wall_s: moved / median(walls),
        gpu_s: gpu.map(|g| moved / g),
    })
}

/// GPU copy bandwidth (read + write bytes per second) of a buffer-to-buffer copy of `bytes`.
pub fn gpu_copy_bandwidth(ctx: &Context, bytes: u64, reps: u32) -> Result<Timing> {
    let bytes = bytes.min(ctx.device().limits().max_buffer_size) / 256 * 256;
    let usage = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let src = ctx.create_buffer("bn.copy.src", bytes, usage)?;
    let dst = ctx.create_buffer("bn.copy.dst", bytes, usage)?;
    let feature = wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
    time_reps(ctx, reps, 2.0 * bytes as f64, feature, |enc, q| {
        if let Some((q, i)) = q {
            enc.write_timestamp(q, i);
        }
        enc.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes);
        if let Some((q, i)) = q {
            enc.write_timestamp(q, i + 1);
        }
    })
}

/// Threads of the streaming reference's workgroups.
const REF_WG: u32 = 256;

/// The streaming reference shader with its workgroup size.
pub(crate) fn stream_reference_source() -> String {
    format!(
        "const REF_WG: u32 = {REF_WG}u;\n{}",
        include_str!("../../shaders/stream_reference.wgsl")
    )
}

/// Mirror of `Ref` in `stream_reference.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RefUniform {
    len: u32,
    _pad: u32,
    a: f32,
    b: f32,
}

/// The trivial streaming kernel `y = x * a + b` over a tensor of a given size: the floor any
/// inference pass has on this adapter, and the reference every pass is reported against.
pub struct StreamReference {
    kernel: crate::pipeline::Kernel,
    group: wgpu::BindGroup,
    groups: (u32, u32),
    len: usize,
}

impl StreamReference {
    /// The kernel and its buffers over `bytes` of input (capped at one binding).
    pub fn new(ctx: &Context, bytes: u64) -> Result<Self> {
        use crate::pipeline::{self, Region, Slot};
        let limit = ctx.plan_limits().max_binding;
        let len = (bytes.min(limit) / 4).max(1) as usize;
        let storage = |label| ctx.storage(label, len as u64 * 4);
        let (x, y) = (storage("bn.ref.x")?, storage("bn.ref.y")?);
        let u = ctx.uniform(
            "bn.ref",
            &RefUniform {
                len: len as u32,
                _pad: 0,
                a: 1.5,
                b: 0.25,
            },
        )?;
        let slots = [Slot::Uniform(16), Slot::Read(4), Slot::Write(4)];
        let [kernel] = pipeline::kernels(
            ctx.device(),
            "bn.ref",
            &stream_reference_source(),
            ["stream_reference"],
            &slots,
        );
        let group = pipeline::bind(
            ctx.device(),
            "bn.ref",
            &kernel.layout,
            &[(&u).into(), Region::from(&x), Region::from(&y)],
        );
        let groups =
            pipeline::groups_1d(len, REF_WG as usize, ctx.plan_limits().max_groups_per_dim);
        Ok(StreamReference {
            kernel,
            group,
            groups,
            len,
        })
    }

    /// Bytes one run moves (read x, write y).
    pub fn moved(&self) -> f64 {
        8.0 * self.len as f64
    }

    /// Records one run, with timestamps at `q` when given.
    pub fn record(&self, enc: &mut wgpu::CommandEncoder, q: Option<(&wgpu::QuerySet, u32)>) {
        let mut pass = crate::pipeline::begin_pass(
            enc,
            &wgpu::ComputePassDescriptor {
                label: Some("bn.ref"),
                timestamp_writes: q.map(|(q, i)| wgpu::ComputePassTimestampWrites {
                    query_set: q,
                    beginning_of_pass_write_index: Some(i),
                    end_of_pass_write_index: Some(i + 1),
                }),
            },
        );
        crate::pipeline::dispatch(&mut pass, &self.kernel, &self.group, self.groups);
    }
}

/// Bytes-normalized throughput (8 bytes per element: read x, write y) of the streaming
/// reference over `bytes` of input.
pub fn gpu_stream_bandwidth(ctx: &Context, bytes: u64, reps: u32) -> Result<Timing> {
    let stream = StreamReference::new(ctx, bytes)?;
    time_reps(
        ctx,
        reps,
        stream.moved(),
        wgpu::Features::TIMESTAMP_QUERY,
        |enc, q| stream.record(enc, q),
    )
}

/// The GPU side of one case: a layer and its tensors, kept across repetitions.
pub struct GpuRunner {
    ctx: Context,
    layer: BatchNorm,
    x: Tensor,
    dy: Tensor,
    y: Tensor,
    dx: Tensor,
    shape: Vec<usize>,
}

impl GpuRunner {
    /// Uploads the case's data.
    pub fn new(ctx: &Context, case: &Case, x: &[f32], dy: &[f32]) -> Result<Self> {
        let config = BatchNormConfig::keras(case.channels()).with_layout(case.layout);
        Ok(Self {
            layer: BatchNorm::new(ctx, config)?,
            x: Tensor::from_slice(ctx, &case.shape, x)?,
            dy: Tensor::from_slice(ctx, &case.shape, dy)?,
            y: Tensor::zeros(ctx, &case.shape)?,
            dx: Tensor::zeros(ctx, &case.shape)?,
            shape: case.shape.clone(),
            ctx: ctx.clone(),
        })
    }

    fn encode(&mut self, enc: &mut wgpu::CommandEncoder, pass: Pass) -> Result<()> {
        match pass {
            Pass::Forward => {
                self.layer
                    .encode_forward(enc, self.x.as_ref(), self.y.as_ref(), Mode::Training)
            }
            Pass::Inference => {
                self.layer
                    .encode_forward(enc, self.x.as_ref(), self.y.as_ref(), Mode::Inference)
            }
            Pass::Backward => {
                self.layer
                    .encode_backward(enc, self.x.as_ref(), self.dy.as_ref(), self.dx.as_ref())
            }
        }
    }

    /// Times `reps` runs of `pass` (after one warm-up), one submit each.
    pub fn time(&mut self, pass: Pass, reps: u32) -> Result<Timing> {
        Ok(self.time_runs(pass, reps, None)?.0)
    }

    /// Times `pass` and `stream` in alternation, `reps` runs of each (after one warm-up),
    /// one submit each: both see the same moments of the adapter, which on a CPU driver
    /// drifts between runs. Returns the pass's time (seconds) and the stream's throughput
    /// (bytes per second), medians.
    pub fn time_against(
        &mut self,
        pass: Pass,
        reps: u32,
        stream: &StreamReference,
    ) -> Result<(Timing, Timing)> {
        let (t, s) = self.time_runs(pass, reps, Some(stream))?;
        let moved = stream.moved();
        let throughput = Timing {
            wall_s: moved / s.wall_s,
            gpu_s: s.gpu_s.map(|g| moved / g),
        };
        Ok((t, throughput))
    }

    /// `time`, with each run followed by one of `stream` when given (the stream's first run
    /// warms it up, uncounted): the medians of both, in seconds (the stream's NaN without one).
    fn time_runs(
        &mut self,
        pass: Pass,
        reps: u32,
        stream: Option<&StreamReference>,
    ) -> Result<(Timing, Timing)> {
        if pass == Pass::Backward && self.layer.last_mode() != Some(Mode::Training) {
            self.run(Pass::Forward)?;
        }
        self.run(pass)?;
        let feature = wgpu::Features::TIMESTAMP_QUERY;
        let qp = query_set(&self.ctx, reps, feature);
        let qs = stream.and_then(|_| query_set(&self.ctx, reps, feature));
        let (mut walls, mut stream_walls) = (Vec::new(), Vec::new());
        let timed = |ctx: &Context, enc: wgpu::CommandEncoder| -> Result<f64> {
            let t = Instant::now();
            ctx.submit_and_wait(enc)?;
            Ok(t.elapsed().as_secs_f64())
        };
        let encoder = |ctx: &Context| ctx.device().create_command_encoder(&Default::default());
        if let Some(stream) = stream {
            let mut enc = encoder(&self.ctx);
            stream.record(&mut enc, None);
            timed(&self.ctx, enc)?;
        }
        for r in 0..reps {
            let mut enc = encoder(&self.ctx);
            self.layer
                .set_timestamp_writes(qp.as_ref().map(|q| (q.clone(), 2 * r)));
            self.encode(&mut enc, pass)?;
            walls.push(timed(&self.ctx, enc)?);
            if let Some(stream) = stream {
                let mut enc = encoder(&self.ctx);
                stream.record(&mut enc, qs.as_ref().map(|q| (q, 2 * r)));
                stream_walls.push(timed(&self.ctx, enc)?);
            }
        }
        self.layer.set_timestamp_writes(None);
        let timestamps = |q: &Option<wgpu::QuerySet>| -> Result<Option<f64>> {
            Ok(match q {
                Some(q) => Some(median(read_timestamps(&self.ctx, q, reps)?)),
                None => None,
            })
        };
        let pass_t = Timing {
            wall_s: median(walls),
            gpu_s: timestamps(&qp)?,
        };
        let stream_t = Timing {
            wall_s: median(stream_walls),
            gpu_s: timestamps(&qs)?,
        };
        Ok((pass_t, stream_t))
    }

    /// Runs `pass` once (for checking).
    pub fn run(&mut self, pass: Pass) -> Result<()> {
        let mut enc = self
            .ctx
            .device()
            .create_command_encoder(&Default::default());
        self.encode(&mut enc, pass)?;
        self.ctx.submit_and_wait(enc)
    }

    /// The output of the last `pass` (y, or dx for backward).
    pub fn output(&self, pass: Pass) -> Result<Vec<f32>> {
        match pass {
            Pass::Backward => self.dx.to_vec(&self.ctx),
            _ => self.y.to_vec(&self.ctx),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
}

/// The CPU side of one case.
pub struct CpuRunner {
    layer: FastCpuBatchNorm,
    x: Vec<f32>,
    dy: Vec<f32>,
    y: Vec<f32>,
    dx: Vec<f32>,
    shape: Vec<usize>,
}

impl CpuRunner {
    /// Keeps the case's data.
    pub fn new(case: &Case, x: Vec<f32>, dy: Vec<f32>) -> Result<Self> {
        let config = BatchNormConfig::keras(case.channels()).with_layout(case.layout);
        let n = x.len();
        Ok(Self {
            layer: FastCpuBatchNorm::new(config)?,
            x,
            dy,
            y: vec![0.0; n],
            dx: vec![0.0; n],
            shape: case.shape.clone(),
        })
    }

    /// Runs `pass` once.
    pub fn run(&mut self, pass: Pass) -> Result<()> {
        match pass {
            Pass::Forward => {
                self.layer
                    .forward_into(&self.x, &self.shape, Mode::Training, &mut self.y)
            }
            Pass::Inference => {
                self.layer
                    .forward_into(&self.x, &self.shape, Mode::Inference, &mut self.y)
            }
            Pass::Backward => {
                self.layer
                    .backward_into(&self.x, &self.dy, &self.shape, &mut self.dx)
            }
        }
    }

    /// Times at least `reps` runs of `pass` (after one warm-up), and enough runs to fill
    /// `CPU_MIN_SECONDS` (a cache-resident tensor takes ~0.1 ms, where a handful of runs
    /// measures the thread pool's wake-up more than the pass): the median.
    pub fn time(&mut self, pass: Pass, reps: u32) -> Result<Timing> {
        if pass == Pass::Backward {
            self.run(Pass::Forward)?;
        }
        self.run(pass)?;
        let mut walls = Vec::with_capacity(reps as usize);
        let start = Instant::now();
        while walls.len() < reps as usize
            || (start.elapsed().as_secs_f64() < CPU_MIN_SECONDS && walls.len() < CPU_MAX_REPS)
        {
            let t = Instant::now();
            self.run(pass)?;
            walls.push(t.elapsed().as_secs_f64());
        }
        Ok(Timing {
            wall_s: median(walls),
            gpu_s: None,
        })
    }

    /// The output of the last `pass`.
    pub fn output(&self, pass: Pass) -> &[f32] {
        match pass {
            Pass::Backward => &self.dx,
            _ => &self.y,
        }
    }
}

/// Largest |a - b| / (1 + |b|): the check a result must pass before it is reported.
pub fn max_difference(a: &[f32], b: &[f32]) -> Result<f64> {
    if a.len() != b.len() {
        return Err(Error::LengthMismatch {
            what: "benchmark outputs",
            expected: b.len(),
            got: a.len(),
        });
    }
    Ok(a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = (x as f64 - y as f64).abs() / (1.0 + (y as f64).abs());
            if d.is_nan() {
                f64::INFINITY
            } else {
                d
            }
        })
        .fold(0.0, f64::max))
}
