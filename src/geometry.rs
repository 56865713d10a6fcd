//! How a tensor's shape maps onto the kernels: `[outer, channels, inner]`.

use crate::error::{Error, Result};

/// Which axis holds the channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Channels on the last axis, any rank: `[N, C]`, `[N, H, W, C]`, `[N, D, H, W, C]` (Keras' default).
    #[default]
    ChannelsLast,
    /// Channels on axis 1, any rank: `[N, C]`, `[N, C, H, W]`, `[N, C, D, H, W]` (PyTorch's default).
    ChannelsFirst,
}

/// A tensor viewed as `[outer, channels, inner]`: channels-last has `inner = 1`; channels-first
/// has `outer = N` and `inner = H·W·…`. Element `(o, c, i)` sits at `(o·C + c)·inner + i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Product of the axes before the channel axis (channels-first: the batch axis).
    pub outer: usize,
    /// Channels.
    pub channels: usize,
    /// Product of the axes after the channel axis.
    pub inner: usize,
}

impl Geometry {
    /// Reads `shape` under `layout` and checks it against `channels`.
    pub fn new(shape: &[usize], layout: Layout, channels: usize) -> Result<Self> {
        if shape.len() < 2 {
            return Err(Error::RankTooLow(shape.to_vec()));
        }
        if shape.contains(&0) {
            return Err(Error::EmptyTensor(shape.to_vec()));
        }
        let axis = match layout {
            Layout::ChannelsLast => shape.len() - 1,
            Layout::ChannelsFirst => 1,
        };
        if shape[axis] != channels {
            return Err(Error::ChannelMismatch {
                shape: shape.to_vec(),
                axis,
                expected: channels,
                got: shape[axis],
            });
        }
        let overflow = || Error::ShapeOverflow(shape.to_vec());
        let product = |dims: &[usize]| {
            dims.iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(overflow)
        };
        let g = Geometry {
            outer: product(&shape[..axis])?,
            channels,
            inner: product(&shape[axis + 1..])?,
        };
        g.elements().ok_or_else(overflow)?;
        Ok(g)
    }

    /// Values per channel: the `n` of the batch statistics.
    pub fn per_channel(&self) -> usize {
        self.outer * self.inner
    }

    /// All elements, if the count fits.
    pub fn elements(&self) -> Option<usize> {
        self.outer
            .checked_mul(self.channels)?
            .checked_mul(self.inner)
    }

    /// Flat index of element `(o, c, i)`.
    #[inline]
    pub fn index(&self, o: usize, c: usize, i: usize) -> usize {
        (o * self.channels + c) * self.inner + i
    }
}
