//! Lowered op -> instructions. Activation operands carry a placeholder offset (the id of the value
//! owning their storage) that [`super::plan`] later replaces with the planned arena offset.

use super::coeff::CoeffBlob;
use super::strided::{self, View};
use super::types::{axis4, dtype_of, scale_zp, shape4};
use super::CodegenError;
use crate::ir::weights::Weights;
use crate::ir::{Func, Module, Op, ValueId};
use bmodel_format::{
    AddParams, CastMode, Chip, ConvRequant, DType, Instr, LeakyParams, MulParams, PoolMode, Region, RoundMode,
    TensorRef, Window,
};

/// Where a value's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// no storage (`none`, unused)
    Nothing,
    /// a coefficient
    Coeff(TensorRef),
    /// an activation owning its storage
    Own,
    /// an activation sharing the storage of another value (view or in-place result)
    Alias(ValueId),
}

/// Result of emission.
pub struct Emitted {
    /// instructions with the op index that produced them
    pub instrs: Vec<(usize, Instr)>,
    /// storage of every value
    pub storage: Vec<Storage>,
    /// coefficient region
    pub coeff: CoeffBlob,
    /// number of results computed in place
    pub in_place: usize,
}

struct Emitter<'m> {
    func: &'m Func,
    weights: &'m Weights,
    chip: Chip,
    coeff: CoeffBlob,
    instrs: Vec<(usize, Instr)>,
    storage: Vec<Storage>,
    /// last op index using each value (n_ops for returned values)
    last_use: Vec<usize>,
    /// latest last use over each storage class (indexed by root value)
    class_end: Vec<usize>,
    /// class holds a network input or output (never overwritten in place)
    class_pinned: Vec<bool>,
    in_place: usize,
}

/// Translate every op of `module` into instructions.
pub fn emit(module: &Module, weights: &Weights, chip: Chip) -> Result<Emitted, CodegenError> {
    let func = &module.func;
    let n_ops = func.ops.len();
    let nv = func.values.len();
    let users = func.users();
    let producers = func.producers();
    let mut last_use: Vec<usize> =
        (0..nv).map(|v| users[v].last().copied().unwrap_or(producers[v].unwrap_or(0))).collect();
    let mut pinned = vec![false; nv];
    for &r in &func.returns {
        last_use[r] = n_ops;
        pinned[r] = true;
    }
    for &a in &func.args {
        pinned[a] = true;
    }
    let mut e = Emitter {
        func,
        weights,
        chip,
        coeff: CoeffBlob::default(),
        instrs: Vec::new(),
        storage: vec![Storage::Nothing; nv],
        class_end: last_use.clone(),
        last_use,
        class_pinned: pinned,
        in_place: 0,
    };
    for &a in &func.args {
        e.storage[a] = Storage::Own;
    }
    for (i, op) in func.ops.iter().enumerate() {
        e.op(i, op)?;
    }
    Ok(Emitted { instrs: e.instrs, storage: e.storage, coeff: e.coeff, in_place: e.in_place })
}

fn win_from(op: &Op, name: &str) -> Result<Window, CodegenError> {
    let bad = |why: String| CodegenError::Op { op: name.to_string(), why };
    let k = op.attr_ints("kernel_shape").map_err(|e| bad(e.to_string()))?;
    let s = op.attr_ints_or("strides", &[1, 1]).map_err(|e| bad(e.to_string()))?;
    let p = op.attr_ints_or("pads", &[0, 0, 0, 0]).map_err(|e| bad(e.to_string()))?;
    let d = op.attr_ints_or("dilations", &[1, 1]).map_err(|e| bad(e.to_string()))?;
    if k.len() != 2 || s.len() != 2 || p.len() != 4 || d.len() != 2 {
        return Err(bad(format!("only 2-D windows are supported (kernel {k:?}, pads {p:?})")));
    }
    let u = |v: i64| u16::try_from(v).map_err(|_| bad(format!("window value {v} out of range")));
    Ok(Window {
        kernel: [u(k[0])?, u(k[1])?],
        stride: [u(s[0])?, u(s[1])?],
        pad: [u(p[0])?, u(p[1])?, u(p[2])?, u(p[3])?],
        dilation: [u(d[0])?, u(d[1])?],
    })
}

