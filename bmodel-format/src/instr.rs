//! The instruction set: one enum, every operand a [`TensorRef`] (region + offset + shape + type),
//! scalar quantization parameters inline, per-channel tables in the coefficient region.

use crate::tensor::TensorRef;
use serde::{Deserialize, Serialize};

/// Integer rounding of a right shift or of a float-to-int conversion (tpu-mlir's `round_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoundMode {
    /// ties away from zero (`std::round`)
    HalfAwayFromZero,
    /// ties towards +inf (`floor(v + 0.5)`)
    HalfUp,
    /// ties towards -inf (`ceil(v - 0.5)`)
    HalfDown,
    /// ties to even (banker's rounding)
    HalfToEven,
    /// floor
    Down,
    /// ceil
    Up,
    /// truncation
    TowardsZero,
}

/// Geometry of a 2-D convolution / deconvolution / pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// kernel height, width
    pub kernel: [u16; 2],
    /// stride height, width
    pub stride: [u16; 2],
    /// padding top, left, bottom, right
    pub pad: [u16; 4],
    /// dilation height, width
    pub dilation: [u16; 2],
}

/// How the int32 accumulator of a conv becomes the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConvRequant {
    /// BM1684X: `y = sat(RightShiftRound((acc + bias) * M_c, r_c, round) + zp)`; `table` is i32
    /// `[1, 1, oc, 2]` holding `(M_c, r_c)` per output channel.
    MulShift {
        /// per-channel (multiplier, rshift) pairs
        table: TensorRef,
        /// output zero point
        zero_point: i32,
        /// rounding of the shift
        round: RoundMode,
    },
    /// CV18xx QDM: `t = clamp_i32((acc + bias) * M_c + 2^30 >> 31)`, `y = sat(RightShiftRound(t, r_c,
    /// HalfAwayFromZero))`; same table layout.
    Qdm {
        /// per-channel (multiplier, rshift) pairs
        table: TensorRef,
    },
    /// Float conv: accumulate in f32, round the result to the output type.
    Float,
}

/// Parameters of a leaky ReLU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum LeakyParams {
    /// BM1684X int8: `x >= 0 ? x : sat(RightShiftRound(x * m, r, round))`.
    Bm {
        /// negative-slope multiplier
        multiplier: i32,
        /// negative-slope shift
        rshift: i32,
        /// rounding of the shift
        round: RoundMode,
    },
    /// CV18xx int8: positive and negative branches each `sat(RightShiftRound(x * m, r, HalfUp))`;
    /// `(m_pos, r_pos) = (1, 0)` or `m_pos = 0` is the identity.
    Cv {
        /// positive-branch multiplier
        m_pos: i32,
        /// positive-branch shift
        r_pos: i32,
        /// negative-branch multiplier
        m_neg: i32,
        /// negative-branch shift
        r_neg: i32,
    },
    /// Float: `x > 0 ? x : alpha * x` in f32, rounded to the output type.
    Float {
        /// negative slope
        alpha: f32,
    },
}

/// Pooling kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum PoolMode {
    /// maximum over the window (padding never wins)
    Max,
    /// int8 average: `sat(RightShiftRound(sum * multiplier, rshift, round))`
    AvgInt {
        /// multiplier applied to the window sum
        multiplier: i32,
        /// right shift
        rshift: i32,
        /// rounding
        round: RoundMode,
        /// divide by the full window (true) or only the valid elements (false)
        count_include_pad: bool,
    },
    /// float average in f32
    AvgFloat {
        /// divide by the full window (true) or only the valid elements (false)
        count_include_pad: bool,
    },
}

/// Element-wise addition parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum AddParams {
    /// BM1684X int8: `sat(RightShiftRound(a*m0, r0, HalfUp) + RightShiftRound(b*m1, r1, HalfUp))`.
    Bm {
        /// per-input multipliers
        multiplier: [i32; 2],
        /// per-input shifts
        rshift: [i32; 2],
    },
    /// CV18xx int8: `sat(RightShiftRound(a*m0 + b*m1, rshift, HalfUp))`.
    Cv {
        /// per-input multipliers
        multiplier: [i32; 2],
        /// common shift
        rshift: i32,
    },
    /// Float: `a + b` in f32, rounded to the output type.
    Float,
}

