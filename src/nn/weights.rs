//! Weights files: every weight of a model as an f32 safetensors file (Keras names and
//! layouts), written atomically; a file is checked whole before any weight is applied.

use std::path::Path;

use crate::nn::error::{Error, Result};
use crate::nn::spec::Weight;

/// Checks a whole weights file against a model's weights before any is applied: every
/// expected tensor present once with exactly its shape (a Dense kernel is `[in, out]`, so
/// `[out, in]` is refused even though the count matches), and nothing else.
pub(crate) fn match_weights(
    expected: &[(String, Vec<usize>, bool)],
    file: &[Weight],
) -> std::result::Result<(), String> {
    for w in file {
        match expected.iter().find(|(n, _, _)| *n == w.name) {
            None => {
                return Err(format!(
                    "{} is not a weight of this model (it has {})",
                    w.name,
                    expected
                        .iter()
                        .map(|(n, _, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
            Some((_, shape, _)) if *shape != w.shape => {
                return Err(format!(
                    "{} has shape {:?}, the model's is {shape:?}",
                    w.name, w.shape
                ))
            }
            Some(_) if file.iter().filter(|o| o.name == w.name).count() > 1 => {
                return Err(format!("{} appears more than once", w.name))
            }
            Some(_) if w.values.len() != w.shape.iter().product::<usize>() => {
                return Err(format!("{}: values do not match its shape", w.name))
            }
            Some(_) => {}
        }
    }
    let missing: Vec<&str> = expected
        .iter()
        .filter(|(n, _, _)| !file.iter().any(|w| w.name == *n))
        .map(|(n, _, _)| n.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing {}", missing.join(", ")));
    }
    Ok(())
}

/// Writes weights as an f32 safetensors file, atomically.
pub fn save_weights(weights: &[Weight], path: &Path) -> Result<()> {
    let err = |why: String| Error::Weights {
        path: path.display().to_string(),
        why,
    };
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = weights
        .iter()
        .map(|w| {
            (
                w.name.clone(),
                bytemuck::cast_slice(&w.values).to_vec(),
                w.shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, b, s)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| err(e.to_string()))
        })
        .collect::<Result<_>>()?;
    let data = safetensors::serialize(views, None).map_err(|e| err(e.to_string()))?;
    crate::nn::files::write_atomically(path, &data).map_err(|e| err(e.to_string()))
}

/// Reads an f32 safetensors file.
pub fn load_weights(path: &Path) -> Result<Vec<Weight>> {
    let err = |why: String| Error::Weights {
        path: path.display().to_string(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(err(format!(
                    "{name}: dtype {:?}, expected F32",
                    view.dtype()
                )));
            }
            Ok(Weight {
                name,
                shape: view.shape().to_vec(),
                values: bytemuck::pod_collect_to_vec(view.data()),
            })
        })
        .collect()
}

/// Reads a weights file and checks it whole against a model's weights (`expected`: name,
/// shape, trainable) before anything is applied.
pub(crate) fn load_checked(
    path: &Path,
    expected: &[(String, Vec<usize>, bool)],
) -> Result<Vec<Weight>> {
    let file = load_weights(path)?;
    match_weights(expected, &file).map_err(|why| Error::Weights {
        path: path.display().to_string(),
        why,
    })?;
    Ok(file)
}
