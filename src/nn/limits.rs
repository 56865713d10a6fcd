//! The sizes every network is held to, on the GPU and the CPU models alike (a leaf module:
//! the options, the registry and the layers all check against it).

/// Largest tensor of a network, in elements: the GPU indexes f32 buffers with u32 byte
/// offsets, and both models accept exactly the same networks.
pub const MAX_TENSOR_ELEMENTS: usize = (u32::MAX / 4) as usize;