impl Emitter<'_> {
    fn name(&self, op: &Op) -> String {
        self.func.op_name(op).to_string()
    }

    fn err(&self, op: &Op, why: impl Into<String>) -> CodegenError {
        CodegenError::Op { op: format!("{} ({})", self.name(op), op.kind), why: why.into() }
    }

    fn root(&self, mut v: ValueId) -> ValueId {
        while let Storage::Alias(r) = self.storage[v] {
            v = r;
        }
        v
    }

    /// Operand reference of value `v` (activation placeholder = id of its storage root).
    fn tref(&self, v: ValueId) -> Result<TensorRef, CodegenError> {
        let val = &self.func.values[v];
        match self.storage[v] {
            Storage::Coeff(t) => Ok(t),
            Storage::Nothing => {
                Err(CodegenError::Type { tensor: val.name.clone(), why: "used before it is defined".into() })
            }
            Storage::Own | Storage::Alias(_) => Ok(TensorRef {
                region: Region::Activation,
                offset: self.root(v) as u32,
                shape: shape4(val.ty.shape(), &val.name)?,
                dtype: dtype_of(&val.ty, &val.name)?,
            }),
        }
    }

    fn result(&mut self, op: &Op) -> Result<(ValueId, TensorRef), CodegenError> {
        let r = *op.results.first().ok_or_else(|| self.err(op, "has no result"))?;
        self.storage[r] = Storage::Own;
        Ok((r, self.tref(r)?))
    }

    /// The result shares the storage of `x` (a view, or an in-place element-wise op).
    fn alias_result(&mut self, op: &Op, x: ValueId) -> Result<(ValueId, TensorRef), CodegenError> {
        let r = *op.results.first().ok_or_else(|| self.err(op, "has no result"))?;
        let root = self.root(x);
        self.storage[r] = Storage::Alias(root);
        self.class_end[root] = self.class_end[root].max(self.last_use[r]);
        self.class_pinned[root] |= self.class_pinned[r];
        Ok((r, self.tref(r)?))
    }

    /// Result of an element-wise op: in place over `x` when `x`'s storage dies here.
    fn elementwise_result(&mut self, i: usize, op: &Op, x: ValueId) -> Result<(ValueId, TensorRef), CodegenError> {
        let r = *op.results.first().ok_or_else(|| self.err(op, "has no result"))?;
        if matches!(self.storage[x], Storage::Own | Storage::Alias(_)) {
            let root = self.root(x);
            let xt = self.tref(x)?;
            let rv = &self.func.values[r];
            let same_size = dtype_of(&rv.ty, &rv.name)?.size() == xt.dtype.size() && rv.ty.numel() as u64 == xt.numel();
            if same_size && self.class_end[root] == i && !self.class_pinned[root] && !self.class_pinned[r] {
                self.in_place += 1;
                return self.alias_result(op, x);
            }
        }
        self.result(op)
    }

    fn operand(&self, op: &Op, k: usize) -> Result<ValueId, CodegenError> {
        op.operands.get(k).copied().ok_or_else(|| self.err(op, format!("missing operand {k}")))
    }

    fn is_none(&self, v: ValueId) -> bool {
        matches!(self.func.values[v].ty, crate::ir::TensorType::None)
    }

    fn push(&mut self, i: usize, instr: Instr) {
        self.instrs.push((i, instr));
    }

    fn weight(&mut self, op: &Op, v: ValueId, dtype: DType, shape: [u32; 4]) -> Result<TensorRef, CodegenError> {
        let name = self.func.values[v].name.clone();
        if let Storage::Coeff(t) = self.storage[v] {
            if t.dtype == dtype && t.numel() == shape.iter().map(|&d| d as u64).product::<u64>() {
                return Ok(TensorRef { shape, ..t });
            }
        }
        let data = self.weights.get(&name).ok_or_else(|| CodegenError::Weight {
            name: name.clone(),
            why: format!("not in the weights (needed by {})", self.name(op)),
        })?;
        let t = self.coeff.weight(&name, data, shape, dtype)?;
        self.storage[v] = Storage::Coeff(t);
        Ok(t)
    }

    fn ints(&self, op: &Op, name: &str) -> Result<Vec<i64>, CodegenError> {
        op.attr_ints(name).map_err(|e| self.err(op, e.to_string()))
    }

    fn int(&self, op: &Op, name: &str) -> Result<i64, CodegenError> {
        op.attr_i64(name).map_err(|e| self.err(op, e.to_string()))
    }

    fn i32_attr(&self, op: &Op, name: &str) -> Result<i32, CodegenError> {
        let v = self.int(op, name)?;
        i32::try_from(v).map_err(|_| self.err(op, format!("{name} = {v} out of i32")))
    }

    fn op(&mut self, i: usize, op: &Op) -> Result<(), CodegenError> {
        match op.kind.as_str() {
            "top.None" => Ok(()),
            "top.Weight" => Ok(()), // materialised on first use with the consumer's layout
            "top.Input" => {
                let x = self.operand(op, 0)?;
                self.alias_result(op, x).map(|_| ())
            }
            "tpu.Reshape" | "tpu.Squeeze" | "tpu.Unsqueeze" | "top.Reshape" => {
                let x = self.operand(op, 0)?;
                self.alias_result(op, x).map(|_| ())
            }
            "tpu.Cast" => self.cast(i, op),
            "tpu.GenericCpu" => self.generic_cpu(i, op),
            "tpu.Conv2D" => self.conv(i, op, false),
            "tpu.Deconv" => self.conv(i, op, true),
            "tpu.LeakyRelu" => self.leaky(i, op),
            "tpu.Relu" => {
                let limit = op.attr_f64_or("relu_limit", -1.0).map_err(|e| self.err(op, e.to_string()))?;
                if limit >= 0.0 {
                    return Err(self.err(op, "relu_limit is not supported"));
                }
                let xv = self.operand(op, 0)?;
                let x = self.tref(xv)?;
                let (_, y) = self.elementwise_result(i, op, xv)?;
                self.push(i, Instr::Relu { x, y });
                Ok(())
            }
            "tpu.Pool2D" => self.pool(i, op),
            "tpu.Upsample" => {
                let x = self.tref(self.operand(op, 0)?)?;
                let (_, y) = self.result(op)?;
                let sh = u16::try_from(self.int(op, "scale_h")?).map_err(|_| self.err(op, "scale_h"))?;
                let sw = u16::try_from(self.int(op, "scale_w")?).map_err(|_| self.err(op, "scale_w"))?;
                if op.attr_bool("do_relu") {
                    return Err(self.err(op, "do_relu is not supported"));
                }
                self.push(i, Instr::Upsample { x, y, scale: [sh, sw] });
                Ok(())
            }
            "tpu.MulShift" => {
                let xv = self.operand(op, 0)?;
                let x = self.tref(xv)?;
                let (r, y) = self.elementwise_result(i, op, xv)?;
                let (_, zp) = scale_zp(&self.func.values[r].ty);
                let multiplier = self.i32_attr(op, "multiplier")?;
                let rshift = self.i32_attr(op, "rshift")?;
                self.push(
                    i,
                    Instr::MulShift { x, y, multiplier, rshift, round: RoundMode::HalfUp, zero_point: zp as i32 },
                );
                Ok(())
            }
            "tpu.Concat" => self.concat(i, op),
            "tpu.Add" => self.add(i, op),
            "tpu.Mul" => self.mul(i, op),
            "tpu.Sigmoid" => {
                let xv = self.operand(op, 0)?;
                let x = self.tref(xv)?;
                let (_, y) = self.elementwise_result(i, op, xv)?;
                if !(x.dtype.is_float() && y.dtype.is_float()) {
                    return Err(self.err(op, "Sigmoid on int8 must be lowered to a tpu.Lut"));
                }
                self.push(i, Instr::Sigmoid { x, y });
                Ok(())
            }
            "tpu.Softmax" => self.softmax(i, op),
            "tpu.Slice" | "tpu.Permute" | "tpu.Gather" => self.strided_copy(i, op),
            "tpu.Pad" => self.pad(i, op),
            "tpu.Lut" => {
                let xv = self.operand(op, 0)?;
                let tv = self.operand(op, 1)?;
                let x = self.tref(xv)?;
                let (_, y) = self.elementwise_result(i, op, xv)?;
                let table = self.weight(op, tv, y.dtype, [1, 1, 1, 256])?;
                self.push(i, Instr::Lut { x, y, table });
                Ok(())
            }
            other => Err(CodegenError::Unsupported { op: self.name(op), kind: other.to_string() }),
        }
    }

    fn cast(&mut self, i: usize, op: &Op) -> Result<(), CodegenError> {
        let xv = self.operand(op, 0)?;
        let x = self.tref(xv)?;
        let (r, y) = self.result(op)?;
        let cv = self.chip.is_cv18xx();
        let mode = if x.dtype.is_float() && y.dtype.is_int8() {
            let (s, zp) = scale_zp(&self.func.values[r].ty);
            let inv_scale = (1.0 / s) as f32;
            if cv {
                CastMode::QuantizeBf16 { inv_scale, round: RoundMode::HalfToEven }
            } else {
                CastMode::Quantize { inv_scale, zero_point: zp as i32, round: RoundMode::HalfAwayFromZero }
            }
        } else if x.dtype.is_int8() && y.dtype.is_float() {
            let (s, zp) = scale_zp(&self.func.values[xv].ty);
            if cv {
                CastMode::DequantizeBf16 { scale: s as f32 }
            } else {
                CastMode::Dequantize { scale: s as f32, zero_point: zp as i32 }
            }
        } else if x.dtype.is_float() && y.dtype.is_float() {
            CastMode::Float { cv_bf16: cv }
        } else {
            return Err(self.err(op, format!("cast {} -> {} is not supported", x.dtype.name(), y.dtype.name())));
        };
        self.push(i, Instr::Cast { x, y, mode });
        Ok(())
    }

    fn generic_cpu(&mut self, i: usize, op: &Op) -> Result<(), CodegenError> {
        let name = op.attr_str("cpu_op_name").map_err(|e| self.err(op, e.to_string()))?;
        if name != "quant" {
            return Err(CodegenError::Unsupported { op: self.name(op), kind: format!("tpu.GenericCpu {name}") });
        }
        let x = self.tref(self.operand(op, 0)?)?;
        let (r, y) = self.result(op)?;
        let inv_scale = match op.attr_f64("param_scale") {
            Ok(s) => s as f32,
            Err(_) => (1.0 / scale_zp(&self.func.values[r].ty).0) as f32,
        };
        if !(x.dtype.is_float() && y.dtype.is_int8()) {
            return Err(self.err(op, "quant must map float to int8"));
        }
        let mode = CastMode::Quantize { inv_scale, zero_point: 0, round: RoundMode::HalfToEven };
        self.push(i, Instr::Cast { x, y, mode });
        Ok(())
    }

    fn conv(&mut self, i: usize, op: &Op, deconv: bool) -> Result<(), CodegenError> {
        let x = self.tref(self.operand(op, 0)?)?;
        let wv = self.operand(op, 1)?;
        let bv = op.operands.get(2).copied().filter(|&b| !self.is_none(b));
        let (_, y) = self.result(op)?;
        let win = win_from(op, &self.name(op))?;
        let group = u32::try_from(op.attr_i64_or("group", 1).map_err(|e| self.err(op, e.to_string()))?)
            .map_err(|_| self.err(op, "bad group"))?;
        if group == 0 {
            return Err(self.err(op, "group 0"));
        }
        let oc = y.shape[1];
        let ic = x.shape[1];
        let (kh, kw) = (win.kernel[0] as u32, win.kernel[1] as u32);
        let w_shape = if deconv { [ic, oc / group, kh, kw] } else { [oc, ic / group, kh, kw] };
        let wty = &self.func.values[wv].ty;
        let w_dtype = dtype_of(wty, &self.func.values[wv].name)?;
        let int = y.dtype.is_int8();
        let w = if int && !deconv {
            let name = self.func.values[wv].name.clone();
            let data = self.weights.get(&name).ok_or_else(|| CodegenError::Weight {
                name: name.clone(),
                why: format!("not in the weights (needed by {})", self.name(op)),
            })?;
            let k_len = (ic / group * kh * kw) as usize;
            self.coeff.packed_filter(&name, data, oc as usize, group as usize, k_len, w_dtype)?
        } else {
            self.weight(op, wv, w_dtype, w_shape)?
        };
        let bias = match bv {
            Some(b) => {
                let bt = if int { DType::I32 } else { DType::F32 };
                Some(self.weight(op, b, bt, [1, oc, 1, 1])?)
            }
            None => None,
        };
        let requant = if int {
            let m = self.ints(op, "multiplier")?;
            let r = self.ints(op, "rshift")?;
            let table = self.coeff.requant_table(&m, &r, oc as usize, &self.name(op))?;
            let qdm = match op.attr_str("quant_mode") {
                Ok(q) => q == "QDM",
                Err(_) => self.chip.is_cv18xx(),
            };
            if qdm {
                ConvRequant::Qdm { table }
            } else {
                let (_, zp) = scale_zp(&self.func.values[op.results[0]].ty);
                ConvRequant::MulShift { table, zero_point: zp as i32, round: RoundMode::HalfUp }
            }
        } else {
            ConvRequant::Float
        };
        if deconv && matches!(requant, ConvRequant::MulShift { .. }) {
            return Err(self.err(op, "int8 deconv with MultiplierShift requant is not supported"));
        }
        let relu = op.attr_bool("do_relu");
        if relu && op.attr_f64_or("relu_limit", -1.0).unwrap_or(-1.0) >= 0.0 {
            return Err(self.err(op, "relu_limit is not supported"));
        }
        let instr = if deconv {
            Instr::Deconv2d { x, w, bias, y, win, group, requant, relu }
        } else {
            Instr::Conv2d { x, w, bias, y, win, group, requant, relu }
        };
        self.push(i, instr);
        Ok(())
    }

    fn leaky(&mut self, i: usize, op: &Op) -> Result<(), CodegenError> {
        let xv = self.operand(op, 0)?;
        let x = self.tref(xv)?;
        let (_, y) = self.elementwise_result(i, op, xv)?;
        let params = if y.dtype.is_int8() {
            if self.chip.is_cv18xx() {
                LeakyParams::Cv {
                    m_pos: self.i32_attr(op, "multiplier")?,
                    r_pos: self.i32_attr(op, "rshift")?,
                    m_neg: self.i32_attr(op, "multiplier_neg")?,
                    r_neg: self.i32_attr(op, "rshift_neg")?,
                }
            } else {
                LeakyParams::Bm {
                    multiplier: self.i32_attr(op, "multiplier")?,
                    rshift: self.i32_attr(op, "rshift")?,
                    round: RoundMode::HalfUp,
                }
            }
        } else {
            let alpha = op.attr_f64("alpha").map_err(|e| self.err(op, e.to_string()))?;
            LeakyParams::Float { alpha: alpha as f32 }
        };
        self.push(i, Instr::LeakyRelu { x, y, params });
        Ok(())
    }

    fn pool(&mut self, i: usize, op: &Op) -> Result<(), CodegenError> {
        let x = self.tref(self.operand(op, 0)?)?;
        let (_, y) = self.result(op)?;
        let win = win_from(op, &self.name(op))?;
        if op.attr_bool("do_relu") {
            return Err(self.err(op, "do_relu is not supported"));
        }
        let mode = match op.attr_str("pool_mode").map_err(|e| self.err(op, e.to_string()))? {
            "Max" => PoolMode::Max,
            "Avg" if y.dtype.is_int8() => PoolMode::AvgInt {
                multiplier: self.i32_attr(op, "multiplier")?,
                rshift: self.i32_attr(op, "rshift")?,
                round: RoundMode::HalfUp,
                count_include_pad: op.attr_bool("count_include_pad"),
            },
            "Avg" => PoolMode::AvgFloat { count_include_pad: op.attr_bool("count_include_pad") },
            other => return Err(self.err(op, format!("pool_mode {other} is not supported"))),
        };
        self.push(i, Instr::Pool2d { x, y, win, mode });
        Ok(())
    }

    fn concat(&mut self, i: usize, op: &Op) -> Result<(), CodegenError> {
        let (r, y) = self.result(op)?;
        let rank = self.func.values[r].ty.shape().len();
        let axis = axis4(self.int(op, "axis")?, rank, &self.name(op))?;
        let mults = op.attr_ints("multipliers").ok();
        let shifts = op.attr_ints("rshifts").ok();
        let mut start = 0u32;
        for (k, &v) in op.operands.iter().enumerate() {
            let x = match self.storage[v] {
                Storage::Coeff(_) | Storage::Nothing if !self.is_none(v) => {
                    let t = &self.func.values[v];
                    let (dt, sh) = (dtype_of(&t.ty, &t.name)?, shape4(t.ty.shape(), &t.name)?);
                    self.weight(op, v, dt, sh)?
                }
                _ => self.tref(v)?,
            };
            let requant = match (&mults, &shifts) {
                (Some(m), Some(s)) if m.len() == op.operands.len() && s.len() == op.operands.len() => {
                    if (m[k], s[k]) == (1, 0) {
                        None
                    } else {
                        let mm = i32::try_from(m[k]).map_err(|_| self.err(op, "multiplier out of i32"))?;
                        let ss = i32::try_from(s[k]).map_err(|_| self.err(op, "rshift out of i32"))?;
                        Some((mm, ss))
                    }
                }
                _ => None,
            };
            self.push(i, Instr::ConcatPart { x, y, axis, start, requant });
            start += x.shape[axis as usize];
        }
        Ok(())
    }

    /// An input operand: activations as they are, weights materialised with their own type.
    fn input_ref(&mut self, op: &Op, v: ValueId) -> Result<TensorRef, CodegenError> {
        match self.storage[v] {
            Storage::Coeff(_) | Storage::Nothing if !self.is_none(v) => {
                let t = &self.func.values[v];
                let (dt, sh) = (dtype_of(&t.ty, &t.name)?, shape4(t.ty.shape(), &t.name)?);
                self.weight(op, v, dt, sh)
            }
            _ => self.tref(v),
        }
    }

    /// Operands of a broadcasting binary op, with the result computed in place over `a` when
    /// `a` has the result's size and dies here.
    fn binary(&mut self, i: usize, op: &Op) -> Result<(TensorRef, TensorRef, TensorRef), CodegenError> {
        if op.operands.len() != 2 {
            return Err(self.err(op, format!("{} inputs (only 2 supported)", op.operands.len())));
        }
        let (av, bv) = (self.operand(op, 0)?, self.operand(op, 1)?);
        let (a, b) = (self.input_ref(op, av)?, self.input_ref(op, bv)?);
        let r = *op.results.first().ok_or_else(|| self.err(op, "has no result"))?;
        let rank = self.func.values[r].ty.shape().len();
        let ranks = [self.func.values[av].ty.shape().len(), self.func.values[bv].ty.shape().len()];
        if rank > 4 && ranks.iter().any(|&k| k != rank) {
            return Err(self.err(op, format!("broadcasting at rank {rank} > 4 is not supported")));
        }
        let ys = shape4(self.func.values[r].ty.shape(), &self.func.values[r].name)?;
        for t in [&a, &b] {
            if (0..4).any(|k| t.shape[k] != ys[k] && t.shape[k] != 1) {
                return Err(self.err(op, format!("cannot broadcast {:?} to {:?}", t.shape, ys)));
            }
        }
        let distinct = a.region == Region::Coeff || b.region == Region::Coeff || self.root(av) != self.root(bv);
        let (_, y) = if distinct && a.region == Region::Activation {
            self.elementwise_result(i, op, av)?
        } else {
            self.result(op)?
        };
        Ok((a, b, y))
    }

    fn relu_flag(&self, op: &Op) -> Result<bool, CodegenError> {
        let relu = op.attr_bool("do_relu");
        if relu && op.attr_f64_or("relu_limit", -1.0).unwrap_or(-1.0) >= 0.0 {
            return Err(self.err(op, "relu_limit is not supported"));
        }
        Ok(relu)
    }

    fn add(&mut self, i: usize, op: &Op) -> Result<(), CodegenError> {
        let relu = self.relu_flag(op)?;
        let (a, b, y) = self.binary(i, op)?;
        let params = if y.dtype.is_int8() {
            let m = self.ints(op, "multipliers")?;
            let to32 = |v: i64| i32::try_from(v).map_err(|_| self.err(op, "parameter out of i32"));
            if m.len() != 2 {
                return Err(self.err(op, "needs 2 multipliers"));
            }
            if self.chip.is_cv18xx() {
                AddParams::Cv { multiplier: [to32(m[0])?, to32(m[1])?], rshift: self.i32_attr(op, "rshift")? }
            } else {
                let r = self.ints(op, "rshifts")?;
                if r.len() != 2 {
                    return Err(self.err(op, "needs 2 rshifts"));
                }
                AddParams::Bm { multiplier: [to32(m[0])?, to32(m[1])?], rshift: [to32(r[0])?, to32(r[1])?] }
            }
        } else {
            AddParams::Float
        };
        self.push(i, Instr::Add { a, b, y, params, relu });
        Ok(())
    }

    fn mul(&mut self, i: usize, op: &Op) -> Result<(), CodegenError> {
        let relu = self.relu_flag(op)?;
        let (a, b, y) = self.binary(i, op)?;
        let params = if y.dtype.is_int8() {
            MulParams::Int { multiplier: self.i32_attr(op, "multiplier")?, rshift: self.i32_attr(op, "rshift")? }
        } else {
            MulParams::Float
        };
        self.push(i, Instr::Mul { a, b, y, params, relu });
        Ok(())
    }

    fn softmax(&mut self, i: usize, op: &Op) -> Result<(), CodegenError> {
        let xv = self.operand(op, 0)?;
        let x = self.tref(xv)?;
        let (r, y) = self.result(op)?;
        let rank = self.func.values[r].ty.shape().len();
        let axis = axis4(op.attr_i64_or("axis", -1).map_err(|e| self.err(op, e.to_string()))?, rank, &self.name(op))?;
        if !(x.dtype.is_float() && y.dtype.is_float()) {
            return Err(self.err(op, "int8 Softmax is not supported (lowered in float)"));
        }
        self.push(i, Instr::Softmax { x, y, axis });
        Ok(())
    }

    /// Slice, Permute and constant-index Gather as one strided copy.
    fn strided_copy(&mut self, i: usize, op: &Op) -> Result<(), CodegenError> {
        let xv = self.operand(op, 0)?;
        let x = self.input_ref(op, xv)?;
        let x_dims = self.func.values[xv].ty.shape().to_vec();
        let r = *op.results.first().ok_or_else(|| self.err(op, "has no result"))?;
        let out_dims = self.func.values[r].ty.shape().to_vec();
        let view: View = match op.kind.as_str() {
            "tpu.Slice" => {
                if op.attrs.contains_key("axes") {
                    return Err(self.err(op, "Slice with explicit axes is not supported"));
                }
                let offs = self.ints(op, "offset")?;
                let steps = op.attr_ints_or("steps", &vec![1; offs.len()]).map_err(|e| self.err(op, e.to_string()))?;
                let ends = self.ints(op, "ends")?;
                strided::slice(&x_dims, &offs, &steps, &ends, &out_dims)
            }
            "tpu.Permute" => strided::permute(&x_dims, &self.ints(op, "order")?),
            _ => {
                let iv = self.operand(op, 1)?;
                let iname = self.func.values[iv].name.clone();
                let idx = self.weights.get(&iname).ok_or_else(|| {
                    self.err(op, format!("indices '{iname}' are not a constant (only constant indices are supported)"))
                })?;
                let vals: Vec<i64> = idx.to_f32().iter().map(|&v| v as i64).collect();
                strided::gather(&x_dims, self.int(op, "axis")?, &vals, idx.shape())
            }
        }
        .map_err(|why| self.err(op, why))?;
        if view.dims.iter().product::<usize>() != out_dims.iter().product::<usize>() {
            return Err(self.err(op, "view size differs from the result type"));
        }
        let (dims, strides) =
            strided::fold4(&view).ok_or_else(|| self.err(op, "the view needs more than 4 strided axes"))?;
        let (_, y) = self.result(op)?;
        let start = u32::try_from(view.start).map_err(|_| self.err(op, "start out of range"))?;
        self.push(i, Instr::Copy { x, y: TensorRef { shape: dims, ..y }, start, strides });
        Ok(())
    }

    fn pad(&mut self, i: usize, op: &Op) -> Result<(), CodegenError> {
        let xv = self.operand(op, 0)?;
        let x = self.tref(xv)?;
        let (r, y) = self.result(op)?;
        let mode = op.attr_str("mode").unwrap_or("constant");
        if mode != "constant" {
            return Err(self.err(op, format!("pad mode {mode} is not supported (only constant)")));
        }
        let rank = self.func.values[xv].ty.shape().len();
        let pads = self.ints(op, "paddings")?;
        if rank > 4 || pads.len() != 2 * rank || pads.iter().any(|&p| p < 0) {
            return Err(self.err(op, format!("paddings {pads:?} for rank {rank} (non-negative, rank <= 4)")));
        }
        let mut before = [0u32; 4];
        for k in 0..rank {
            before[4 - rank + k] = u32::try_from(pads[k]).map_err(|_| self.err(op, "padding out of range"))?;
        }
        let val = op.attr_f64_or("val", 0.0).map_err(|e| self.err(op, e.to_string()))? as f32;
        let value = match y.dtype {
            DType::F32 => val.to_bits(),
            DType::F16 => crate::quant::float::f32_to_f16_bits(val) as u32,
            DType::BF16 if self.chip.is_cv18xx() => crate::quant::float::cv_f32_to_bf16_bits(val) as u32,
            DType::BF16 => crate::quant::float::f32_to_bf16_bits(val) as u32,
            DType::I8 | DType::U8 => {
                let (s, zp) = scale_zp(&self.func.values[r].ty);
                let q = ((val * (1.0 / s) as f32) as f64).round() + zp as f64;
                let q = if y.dtype == DType::I8 { q.clamp(-128.0, 127.0) } else { q.clamp(0.0, 255.0) };
                (q as i64 as u8) as u32
            }
            other => return Err(self.err(op, format!("pad of {} is not supported", other.name()))),
        };
        self.push(i, Instr::Pad { x, y, before, value });
        Ok(())
    }
}
