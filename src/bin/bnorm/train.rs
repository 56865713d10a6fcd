//! `bnorm train` (the default command): the tutorial's network with and without batch norm,
//! from the same initial Dense weights, side by side.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use wgpu_batchnorm::nn::reference::CpuModel;
use wgpu_batchnorm::nn::{
    check_writable, save_weights, tutorial_layers, Dataset, FitOptions, History, Optimizer,
    Sequential, Weight,
};
use wgpu_batchnorm::Context;

use crate::plot::{self, Series, COLORS};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Passes over the data.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Rows per training step (the last partial batch is kept).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Learning rate (default: Adam 1e-3, SGD 1e-2).
    #[arg(long)]
    lr: Option<f64>,
    /// adam or sgd.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.0)]
    momentum: f64,
    /// Seed of the initial weights, the shuffles and the embedded data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Train only the network without batch norm.
    #[arg(long)]
    no_bn: bool,
    /// Hidden units of the first Dense layer.
    #[arg(long, default_value_t = 10)]
    hidden: usize,
    /// Data: a CSV (features, then an integer label) or a features .npy (with --labels).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Labels .npy for --data X.npy: integers of shape (rows,) or one-hot (rows, classes).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// CSV with a one-hot label in its last K columns.
    #[arg(long)]
    one_hot: Option<usize>,
    /// Number of classes (default: from the labels).
    #[arg(long)]
    classes: Option<usize>,
    /// Hold out this fraction of the rows (the last ones) for validation: 0 (none) or
    /// strictly between 0 and 1.
    #[arg(long, default_value_t = 0.0)]
    validation_split: f64,
    /// gpu or cpu (the f64 reference); gpu falls back to cpu when no adapter exists.
    #[arg(long, default_value = "gpu")]
    device: String,
    /// Save the trained (batch-norm) model's weights as safetensors.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Draw loss and accuracy per epoch as a PNG (solid: with BN, dashed: without).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Do not shuffle between epochs.
    #[arg(long)]
    no_shuffle: bool,
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

fn load(args: &Args) -> Result<Dataset, Box<dyn std::error::Error>> {
    Ok(match (&args.data, &args.labels) {
        (None, _) => Dataset::synthetic(1000, 20, args.seed),
        (Some(x), Some(y)) => Dataset::from_npy(x, y, args.classes)?,
        (Some(p), None) => Dataset::from_csv(p, args.classes, args.one_hot)?,
    })
}

/// The optimizer the arguments ask for, checked.
fn optimizer(args: &Args) -> Result<Optimizer, Box<dyn std::error::Error>> {
    let optimizer = match args.optimizer.as_str() {
        "adam" => Optimizer::adam(args.lr.unwrap_or(1e-3)),
        "sgd" => Optimizer::sgd(args.lr.unwrap_or(1e-2), args.momentum),
        o => return Err(format!("unknown optimizer {o:?} (adam or sgd)").into()),
    };
    optimizer.validate()?;
    Ok(optimizer)
}

/// One training run; returns the history, seconds spent in fit, and the final weights.
fn run(
    args: &Args,
    ctx: Option<&Context>,
    data: &Dataset,
    val: Option<&Dataset>,
    bn: bool,
    bar: &ProgressBar,
) -> Result<(History, f64, Vec<Weight>), Box<dyn std::error::Error>> {
    let optimizer = optimizer(args)?;
    let layers = tutorial_layers(bn, args.hidden, data.classes().max(2));
    let options = FitOptions {
        batch_size: args.batch_size,
        epochs: args.epochs,
        shuffle: !args.no_shuffle,
        seed: args.seed,
    };
    let label = if bn { "with BN" } else { "without BN" };
    let tick = |e: usize, h: &History| {
        bar.set_message(format!(
            "{label}: epoch {} loss {:.4} accuracy {:.4}",
            e + 1,
            h.loss[e],
            h.accuracy[e]
        ));
        bar.inc(1);
    };
    let t = Instant::now();
    match ctx {
        Some(ctx) => {
            let mut model = Sequential::new(ctx, data.features(), &layers, args.seed, optimizer)?;
            if bn {
                bar.suspend(|| say!("{}", model.summary()));
            }
            let h = model.fit(data, &options, val, tick)?;
            let secs = t.elapsed().as_secs_f64();
            Ok((h, secs, model.weights()?))
        }
        None => {
            let mut model = CpuModel::new(data.features(), &layers, args.seed, optimizer)?;
            let h = model.fit(data, &options, val, tick)?;
            let secs = t.elapsed().as_secs_f64();
            Ok((h, secs, model.weights()))
        }
    }
}

