//! The GPU model's weights: read, written and saved by Keras name. Every tensor is a slice
//! of the one parameter buffer (gradients: of the one gradient buffer).

use std::path::Path;

use crate::nn::error::{Error, Result};
use crate::nn::registry;
use crate::nn::sequential::Sequential;
use crate::nn::spec::Weight;
use crate::nn::weights::{load_checked, save_weights};

impl Sequential {
    /// The tensors of `buffer` (parameters or gradients), named; `trainable_only` keeps the
    /// ones the optimizer updates.
    fn read_tensors(&self, buffer: &wgpu::Buffer, trainable_only: bool) -> Result<Vec<Weight>> {
        let flat = self.ctx.read_f32(buffer, 0, self.params_len)?;
        let names = registry::names(&self.defs);
        let mut out = Vec::new();
        for ((d, &at), (layer, _)) in self.defs.iter().zip(&self.at).zip(names) {
            for p in d.params() {
                if trainable_only && !p.trainable {
                    continue;
                }
                let start = at + p.offset;
                out.push(Weight {
                    name: format!("{layer}/{}", p.name),
                    values: flat[start..start + p.len()].to_vec(),
                    shape: p.shape,
                });
            }
        }
        Ok(out)
    }

    /// Every weight in Keras layout and order (kernels `[in, out]`, BN moving statistics too).
    pub fn weights(&self) -> Result<Vec<Weight>> {
        self.read_tensors(&self.params, false)
    }

    /// The gradient of every trainable weight from the last training step (named as in
    /// [`Sequential::weights`]).
    pub fn gradients(&self) -> Result<Vec<Weight>> {
        self.read_tensors(&self.grads, true)
    }

    /// Sets one weight by its Keras name (see [`Sequential::weights`]); takes effect at the
    /// next submit.
    pub fn set_weight(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let names = registry::names(&self.defs);
        for ((d, &at), (layer, _)) in self.defs.iter().zip(&self.at).zip(names) {
            for p in d.params() {
                if format!("{layer}/{}", p.name) != name {
                    continue;
                }
                if values.len() != p.len() {
                    return Err(crate::Error::LengthMismatch {
                        what: "weight values",
                        expected: p.len(),
                        got: values.len(),
                    }
                    .into());
                }
                self.ctx.write(
                    &self.params,
                    (at + p.offset) as u64 * 4,
                    bytemuck::cast_slice(values),
                )?;
                return Ok(());
            }
        }
        Err(Error::Model(format!("no weight named {name:?}")))
    }

    /// Saves every weight to a safetensors file (written to a temporary name, then renamed, so
    /// a failure leaves no partial file).
    pub fn save(&self, path: &Path) -> Result<()> {
        save_weights(&self.weights()?, path)
    }

    /// Loads weights saved by [`Sequential::save`] (or any safetensors file with the same
    /// names and shapes). The whole file is checked (names, shapes, nothing missing or extra)
    /// before any weight changes.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        for w in load_checked(path, &registry::weight_names(&self.defs))? {
            self.set_weight(&w.name, &w.values)?;
        }
        Ok(())
    }
}
