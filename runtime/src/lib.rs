//! The bmodel runtime (no_std, no allocation on the run path).
//!
//! [`load`] verifies a bmodel once (`bmodel_format::verify`) and binds a caller-given arena;
//! [`Loaded::run`] copies inputs in, dispatches every instruction to the chip's kernels
//! ([`kernels::bm1684x`], [`kernels::cv18xx`], [`kernels::float`]) on raw slices of the arena, and
//! copies outputs out. Features: `std` (error trait, host helpers in [`host`]), `defmt` (embedded
//! logging: `defmt::Format` for the error types, an info line when a model is loaded with its arena
//! size, a trace line per executed instruction, an error line when loading fails).
#![no_std]

#[cfg(feature = "std")]
extern crate std;

pub mod arena;
pub mod dispatch;
pub mod error;
#[cfg(feature = "std")]
pub mod host;
pub mod kernels;
pub mod loader;

pub use error::RuntimeError;
pub use loader::{arena_size, load, Loaded};
