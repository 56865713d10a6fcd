//! What flows between layers, per sample: a flat feature vector or an NHWC feature map (the
//! batch is the leading dimension and not part of the shape), and Keras' window arithmetic
//! for convolutions and pooling (`valid` and `same` padding).

use std::fmt;

/// The per-sample shape of a layer's input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A feature vector (what Dense layers take).
    Flat(usize),
    /// A feature map, stored channels-last (NHWC, Keras' default).
    Image {
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
        /// Channels.
        channels: usize,
    },
}

impl Shape {
    /// A `[height, width, channels]` feature map.
    pub fn image(height: usize, width: usize, channels: usize) -> Shape {
        Shape::Image {
            height,
            width,
            channels,
        }
    }

    /// Values per sample (`None` when the product overflows).
    pub fn checked_len(&self) -> Option<usize> {
        match *self {
            Shape::Flat(n) => Some(n),
            Shape::Image {
                height,
                width,
                channels,
            } => height.checked_mul(width)?.checked_mul(channels),
        }
    }

    /// Values per sample (checked at resolution: every shape of a model fits).
    pub fn len(&self) -> usize {
        self.checked_len().unwrap_or(usize::MAX)
    }

    /// Whether a sample has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last axis: what batch normalization normalizes per channel.
    pub fn channels(&self) -> usize {
        match *self {
            Shape::Flat(n) => n,
            Shape::Image { channels, .. } => channels,
        }
    }

    /// Positions per sample that share a channel (`height * width`; 1 for a vector).
    pub fn positions(&self) -> usize {
        match *self {
            Shape::Flat(_) => 1,
            Shape::Image { height, width, .. } => height * width,
        }
    }
}

impl From<usize> for Shape {
    fn from(n: usize) -> Shape {
        Shape::Flat(n)
    }
}

impl From<[usize; 3]> for Shape {
    fn from([h, w, c]: [usize; 3]) -> Shape {
        Shape::image(h, w, c)
    }
}

impl fmt::Display for Shape {
    /// Keras' notation: `(None, 64)`, `(None, 8, 8, 32)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Flat(n) => write!(f, "(None, {n})"),
            Shape::Image {
                height,
                width,
                channels,
            } => write!(f, "(None, {height}, {width}, {channels})"),
        }
    }
}

/// How a window treats the edges (Keras' `padding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// Only windows that fit inside the input: `floor((n - k) / s) + 1` outputs.
    #[default]
    Valid,
    /// `ceil(n / s)` outputs, the input padded evenly (the extra row or column at the end).
    Same,
}

/// One axis of a window: outputs and the padding before the first input (`None` when the
/// window does not fit, or its arithmetic overflows).
pub(crate) fn window(n: usize, k: usize, s: usize, padding: Padding) -> Option<(usize, usize)> {
    if k == 0 || s == 0 || n == 0 {
        return None;
    }
    match padding {
        Padding::Valid => (n >= k).then(|| ((n - k) / s + 1, 0)),
        Padding::Same => {
            let out = n.div_ceil(s);
            let total = ((out - 1).checked_mul(s)?.checked_add(k)?).saturating_sub(n);
            Some((out, total / 2))
        }
    }
}

/// How far one axis of a window's positions reaches, padding included: `(out - 1) * s + k`
/// (what the kernels' window arithmetic spans).
pub(crate) fn window_extent(out: usize, k: usize, s: usize) -> Option<usize> {
    out.checked_sub(1)?.checked_mul(s)?.checked_add(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_keras() {
        assert_eq!(window(8, 3, 1, Padding::Same), Some((8, 1)));
        assert_eq!(window(8, 3, 1, Padding::Valid), Some((6, 0)));
        assert_eq!(window(8, 2, 2, Padding::Valid), Some((4, 0)));
        assert_eq!(window(7, 2, 2, Padding::Same), Some((4, 0)));
        assert_eq!(window(7, 3, 2, Padding::Same), Some((4, 1)));
        assert_eq!(window(6, 3, 2, Padding::Same), Some((3, 0)));
        assert_eq!(window(2, 3, 1, Padding::Valid), None);
        assert_eq!(window(2, 3, 1, Padding::Same), Some((2, 1)));
        // Past the address space: refused, not wrapped (or a panic in debug builds).
        assert_eq!(window(8, usize::MAX, 1, Padding::Same), None);
        assert_eq!(window_extent(8, usize::MAX, 1), None);
        assert_eq!(window_extent(4, 3, 2), Some(9));
    }
}