/// Element-wise multiplication parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum MulParams {
    /// int8 (BM1684X and CV18xx): `sat(RightShiftRound(a·b·multiplier, rshift, HalfUp))`.
    Int {
        /// multiplier
        multiplier: i32,
        /// right shift
        rshift: i32,
    },
    /// Float: `a · b` in f32, rounded to the output type.
    Float,
}

/// Conversion performed by [`Instr::Cast`]; the direction follows the operand types.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum CastMode {
    /// float -> int8: `sat(round(x * inv_scale) + zero_point)` with the product in f32.
    Quantize {
        /// 1/scale as f32
        inv_scale: f32,
        /// output zero point
        zero_point: i32,
        /// rounding of the product
        round: RoundMode,
    },
    /// CV18xx float -> int8: `sat(round(bf16_mul(bf16(x), bf16(inv_scale))))`.
    QuantizeBf16 {
        /// 1/scale as f32 (rounded to bf16 by the kernel)
        inv_scale: f32,
        /// rounding of the product
        round: RoundMode,
    },
    /// int8 -> float: `scale * (q - zero_point)` in f32, then rounded to the output type.
    Dequantize {
        /// scale as f32
        scale: f32,
        /// input zero point
        zero_point: i32,
    },
    /// CV18xx int8 -> float: `bf16(bf16(q) * bf16(scale))`, then widened to the output type.
    DequantizeBf16 {
        /// scale as f32
        scale: f32,
    },
    /// float -> float (f32/f16/bf16), round to nearest even; `cv_bf16` selects CV18xx's bf16 rule
    /// (inf/NaN -> 0x7F7F).
    Float {
        /// use the CV18xx bf16 conversion
        cv_bf16: bool,
    },
}

