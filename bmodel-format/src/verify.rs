//! Every check the runtime relies on, done once at load: sections, plan, I/O tensors, and for each
//! instruction its operands inside their regions, consistent shapes and types, legal aliasing and
//! enough scratch. After [`verify`] succeeds the kernels may index without further checks.

use crate::instr::{AddParams, CastMode, ConvRequant, Instr, LeakyParams, MulParams, PoolMode, Window};
use crate::net::Bmodel;
use crate::scratch::scratch_bytes;
use crate::tensor::{DType, IoTensor, Region, TensorRef};
use crate::FormatError;
use core::fmt;

/// Why an instruction was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InstrProblem {
    /// An operand reaches past the end of its region.
    OutOfRegion {
        /// operand role (`x`, `w`, `y`, ...)
        operand: &'static str,
        /// end of the operand in bytes
        end: u64,
        /// size of its region
        region_size: u64,
    },
    /// The output is in the coefficient region.
    OutputInCoeff,
    /// Shapes do not agree with the op's rule.
    Shape(&'static str),
    /// Element types do not agree with the op's arithmetic.
    DType(&'static str),
    /// Window with a zero kernel, stride or dilation, or a zero group.
    BadWindow,
    /// The output overlaps an input in a way the kernel does not support.
    Alias,
    /// The plan's scratch area is smaller than the instruction needs.
    Scratch {
        /// bytes needed
        needed: u64,
        /// bytes planned
        planned: u64,
    },
}

impl fmt::Display for InstrProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstrProblem::OutOfRegion { operand, end, region_size } => {
                write!(f, "operand '{operand}' ends at byte {end}, past its region of {region_size} bytes")
            }
            InstrProblem::OutputInCoeff => f.write_str("output lies in the read-only coefficient region"),
            InstrProblem::Shape(s) => write!(f, "inconsistent shapes: {s}"),
            InstrProblem::DType(s) => write!(f, "unsupported element types: {s}"),
            InstrProblem::BadWindow => f.write_str("zero kernel, stride, dilation or group"),
            InstrProblem::Alias => f.write_str("output overlaps an input"),
            InstrProblem::Scratch { needed, planned } => {
                write!(f, "needs {needed} scratch bytes, plan has {planned}")
            }
        }
    }
}

/// Checks the whole model; returns the parsed model on success.
pub fn verify(bytes: &[u8]) -> Result<Bmodel<'_>, FormatError> {
    let m = Bmodel::parse(bytes)?;
    let plan = m.meta.plan;
    if plan.coeff_size as usize != m.coeff.len() {
        return Err(FormatError::BadPlan("coefficient size differs from the coefficient section"));
    }
    if plan.alignment == 0 || !plan.alignment.is_power_of_two() {
        return Err(FormatError::BadPlan("alignment is not a power of two"));
    }
    if plan.scratch_offset < plan.activation_size {
        return Err(FormatError::BadPlan("scratch overlaps the activation region"));
    }
    if plan.arena_size() > u32::MAX as u64 {
        return Err(FormatError::BadPlan("arena larger than 4 GiB"));
    }
    let act = plan.activation_size as u64;
    for (i, t) in m.meta.inputs.iter().chain(m.meta.outputs.iter()).enumerate() {
        check_io(t, act).map_err(|problem| FormatError::BadIo { index: i as u32, problem })?;
    }
    let sizes = RegionSizes { coeff: m.coeff.len() as u64, act };
    let mut count = 0u32;
    for (index, instr) in m.instrs().enumerate() {
        let instr = instr?;
        let fail = |problem| FormatError::BadInstr { index: index as u32, mnemonic: instr.mnemonic(), problem };
        check_instr(&instr, &sizes).map_err(fail)?;
        let needed = scratch_bytes(&instr);
        if needed > plan.scratch_size as u64 {
            return Err(fail(InstrProblem::Scratch { needed, planned: plan.scratch_size as u64 }));
        }
        count += 1;
    }
    if count != m.meta.instr_count {
        return Err(FormatError::BadInstruction);
    }
    Ok(m)
}

struct RegionSizes {
    coeff: u64,
    act: u64,
}

fn check_io(t: &IoTensor<'_>, act: u64) -> Result<(), InstrProblem> {
    if t.storage.region != Region::Activation {
        return Err(InstrProblem::OutputInCoeff);
    }
    if t.storage.byte_end() > act {
        return Err(InstrProblem::OutOfRegion { operand: "io", end: t.storage.byte_end(), region_size: act });
    }
    let n: u64 = t.dims.iter().map(|&d| d as u64).product();
    if n != t.storage.numel() {
        return Err(InstrProblem::Shape("io dims differ from storage shape"));
    }
    Ok(())
}

