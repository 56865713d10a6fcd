//! `bnorm bench`: CPU path against GPU path, each against its own copy bandwidth, in one run.

use std::collections::HashMap;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use wgpu_batchnorm::internal::bench::{
    cpu_copy_bandwidth, gpu_copy_bandwidth, gpu_stream_bandwidth, max_difference, Case, CpuRunner,
    GpuRunner, Pass, StreamReference, Timing,
};
use wgpu_batchnorm::Context;

use crate::plot::{self, Series, COLORS};

/// The default sweep: tiny to several times the last-level cache of a server CPU.
pub const DEFAULT_SHAPES: &str =
    "32x10,256x64,1024x256,64x56x56x64,64x64x56x56:first,128x56x56x64,128x64x56x56:first";

#[derive(clap::Args)]
pub struct Args {
    /// Comma-separated shapes: `NxC`, `NxHxWxC` (channels-last) or `NxCxHxW:first`.
    #[arg(long, default_value = DEFAULT_SHAPES)]
    shapes: String,
    /// Comma-separated passes: forward, inference, backward.
    #[arg(long, default_value = "forward,inference,backward")]
    passes: String,
    /// Timed repetitions per measurement (the median is reported); 0 picks by size.
    #[arg(long, default_value_t = 0)]
    reps: u32,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Draw effective bandwidth against size to this PNG.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Skip the GPU path.
    #[arg(long)]
    cpu_only: bool,
    /// Also time training steps of the tutorial network over a sweep of widths, with the
    /// dispatches, passes, copies and submits one step records.
    #[arg(long)]
    train: bool,
    /// Epochs of each training measurement (with --train).
    #[arg(long, default_value_t = 2)]
    train_epochs: usize,
}

/// Largest tolerated |gpu - cpu| / (1 + |cpu|) before a result is refused.
const TOLERANCE: f64 = 1e-3;

struct Row {
    case: Case,
    pass: Pass,
    bytes: u64,
    cpu: Timing,
    gpu: Option<Timing>,
    /// The streaming reference over the same number of elements (launch-bound when the
    /// tensor is small, as the pass is), timed in alternation with the pass: what `/stream`
    /// divides by.
    stream: Option<Timing>,
    difference: Option<f64>,
}

