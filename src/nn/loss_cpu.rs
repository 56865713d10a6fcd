//! The f64 twin of `loss.rs`.

/// Keras' backend epsilon: probabilities are clipped to [1e-7, 1 - 1e-7] before the log.
const CLIP_EPS: f64 = 1e-7;

/// Mean clipped cross-entropy of softmax(`logits`), the fraction of rows whose largest
/// logit is the label, and d(loss)/d(logits).
pub(crate) fn softmax_xent(logits: &[f64], labels: &[u32], classes: usize) -> (f64, f64, Vec<f64>) {
    let k = classes;
    let rows = labels.len();
    let (mut loss, mut hits) = (0.0, 0.0);
    let mut d = vec![0.0; logits.len()];
    for (i, &y) in labels.iter().enumerate() {
        let z = &logits[i * k..(i + 1) * k];
        let (arg, mx) =
            z.iter().enumerate().fold(
                (0, f64::MIN),
                |(ai, am), (j, &v)| {
                    if v > am {
                        (j, v)
                    } else {
                        (ai, am)
                    }
                },
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

/// Class probabilities of each row of `logits`.
pub(crate) fn softmax(logits: &[f64], classes: usize) -> Vec<f32> {
    logits
        .chunks_exact(classes)
        .flat_map(|z| {
            let mx = z.iter().cloned().fold(f64::MIN, f64::max);
            let s: f64 = z.iter().map(|v| (v - mx).exp()).sum();
            z.iter()
                .map(move |v| ((v - mx).exp() / s) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}