/// One instruction of the stream. Outputs never alias inputs unless the op is element-wise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Instr {
    /// 2-D convolution (grouped), optional bias and fused ReLU.
    Conv2d {
        /// input `[n, ic, ih, iw]`
        x: TensorRef,
        /// filter (coefficients): float `[oc, ic/group, kh, kw]`; int8 in the packed strip layout of
        /// [`crate::scratch::packed_filter_len`]
        w: TensorRef,
        /// bias `[1, oc, 1, 1]` (i32 for int8, f32 for float) or none
        bias: Option<TensorRef>,
        /// output `[n, oc, oh, ow]`
        y: TensorRef,
        /// window geometry
        win: Window,
        /// number of groups
        group: u32,
        /// requantization
        requant: ConvRequant,
        /// clamp at zero (int8: at the zero point) after requant
        relu: bool,
    },
    /// 2-D transposed convolution (grouped); same fields as [`Instr::Conv2d`], `w` is `[oc, ic/group, kh, kw]`
    /// stored per group as tpu-mlir stores it.
    Deconv2d {
        /// input
        x: TensorRef,
        /// filter
        w: TensorRef,
        /// optional bias
        bias: Option<TensorRef>,
        /// output
        y: TensorRef,
        /// window geometry (stride = upsampling factor)
        win: Window,
        /// number of groups
        group: u32,
        /// requantization
        requant: ConvRequant,
        /// clamp at zero after requant
        relu: bool,
    },
    /// Max / average pooling.
    Pool2d {
        /// input
        x: TensorRef,
        /// output
        y: TensorRef,
        /// window geometry
        win: Window,
        /// pooling kind
        mode: PoolMode,
    },
    /// Nearest-neighbour upsampling by integer factors (pure replication).
    Upsample {
        /// input
        x: TensorRef,
        /// output
        y: TensorRef,
        /// factor along H, W
        scale: [u16; 2],
    },
    /// Leaky ReLU.
    LeakyRelu {
        /// input
        x: TensorRef,
        /// output
        y: TensorRef,
        /// slope parameters
        params: LeakyParams,
    },
    /// Plain ReLU (float or int8, clamp at the zero point `zp`).
    Relu {
        /// input
        x: TensorRef,
        /// output
        y: TensorRef,
    },
    /// int8 requant by one multiplier and shift: `sat(RightShiftRound(x*m, r, round) + zp)`.
    MulShift {
        /// input
        x: TensorRef,
        /// output
        y: TensorRef,
        /// multiplier
        multiplier: i32,
        /// right shift
        rshift: i32,
        /// rounding
        round: RoundMode,
        /// output zero point
        zero_point: i32,
    },
    /// Copy `x` into `y` starting at `start` along `axis` (one Concat input), optionally with an int8
    /// requant `sat(RightShiftRound(x*m, r, HalfUp))` when `requant = Some((m, r))`.
    ConcatPart {
        /// one concat input
        x: TensorRef,
        /// the whole concat output
        y: TensorRef,
        /// concat axis in NCHW (0..4)
        axis: u8,
        /// first index of `x` along the axis in `y`
        start: u32,
        /// optional int8 (multiplier, rshift)
        requant: Option<(i32, i32)>,
    },
    /// Element-wise addition with broadcasting (every input dim equals the output's or is 1).
    Add {
        /// first input
        a: TensorRef,
        /// second input
        b: TensorRef,
        /// output
        y: TensorRef,
        /// arithmetic
        params: AddParams,
        /// clamp the sum at zero before saturation / rounding
        relu: bool,
    },
    /// 256-entry table lookup on 8-bit codes: `y = table[x as u8]`.
    Lut {
        /// input (i8/u8)
        x: TensorRef,
        /// output (i8/u8)
        y: TensorRef,
        /// the table (256 entries of the output type)
        table: TensorRef,
    },
    /// Type conversion.
    Cast {
        /// input
        x: TensorRef,
        /// output
        y: TensorRef,
        /// conversion
        mode: CastMode,
    },
    /// Element-wise multiplication with broadcasting (every input dim equals the output's or is 1).
    Mul {
        /// first input
        a: TensorRef,
        /// second input
        b: TensorRef,
        /// output
        y: TensorRef,
        /// arithmetic
        params: MulParams,
        /// clamp the product at zero before saturation / rounding
        relu: bool,
    },
    /// Strided gather-copy (Slice, Permute, Gather with a constant index): `y` is dense over its
    /// shape and `y[i0, i1, i2, i3] = x.flat[start + Σ i_k · strides[k]]` (elements, not bytes).
    Copy {
        /// source (only its element count matters)
        x: TensorRef,
        /// destination
        y: TensorRef,
        /// first source element
        start: u32,
        /// source element step per destination axis
        strides: [u32; 4],
    },
    /// Constant padding: `y` is filled with `value` and `x` is placed at offsets `before`.
    Pad {
        /// input
        x: TensorRef,
        /// output (each dim at least `x`'s plus `before`)
        y: TensorRef,
        /// leading padding per axis
        before: [u32; 4],
        /// fill value as the raw little-endian bits of `y`'s element type (low bytes used)
        value: u32,
    },
    /// Float logistic function `1 / (1 + exp(-x))` in f32, rounded to the output type.
    Sigmoid {
        /// input
        x: TensorRef,
        /// output
        y: TensorRef,
    },
    /// Float softmax along `axis` (max-subtracted, f32), rounded to the output type.
    Softmax {
        /// input
        x: TensorRef,
        /// output (same shape)
        y: TensorRef,
        /// axis in NCHW (0..4)
        axis: u8,
    },
}