pub fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let cases: Vec<Case> = args
        .shapes
        .split(',')
        .map(Case::parse)
        .collect::<Result<_, _>>()?;
    let passes: Vec<Pass> = args
        .passes
        .split(',')
        .map(|s| Pass::parse(s.trim()).ok_or_else(|| format!("bad pass {s:?}")))
        .collect::<Result<_, _>>()?;
    // Outputs are checked before the (long) measurements.
    if let (Some(json), Some(png)) = (&args.json, &args.plot) {
        crate::output_paths::check_distinct(&[], &[("--json", json), ("--plot", png)])?;
    }
    if let Some(path) = &args.json {
        wgpu_batchnorm::internal::check_writable(path)
            .map_err(|e| format!("--json {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        plot::check_png_path(path).map_err(|e| format!("--plot: {e}"))?;
    }
    let ctx = if args.cpu_only {
        None
    } else {
        Some(Context::new()?)
    };
    let largest = cases
        .iter()
        .map(|c| c.elements() * 4)
        .max()
        .unwrap_or(1 << 20);
    // Well past the last-level cache, so the copy measures DRAM, not cache.
    let copy_bytes = largest.max(256 << 20);

    say!("CPU: {} threads", rayon::current_num_threads());
    let cpu_copy = cpu_copy_bandwidth(copy_bytes, 5);
    say!(
        "CPU memcpy bandwidth ({} MiB, read+write): {:.1} GB/s",
        copy_bytes >> 20,
        cpu_copy / 1e9
    );
    let gpu_refs = match &ctx {
        Some(ctx) => {
            say!("GPU: {}", ctx.describe());
            let t = gpu_copy_bandwidth(ctx, copy_bytes as u64, 5)?;
            say!(
                "GPU copy bandwidth ({} MiB, read+write): {:.1} GB/s wall{}",
                copy_bytes >> 20,
                t.wall_s / 1e9,
                t.gpu_s
                    .map(|g| format!(", {:.1} GB/s GPU timestamps", g / 1e9))
                    .unwrap_or_default()
            );
            let r = gpu_stream_bandwidth(ctx, copy_bytes as u64, 5)?;
            say!(
                "GPU streaming reference y = x*a + b ({} MiB, 8 B/element): {:.1} GB/s wall{}",
                copy_bytes >> 20,
                r.wall_s / 1e9,
                r.gpu_s
                    .map(|g| format!(", {:.1} GB/s GPU timestamps", g / 1e9))
                    .unwrap_or_default()
            );
            Some((t, r))
        }
        None => None,
    };

    let bar = ProgressBar::new((cases.len() * passes.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    let mut failed = false;
    for case in &cases {
        let x = case.data(1);
        let dy = case.data(2);
        // Small tensors' passes are single dispatches of tens of microseconds whose time
        // varies by half from one submit to the next: their medians need more runs.
        let reps = if args.reps > 0 {
            args.reps
        } else if case.elements() > 4_000_000 {
            5
        } else if case.elements() > 1 << 18 {
            20
        } else {
            100
        };
        let mut cpu = CpuRunner::new(case, x.clone(), dy.clone())?;
        let mut gpu = match &ctx {
            Some(ctx) => Some(GpuRunner::new(ctx, case, &x, &dy)?),
            None => None,
        };
        let stream = match &ctx {
            Some(ctx) => Some(StreamReference::new(ctx, case.elements() as u64 * 4)?),
            None => None,
        };
        for &pass in &passes {
            bar.set_message(format!("{} {}", case.label(), pass.name()));
            let cpu_t = cpu.time(pass, reps)?;
            let (gpu_t, stream_t, difference) = match (gpu.as_mut(), &stream) {
                (Some(g), Some(stream)) => {
                    let (t, s) = g.time_against(pass, reps, stream)?;
                    // Check the GPU's last output against the CPU path on the same input.
                    let mut check = CpuRunner::new(case, x.clone(), dy.clone())?;
                    if pass == Pass::Backward {
                        check.run(Pass::Forward)?;
                    } else if pass == Pass::Inference {
                        // Both sides' running statistics after the same number of training steps.
                        for _ in 0..forward_steps(&rows, case, reps) {
                            check.run(Pass::Forward)?;
                        }
                    }
                    check.run(pass)?;
                    let d = max_difference(&g.output(pass)?, check.output(pass))?;
                    (Some(t), Some(s), Some(d))
                }
                _ => (None, None, None),
            };
            if difference.is_some_and(|d| d > TOLERANCE) {
                failed = true;
            }
            rows.push(Row {
                case: case.clone(),
                pass,
                bytes: pass.bytes_per_element() * case.elements() as u64,
                cpu: cpu_t,
                gpu: gpu_t,
                stream: stream_t,
                difference,
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let gpu_copy = gpu_refs.map(|(copy, _)| copy);
    let gpu_stream = gpu_refs.map(|(_, stream)| stream);
    print_table(&rows, cpu_copy, gpu_refs);
    if let Some(path) = &args.json {
        let doc = json!({
            "device": ctx.as_ref().map(|c| c.describe()),
            "cpu_threads": rayon::current_num_threads(),
            "cpu_copy_gbps": cpu_copy / 1e9,
            "gpu_copy_gbps_wall": gpu_copy.map(|t| t.wall_s / 1e9),
            "gpu_copy_gbps_timestamps": gpu_copy.and_then(|t| t.gpu_s).map(|g| g / 1e9),
            "gpu_stream_reference_gbps_wall": gpu_stream.map(|t| t.wall_s / 1e9),
            "gpu_stream_reference_gbps_timestamps": gpu_stream.and_then(|t| t.gpu_s).map(|g| g / 1e9),
            "results": rows.iter().map(|r| json!({
                "shape": r.case.shape,
                "layout": r.case.label().rsplit(':').next(),
                "pass": r.pass.name(),
                "elements": r.case.elements(),
                "bytes": r.bytes,
                "cpu_s": r.cpu.wall_s,
                "gpu_wall_s": r.gpu.map(|t| t.wall_s),
                "gpu_timestamp_s": r.gpu.and_then(|t| t.gpu_s),
                "stream_reference_gbps_wall": r.stream.map(|t| t.wall_s / 1e9),
                "max_difference": r.difference,
            })).collect::<Vec<_>>(),
        });
        wgpu_batchnorm::internal::write_atomically(
            path,
            serde_json::to_string_pretty(&doc)?.as_bytes(),
        )
        .map_err(|e| format!("--json {}: {e}", path.display()))?;
        say!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        draw(path, &rows, cpu_copy, gpu_copy)?;
        say!("wrote {}", path.display());
    }
    if args.train {
        if args.train_epochs == 0 {
            return Err("--train-epochs must be at least 1".into());
        }
        crate::bench_train::run(ctx.as_ref(), args.train_epochs)?;
    }
    if failed {
        return Err(
            format!("a GPU result differed from the CPU path by more than {TOLERANCE}").into(),
        );
    }
    Ok(())
}

/// Training steps the GPU layer of `case` took before its inference timing: the forward
/// warm-up plus its repetitions, if forward was measured first.
fn forward_steps(rows: &[Row], case: &Case, reps: u32) -> u32 {
    if rows
        .iter()
        .any(|r| &r.case == case && r.pass == Pass::Forward)
    {
        reps.saturating_add(1)
    } else {
        0
    }
}

fn gbps(bytes: u64, s: f64) -> f64 {
    bytes as f64 / s / 1e9
}

fn print_table(rows: &[Row], cpu_copy: f64, gpu_refs: Option<(Timing, Timing)>) {
    say!(
        "\n{:<22} {:<9} {:>10} {:>8} {:>7} | {:>10} {:>10} {:>8} {:>7} {:>7} | {:>8} {:>9}",
        "shape",
        "pass",
        "CPU ms",
        "GB/s",
        "/copy",
        "GPU ms",
        "wall ms",
        "GB/s",
        "/copy",
        "/stream",
        "GPU/CPU",
        "max diff"
    );
    for r in rows {
        let cpu_gbps = gbps(r.bytes, r.cpu.wall_s);
        let na = || "-".to_string();
        let (g_ms, w_ms, g_gbps, g_copy, g_stream, speedup) = match (r.gpu, gpu_refs, r.stream) {
            (Some(t), Some((copy, _)), Some(stream)) => {
                let bw = gbps(r.bytes, t.best());
                // Compare like with like: timestamps with timestamps, wall with wall.
                let reference =
                    |x: Timing| x.gpu_s.filter(|_| t.gpu_s.is_some()).unwrap_or(x.wall_s) / 1e9;
                (
                    t.gpu_s
                        .map(|g| format!("{:.3}", g * 1e3))
                        .unwrap_or_else(na),
                    format!("{:.3}", t.wall_s * 1e3),
                    format!("{bw:.1}"),
                    format!("{:.2}", bw / reference(copy)),
                    format!("{:.2}", bw / reference(stream)),
                    format!("{:.2}x", r.cpu.wall_s / t.wall_s),
                )
            }
            _ => (na(), na(), na(), na(), na(), na()),
        };
        say!(
            "{:<22} {:<9} {:>10.3} {:>8.1} {:>7.2} | {:>10} {:>10} {:>8} {:>7} {:>7} | {:>8} {:>9}",
            r.case.label(),
            r.pass.name(),
            r.cpu.wall_s * 1e3,
            cpu_gbps,
            cpu_gbps * 1e9 / cpu_copy,
            g_ms,
            w_ms,
            g_gbps,
            g_copy,
            g_stream,
            speedup,
            r.difference.map(|d| format!("{d:.1e}")).unwrap_or_else(na),
        );
    }
    say!(
        "\nGB/s counts the bytes each pass must move (forward 12, inference 8, backward 20 bytes per element);\n\
         /copy divides by the copy bandwidth of the same side; /stream by the GPU streaming reference\n\
         over the same number of elements (y = x*a + b, 8 B/element: the floor of any inference pass\n\
         of that size, launch-bound where the pass is); GPU ms are timestamp queries,\n\
         wall ms submit to completion; GPU/CPU is CPU time over GPU wall time."
    );
}

fn draw(
    path: &std::path::Path,
    rows: &[Row],
    cpu_copy: f64,
    gpu_copy: Option<Timing>,
) -> Result<(), Box<dyn std::error::Error>> {
    // One line per (side, pass, layout): channels-last and channels-first tensors of one size
    // would otherwise zig-zag on a single line.
    let mut lines: HashMap<(bool, Pass, String), Vec<(f64, f64)>> = HashMap::new();
    for r in rows {
        let size = r.case.elements() as f64 * 4.0;
        let layout = r
            .case
            .label()
            .rsplit(':')
            .next()
            .unwrap_or("last")
            .to_string();
        lines
            .entry((false, r.pass, layout.clone()))
            .or_default()
            .push((size, gbps(r.bytes, r.cpu.wall_s)));
        if let Some(t) = r.gpu {
            lines
                .entry((true, r.pass, layout))
                .or_default()
                .push((size, gbps(r.bytes, t.best())));
        }
    }
    let (x0, x1) = rows.iter().fold((f64::MAX, 0.0f64), |(a, b), r| {
        let s = r.case.elements() as f64 * 4.0;
        (a.min(s), b.max(s))
    });
    let mut keys: Vec<(bool, Pass, String)> = lines.keys().cloned().collect();
    keys.sort_by_key(|(gpu, pass, layout)| (*gpu, pass.name(), layout.clone()));
    let mut series: Vec<Series> = keys
        .iter()
        .map(|key| {
            let (gpu, pass, layout) = key;
            let mut pts = lines[key].clone();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let hue = Pass::ALL.iter().position(|p| p == pass).unwrap_or(0) * 2
                + (layout == "first") as usize;
            Series {
                label: format!(
                    "{} {} ({layout})",
                    if *gpu { "GPU" } else { "CPU" },
                    pass.name()
                ),
                points: pts,
                color: COLORS[hue % COLORS.len()],
                dashed: !gpu,
            }
        })
        .collect();
    series.push(Series {
        label: "CPU memcpy".into(),
        points: vec![(x0, cpu_copy / 1e9), (x1, cpu_copy / 1e9)],
        color: plotters::style::RGBColor(0, 0, 0),
        dashed: true,
    });
    if let Some(t) = gpu_copy {
        let bw = t.gpu_s.unwrap_or(t.wall_s) / 1e9;
        series.push(Series {
            label: "GPU copy".into(),
            points: vec![(x0, bw), (x1, bw)],
            color: plotters::style::RGBColor(120, 120, 120),
            dashed: true,
        });
    }
    plot::loglog(
        path,
        "Batch-norm effective bandwidth",
        "tensor size (bytes)",
        "GB/s (bytes the pass must move)",
        &series,
    )
}
