//! What a model binds must fit the device: every buffer a network shader sees (parameters,
//! gradients, optimizer state, a batch's activations, the data set) is checked against the
//! device's storage-binding and buffer-size limits, with checked arithmetic, before anything
//! is allocated. A network or batch too large for the device is refused in words
//! ([`Error::DeviceLimit`]) rather than by a validation error after allocating.

use crate::nn::error::{Error, Result};
use crate::Context;

/// The largest buffer a network shader binds whole on this device, in bytes, and the limit
/// that sets it.
pub(crate) fn max_binding(ctx: &Context) -> (u64, &'static str) {
    let l = ctx.device().limits();
    if l.max_buffer_size < l.max_storage_buffer_binding_size {
        (l.max_buffer_size, "max_buffer_size")
    } else {
        (
            l.max_storage_buffer_binding_size,
            "max_storage_buffer_binding_size",
        )
    }
}

/// Bytes of `count` f32 values of `what` (`None`: the count overflowed), when they fit one
/// binding; else the error naming `what`, the size and the limit.
pub(crate) fn floats(
    ctx: &Context,
    what: impl FnOnce() -> String,
    count: Option<usize>,
) -> Result<u64> {
    let (max, limit) = max_binding(ctx);
    let needed = count.map_or(u128::MAX, |n| n as u128 * 4);
    if needed > max as u128 {
        return Err(Error::DeviceLimit {
            what: what(),
            needed,
            limit,
            max,
        });
    }
    Ok(needed as u64)
}

/// Rows of a batch whose every buffer of `widths` values per row fits one binding (at least
/// one: a row too large is refused when its plan is made).
pub(crate) fn rows_fitting(ctx: &Context, widths: impl Iterator<Item = usize>) -> usize {
    let (max, _) = max_binding(ctx);
    let widest = widths.max().unwrap_or(1).max(1) as u64;
    usize::try_from(max / 4 / widest)
        .unwrap_or(usize::MAX)
        .max(1)
}
