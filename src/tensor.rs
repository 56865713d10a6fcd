//! GPU tensors: a storage buffer with a shape, and borrowed regions of caller buffers.

use crate::context::Context;
use crate::error::{Error, Result};

/// A region of a caller's buffer holding a dense f32 tensor: what the encode level takes.
#[derive(Debug, Clone, Copy)]
pub struct TensorRef<'a> {
    /// The buffer (needs `STORAGE` usage).
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of element 0 (a multiple of `min_storage_buffer_offset_alignment`).
    pub offset: u64,
    /// The shape, row-major.
    pub shape: &'a [usize],
}

impl<'a> TensorRef<'a> {
    /// The whole buffer from offset 0.
    pub fn new(buffer: &'a wgpu::Buffer, shape: &'a [usize]) -> Self {
        Self {
            buffer,
            offset: 0,
            shape,
        }
    }

    /// Bytes of the region (saturating: an impossible size overlaps everything).
    fn byte_len(&self) -> u64 {
        self.shape
            .iter()
            .try_fold(4u64, |a, &d| a.checked_mul(d as u64))
            .unwrap_or(u64::MAX)
    }

    /// Whether the two regions share any byte (same buffer, intersecting ranges).
    pub(crate) fn overlaps(&self, other: &TensorRef<'_>) -> bool {
        self.buffer == other.buffer
            && self.offset < other.offset.saturating_add(other.byte_len())
            && other.offset < self.offset.saturating_add(self.byte_len())
    }

    /// Checks usage, alignment and size of the region.
    pub(crate) fn check(&self, what: &'static str, alignment: u64) -> Result<u64> {
        if !self.buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::BufferUsage {
                what,
                missing: wgpu::BufferUsages::STORAGE,
            });
        }
        if !self.offset.is_multiple_of(alignment) {
            return Err(Error::MisalignedOffset {
                what,
                offset: self.offset,
                alignment,
            });
        }
        let count = self
            .shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .unwrap_or(u64::MAX);
        let needed = count.saturating_mul(4);
        let available = self.buffer.size().saturating_sub(self.offset);
        if needed > available {
            return Err(Error::BufferTooSmall {
                what,
                needed,
                available,
            });
        }
        Ok(needed)
    }
}

/// An f32 tensor in a GPU storage buffer (`STORAGE | COPY_SRC | COPY_DST`).
#[derive(Debug, Clone)]
pub struct Tensor {
    buffer: wgpu::Buffer,
    shape: Vec<usize>,
}

fn element_count(shape: &[usize]) -> Result<usize> {
    if shape.contains(&0) {
        return Err(Error::EmptyTensor(shape.to_vec()));
    }
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::ShapeOverflow(shape.to_vec()))
}

impl Tensor {
    const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
        .union(wgpu::BufferUsages::COPY_SRC)
        .union(wgpu::BufferUsages::COPY_DST);

    /// An uninitialised (zeroed by wgpu) tensor of `shape`.
    pub fn zeros(ctx: &Context, shape: &[usize]) -> Result<Self> {
        let len = element_count(shape)?;
        let buffer = ctx.create_buffer("bn.tensor", len as u64 * 4, Self::USAGE)?;
        Ok(Self {
            buffer,
            shape: shape.to_vec(),
        })
    }

    /// Uploads `data` as a tensor of `shape`.
    pub fn from_slice(ctx: &Context, shape: &[usize], data: &[f32]) -> Result<Self> {
        let len = element_count(shape)?;
        if data.len() != len {
            return Err(Error::LengthMismatch {
                what: "tensor data",
                expected: len,
                got: data.len(),
            });
        }
        let t = Self::zeros(ctx, shape)?;
        ctx.write(&t.buffer, 0, bytemuck::cast_slice(data))?;
        Ok(t)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Always false: empty tensors cannot be built.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The tensor as an encode-level region.
    pub fn as_ref(&self) -> TensorRef<'_> {
        TensorRef::new(&self.buffer, &self.shape)
    }

    /// Downloads the tensor. Blocks.
    pub fn to_vec(&self, ctx: &Context) -> Result<Vec<f32>> {
        ctx.read_f32(&self.buffer, 0, self.len())
    }

    /// Downloads the tensor asynchronously.
    pub async fn to_vec_async(&self, ctx: &Context) -> Result<Vec<f32>> {
        let bytes = ctx
            .read_bytes_async(&self.buffer, 0, self.len() as u64 * 4)
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}
