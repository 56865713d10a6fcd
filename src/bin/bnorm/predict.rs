//! `bnorm predict`: a saved model (safetensors in Keras names, and the network it was trained
//! as) on data: loss and accuracy over every row, the first predictions, and the "data flow"
//! of one sample through the network (each layer's output shape and first values).

use std::path::PathBuf;

use wgpu_batchnorm::nn::reference::{CpuModel, CpuModelF32};
use wgpu_batchnorm::nn::{LayerTrace, Optimizer, Sequential};
use wgpu_batchnorm::Context;

use crate::model_args::{DataArgs, ModelArgs};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// The weights (`bnorm train --save`, or any safetensors file with the model's Keras
    /// names and shapes).
    #[arg(long)]
    weights: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// The network had no batch norm layers (`--no-bn` at training).
    #[arg(long)]
    no_bn: bool,
    /// The row whose path through the network is printed.
    #[arg(long, default_value_t = 0)]
    sample: usize,
    /// Values shown per layer.
    #[arg(long, default_value_t = 6)]
    show: usize,
    /// gpu, cpu (f32) or cpu-f64 (the reference).
    #[arg(long, default_value = "gpu")]
    device: String,
    /// Seed of the embedded synthetic set (when no --data is given).
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    args.model.check()?;
    args.data.check()?;
    if !matches!(args.device.as_str(), "gpu" | "cpu" | "cpu-f64") {
        return Err(format!("unknown device {:?} (gpu, cpu or cpu-f64)", args.device).into());
    }
    let data = args.data.load_for(&args.model, args.seed)?;
    if args.sample >= data.rows() {
        return Err(format!(
            "--sample {} is past the data's {} rows",
            args.sample,
            data.rows()
        )
        .into());
    }
    let (input, layers) = args.model.network(&data, !args.no_bn)?;
    // Refused naming the user's layers (an imported model's Keras position and name).
    let labels = if args.no_bn {
        Vec::new()
    } else {
        args.model.labels()?
    };
    wgpu_batchnorm::nn::check_network_labeled(input, &layers, &labels)?;
    let f = data.features();
    let one = &data.x()[args.sample * f..(args.sample + 1) * f];
    let ((loss, accuracy), probs, trace) = if args.device == "gpu" {
        let ctx = Context::new()?;
        say!("device: {}", ctx.describe());
        let mut m = Sequential::new(&ctx, input, &layers, 0, Optimizer::default())?;
        m.load(&args.weights)?;
        (m.evaluate(&data)?, m.predict(data.x())?, m.trace(one)?)
    } else if args.device == "cpu-f64" {
        say!("device: CPU (f64 reference)");
        let mut m = CpuModel::new(input, &layers, 0, Optimizer::default())?;
        m.load(&args.weights)?;
        (m.evaluate(&data)?, m.predict(data.x())?, m.trace(one)?)
    } else {
        say!("device: CPU (f32)");
        let mut m = CpuModelF32::new(input, &layers, 0, Optimizer::default())?;
        m.load(&args.weights)?;
        (m.evaluate(&data)?, m.predict(data.x())?, m.trace(one)?)
    };
    say!(
        "{} rows {}: loss {loss:.4}, accuracy {accuracy:.4}",
        data.rows(),
        data.shape()
    );
    let classes = probs.len() / data.rows();
    let predicted = |r: usize| {
        let p = &probs[r * classes..(r + 1) * classes];
        (0..classes).fold(0, |best, c| if p[c] > p[best] { c } else { best })
    };
    let first: Vec<String> = (0..data.rows().min(10))
        .map(|r| format!("{}/{}", predicted(r), data.labels()[r]))
        .collect();
    say!("predicted/label, first rows: {}", first.join(" "));
    say!(
        "\nsample {} (label {}, predicted {}) through the network:",
        args.sample,
        data.labels()[args.sample],
        predicted(args.sample)
    );
    print_trace(&trace, args.show, one);
    Ok(())
}

fn print_trace(trace: &[LayerTrace], show: usize, input: &[f32]) {
    let first = |v: &[f32]| -> String {
        let mut s: Vec<String> = v.iter().take(show).map(|x| format!("{x:>8.4}")).collect();
        if v.len() > show {
            s.push("...".into());
        }
        s.join(" ")
    };
    say!("{:<36} {:<20} first values", "layer", "output shape");
    say!("{:<36} {:<20} {}", "input", "", first(input));
    for t in trace {
        say!(
            "{:<36} {:<20} {}",
            format!("{} ({})", t.name, t.kind),
            t.shape.to_string(),
            first(&t.values)
        );
    }
}