/// Everything that can be checked before any training: numbers, names, output paths.
fn check_args(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.epochs == 0 {
        return Err("--epochs must be at least 1".into());
    }
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    if args.hidden == 0 {
        return Err("--hidden must be at least 1".into());
    }
    if !(args.validation_split == 0.0
        || (args.validation_split > 0.0 && args.validation_split < 1.0))
    {
        return Err(format!(
            "--validation-split must be 0 (none) or strictly between 0 and 1, got {}",
            args.validation_split
        )
        .into());
    }
    if !matches!(args.device.as_str(), "gpu" | "cpu") {
        return Err(format!("unknown device {:?} (gpu or cpu)", args.device).into());
    }
    if args.labels.is_some() && args.data.is_none() {
        return Err("--labels needs --data (the features .npy)".into());
    }
    optimizer(args)?;
    if let Some(path) = &args.save {
        check_writable(path).map_err(|e| format!("--save: {e}"))?;
    }
    if let Some(path) = &args.plot {
        plot::check_png_path(path).map_err(|e| format!("--plot: {e}"))?;
    }
    Ok(())
}

pub fn run_cli(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    check_args(&args)?;
    let all = load(&args)?;
    let (data, val) = if args.validation_split > 0.0 {
        let (a, b) = all.split_validation(args.validation_split)?;
        (a, Some(b))
    } else {
        (all, None)
    };
    let ctx = match args.device.as_str() {
        "gpu" => match Context::new() {
            Ok(ctx) => Some(ctx),
            // A machine with no adapter at all still runs the job, on the CPU path.
            Err(e @ wgpu_batchnorm::Error::NoAdapter(_)) => {
                eprintln!("warning: {e}; training on the CPU path instead");
                None
            }
            Err(e) => return Err(e.into()),
        },
        _ => None,
    };
    match &ctx {
        Some(ctx) => say!("device: {}", ctx.describe()),
        None => say!("device: CPU (f64 reference)"),
    }
    say!(
        "data: {} rows x {} features, {} classes{}",
        data.rows(),
        data.features(),
        data.classes(),
        if args.data.is_none() {
            " (embedded synthetic set)"
        } else {
            ""
        }
    );
    let runs: Vec<bool> = if args.no_bn {
        vec![false]
    } else {
        vec![true, false]
    };
    let bar = ProgressBar::new((runs.len() * args.epochs) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} epochs  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut results = Vec::new();
    for &bn in &runs {
        results.push((bn, run(&args, ctx.as_ref(), &data, val.as_ref(), bn, &bar)?));
    }
    bar.finish_and_clear();

    let steps = data.rows().div_ceil(args.batch_size) * args.epochs;
    let mut header = format!("\n{:>5}", "Epoch");
    for (bn, _) in &results {
        header.push_str(&format!(
            " | {:>10} {:>9}",
            format!("Loss {}", if *bn { "BN" } else { "noBN" }),
            "Accuracy"
        ));
    }
    if val.is_some() {
        header.push_str(" | val (first run)");
    }
    say!("{header}");
    for e in 0..args.epochs {
        let mut line = format!("{:>5}", e + 1);
        for (_, (h, _, _)) in &results {
            line.push_str(&format!(" | {:>10.4} {:>9.4}", h.loss[e], h.accuracy[e]));
        }
        if let Some((_, (h, _, _))) = results.first().filter(|_| val.is_some()) {
            line.push_str(&format!(
                " | {:.4} / {:.4}",
                h.val_loss[e], h.val_accuracy[e]
            ));
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
    if let (Some(path), Some((_, (_, _, weights)))) = (&args.save, results.first()) {
        save_weights(weights, path)?;
        say!("saved weights to {}", path.display());
    }
    if let Some(path) = &args.plot {
        let series = |f: fn(&History) -> &Vec<f64>| -> Vec<Series> {
            results
                .iter()
                .map(|(bn, (h, _, _))| Series {
                    label: if *bn {
                        "with BN".into()
                    } else {
                        "without BN".into()
                    },
                    points: f(h)
                        .iter()
                        .enumerate()
                        .map(|(e, &v)| ((e + 1) as f64, v))
                        .collect(),
                    color: COLORS[if *bn { 0 } else { 3 }],
                    dashed: !bn,
                })
                .collect()
        };
        plot::two_panels(
            path,
            "epoch",
            [
                ("Loss", &series(|h| &h.loss)),
                ("Accuracy", &series(|h| &h.accuracy)),
            ],
        )?;
        say!("wrote {}", path.display());
    }
    Ok(())
}
