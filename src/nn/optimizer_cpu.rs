//! The f64 twin of `optimizer.rs`: one step of Adam or SGD on one tensor.

use crate::nn::optimizer::Optimizer;

/// Updates `p` from its gradient `g` at 1-based step `t`, with the optimizer's moments
/// `m` and `v` (SGD uses `m` as its velocity).
pub(crate) fn step(
    optimizer: Optimizer,
    t: u64,
    p: &mut [f64],
    g: &[f64],
    m: &mut [f64],
    v: &mut [f64],
) {
    match optimizer {
        Optimizer::Adam {
            lr,
            beta1,
            beta2,
            epsilon,
        } => {
            let t = t as f64;
            let alpha = lr * (1.0 - beta2.powf(t)).sqrt() / (1.0 - beta1.powf(t));
            for i in 0..p.len() {
                m[i] += (g[i] - m[i]) * (1.0 - beta1);
                v[i] += (g[i] * g[i] - v[i]) * (1.0 - beta2);
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
