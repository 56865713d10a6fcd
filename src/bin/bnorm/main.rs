//! `bnorm`: the command-line front end.

/// `println!` that ends the program quietly (exit 0) when stdout's reader has gone away
/// (`bnorm train | head`), instead of panicking on the broken pipe.
macro_rules! say {
    ($($t:tt)*) => {
        $crate::emit(format_args!($($t)*))
    };
}

mod bench;
mod bench_train;
mod model_args;
mod output_paths;
mod plot;
mod predict;
mod train;

/// Set on the ranks of a distributed run other than 0: rank 0 speaks for all.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn quiet() {
    QUIET.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout failed: {e}");
        std::process::exit(1);
    }
}

use clap::{Parser, Subcommand};
use wgpu_batchnorm::cpu::CpuBatchNorm;
use wgpu_batchnorm::{BatchNorm, BatchNormConfig, Context, Mode};

#[derive(Parser)]
#[command(name = "bnorm", about = "Batch normalization on any GPU through wgpu")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Trains the tutorial's network with and without batch norm (the default command).
    Train(Box<train::Args>),
    /// Runs a saved model on data: accuracy, and one sample's path through the layers.
    Predict(Box<predict::Args>),
    /// Every adapter wgpu finds, and the one the engine runs on.
    Info,
    /// CPU path against GPU path for forward, inference and backward, with copy bandwidths.
    Bench(bench::Args),
    /// Normalizes a batch on the GPU and checks it against the CPU reference.
    Check {
        /// Rows of the batch.
        #[arg(long, default_value_t = 1000)]
        rows: usize,
        /// Channels.
        #[arg(long, default_value_t = 10)]
        channels: usize,
    },
}

/// Largest |a - b| over two equally long slices.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check(rows: usize, channels: usize) -> Result<(), Box<dyn std::error::Error>> {
    // The batch's size, checked against the memory the check will hold at once (x, the GPU's
    // y and the reference's y, in f32 and f64) and reserved (fallibly) before anything else.
    let len = rows
        .checked_mul(channels)
        .ok_or_else(|| format!("--rows {rows} x --channels {channels} values cannot be counted"))?;
    wgpu_batchnorm::internal::check_host_bytes(
        "the check's tensors (x and both outputs)",
        (len as u64).saturating_mul(4 * 4),
    )?;
    let mut x: Vec<f32> = Vec::new();
    x.try_reserve_exact(len)
        .map_err(|_| wgpu_batchnorm::Error::HostMemory {
            what: "the batch",
            needed: (len as u64).saturating_mul(4),
            available: None,
        })?;
    let ctx = Context::new()?;
    say!("device: {}", ctx.describe());
    let shape = [rows, channels];
    // A deterministic batch whose channels have very different means and spreads.
    x.extend((0..len).map(|i| {
        let c = (i % channels) as f32;
        let t = ((i as u32).wrapping_mul(2_654_435_761) >> 8) as f32 / (1 << 24) as f32;
        c * 100.0 + (t - 0.5) * (c + 1.0)
    }));
    let config = BatchNormConfig::keras(channels).with_relu(true);
    let mut gpu = BatchNorm::new(&ctx, config.clone())?;
    let mut cpu = CpuBatchNorm::new(config)?;
    for step in 1..=3 {
        let y = gpu.forward_host(&x, &shape, Mode::Training)?;
        let y_ref = cpu.forward(&x, &shape, Mode::Training)?;
        let err = max_abs_diff(&y, &y_ref);
        say!("training step {step}: max |y_gpu - y_cpu| = {err:.3e}");
    }
    let rm = gpu.running_mean()?;
    let err = rm
        .iter()
        .zip(cpu.running_mean())
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0f32, f32::max);
    say!("running mean after 3 steps: max relative error {err:.3e}");
    let y = gpu.forward_host(&x, &shape, Mode::Inference)?;
    let y_ref = cpu.forward(&x, &shape, Mode::Inference)?;
    let err = max_abs_diff(&y, &y_ref);
    say!("inference: max |y_gpu - y_cpu| = {err:.3e}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,wgpu_hal::gles::egl=off"),
    )
    .init();
    let cli = Cli::parse();
    let result = match cli
        .command
        .unwrap_or_else(|| Command::Train(Box::default()))
    {
        Command::Info => {
            // Every adapter, then the one a plain run picks.
            for (name, backend, kind) in Context::adapters(None) {
                say!("adapter: {name} ({backend:?}, {kind:?})");
            }
            Context::new()
                .map(|ctx| say!("in use: {}", ctx.describe()))
                .map_err(Into::into)
        }
        Command::Check { rows, channels } => check(rows, channels),
        Command::Bench(args) => bench::run(args),
        Command::Train(args) => train::run_cli(*args),
        Command::Predict(args) => predict::run(*args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
