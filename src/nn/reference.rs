//! The CPU reference network: the same layers, loss and optimizers as
//! [`Sequential`](crate::nn::Sequential), in f64. It is the oracle of the GPU training stack (gradient
//! checks, step-by-step comparisons) and the `--device cpu` path of `bnorm train`.

use crate::error::{Error, Result};
use crate::nn::data::Dataset;
use crate::nn::spec::{
    self, glorot_uniform, Block, EpochMetrics, FitOptions, History, LayerSpec, Optimizer, Weight,
};

const BN_EPS: f64 = 1e-3;
const BN_MOMENTUM: f64 = 0.99;
/// Keras' backend epsilon: probabilities are clipped to [1e-7, 1 - 1e-7] before the log.
const CLIP_EPS: f64 = 1e-7;

/// The dropout mask of `data.wgsl`, bit for bit.
pub fn dropout_keep(i: u32, step: u32, seed: u32, rate: f32) -> bool {
    let mut h = i
        .wrapping_mul(747_796_405)
        .wrapping_add(2_891_336_453)
        .wrapping_add(seed.wrapping_mul(277_803_737))
        .wrapping_add(step.wrapping_mul(2_654_435_761));
    h = ((h >> ((h >> 28) + 4)) ^ h).wrapping_mul(277_803_737);
    h ^= h >> 22;
    (h >> 8) as f32 * (1.0 / 16_777_216.0) >= rate
}

/// What backward needs from a block's forward.
enum Cache {
    Dense {
        input: Vec<f64>,
        output: Vec<f64>,
    },
    Norm {
        xhat: Vec<f64>,
        inv_std: Vec<f64>,
        output: Vec<f64>,
    },
    Dropout,
}

/// The f64 twin of `Sequential`.
#[derive(Debug, Clone)]
pub struct CpuModel {
    blocks: Vec<Block>,
    input: usize,
    /// Trainable tensors in weight order: Dense kernel, bias; BN gamma, beta.
    params: Vec<Vec<f64>>,
    /// BN moving mean and variance.
    running: Vec<(Vec<f64>, Vec<f64>)>,
    m: Vec<Vec<f64>>,
    v: Vec<Vec<f64>>,
    steps: u64,
    optimizer: Optimizer,
}

impl CpuModel {
    /// The same network and initial weights as `Sequential::new` with the same arguments.
    pub fn new(
        input: usize,
        layers: &[LayerSpec],
        seed: u64,
        optimizer: Optimizer,
    ) -> Result<Self> {
        let blocks = spec::blocks(input, layers)?;
        optimizer.validate()?;
        // Parameters, gradients and Adam's two moments, in f64: refuse before allocating.
        let values = spec::parameter_count(&blocks);
        crate::memory::check_host_bytes(
            "the model's parameters",
            (values as u64).saturating_mul(32),
        )?;
        let mut params = Vec::new();
        let mut running = Vec::new();
        let mut dense = 0;
        for b in &blocks {
            match *b {
                Block::Dense { inp, out, .. } => {
                    params.push(
                        glorot_uniform(seed, dense, inp, out)
                            .iter()
                            .map(|&v| v as f64)
                            .collect(),
                    );
                    params.push(vec![0.0; out]);
                    dense += 1;
                }
                Block::Norm { channels, .. } => {
                    params.push(vec![1.0; channels]);
                    params.push(vec![0.0; channels]);
                    running.push((vec![0.0; channels], vec![1.0; channels]));
                }
                Block::Dropout { .. } => {}
            }
        }
        let zeros: Vec<Vec<f64>> = params.iter().map(|p| vec![0.0; p.len()]).collect();
        Ok(CpuModel {
            blocks,
            input,
            params,
            running,
            m: zeros.clone(),
            v: zeros,
            steps: 0,
            optimizer,
        })
    }

    /// Output classes.
    pub fn classes(&self) -> usize {
        self.blocks.last().map_or(0, Block::width)
    }

