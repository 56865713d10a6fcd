//! Dispatch planning: how one call is cut into chunks (binding-size limit), row splits
//! (parallelism across rows) and 2-D grids (65,535 workgroups per dimension).

use crate::error::{Error, Result};
use crate::geometry::Geometry;

/// Threads per workgroup of the streaming kernels (`WG` in `shaders/common.wgsl`).
pub const WORKGROUP: u32 = 256;
/// Threads per workgroup of the per-channel kernels.
pub const CHANNEL_WORKGROUP: u32 = 64;
/// Workgroups a stats dispatch aims for: enough to fill a large GPU several times over.
const TARGET_GROUPS: usize = 1024;
/// Fewest rows each thread should Welford-accumulate before a split is worth its partial.
const MIN_ROWS_PER_THREAD: usize = 8;
/// Chunks up to this many elements (1 MiB) take one split per channel block, the fused path:
/// one dispatch per pass, x read the second time from cache. At this size the split path's
/// extra launches (pivot, finalize, a second sweep) cost more than the parallelism they buy
/// (on lavapipe 0.4-0.5 of the streaming reference split, against 0.9-1.5 fused).
const FUSED_MAX_ELEMENTS: usize = 1 << 18;

/// The device limits a plan respects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Largest storage binding, bytes (`max_storage_buffer_binding_size`, capped by `max_buffer_size`).
    pub max_binding: u64,
    /// Storage binding offset alignment (`min_storage_buffer_offset_alignment`).
    pub offset_alignment: u64,
    /// Workgroups per grid dimension (`max_compute_workgroups_per_dimension`).
    pub max_groups_per_dim: u32,
}

/// One binding-sized slice of the tensor along `outer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// First outer row.
    pub outer0: usize,
    /// Outer rows in this chunk.
    pub outer_len: usize,
    /// Byte offset of the chunk from the tensor's start.
    pub byte_offset: u64,
    /// Bytes of the chunk.
    pub byte_len: u64,
    /// Values per channel in the chunk.
    pub rows: u32,
    /// Row splits: independent partial statistics per channel.
    pub splits: u32,
    /// Index of this chunk's first split among all splits.
    pub split_base: u32,
    /// Rows per split (a multiple of the rows per step).
    pub rows_per_split: u32,
    /// Workgroups of every streaming dispatch (channel blocks x splits).
    pub stats_groups: u32,
    /// Elements in the chunk.
    pub elems: u32,
}

/// The whole plan of one tensor geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The tensor.
    pub geometry: Geometry,
    /// Channel lanes per stats workgroup (power of two).
    pub cw: u32,
    /// The chunks, in order.
    pub chunks: Vec<Chunk>,
    /// Splits over all chunks.
    pub total_splits: u32,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Plan {
    /// Plans `geometry` under `limits`, or says which limit it cannot fit.
    pub fn new(geometry: Geometry, limits: &PlanLimits) -> Result<Self> {
        let Geometry {
            outer,
            channels,
            inner,
        } = geometry;
        let row_bytes = (channels as u64)
            .checked_mul(inner as u64)
            .and_then(|v| v.checked_mul(4))
            .unwrap_or(u64::MAX);
        // Chunks start at outer rows whose byte offset is aligned.
        let align_rows = (limits.offset_alignment / gcd(row_bytes, limits.offset_alignment)).max(1);
        let fit = limits.max_binding / row_bytes;
        let rows_per_chunk = if (outer as u64) <= fit {
            outer as u64
        } else {
            fit / align_rows * align_rows
        };
        if rows_per_chunk == 0 {
            return Err(Error::TooLarge {
                what: "one outer slice (channels x inner x 4 bytes)",
                limit: "max_storage_buffer_binding_size",
                needed: row_bytes.saturating_mul(align_rows.min(outer as u64)),
                max: limits.max_binding,
            });
        }
        // The per-channel kernels run one thread per channel in a 1-D grid.
        let channel_groups = channels.div_ceil(CHANNEL_WORKGROUP as usize) as u64;
        if channel_groups > limits.max_groups_per_dim as u64 {
            return Err(Error::TooLarge {
                what: "channels (per-channel kernels)",
                limit: "max_compute_workgroups_per_dimension",
                needed: channel_groups,
                max: limits.max_groups_per_dim as u64,
            });
        }
        let cw = if inner == 1 {
            (channels.next_power_of_two() as u32).min(64)
        } else {
            1
        };
        let step = (WORKGROUP / cw) as usize;
        let blocks = channels.div_ceil(cw as usize);

        let mut chunks = Vec::new();
        let mut total_splits = 0u64;
        let mut outer0 = 0usize;
        while outer0 < outer {
            let outer_len = (rows_per_chunk as usize).min(outer - outer0);
            let rows = outer_len * inner;
            let elems = rows * channels;
            let useful = rows.div_ceil(step * MIN_ROWS_PER_THREAD).max(1);
            let target = TARGET_GROUPS.div_ceil(blocks).max(1);
            let want = if elems <= FUSED_MAX_ELEMENTS {
                1
            } else {
                useful.min(target)
            };
            let rows_per_split = rows.div_ceil(want).div_ceil(step) * step;
            let splits = rows.div_ceil(rows_per_split);
            let stats_groups = (splits * blocks) as u64;
            let max_groups = limits.max_groups_per_dim as u64 * limits.max_groups_per_dim as u64;
            if stats_groups > max_groups {
                return Err(Error::TooLarge {
                    what: "workgroups of one dispatch",
                    limit: "max_compute_workgroups_per_dimension squared",
                    needed: stats_groups,
                    max: max_groups,
                });
            }
            chunks.push(Chunk {
                outer0,
                outer_len,
                byte_offset: outer0 as u64 * row_bytes,
                byte_len: outer_len as u64 * row_bytes,
                rows: rows as u32,
                splits: splits as u32,
                split_base: total_splits as u32,
                rows_per_split: rows_per_split as u32,
                stats_groups: stats_groups as u32,
                elems: elems as u32,
            });
            total_splits += splits as u64;
            outer0 += outer_len;
        }
        Ok(Plan {
            geometry,
            cw,
            chunks,
            total_splits: total_splits as u32,
        })
    }
}

impl Plan {
    /// The only chunk, when one split covers every value of each channel: the workgroup of
    /// a channel block then owns its channels whole, and a pass needs one dispatch.
    pub fn single_split(&self) -> Option<&Chunk> {
        match self.chunks.as_slice() {
            [chunk] if chunk.splits == 1 => Some(chunk),
            _ => None,
        }
    }
}

/// Folds `groups` workgroups into a 2-D grid within `max_per_dim`.
pub fn grid(groups: u32, max_per_dim: u32) -> (u32, u32) {
    let x = groups.clamp(1, max_per_dim);
    (x, groups.div_ceil(x).max(1))
}