fn in_region(name: &'static str, t: &TensorRef, s: &RegionSizes) -> Result<(), InstrProblem> {
    let size = match t.region {
        Region::Coeff => s.coeff,
        Region::Activation => s.act,
    };
    if t.byte_end() > size {
        return Err(InstrProblem::OutOfRegion { operand: name, end: t.byte_end(), region_size: size });
    }
    Ok(())
}

fn overlaps(a: &TensorRef, b: &TensorRef) -> bool {
    a.region == b.region && (a.offset as u64) < b.byte_end() && (b.offset as u64) < a.byte_end()
}

fn same_place(a: &TensorRef, b: &TensorRef) -> bool {
    a.region == b.region && a.offset == b.offset && a.byte_len() == b.byte_len()
}

fn ensure(cond: bool, p: InstrProblem) -> Result<(), InstrProblem> {
    if cond {
        Ok(())
    } else {
        Err(p)
    }
}

fn check_window(w: &Window) -> Result<(), InstrProblem> {
    let ok = w.kernel.iter().chain(w.stride.iter()).chain(w.dilation.iter()).all(|&v| v > 0);
    ensure(ok, InstrProblem::BadWindow)
}

/// Output extent of a window sliding over `i` input positions (None if the window never fits).
fn conv_out(i: u32, k: u16, s: u16, p0: u16, p1: u16, d: u16) -> Option<u32> {
    let eff = (d as u64) * (k as u64 - 1) + 1;
    let span = i as u64 + p0 as u64 + p1 as u64;
    if span < eff {
        return None;
    }
    Some(((span - eff) / s as u64 + 1) as u32)
}

/// Every dim of `a` equals `y`'s or is 1 (numpy broadcasting at equal rank).
fn broadcasts(a: &TensorRef, y: &TensorRef) -> bool {
    (0..4).all(|k| a.shape[k] == y.shape[k] || a.shape[k] == 1)
}

