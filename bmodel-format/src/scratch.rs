//! The scratch contract between the code generator (which sizes the arena) and the runtime
//! kernels (which carve their im2col panels and packed filter strips out of it).
//!
//! A convolution works on blocks of output pixels: the input patch of a block is unrolled into a
//! panel of `k_pad` rows x `block` pixels (i16 pairs for int8, f32 for float), and the filter rows of
//! [`OC_STRIP`] output channels are packed next to it.

use crate::instr::{ConvRequant, Instr};

/// Output channels computed together by the conv micro-kernel.
pub const OC_STRIP: usize = 4;
/// Pixel granularity of the micro-kernel (panel blocks are multiples of this).
pub const PIXEL_STEP: usize = 16;
/// Target panel size in bytes (fits the L2 cache of small cores).
pub const PANEL_TARGET: usize = 320 * 1024;
/// Slack added so that the kernels can align their scratch views to 64 bytes.
pub const ALIGN_SLACK: usize = 64;

/// Geometry of a conv's scratch use, shared by codegen and runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvScratch {
    /// reduction length per group (`ic/group * kh * kw`)
    pub k: usize,
    /// reduction length padded for the kernel (even for int8 pairs)
    pub k_pad: usize,
    /// output pixels per block (multiple of [`PIXEL_STEP`])
    pub block: usize,
    /// bytes per panel element (2 for int8 as i16, 4 for float as f32)
    pub elem: usize,
}

impl ConvScratch {
    /// Scratch layout of a conv with reduction length `k`, `pixels` output pixels per image and
    /// integer (`int = true`) or float arithmetic.
    pub fn new(k: usize, pixels: usize, int: bool) -> ConvScratch {
        let elem = if int { 2 } else { 4 };
        let k_pad = if int { k.div_ceil(2) * 2 } else { k };
        let by_cache = (PANEL_TARGET / (k_pad.max(1) * elem)) / PIXEL_STEP * PIXEL_STEP;
        let by_size = pixels.div_ceil(PIXEL_STEP) * PIXEL_STEP;
        let block = by_cache.max(PIXEL_STEP).min(by_size.max(PIXEL_STEP));
        ConvScratch { k, k_pad, block, elem }
    }

    /// Bytes of the panel.
    pub fn panel_bytes(&self) -> usize {
        self.k_pad * self.block * self.elem
    }

    /// Bytes of one packed filter strip.
    pub fn strip_bytes(&self) -> usize {
        self.k_pad * OC_STRIP * self.elem
    }

    /// Total scratch bytes including alignment slack.
    pub fn total_bytes(&self) -> usize {
        self.panel_bytes() + self.strip_bytes() + 2 * ALIGN_SLACK
    }
}

/// Scratch layout of a conv instruction, `None` for other instructions.
pub fn conv_scratch(instr: &Instr) -> Option<ConvScratch> {
    match instr {
        Instr::Conv2d { x, y, win, group, requant, .. } => {
            let g = (*group).max(1) as usize;
            let k = (x.shape[1] as usize / g) * win.kernel[0] as usize * win.kernel[1] as usize;
            let pixels = y.shape[2] as usize * y.shape[3] as usize;
            Some(ConvScratch::new(k, pixels, !matches!(requant, ConvRequant::Float)))
        }
        _ => None,
    }
}

/// Scratch bytes an instruction needs (0 when it needs none).
pub fn scratch_bytes(instr: &Instr) -> u64 {
    conv_scratch(instr).map(|s| s.total_bytes() as u64).unwrap_or(0)
}

/// Element count of an int8 conv filter in the packed ("strip") layout the kernels read:
/// per group, per strip of [`OC_STRIP`] output channels, `[k_pad/2][OC_STRIP][2]` codes (zero
/// padded past the last channel and past `k`), with `k = ic/group * kh * kw` and `k_pad` even.
pub fn packed_filter_len(oc: usize, group: usize, k: usize) -> usize {
    let ocg = oc / group.max(1);
    group.max(1) * ocg.div_ceil(OC_STRIP) * k.div_ceil(2) * 2 * OC_STRIP
}

/// Index in the packed layout of filter element `(oc, k)` (see [`packed_filter_len`]).
pub fn packed_filter_index(oc: usize, k: usize, oc_per_group: usize, k_len: usize) -> usize {
    let k_pad = k_len.div_ceil(2) * 2;
    let strips = oc_per_group.div_ceil(OC_STRIP);
    let (g, o) = (oc / oc_per_group, oc % oc_per_group);
    let strip = g * strips + o / OC_STRIP;
    strip * k_pad * OC_STRIP + ((k / 2) * OC_STRIP + o % OC_STRIP) * 2 + k % 2
}