    /// Forward over `rows` rows; returns the logits and the caches.
    fn forward(&mut self, x: &[f64], rows: usize, training: bool) -> (Vec<f64>, Vec<Cache>) {
        let mut a = x.to_vec();
        let mut caches = Vec::new();
        let (mut p, mut r) = (0, 0);
        for b in &self.blocks {
            match *b {
                Block::Dense { inp, out, relu } => {
                    let (w, bias) = (&self.params[p], &self.params[p + 1]);
                    let mut y = vec![0.0; rows * out];
                    for i in 0..rows {
                        for o in 0..out {
                            let mut s = bias[o];
                            for k in 0..inp {
                                s += a[i * inp + k] * w[k * out + o];
                            }
                            y[i * out + o] = if relu && s < 0.0 { 0.0 } else { s };
                        }
                    }
                    caches.push(Cache::Dense {
                        input: a,
                        output: y.clone(),
                    });
                    a = y;
                    p += 2;
                }
                Block::Norm { channels: c, relu } => {
                    let (gamma, beta) = (&self.params[p], &self.params[p + 1]);
                    let (rm, rv) = &mut self.running[r];
                    let mut mean = vec![0.0; c];
                    let mut var = vec![0.0; c];
                    if training {
                        for j in 0..c {
                            mean[j] = (0..rows).map(|i| a[i * c + j]).sum::<f64>() / rows as f64;
                            var[j] = (0..rows)
                                .map(|i| (a[i * c + j] - mean[j]).powi(2))
                                .sum::<f64>()
                                / rows as f64;
                            rm[j] = BN_MOMENTUM * rm[j] + (1.0 - BN_MOMENTUM) * mean[j];
                            rv[j] = BN_MOMENTUM * rv[j] + (1.0 - BN_MOMENTUM) * var[j];
                        }
                    } else {
                        mean.clone_from(rm);
                        var.clone_from(rv);
                    }
                    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect();
                    let mut xhat = vec![0.0; rows * c];
                    let mut y = vec![0.0; rows * c];
                    for i in 0..rows {
                        for j in 0..c {
                            let h = (a[i * c + j] - mean[j]) * inv_std[j];
                            xhat[i * c + j] = h;
                            let v = gamma[j] * h + beta[j];
                            y[i * c + j] = if relu && v < 0.0 { 0.0 } else { v };
                        }
                    }
                    caches.push(Cache::Norm {
                        xhat,
                        inv_std,
                        output: y.clone(),
                    });
                    a = y;
                    p += 2;
                    r += 1;
                }
                Block::Dropout { rate, seed, .. } => {
                    if training {
                        let scale = 1.0 / (1.0 - rate as f64);
                        for (i, v) in a.iter_mut().enumerate() {
                            *v = if dropout_keep(i as u32, self.steps as u32, seed, rate) {
                                *v * scale
                            } else {
                                0.0
                            };
                        }
                    }
                    caches.push(Cache::Dropout);
                }
            }
        }
        (a, caches)
    }

    /// Mean clamped cross-entropy, correct count, and d(loss)/d(logits).
    fn loss(&self, logits: &[f64], labels: &[u32]) -> (f64, f64, Vec<f64>) {
        let k = self.classes();
        let rows = labels.len();
        let (mut loss, mut hits) = (0.0, 0.0);
        let mut d = vec![0.0; logits.len()];
        for (i, &y) in labels.iter().enumerate() {
            let z = &logits[i * k..(i + 1) * k];
            let (arg, mx) =
                z.iter().enumerate().fold(
                    (0, f64::MIN),
                    |(ai, am), (j, &v)| if v > am { (j, v) } else { (ai, am) },
                );
            let s: f64 = z.iter().map(|v| (v - mx).exp()).sum();
            // Keras clips the probability (not its log), so the clip's edge is where Keras has it.
            let p_y = (z[y as usize] - mx).exp() / s;
            let clipped = p_y.clamp(CLIP_EPS, 1.0 - CLIP_EPS);
            loss -= clipped.ln();
            hits += (arg == y as usize) as u32 as f64;
            if clipped == p_y {
                for j in 0..k {
                    d[i * k + j] =
                        ((z[j] - mx).exp() / s - (j == y as usize) as u32 as f64) / rows as f64;
                }
            }
        }
        (loss / rows as f64, hits / rows as f64, d)
    }

