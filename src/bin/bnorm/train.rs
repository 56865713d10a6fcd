//! `bnorm train` (the default command): the tutorial's network (dense or convolutional, or
//! the user's) with and without batch norm, from the same initial weights, side by side.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use wgpu_batchnorm::internal::check_writable;
use wgpu_batchnorm::nn::reference::{CpuNetwork, Float};
use wgpu_batchnorm::nn::{
    check_classes, check_network_labeled, save_weights, Dataset, FitOptions, History, LayerSpec,
    Optimizer, Sequential, Shape, Weight,
};
use wgpu_batchnorm::{Collective, Context, Exchange};

use crate::model_args::{DataArgs, ModelArgs};
use crate::plot::{self, Series, COLORS};

/// What the arguments settle once the data is known.
struct Plan {
    epochs: usize,
    batch_size: usize,
    validation_split: f64,
}

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Passes over the data (default: 5, or 10 for a convolutional network: the cnn model, or
    /// a --layers / --model-json network with an image input or a conv or pooling layer).
    #[arg(long)]
    epochs: Option<usize>,
    /// Rows per training step, the last partial batch kept (default: 32, or 16 for a
    /// convolutional network: twice the steps, so the moving averages of batch norm settle
    /// within 10 epochs of the digits).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate (default: Adam 1e-3, SGD 1e-2).
    #[arg(long)]
    lr: Option<f64>,
    /// adam or sgd.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// SGD momentum (default: 0; only with --optimizer sgd).
    #[arg(long)]
    momentum: Option<f64>,
    /// Seed of the initial weights, the shuffles and the embedded data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Train only the network without batch norm.
    #[arg(long)]
    no_bn: bool,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Hold out this fraction of the rows (the last ones) for validation: 0 (none) or
    /// strictly between 0 and 1 (default: 0.2 for a convolutional network, else 0).
    #[arg(long)]
    validation_split: Option<f64>,
    /// gpu, cpu (f32, every core) or cpu-f64 (the reference); gpu falls back to cpu when no
    /// adapter exists.
    #[arg(long, default_value = "gpu")]
    device: String,
    /// Save the trained model's weights as safetensors: the model with batch norm, or with
    /// --no-bn the one without.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Draw loss and accuracy per epoch as a PNG (blue: with BN, orange: without; solid:
    /// training, dashed: validation).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Do not shuffle between epochs.
    #[arg(long)]
    no_shuffle: bool,
    /// Data-parallel training across the processes of `mpiexec -n N bnorm train
    /// --distributed ...`: each takes a share of every batch, batch norm synchronized, the
    /// gradients summed; rank 0 prints and saves (needs a build with `--features mpi`).
    #[arg(long)]
    distributed: bool,
}

impl Default for Args {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            args: Args,
        }
        Wrap::parse_from(["train"]).args
    }
}

/// The optimizer the arguments ask for, checked.
fn optimizer(args: &Args) -> Result<Optimizer, Box<dyn std::error::Error>> {
    let optimizer = match args.optimizer.as_str() {
        "adam" if args.momentum.is_some() => {
            return Err("--momentum does not apply to adam (it is SGD's): give --optimizer sgd, or drop --momentum".into())
        }
        "adam" => Optimizer::adam(args.lr.unwrap_or(1e-3)),
        "sgd" => Optimizer::sgd(args.lr.unwrap_or(1e-2), args.momentum.unwrap_or(0.0)),
        o => return Err(format!("unknown optimizer {o:?} (adam or sgd)").into()),
    };
    optimizer.validate()?;
    Ok(optimizer)
}

