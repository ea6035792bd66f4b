//! The memory plan: sizes of the coefficient region and of the caller's arena.

use serde::{Deserialize, Serialize};

/// Memory needs of a network. The arena is `[activations | scratch]`; coefficients stay in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryPlan {
    /// Alignment (bytes) of every activation offset, per the chip.
    pub alignment: u32,
    /// Bytes of the coefficient region (equals the header's coefficient length).
    pub coeff_size: u32,
    /// Bytes of the activation region (offset 0 of the arena).
    pub activation_size: u32,
    /// Offset of the kernels' scratch area in the arena (after the activations, aligned).
    pub scratch_offset: u32,
    /// Bytes of the scratch area (im2col panels and accumulators).
    pub scratch_size: u32,
}

impl MemoryPlan {
    /// Total arena bytes the caller must provide.
    pub fn arena_size(&self) -> u64 {
        self.scratch_offset as u64 + self.scratch_size as u64
    }
}