    /// Gradients of every trainable tensor for one batch (forward in training mode); returns
    /// (loss, accuracy, gradients in weight order). Running statistics advance as in a step.
    pub fn gradients(&mut self, batch: &Dataset) -> Result<(f64, f64, Vec<Vec<f64>>)> {
        self.check(batch)?;
        let rows = batch.rows();
        let x: Vec<f64> = batch.x().iter().map(|&v| v as f64).collect();
        let (logits, caches) = self.forward(&x, rows, true);
        let (loss, acc, mut d) = self.loss(&logits, batch.labels());
        let mut grads: Vec<Vec<f64>> = self.params.iter().map(|p| vec![0.0; p.len()]).collect();
        let mut p = self.params.len();
        for (b, cache) in self.blocks.iter().zip(&caches).rev() {
            match (*b, cache) {
                (Block::Dense { inp, out, relu }, Cache::Dense { input, output }) => {
                    p -= 2;
                    if relu {
                        for (g, &y) in d.iter_mut().zip(output) {
                            if y <= 0.0 {
                                *g = 0.0;
                            }
                        }
                    }
                    let w = &self.params[p];
                    let mut dx = vec![0.0; rows * inp];
                    for i in 0..rows {
                        for o in 0..out {
                            let g = d[i * out + o];
                            grads[p + 1][o] += g;
                            for k in 0..inp {
                                grads[p][k * out + o] += input[i * inp + k] * g;
                                dx[i * inp + k] += g * w[k * out + o];
                            }
                        }
                    }
                    d = dx;
                }
                (
                    Block::Norm { channels: c, relu },
                    Cache::Norm {
                        xhat,
                        inv_std,
                        output,
                    },
                ) => {
                    p -= 2;
                    if relu {
                        for (g, &y) in d.iter_mut().zip(output) {
                            if y <= 0.0 {
                                *g = 0.0;
                            }
                        }
                    }
                    let gamma = &self.params[p];
                    let n = rows as f64;
                    let mut dx = vec![0.0; rows * c];
                    for j in 0..c {
                        let db: f64 = (0..rows).map(|i| d[i * c + j]).sum();
                        let dg: f64 = (0..rows).map(|i| d[i * c + j] * xhat[i * c + j]).sum();
                        grads[p][j] = dg;
                        grads[p + 1][j] = db;
                        for i in 0..rows {
                            let k = i * c + j;
                            dx[k] = gamma[j] * inv_std[j] / n * (n * d[k] - db - xhat[k] * dg);
                        }
                    }
                    d = dx;
                }
                (Block::Dropout { rate, seed, .. }, Cache::Dropout) => {
                    let scale = 1.0 / (1.0 - rate as f64);
                    for (i, g) in d.iter_mut().enumerate() {
                        *g = if dropout_keep(i as u32, self.steps as u32, seed, rate) {
                            *g * scale
                        } else {
                            0.0
                        };
                    }
                }
                _ => return Err(Error::Model("internal: cache and block disagree".into())),
            }
        }
        Ok((loss, acc, grads))
    }

    fn check(&self, data: &Dataset) -> Result<()> {
        data.check_for(self.input, self.classes())
    }

    /// One training step on `batch`; returns (loss, accuracy) of the batch.
    pub fn train_batch(&mut self, batch: &Dataset) -> Result<(f64, f64)> {
        let (loss, acc, grads) = self.gradients(batch)?;
        self.steps += 1;
        let t = self.steps as f64;
        for ((p, g), (m, v)) in self
            .params
            .iter_mut()
            .zip(&grads)
            .zip(self.m.iter_mut().zip(self.v.iter_mut()))
        {
            match self.optimizer {
                Optimizer::Adam {
                    lr,
                    beta1,
                    beta2,
                    epsilon,
                } => {
                    let (b1, b2) = (beta1, beta2);
                    let alpha = lr * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
                    for i in 0..p.len() {
                        m[i] += (g[i] - m[i]) * (1.0 - b1);
                        v[i] += (g[i] * g[i] - v[i]) * (1.0 - b2);
                        p[i] -= alpha * m[i] / (v[i].sqrt() + epsilon);
                    }
                }
                Optimizer::Sgd { lr, momentum } => {
                    for i in 0..p.len() {
                        m[i] = momentum * m[i] - lr * g[i];
                        p[i] += m[i];
                    }
                }
            }
        }
        Ok((loss, acc))
    }

    /// Trains like `Sequential::fit` (same shuffles, same batches).
    pub fn fit(
        &mut self,
        train: &Dataset,
        options: &FitOptions,
        validation: Option<&Dataset>,
        on_epoch: impl FnMut(usize, &History),
    ) -> Result<History> {
        options.validate()?;
        self.check(train)?;
        // Activations, caches and gradients of one batch, in f64.
        let widths: usize = self.input + self.blocks.iter().map(Block::width).sum::<usize>();
        let rows = options.batch_size.min(train.rows()) as u64;
        crate::memory::check_host_bytes(
            "one batch's activations",
            rows.saturating_mul(widths as u64).saturating_mul(8 * 4),
        )?;
        options.run_epochs(
            train.rows(),
            |order| {
                let (mut loss, mut hits) = (0.0, 0.0);
                let mut batch_loss = Vec::new();
                for chunk in order.chunks(options.batch_size) {
                    let (l, a) = self.train_batch(&train.gather(chunk))?;
                    loss += l * chunk.len() as f64;
                    hits += a * chunk.len() as f64;
                    batch_loss.push(l);
                }
                let n = train.rows() as f64;
                let validation = validation.map(|v| self.evaluate(v)).transpose()?;
                Ok(EpochMetrics {
                    loss: loss / n,
                    accuracy: hits / n,
                    batch_loss,
                    validation,
                })
            },
            on_epoch,
        )
    }