/// One training run; returns the history, seconds spent in fit, and the final weights.
fn run(
    args: &Args,
    plan: &Plan,
    ctx: Option<&Context>,
    comm: Option<&mut dyn Collective>,
    (data, val): (&Dataset, Option<&Dataset>),
    bn: bool,
    bar: &ProgressBar,
) -> Result<(History, f64, Vec<Weight>), Box<dyn std::error::Error>> {
    // Under --distributed a rank that cannot build its network says so to the others, who are
    // already waiting in the first exchange of `fit_distributed`.
    let built = optimizer(args).and_then(|o| Ok((o, args.model.network(data, bn)?)));
    let built = match (built, ctx, comm) {
        (Ok(b), ctx, comm) => (b, ctx, comm),
        (Err(e), _, Some(comm)) => return Err(Exchange::new(comm).fail(e)),
        (Err(e), _, _) => return Err(e),
    };
    let ((optimizer, (input, layers)), ctx, comm) = built;
    let options = FitOptions {
        batch_size: plan.batch_size,
        epochs: plan.epochs,
        shuffle: !args.no_shuffle,
        seed: args.seed,
    };
    let label = if bn { "with BN" } else { "without BN" };
    let tick = |e: usize, h: &History| {
        let val = h
            .val_accuracy
            .get(e)
            .map_or(String::new(), |a| format!(" val accuracy {a:.4}"));
        bar.set_message(format!(
            "{label}: epoch {} loss {:.4} accuracy {:.4}{val}",
            e + 1,
            h.loss[e],
            h.accuracy[e]
        ));
        bar.inc(1);
    };
    // The clock starts once the model is built (its pipelines compiled), as a framework's
    // training loop is timed; the first epoch still builds each batch size's buffers.
    match ctx {
        Some(ctx) => {
            let model = Sequential::new(ctx, input, &layers, args.seed, optimizer);
            let (mut model, comm) = match (model, comm) {
                (Ok(m), comm) => (m, comm),
                (Err(e), Some(comm)) => return Err(Exchange::new(comm).fail(e.into())),
                (Err(e), None) => return Err(e.into()),
            };
            if bn {
                bar.suspend(|| say!("{}", model.summary()));
            }
            let t = Instant::now();
            let h = match comm {
                Some(comm) => model.fit_distributed(data, &options, val, comm)?,
                None => model.fit(data, &options, val, tick)?,
            };
            let secs = t.elapsed().as_secs_f64();
            Ok((h, secs, model.weights()?))
        }
        None if args.device == "cpu-f64" => cpu_fit::<f64>(
            (input, &layers, args.seed, optimizer),
            data,
            &options,
            val,
            tick,
        ),
        None => cpu_fit::<f32>(
            (input, &layers, args.seed, optimizer),
            data,
            &options,
            val,
            tick,
        ),
    }
}

/// A run on the CPU path in `T` (f32: the fast path; f64: the reference).
fn cpu_fit<T: Float>(
    (input, layers, seed, optimizer): (Shape, &[LayerSpec], u64, Optimizer),
    data: &Dataset,
    options: &FitOptions,
    val: Option<&Dataset>,
    tick: impl FnMut(usize, &History),
) -> Result<(History, f64, Vec<Weight>), Box<dyn std::error::Error>> {
    // Refused before the parameters are allocated, not after.
    CpuNetwork::<T>::check_memory(input, layers, options.batch_size.min(data.rows()))?;
    let mut model = CpuNetwork::<T>::new(input, layers, seed, optimizer)?;
    let t = Instant::now();
    let h = model.fit(data, options, val, tick)?;
    let secs = t.elapsed().as_secs_f64();
    Ok((h, secs, model.weights()))
}