fn check_instr(instr: &Instr, s: &RegionSizes) -> Result<(), InstrProblem> {
    let ops = instr.operands();
    for (name, t) in ops.iter() {
        in_region(name, t, s)?;
        ensure(t.numel() > 0, InstrProblem::Shape("empty operand"))?;
    }
    let y = instr.output();
    ensure(y.region == Region::Activation, InstrProblem::OutputInCoeff)?;
    let elementwise = matches!(
        instr,
        Instr::LeakyRelu { .. }
            | Instr::Relu { .. }
            | Instr::MulShift { .. }
            | Instr::Lut { .. }
            | Instr::Add { .. }
            | Instr::Mul { .. }
            | Instr::Sigmoid { .. }
    );
    for (name, t) in ops.iter().take(ops.len() - 1) {
        if overlaps(t, &y) {
            let legal = elementwise && *name != "table" && same_place(t, &y) && t.dtype.size() == y.dtype.size();
            ensure(legal, InstrProblem::Alias)?;
        }
    }
    match *instr {
        Instr::Conv2d { x, w, bias, y, win, group, requant, .. }
        | Instr::Deconv2d { x, w, bias, y, win, group, requant, .. } => {
            check_window(&win)?;
            let g = group;
            ensure(g > 0, InstrProblem::BadWindow)?;
            let [n, ic, ih, iw] = x.shape;
            let [yn, oc, oh, ow] = y.shape;
            ensure(n == yn, InstrProblem::Shape("batch differs"))?;
            ensure(ic % g == 0 && oc % g == 0, InstrProblem::Shape("channels not divisible by group"))?;
            let kk = win.kernel[0] as u64 * win.kernel[1] as u64;
            let is_deconv = matches!(instr, Instr::Deconv2d { .. });
            let int_conv = !is_deconv && !matches!(requant, ConvRequant::Float);
            let w_numel = if is_deconv {
                ic as u64 * (oc / g) as u64 * kk
            } else if int_conv {
                crate::scratch::packed_filter_len(oc as usize, g as usize, (ic / g) as usize * kk as usize) as u64
            } else {
                oc as u64 * (ic / g) as u64 * kk
            };
            ensure(w.numel() == w_numel, InstrProblem::Shape("filter size"))?;
            let (eh, ew) = if is_deconv {
                let f = |i: u32, k: u16, st: u16, p0: u16, p1: u16, d: u16| -> Option<u32> {
                    let full = (i as u64 - 1) * st as u64 + d as u64 * (k as u64 - 1) + 1;
                    full.checked_sub(p0 as u64 + p1 as u64).filter(|&v| v > 0).map(|v| v as u32)
                };
                (
                    f(ih, win.kernel[0], win.stride[0], win.pad[0], win.pad[2], win.dilation[0]),
                    f(iw, win.kernel[1], win.stride[1], win.pad[1], win.pad[3], win.dilation[1]),
                )
            } else {
                (
                    conv_out(ih, win.kernel[0], win.stride[0], win.pad[0], win.pad[2], win.dilation[0]),
                    conv_out(iw, win.kernel[1], win.stride[1], win.pad[1], win.pad[3], win.dilation[1]),
                )
            };
            ensure(eh == Some(oh) && ew == Some(ow), InstrProblem::Shape("output size"))?;
            match requant {
                ConvRequant::Float => {
                    ensure(
                        x.dtype.is_float() && w.dtype.is_float() && y.dtype.is_float(),
                        InstrProblem::DType("float conv"),
                    )?;
                    if let Some(b) = bias {
                        ensure(b.numel() == oc as u64, InstrProblem::Shape("bias"))?;
                        ensure(b.dtype.is_float(), InstrProblem::DType("float bias"))?;
                    }
                }
                ConvRequant::MulShift { table, .. } | ConvRequant::Qdm { table } => {
                    ensure(
                        x.dtype.is_int8() && w.dtype.is_int8() && y.dtype.is_int8(),
                        InstrProblem::DType("int8 conv"),
                    )?;
                    ensure(
                        table.dtype == DType::I32 && table.numel() == 2 * oc as u64,
                        InstrProblem::Shape("requant table"),
                    )?;
                    ensure(table.region == Region::Coeff, InstrProblem::DType("requant table region"))?;
                    if let Some(b) = bias {
                        ensure(b.numel() == oc as u64, InstrProblem::Shape("bias"))?;
                        ensure(b.dtype == DType::I32, InstrProblem::DType("int bias"))?;
                    }
                }
            }
        }
        Instr::Pool2d { x, y, win, mode } => {
            check_window(&win)?;
            ensure(x.shape[0] == y.shape[0] && x.shape[1] == y.shape[1], InstrProblem::Shape("pool channels"))?;
            let oh = conv_out(x.shape[2], win.kernel[0], win.stride[0], win.pad[0], win.pad[2], win.dilation[0]);
            let ow = conv_out(x.shape[3], win.kernel[1], win.stride[1], win.pad[1], win.pad[3], win.dilation[1]);
            ensure(oh == Some(y.shape[2]) && ow == Some(y.shape[3]), InstrProblem::Shape("pool output size"))?;
            // every window must hold at least one real element (no window entirely in padding)
            ensure(
                win.pad[0] < win.kernel[0]
                    && win.pad[2] < win.kernel[0]
                    && win.pad[1] < win.kernel[1]
                    && win.pad[3] < win.kernel[1],
                InstrProblem::BadWindow,
            )?;
            match mode {
                PoolMode::Max => ensure(x.dtype == y.dtype, InstrProblem::DType("max pool"))?,
                PoolMode::AvgInt { .. } => {
                    ensure(x.dtype.is_int8() && y.dtype.is_int8(), InstrProblem::DType("int avg pool"))?
                }
                PoolMode::AvgFloat { .. } => {
                    ensure(x.dtype.is_float() && y.dtype.is_float(), InstrProblem::DType("float avg pool"))?
                }
            }
        }
        Instr::Upsample { x, y, scale } => {
            ensure(scale[0] > 0 && scale[1] > 0, InstrProblem::BadWindow)?;
            let e = [x.shape[0], x.shape[1], x.shape[2] * scale[0] as u32, x.shape[3] * scale[1] as u32];
            ensure(e == y.shape, InstrProblem::Shape("upsample output"))?;
            ensure(x.dtype == y.dtype, InstrProblem::DType("upsample"))?;
        }
        Instr::LeakyRelu { x, y, params } => {
            ensure(x.numel() == y.numel(), InstrProblem::Shape("element count"))?;
            let ok = match params {
                LeakyParams::Float { .. } => x.dtype.is_float() && y.dtype.is_float(),
                _ => x.dtype.is_int8() && y.dtype.is_int8(),
            };
            ensure(ok, InstrProblem::DType("leaky relu"))?;
        }
        Instr::Relu { x, y } => {
            ensure(x.numel() == y.numel(), InstrProblem::Shape("element count"))?;
            ensure(x.dtype == y.dtype && (x.dtype.is_float() || x.dtype.is_int8()), InstrProblem::DType("relu"))?;
        }
        Instr::MulShift { x, y, .. } => {
            ensure(x.numel() == y.numel(), InstrProblem::Shape("element count"))?;
            ensure(x.dtype.is_int8() && y.dtype.is_int8(), InstrProblem::DType("mulshift"))?;
        }
        Instr::ConcatPart { x, y, axis, start, requant } => {
            ensure(axis < 4, InstrProblem::Shape("axis"))?;
            for d in 0..4 {
                if d == axis as usize {
                    ensure(start as u64 + x.shape[d] as u64 <= y.shape[d] as u64, InstrProblem::Shape("concat range"))?;
                } else {
                    ensure(x.shape[d] == y.shape[d], InstrProblem::Shape("concat dims"))?;
                }
            }
            match requant {
                Some(_) => ensure(x.dtype.is_int8() && y.dtype.is_int8(), InstrProblem::DType("concat requant"))?,
                None => ensure(x.dtype == y.dtype, InstrProblem::DType("concat"))?,
            }
        }
        Instr::Add { a, b, y, params, .. } => {
            ensure(broadcasts(&a, &y) && broadcasts(&b, &y), InstrProblem::Shape("add shapes"))?;
            let ok = match params {
                AddParams::Float => a.dtype.is_float() && b.dtype.is_float() && y.dtype.is_float(),
                _ => a.dtype.is_int8() && b.dtype.is_int8() && y.dtype.is_int8(),
            };
            ensure(ok, InstrProblem::DType("add"))?;
        }
        Instr::Mul { a, b, y, params, .. } => {
            ensure(broadcasts(&a, &y) && broadcasts(&b, &y), InstrProblem::Shape("mul shapes"))?;
            let ok = match params {
                MulParams::Float => a.dtype.is_float() && b.dtype.is_float() && y.dtype.is_float(),
                MulParams::Int { .. } => a.dtype.is_int8() && b.dtype.is_int8() && y.dtype.is_int8(),
            };
            ensure(ok, InstrProblem::DType("mul"))?;
        }
        Instr::Copy { x, y, start, strides } => {
            ensure(x.dtype == y.dtype, InstrProblem::DType("copy"))?;
            // the last element read must lie inside x (every index is at most this one)
            let last: u64 = start as u64 + (0..4).map(|k| (y.shape[k] as u64 - 1) * strides[k] as u64).sum::<u64>();
            ensure(last < x.numel(), InstrProblem::Shape("copy reads past its source"))?;
        }
        Instr::Pad { x, y, before, .. } => {
            ensure(x.dtype == y.dtype, InstrProblem::DType("pad"))?;
            let fits = (0..4).all(|k| x.shape[k] as u64 + before[k] as u64 <= y.shape[k] as u64);
            ensure(fits, InstrProblem::Shape("pad output smaller than input plus padding"))?;
        }
        Instr::Sigmoid { x, y } => {
            ensure(x.numel() == y.numel(), InstrProblem::Shape("element count"))?;
            ensure(x.dtype.is_float() && y.dtype.is_float(), InstrProblem::DType("sigmoid"))?;
        }
        Instr::Softmax { x, y, axis } => {
            ensure(axis < 4, InstrProblem::Shape("axis"))?;
            ensure(x.shape == y.shape, InstrProblem::Shape("softmax shapes"))?;
            ensure(x.dtype.is_float() && y.dtype.is_float(), InstrProblem::DType("softmax"))?;
        }
        Instr::Lut { x, y, table } => {
            ensure(x.numel() == y.numel(), InstrProblem::Shape("element count"))?;
            ensure(x.dtype.is_int8() && y.dtype.is_int8(), InstrProblem::DType("lut"))?;
            ensure(table.numel() == 256 && table.dtype == y.dtype, InstrProblem::Shape("lut table"))?;
        }
        Instr::Cast { x, y, mode } => {
            ensure(x.numel() == y.numel(), InstrProblem::Shape("element count"))?;
            let ok = match mode {
                CastMode::Quantize { .. } | CastMode::QuantizeBf16 { .. } => x.dtype.is_float() && y.dtype.is_int8(),
                CastMode::Dequantize { .. } | CastMode::DequantizeBf16 { .. } => {
                    x.dtype.is_int8() && y.dtype.is_float()
                }
                CastMode::Float { .. } => x.dtype.is_float() && y.dtype.is_float(),
            };
            ensure(ok, InstrProblem::DType("cast"))?;
        }
    }
    Ok(())
}