    /// (loss, accuracy) in inference mode.
    pub fn evaluate(&mut self, data: &Dataset) -> Result<(f64, f64)> {
        self.check(data)?;
        let x: Vec<f64> = data.x().iter().map(|&v| v as f64).collect();
        let (logits, _) = self.forward(&x, data.rows(), false);
        let (loss, acc, _) = self.loss(&logits, data.labels());
        Ok((loss, acc))
    }

    /// Class probabilities in inference mode.
    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        if x.is_empty() || !x.len().is_multiple_of(self.input) {
            return Err(Error::LengthMismatch {
                what: "predict input",
                expected: self.input,
                got: x.len(),
            });
        }
        let rows = x.len() / self.input;
        let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let (logits, _) = self.forward(&x, rows, false);
        let k = self.classes();
        Ok(logits
            .chunks_exact(k)
            .flat_map(|z| {
                let mx = z.iter().cloned().fold(f64::MIN, f64::max);
                let s: f64 = z.iter().map(|v| (v - mx).exp()).sum();
                z.iter()
                    .map(move |v| ((v - mx).exp() / s) as f32)
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    /// Every weight in Keras layout and order.
    pub fn weights(&self) -> Vec<Weight> {
        let names = spec::weight_names(&self.blocks);
        let mut values: Vec<&Vec<f64>> = Vec::new();
        let (mut p, mut r) = (0, 0);
        for b in &self.blocks {
            match b {
                Block::Dense { .. } => {
                    values.extend([&self.params[p], &self.params[p + 1]]);
                    p += 2;
                }
                Block::Norm { .. } => {
                    values.extend([
                        &self.params[p],
                        &self.params[p + 1],
                        &self.running[r].0,
                        &self.running[r].1,
                    ]);
                    p += 2;
                    r += 1;
                }
                Block::Dropout { .. } => {}
            }
        }
        names
            .into_iter()
            .zip(values)
            .map(|((name, shape, _), v)| Weight {
                name,
                shape,
                values: v.iter().map(|&x| x as f32).collect(),
            })
            .collect()
    }

    /// Saves every weight to a safetensors file (atomically), as `Sequential::save` does.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        crate::nn::save_weights(&self.weights(), path)
    }

    /// Loads a safetensors file; the whole file is checked before any weight changes.
    pub fn load(&mut self, path: &std::path::Path) -> Result<()> {
        let file = crate::nn::load_weights(path)?;
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

    /// Sets one weight by its Keras name.
    pub fn set_weight(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let names = spec::weight_names(&self.blocks);
        let index = names
            .iter()
            .position(|(n, _, _)| n == name)
            .ok_or_else(|| Error::Model(format!("no weight named {name:?}")))?;
        let (mut p, mut r, mut seen) = (0, 0, 0);
        let v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
        for b in &self.blocks {
            let slots: Vec<&mut Vec<f64>> = match b {
                Block::Dense { .. } => {
                    let (a, rest) = self.params[p..].split_at_mut(1);
                    p += 2;
                    vec![&mut a[0], &mut rest[0]]
                }
                Block::Norm { .. } => {
                    let (a, rest) = self.params[p..].split_at_mut(1);
                    let run = &mut self.running[r];
                    p += 2;
                    r += 1;
                    vec![&mut a[0], &mut rest[0], &mut run.0, &mut run.1]
                }
                Block::Dropout { .. } => vec![],
            };
            for s in slots {
                if seen == index {
                    if s.len() != v.len() {
                        return Err(Error::LengthMismatch {
                            what: "weight values",
                            expected: s.len(),
                            got: v.len(),
                        });
                    }
                    s.clone_from(&v);
                }
                seen += 1;
            }
        }
        Ok(())
    }

    /// Trainable tensors in weight order (for gradient checks).
    pub fn trainable(&self) -> &[Vec<f64>] {
        &self.params
    }

    /// Mutable trainable tensors (for finite differences).
    pub fn trainable_mut(&mut self) -> &mut [Vec<f64>] {
        &mut self.params
    }

    /// Mean loss of `batch` in training mode without updating anything (running statistics
    /// are restored): the function that finite differences differentiate.
    pub fn training_loss(&mut self, batch: &Dataset) -> Result<f64> {
        self.check(batch)?;
        let saved = self.running.clone();
        let x: Vec<f64> = batch.x().iter().map(|&v| v as f64).collect();
        let (logits, _) = self.forward(&x, batch.rows(), true);
        self.running = saved;
        Ok(self.loss(&logits, batch.labels()).0)
    }
}