/// Everything that can be checked before any training: numbers, names, output paths.
fn check_args(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // First: an output on an input's path would destroy it whatever else is wrong.
    let inputs: Vec<(&str, PathBuf)> = [args.data.inputs(), args.model.inputs()].concat();
    let inputs: Vec<(&str, &Path)> = inputs.iter().map(|(f, p)| (*f, p.as_path())).collect();
    let outputs: Vec<(&str, &Path)> = [("--save", &args.save), ("--plot", &args.plot)]
        .into_iter()
        .filter_map(|(f, p)| p.as_deref().map(|p| (f, p)))
        .collect();
    crate::output_paths::check_distinct(&inputs, &outputs)?;
    if args.epochs == Some(0) {
        return Err("--epochs must be at least 1".into());
    }
    if args.batch_size == Some(0) {
        return Err("--batch-size must be at least 1".into());
    }
    args.model.check()?;
    args.data.check()?;
    if let Some(v) = args.validation_split {
        if !(v == 0.0 || (v > 0.0 && v < 1.0)) {
            return Err(format!(
                "--validation-split must be 0 (none) or strictly between 0 and 1, got {v}"
            )
            .into());
        }
    }
    if args.distributed && args.device != "gpu" {
        return Err(
            "--distributed trains on the GPU path (each rank its own device); drop --device cpu"
                .into(),
        );
    }
    if !matches!(args.device.as_str(), "gpu" | "cpu" | "cpu-f64") {
        return Err(format!("unknown device {:?} (gpu, cpu or cpu-f64)", args.device).into());
    }
    optimizer(args)?;
    if let Some(path) = &args.save {
        check_writable(path).map_err(|e| format!("--save {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        plot::check_png_path(path).map_err(|e| format!("--plot: {e}"))?;
    }
    Ok(())
}

/// The runs of the table: with batch norm and without, or only without (`--no-bn`).
fn runs(args: &Args) -> Vec<bool> {
    if args.no_bn {
        vec![false]
    } else {
        vec![true, false]
    }
}

/// What a run needs once the arguments are checked and the data is loaded.
struct Prepared {
    plan: Plan,
    data: Dataset,
    val: Option<Dataset>,
    ctx: Option<Context>,
}

/// Everything this process does on its own before training: the arguments, the output
/// paths, the data, the device. Under --distributed it runs after joining the ranks, so a
/// failure here reaches every rank instead of leaving the others waiting.
fn prepare(args: &Args) -> Result<Prepared, Box<dyn std::error::Error>> {
    check_args(args)?;
    let all = args.data.load_for(&args.model, args.seed)?;
    let cnn = args.model.is_cnn(&all);
    let plan = Plan {
        epochs: args.epochs.unwrap_or(if cnn { 10 } else { 5 }),
        batch_size: args.batch_size.unwrap_or(if cnn { 16 } else { 32 }),
        validation_split: args.validation_split.unwrap_or(if cnn { 0.2 } else { 0.0 }),
    };
    let (data, val) = if plan.validation_split > 0.0 {
        let (a, b) = all.into_validation_split(plan.validation_split)?;
        (a, Some(b))
    } else {
        (all, None)
    };
    // The epochs' history must fit in memory (the epoch count is the user's).
    let options = FitOptions {
        batch_size: plan.batch_size,
        epochs: plan.epochs,
        ..FitOptions::default()
    };
    options.validate()?;
    options
        .check_history(data.rows())
        .map_err(|e| format!("--epochs {}: {e}", plan.epochs))?;
    // Both networks are checked before either trains (a table needs both).
    // Errors name the user's layers (an imported model's by their Keras position and name;
    // the twin without BN has other positions).
    let labels = args.model.labels()?;
    for bn in runs(args) {
        let (input, layers) = args.model.network(&data, bn)?;
        check_network_labeled(input, &layers, if bn { &labels } else { &[] })
            .and_then(|()| check_classes(&layers, &data))
            .and_then(|()| val.as_ref().map_or(Ok(()), |v| check_classes(&layers, v)))
            .map_err(|e| {
                format!(
                    "the network {}: {e}",
                    if bn { "with BN" } else { "without BN" }
                )
            })?;
    }
    let ctx = match args.device.as_str() {
        "gpu" => match Context::new() {
            Ok(ctx) => Some(ctx),
            // Every rank of a distributed run trains on its GPU: one on the CPU path would
            // train alone while the others wait for it.
            Err(e @ wgpu_batchnorm::Error::NoAdapter(_)) if args.distributed => {
                return Err(format!("{e}: --distributed trains on a GPU on every rank").into())
            }
            // A machine with no adapter at all still runs the job, on the CPU path.
            Err(e @ wgpu_batchnorm::Error::NoAdapter(_)) => {
                eprintln!("warning: {e}; training on the CPU path instead");
                None
            }
            Err(e) => return Err(e.into()),
        },
        _ => None,
    };
    Ok(Prepared {
        plan,
        data,
        val,
        ctx,
    })
}

pub fn run_cli(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // The processes of a distributed run join MPI's world first (rank 0 speaks for all):
    // whatever fails after this point is reported to every rank.
    #[cfg(feature = "mpi")]
    let universe = match args.distributed {
        true => Some(
            wgpu_batchnorm::mpi::initialize()
                .ok_or("--distributed: MPI could not be initialized (run it under mpiexec)")?,
        ),
        false => None,
    };
    #[cfg(feature = "mpi")]
    let mut comm = universe
        .as_ref()
        .map(|u| wgpu_batchnorm::MpiCollective::new(u.world()));
    #[cfg(not(feature = "mpi"))]
    let mut comm: Option<wgpu_batchnorm::ThreadGroup> = None;
    if args.distributed && comm.is_none() {
        return Err("--distributed needs a build with MPI: cargo build --release --features mpi (and mpiexec -n N to start it)".into());
    }
    // Rank 0 prints, draws and saves; the others train in silence.
    let leader = comm.as_ref().is_none_or(|c| c.rank() == 0);
    if !leader {
        crate::quiet();
    }
    // Every rank reports whether it is ready; one that is not makes every rank fail here.
    let prepared = match (prepare(&args), comm.as_mut()) {
        (Ok(p), Some(c)) => {
            Exchange::new(c).gather(Ok::<_, Box<dyn std::error::Error>>(Vec::new()))?;
            p
        }
        (Err(e), Some(c)) => return Err(Exchange::new(c).fail(e)),
        (p, None) => p?,
    };
    let Prepared {
        plan,
        data,
        val,
        ctx,
    } = prepared;
    let runs = runs(&args);
    match &ctx {
        Some(ctx) => say!("device: {}", ctx.describe()),
        None if args.device == "cpu-f64" => say!("device: CPU (f64 reference)"),
        None => say!(
            "device: CPU (f32, {} threads)",
            rayon::current_num_threads()
        ),
    }
    say!(
        "data: {} rows {} x {} classes{}{}",
        data.rows(),
        data.shape(),
        data.classes(),
        args.data.describe(),
        val.as_ref().map_or(String::new(), |v| format!(
            "; {} rows held out for validation",
            v.rows()
        ))
    );
    let bar = if leader {
        ProgressBar::new((runs.len() as u64).saturating_mul(plan.epochs as u64))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} epochs  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut results = Vec::new();
    for &bn in &runs {
        results.push((
            bn,
            run(
                &args,
                &plan,
                ctx.as_ref(),
                comm.as_mut().map(|c| c as &mut dyn Collective),
                (&data, val.as_ref()),
                bn,
                &bar,
            )?,
        ));
    }
    bar.finish_and_clear();

    // In u128: the product of two user numbers, only displayed.
    let steps = data.rows().div_ceil(plan.batch_size) as u128 * plan.epochs as u128;
    let name = |bn: bool| if bn { "BN" } else { "noBN" };
    let mut header = format!("\n{:>5}", "Epoch");
    for (bn, _) in &results {
        header.push_str(&format!(
            " | {:>10} {:>9}",
            format!("Loss {}", name(*bn)),
            "Accuracy"
        ));
        if val.is_some() {
            header.push_str(&format!(" {:>9} {:>8}", "val_loss", "val_acc"));
        }
    }
    say!("{header}");
    for e in 0..plan.epochs {
        let mut line = format!("{:>5}", e + 1);
        for (_, (h, _, _)) in &results {
            line.push_str(&format!(" | {:>10.4} {:>9.4}", h.loss[e], h.accuracy[e]));
            if val.is_some() {
                line.push_str(&format!(
                    " {:>9.4} {:>8.4}",
                    h.val_loss[e], h.val_accuracy[e]
                ));
            }
        }
        say!("{line}");
    }
    for (bn, (_, secs, _)) in &results {
        say!(
            "{}: {:.3} s in fit, {:.3} ms per step ({} steps)",
            if *bn { "with BN" } else { "without BN" },
            secs,
            secs * 1e3 / steps.max(1) as f64,
            steps
        );
    }
    if !leader {
        return Ok(());
    }
    if let (Some(path), Some((_, (_, _, weights)))) = (&args.save, results.first()) {
        save_weights(weights, path)?;
        say!("saved weights to {}", path.display());
    }
    if let Some(path) = &args.plot {
        // Colour: the model; solid: training, dashed: validation.
        let series = |train: fn(&History) -> &Vec<f64>, valid: fn(&History) -> &Vec<f64>| {
            let mut out = Vec::new();
            for (bn, (h, _, _)) in &results {
                let model = if *bn { "with BN" } else { "without BN" };
                let color = COLORS[if *bn { 0 } else { 1 }];
                let points = |v: &Vec<f64>| -> Vec<(f64, f64)> {
                    v.iter()
                        .enumerate()
                        .map(|(e, &y)| ((e + 1) as f64, y))
                        .collect()
                };
                out.push(Series {
                    label: format!("{model}, training"),
                    points: points(train(h)),
                    color,
                    dashed: false,
                });
                if !valid(h).is_empty() {
                    out.push(Series {
                        label: format!("{model}, validation"),
                        points: points(valid(h)),
                        color,
                        dashed: true,
                    });
                }
            }
            out
        };
        plot::two_panels(
            path,
            "epoch",
            [
                ("Loss", &series(|h| &h.loss, |h| &h.val_loss)),
                ("Accuracy", &series(|h| &h.accuracy, |h| &h.val_accuracy)),
            ],
        )?;
        say!("wrote {}", path.display());
    }
    Ok(())
}
