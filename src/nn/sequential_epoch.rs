//! How an epoch of `Sequential` is submitted: its steps recorded `STEPS_PER_SUBMIT` to an
//! encoder, at most two such submits in flight, so what the device and the driver hold for
//! recorded work is bounded by the model and the batch, not by the epoch's length (one
//! encoder per epoch took 16 steps 106 MB, 1024 steps 568 MB on Vulkan). No readback
//! between chunks; the GPU runs the same steps in the same order: the same bits.

use crate::nn::error::Result;
use crate::nn::gpu_data::GpuData;
use crate::nn::loss::BATCH_LOSSES;
use crate::nn::sequential::Sequential;

/// Training steps recorded into one encoder before it is submitted (a tutorial step is ~10
/// passes, a CNN's ~20): enough to keep submits off the profile, few enough that an epoch of
/// a thousand batch-1 steps holds no more at once than an epoch of 16 steps.
const STEPS_PER_SUBMIT: usize = 16;

/// What `train_epoch` calls after each batch: (model, batch, loss).
pub(super) type BatchHook<'a> = dyn FnMut(&Sequential, usize, f64) + 'a;

impl Sequential {
    /// Trains one epoch of `data` in batches of `batch`: a submit every `STEPS_PER_SUBMIT`
    /// steps, or one per step when `per_batch` wants each batch's loss (read back and handed
    /// to it).
    pub(super) fn train_epoch(
        &mut self,
        data: &GpuData,
        batch: usize,
        mut per_batch: Option<&mut BatchHook<'_>>,
    ) -> Result<()> {
        let (mut start, mut b) = (0, 0);
        let mut enc = None;
        let mut in_flight = None;
        while start < data.rows {
            if b > 0 && b % STEPS_PER_SUBMIT == 0 {
                if let Some(e) = enc.take() {
                    let index = self.ctx.submit(e)?;
                    // The chunk before this one: done before a third is recorded.
                    if let Some(previous) = in_flight.replace(index) {
                        self.ctx.wait(Some(previous))?;
                    }
                }
            }
            let rows = batch.min(data.rows - start);
            let e = enc.get_or_insert_with(|| {
                self.ctx
                    .device()
                    .create_command_encoder(&Default::default())
            });
            self.record_step(e, data, (rows, batch), start == 0)?;
            if let Some(f) = per_batch.as_deref_mut() {
                if let Some(e) = enc.take() {
                    self.ctx.submit(e)?;
                }
                let at = BATCH_LOSSES + b as u64 * 4;
                let loss = self.ctx.read_f32(&self.metrics, at, 1)?;
                f(self, b, loss[0] as f64);
            }
            start += rows;
            b += 1;
        }
        if let Some(e) = enc {
            self.ctx.submit(e)?;
        }
        Ok(())
    }
}
