//! `bnorm bench --train`: what one training step of the tutorial network records (dispatches,
//! compute passes, copies, submits) and what it costs on each path, over a sweep of widths.

use std::time::Instant;

use wgpu_batchnorm::nn::reference::{CpuModel, CpuModelF32};
use wgpu_batchnorm::nn::{tutorial_layers, Dataset, FitOptions, Optimizer, Sequential};
use wgpu_batchnorm::{recorded_work, Context};

/// (batch, hidden) of the sweep: the tutorial's size up to batch 1024 x hidden 1024.
const SWEEP: [(usize, usize); 4] = [(32, 10), (256, 64), (1024, 256), (1024, 1024)];

/// Rows of the data set the steps run over.
const ROWS: usize = 2048;

pub fn run(gpu: Option<&Context>, epochs: usize) -> Result<(), Box<dyn std::error::Error>> {
    let data = Dataset::synthetic(ROWS, 20, 1);
    say!(
        "\ntraining steps: {ROWS} rows x 20 features -> Dense(hidden) [-> BN] -> ReLU -> Dense(3), Adam"
    );
    say!(
        "{:>6} {:>7} {:>3} | {:>10} {:>8} {:>7} {:>8} | {:>12} {:>12} {:>12}",
        "batch",
        "hidden",
        "BN",
        "dispatches",
        "passes",
        "copies",
        "submits",
        "GPU ms/step",
        "CPU f32",
        "CPU f64"
    );
    for (batch, hidden) in SWEEP {
        for bn in [true, false] {
            let layers = tutorial_layers(bn, hidden, 3);
            let options = FitOptions {
                batch_size: batch,
                epochs,
                shuffle: true,
                seed: 0,
            };
            let steps = ROWS.div_ceil(batch).saturating_mul(epochs);
            // What one step records, counted on a step after the first (built once).
            let (per_step, gpu_ms) = match gpu {
                Some(ctx) => {
                    let mut m = Sequential::new(ctx, 20, &layers, 0, Optimizer::default())?;
                    let first = Dataset::synthetic(batch, 20, 2);
                    m.train_batch(&first)?;
                    let before = recorded_work();
                    m.train_batch(&first)?;
                    let step = recorded_work() - before;
                    m.weights()?; // waits for the GPU
                    let t = Instant::now();
                    m.fit(&data, &options, None, |_, _| {})?;
                    (
                        Some(step),
                        Some(t.elapsed().as_secs_f64() * 1e3 / steps as f64),
                    )
                }
                None => (None, None),
            };
            let mut fast = CpuModelF32::new(20, &layers, 0, Optimizer::default())?;
            fast.train_batch(&Dataset::synthetic(batch, 20, 2))?; // buffers sized once
            let t = Instant::now();
            fast.fit(&data, &options, None, |_, _| {})?;
            let fast_ms = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
            let mut cpu = CpuModel::new(20, &layers, 0, Optimizer::default())?;
            let t = Instant::now();
            cpu.fit(&data, &options, None, |_, _| {})?;
            let cpu_ms = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
            let count = |f: fn(&wgpu_batchnorm::WorkCounts) -> u64| {
                per_step.as_ref().map_or("-".into(), |w| f(w).to_string())
            };
            say!(
                "{:>6} {:>7} {:>3} | {:>10} {:>8} {:>7} {:>8} | {:>12} {:>12.3} {:>12.3}",
                batch,
                hidden,
                if bn { "yes" } else { "no" },
                count(|w| w.dispatches),
                count(|w| w.passes),
                count(|w| w.copies),
                count(|w| w.submits),
                gpu_ms.map_or("-".into(), |m| format!("{m:.3}")),
                fast_ms,
                cpu_ms
            );
        }
    }
    say!(
        "\nCounts are of one step (`train_batch`); in `fit` a whole epoch of steps is one submit.\n\
         ms/step: wall time of `fit` over {epochs} epoch(s) divided by its steps (GPU: submit to\n\
         the epoch's readback; CPU: the f32 path and the f64 reference)."
    );
    Ok(())
}