impl Instr {
    /// Short mnemonic for listings.
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Instr::Conv2d { .. } => "conv2d",
            Instr::Deconv2d { .. } => "deconv2d",
            Instr::Pool2d { .. } => "pool2d",
            Instr::Upsample { .. } => "upsample",
            Instr::LeakyRelu { .. } => "leaky_relu",
            Instr::Relu { .. } => "relu",
            Instr::MulShift { .. } => "mulshift",
            Instr::ConcatPart { .. } => "concat_part",
            Instr::Add { .. } => "add",
            Instr::Lut { .. } => "lut",
            Instr::Cast { .. } => "cast",
            Instr::Mul { .. } => "mul",
            Instr::Copy { .. } => "copy",
            Instr::Pad { .. } => "pad",
            Instr::Sigmoid { .. } => "sigmoid",
            Instr::Softmax { .. } => "softmax",
        }
    }

    /// Every operand with a role name: inputs first, the output last.
    pub fn operands(&self) -> heapless::Vec<(&'static str, TensorRef), 5> {
        let mut v = heapless::Vec::new();
        let mut push = |n, t| {
            let _ = v.push((n, t));
        };
        match *self {
            Instr::Conv2d { x, w, bias, y, requant, .. } | Instr::Deconv2d { x, w, bias, y, requant, .. } => {
                push("x", x);
                push("w", w);
                if let Some(b) = bias {
                    push("bias", b);
                }
                if let ConvRequant::MulShift { table, .. } | ConvRequant::Qdm { table } = requant {
                    push("requant", table);
                }
                push("y", y);
            }
            Instr::Pool2d { x, y, .. }
            | Instr::Upsample { x, y, .. }
            | Instr::LeakyRelu { x, y, .. }
            | Instr::Relu { x, y }
            | Instr::MulShift { x, y, .. }
            | Instr::ConcatPart { x, y, .. }
            | Instr::Cast { x, y, .. }
            | Instr::Copy { x, y, .. }
            | Instr::Pad { x, y, .. }
            | Instr::Sigmoid { x, y }
            | Instr::Softmax { x, y, .. } => {
                push("x", x);
                push("y", y);
            }
            Instr::Add { a, b, y, .. } | Instr::Mul { a, b, y, .. } => {
                push("a", a);
                push("b", b);
                push("y", y);
            }
            Instr::Lut { x, y, table } => {
                push("x", x);
                push("table", table);
                push("y", y);
            }
        }
        v
    }

    /// Visit every operand mutably (inputs first, the output last), e.g. to relocate offsets.
    pub fn for_each_operand_mut(&mut self, mut f: impl FnMut(&mut TensorRef)) {
        match self {
            Instr::Conv2d { x, w, bias, y, requant, .. } | Instr::Deconv2d { x, w, bias, y, requant, .. } => {
                f(x);
                f(w);
                if let Some(b) = bias {
                    f(b);
                }
                if let ConvRequant::MulShift { table, .. } | ConvRequant::Qdm { table } = requant {
                    f(table);
                }
                f(y);
            }
            Instr::Pool2d { x, y, .. }
            | Instr::Upsample { x, y, .. }
            | Instr::LeakyRelu { x, y, .. }
            | Instr::Relu { x, y }
            | Instr::MulShift { x, y, .. }
            | Instr::ConcatPart { x, y, .. }
            | Instr::Cast { x, y, .. }
            | Instr::Copy { x, y, .. }
            | Instr::Pad { x, y, .. }
            | Instr::Sigmoid { x, y }
            | Instr::Softmax { x, y, .. } => {
                f(x);
                f(y);
            }
            Instr::Add { a, b, y, .. } | Instr::Mul { a, b, y, .. } => {
                f(a);
                f(b);
                f(y);
            }
            Instr::Lut { x, y, table } => {
                f(x);
                f(table);
                f(y);
            }
        }
    }

    /// The output operand.
    pub fn output(&self) -> TensorRef {
        match *self {
            Instr::Conv2d { y, .. }
            | Instr::Deconv2d { y, .. }
            | Instr::Pool2d { y, .. }
            | Instr::Upsample { y, .. }
            | Instr::LeakyRelu { y, .. }
            | Instr::Relu { y, .. }
            | Instr::MulShift { y, .. }
            | Instr::ConcatPart { y, .. }
            | Instr::Add { y, .. }
            | Instr::Lut { y, .. }
            | Instr::Cast { y, .. }
            | Instr::Mul { y, .. }
            | Instr::Copy { y, .. }
            | Instr::Pad { y, .. }
            | Instr::Sigmoid { y, .. }
            | Instr::Softmax { y, .. } => y,
        }
    }
}
