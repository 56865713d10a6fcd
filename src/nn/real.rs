//! The float type of a CPU network: `f64` for the reference (the oracle of the GPU path) and
//! `f32` for the fast CPU path (the GPU's arithmetic, on the CPU's cores). Every CPU twin is
//! written once over `Real`; the sums run in the same order in both.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// `f32` or `f64`.
pub(crate) trait Real:
    Copy
    + Debug
    + Default
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
{
    const ZERO: Self;
    const ONE: Self;
    /// The most negative finite value.
    const MIN: Self;
    /// Whether this is `f32` (the optimizer forms its step size as the GPU does).
    const SINGLE: bool;
    /// Rounded to this type.
    fn of(v: f64) -> Self;
    fn of_f32(v: f32) -> Self;
    fn f64(self) -> f64;
    fn f32(self) -> f32;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    fn is_nan(self) -> bool;
}

macro_rules! real {
    ($t:ty, $single:expr) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const MIN: Self = <$t>::MIN;
            const SINGLE: bool = $single;
            #[inline(always)]
            fn of(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn of_f32(v: f32) -> Self {
                v as $t
            }
            #[inline(always)]
            fn f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn f32(self) -> f32 {
                self as f32
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}

real!(f32, true);
real!(f64, false);

/// `n` zeros in `spare`'s allocation when it is large enough: a layer reuses the buffers it
/// has released (its last input, the gradient it consumed) instead of asking the allocator
/// for fresh pages every step, which costs more than the arithmetic at these sizes (each
/// first write to a fresh page faults, and a multi-threaded process flushes every core's TLB).
pub(crate) fn zeroed<T: Real>(spare: &mut Vec<T>, n: usize) -> Vec<T> {
    let mut v = std::mem::take(spare);
    v.clear();
    v.resize(n, T::ZERO);
    v
}

/// `n` values in `spare`'s allocation, for an output every element of which is written before
/// it is read: what was there stays (no zeroing pass) when the length already fits.
pub(crate) fn overwritten<T: Real>(spare: &mut Vec<T>, n: usize) -> Vec<T> {
    let mut v = std::mem::take(spare);
    if v.len() != n {
        v.clear();
        v.resize(n, T::ZERO);
    }
    v
}

/// Keeps the larger of `spare` and `released` for the next `zeroed`.
pub(crate) fn keep_spare<T>(spare: &mut Vec<T>, released: Vec<T>) {
    if released.capacity() > spare.capacity() {
        *spare = released;
    }
}
