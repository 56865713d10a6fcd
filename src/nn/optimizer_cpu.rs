//! The CPU twin of `optimizer.rs`: one step of Adam or SGD on one tensor, in f64 (the
//! reference) or f32 (the fast CPU path, with the GPU's f32 arithmetic).

use crate::nn::optimizer::Optimizer;
use crate::nn::real::Real;

/// Updates `p` from its gradient `g` at 1-based step `t`, with the optimizer's moments
/// `m` and `v` (SGD uses `m` as its velocity).
pub(crate) fn step<T: Real>(
    optimizer: Optimizer,
    t: u64,
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
) {
    match optimizer {
        Optimizer::Adam {
            lr,
            beta1,
            beta2,
            epsilon,
        } => {
            let alpha = if T::SINGLE {
                // As the GPU (and Keras in float32): beta^t of the f32 beta, rounded once;
                // the step size in f32.
                let pow = |b: f64| ((b as f32) as f64).powf(t as f64) as f32;
                T::of_f32((lr as f32) * (1.0 - pow(beta2)).sqrt() / (1.0 - pow(beta1)))
            } else {
                let t = t as f64;
                T::of(lr * (1.0 - beta2.powf(t)).sqrt() / (1.0 - beta1.powf(t)))
            };
            // 1 - beta formed before rounding, as Keras forms it from Python floats.
            let (c1, c2, eps) = (T::of(1.0 - beta1), T::of(1.0 - beta2), T::of(epsilon));
            for i in 0..p.len() {
                m[i] += (g[i] - m[i]) * c1;
                v[i] += (g[i] * g[i] - v[i]) * c2;
                p[i] -= alpha * m[i] / (v[i].sqrt() + eps);
            }
        }
        Optimizer::Sgd { lr, momentum } => {
            let (lr, momentum) = (T::of(lr), T::of(momentum));
            for i in 0..p.len() {
                m[i] = momentum * m[i] - lr * g[i];
                p[i] += m[i];
            }
        }
    }
}
