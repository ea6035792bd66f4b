//! Chip arithmetic of the INT8 / 16-bit float flows, exactly as tpu-mlir computes it.
//!
//! [`round`] holds the rounding and saturation primitives shared by every chip, [`bm1684x`] the
//! multiplier/shift search and requantization of the BM168x family, [`cv18xx`] the QDM
//! (TFLite-style) requantization of the CV18xx family and [`float`] the f16 / bf16 conversions
//! (including CV18xx's bf16 rules).

pub mod bm1684x;
pub mod cv18xx;
pub mod float;
pub mod round;

pub use round::RoundMode;
