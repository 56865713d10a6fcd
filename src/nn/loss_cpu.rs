//! The CPU twin of `loss.rs`, in f64 or f32.

use crate::nn::real::Real;

/// Keras' backend epsilon: probabilities are clipped to [1e-7, 1 - 1e-7] before the log.
const CLIP_EPS: f64 = 1e-7;

/// Mean clipped cross-entropy of softmax(`logits`), the fraction of rows whose largest
/// logit is the label, and d(loss)/d(logits).
pub(crate) fn softmax_xent<T: Real>(
    logits: &[T],
    labels: &[u32],
    classes: usize,
) -> (f64, f64, Vec<T>) {
    let k = classes;
    let rows = labels.len();
    let (mut loss, mut hits) = (T::ZERO, 0.0);
    let mut d = vec![T::ZERO; logits.len()];
    let (lo, hi) = (T::of(CLIP_EPS), T::of(1.0 - CLIP_EPS));
    let inv_rows = T::ONE / T::of(rows as f64);
    for (i, &y) in labels.iter().enumerate() {
        let z = &logits[i * k..(i + 1) * k];
        let (arg, mx) =
            z.iter().enumerate().fold(
                (0, T::MIN),
                |(ai, am), (j, &v)| {
                    if v > am {
                        (j, v)
                    } else {
                        (ai, am)
                    }
                },
            );
        let s: T = z.iter().map(|&v| (v - mx).exp()).sum();
        // Keras clips the probability (not its log), so the clip's edge is where Keras has it.
        let p_y = (z[y as usize] - mx).exp() / s;
        let clipped = if p_y < lo {
            lo
        } else if p_y > hi {
            hi
        } else {
            p_y
        };
        loss -= clipped.ln();
        hits += (arg == y as usize) as u32 as f64;
        if clipped == p_y {
            for j in 0..k {
                let onehot = if j == y as usize { T::ONE } else { T::ZERO };
                let g = (z[j] - mx).exp() / s - onehot;
                // f32: the GPU's multiply by 1/rows; f64: the reference's division.
                d[i * k + j] = if T::SINGLE {
                    g * inv_rows
                } else {
                    g / T::of(rows as f64)
                };
            }
        }
    }
    (loss.f64() / rows as f64, hits / rows as f64, d)
}

/// Class probabilities of each row of `logits`.
pub(crate) fn softmax<T: Real>(logits: &[T], classes: usize) -> Vec<f32> {
    logits
        .chunks_exact(classes)
        .flat_map(|z| {
            let mx = z.iter().fold(T::MIN, |a, &b| if b > a { b } else { a });
            let s: T = z.iter().map(|&v| (v - mx).exp()).sum();
            z.iter()
                .map(move |&v| ((v - mx).exp() / s).f32())
                .collect::<Vec<_>>()
        })
        .collect()
}
