//! The sizes every network is held to, on the GPU and the CPU models alike (a leaf module:
//! the options, the registry and the layers all check against it).

/// Largest tensor of a network, in elements: the GPU indexes f32 buffers with u32 byte
/// offsets, and both models accept exactly the same networks.
pub const MAX_TENSOR_ELEMENTS: usize = (u32::MAX / 4) as usize;

/// Largest window parameter (kernel or pool size, stride) and reach of a window's positions,
/// padding included: the GPU kernels compute window positions in 32-bit signed integers.
/// Both models refuse past it, so they accept the same networks.
pub const MAX_WINDOW: usize = i32::MAX as usize;
