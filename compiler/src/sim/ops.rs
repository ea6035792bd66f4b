//! Per-op kernels of the simulator.

use super::cache::SimCache;
use super::conv::PackedFilters;
use super::conv::{self, ConvGeom};
use super::requant::{self, Clamped};
use super::tensor::{codes_from, from_codes, from_f32, round_to_i64, SimData, SimTensor};
use super::SimError;
use crate::ir::{Op, Quant, TensorType};
use crate::quant::round::{right_shift_round, RoundMode};
use crate::quant::{cv18xx, float};
use ndarray::{ArrayD, Axis, IxDyn, Slice};

macro_rules! each_data {
    ($d:expr, $a:ident => $e:expr) => {
        match $d {
            SimData::F32($a) => SimData::F32($e),
            SimData::I8($a) => SimData::I8($e),
            SimData::U8($a) => SimData::U8($e),
            SimData::I32($a) => SimData::I32($e),
            SimData::F16($a) => SimData::F16($e),
            SimData::BF16($a) => SimData::BF16($e),
        }
    };
}

type Res = Result<Vec<SimTensor>, SimError>;

struct Ctx<'a> {
    op: &'a Op,
    name: &'a str,
    prepared: Option<Prepared<'a>>,
}

impl Ctx<'_> {
    fn err(&self, msg: impl Into<String>) -> SimError {
        SimError::Op { op: self.name.to_string(), kind: self.op.kind.clone(), msg: msg.into() }
    }
    fn ints(&self, k: &str) -> Result<Vec<i64>, SimError> {
        self.op.attr_ints(k).map_err(|e| self.err(e.to_string()))
    }
    fn ints_or(&self, k: &str, d: &[i64]) -> Result<Vec<i64>, SimError> {
        self.op.attr_ints_or(k, d).map_err(|e| self.err(e.to_string()))
    }
    fn int(&self, k: &str, d: i64) -> Result<i64, SimError> {
        self.op.attr_i64_or(k, d).map_err(|e| self.err(e.to_string()))
    }
    fn f64(&self, k: &str, d: f64) -> Result<f64, SimError> {
        self.op.attr_f64_or(k, d).map_err(|e| self.err(e.to_string()))
    }
    fn opd<'b>(&self, ops: &'b [Option<&'b SimTensor>], i: usize) -> Result<&'b SimTensor, SimError> {
        ops.get(i).copied().flatten().ok_or_else(|| self.err(format!("operand {i} missing")))
    }
}

fn is_int8(ty: &TensorType) -> bool {
    matches!(ty.quant(), Some(Quant::Uniform { .. }))
}

fn qparams(ty: &TensorType) -> (f64, i64, bool) {
    match ty.quant() {
        Some(Quant::Uniform { scale, zero_point, signed, .. }) => (scale, zero_point, signed),
        _ => (1.0, 0, true),
    }
}

fn codes(c: &Ctx, t: &SimTensor) -> Result<ArrayD<i32>, SimError> {
    t.codes_i32().ok_or_else(|| c.err("expected an integer operand"))
}

/// `q − zp` of an integer tensor as a flat vector in logical (row-major) order, in one pass.
fn code_vec(c: &Ctx, t: &SimTensor) -> Result<Vec<i32>, SimError> {
    let zp = qparams(&t.ty).1 as i32;
    fn flat<T: Copy>(a: &ArrayD<T>, f: impl Fn(T) -> i32) -> Vec<i32> {
        match a.as_slice() {
            Some(s) => s.iter().map(|&v| f(v)).collect(),
            None => a.iter().map(|&v| f(v)).collect(),
        }
    }
    match &t.data {
        SimData::I8(a) => Ok(flat(a, |v| v as i32 - zp)),
        SimData::U8(a) => Ok(flat(a, |v| v as i32 - zp)),
        SimData::I32(a) => Ok(flat(a, |v| v)),
        _ => Err(c.err("expected an integer operand")),
    }
}

/// Where an op may find values prepared by earlier runs: the cache and the op's key in it (its
/// index in the module, or the caller's key; see [`super::run_seeded_keyed`]).
#[derive(Clone, Copy)]
pub(super) struct Prepared<'a> {
    pub cache: &'a SimCache,
    pub key: usize,
}

/// Evaluate one op (`prepared`: the module's cache, when the caller keeps one).
pub(super) fn eval(
    op: &Op,
    name: &str,
    ops: &[Option<&SimTensor>],
    outs: &[&TensorType],
    cv: bool,
    prepared: Option<Prepared>,
) -> Res {
    let c = Ctx { op, name, prepared };
    let out = outs.first().copied().ok_or_else(|| c.err("op without result"))?;
    let one = |t: SimTensor| Ok(vec![t]);
    match op.kind.as_str() {
        "top.Input" => {
            let x = c.opd(ops, 0)?.to_f32();
            one(SimTensor { data: SimData::F32(x), ty: out.clone() })
        }
        "tpu.Cast" => one(cast(&c, c.opd(ops, 0)?, out, cv)?),
        "tpu.GenericCpu" => {
            let x = c.opd(ops, 0)?.to_f32();
            let s = c.f64("param_scale", 1.0)? as f32;
            let (_, zp, signed) = qparams(out);
            let v = x.mapv(|v| ((v * s) as f64).round_ties_even() as i64);
            let _ = signed;
            let _ = zp;
            one(from_codes(v, out))
        }
        "tpu.Conv2D" => one(conv2d(&c, ops, out, cv, false)?),
        "tpu.Deconv" => one(conv2d(&c, ops, out, cv, true)?),
        "tpu.LeakyRelu" => one(leaky(&c, c.opd(ops, 0)?, out, cv)?),
        "tpu.Relu" => {
            let x = c.opd(ops, 0)?;
            if is_int8(out) {
                let v = codes(&c, x)?.mapv(|q| q.max(0) as i64);
                one(from_codes(v, out))
            } else {
                let lim = c.f64("relu_limit", -1.0)? as f32;
                let v = x.map_f32(|v| if lim >= 0.0 { v.max(0.0).min(lim) } else { v.max(0.0) });
                one(from_f32(v, out, cv))
            }
        }
        "tpu.Pool2D" => one(pool(&c, c.opd(ops, 0)?, out, cv)?),
        "tpu.Upsample" => {
            let x = c.opd(ops, 0)?;
            let sh = c.int("scale_h", 2)? as usize;
            let sw = c.int("scale_w", 2)? as usize;
            let s = out.shape().to_vec();
            let d = each_data!(&x.data, a => upsample(a, sh, sw, &s));
            one(SimTensor { data: d, ty: out.clone() })
        }
        "tpu.MulShift" => {
            let x = codes(&c, c.opd(ops, 0)?)?;
            let m = c.int("multiplier", 1)?;
            let r = c.int("rshift", 0)?;
            one(from_codes(x.mapv(|q| right_shift_round(q as i64 * m, r, RoundMode::HalfUp)), out))
        }
        "tpu.Concat" => one(concat(&c, ops, out, cv)?),
        "tpu.Add" => one(add(&c, ops, out, cv)?),
        "tpu.Mul" if is_int8(out) => {
            let a = codes(&c, c.opd(ops, 0)?)?;
            let b = codes(&c, c.opd(ops, 1)?)?;
            let (a, b) = broadcast2(&c, &a, &b, out.shape())?;
            let m = c.int("multiplier", 1)?;
            let r = c.int("rshift", 0)?;
            let relu = op.attr_bool("do_relu");
            let v = ndarray::Zip::from(&a).and(&b).map_collect(|&x, &y| {
                let v = right_shift_round(x as i64 * y as i64 * m, r, RoundMode::HalfUp);
                if relu {
                    v.max(0)
                } else {
                    v
                }
            });
            one(from_codes(v, out))
        }
        "tpu.Lut" => {
            let x = c.opd(ops, 0)?;
            let t = c.opd(ops, 1)?;
            let table: Vec<i64> = match &t.data {
                SimData::I8(a) => a.iter().map(|&v| v as i64).collect(),
                SimData::U8(a) => a.iter().map(|&v| v as i64).collect(),
                _ => return Err(c.err("LUT table must be int8")),
            };
            if table.len() != 256 {
                return Err(c.err("LUT table must have 256 entries"));
            }
            let idx: ArrayD<usize> = match &x.data {
                SimData::I8(a) => a.mapv(|v| v as u8 as usize),
                SimData::U8(a) => a.mapv(|v| v as usize),
                _ => return Err(c.err("LUT input must be int8")),
            };
            let (_, zp, _) = qparams(out);
            one(from_codes(idx.mapv(|i| table[i] - zp), out))
        }
        "tpu.Reshape" | "tpu.Squeeze" | "tpu.Unsqueeze" => {
            let x = c.opd(ops, 0)?;
            let s = out.shape().to_vec();
            if x.shape().iter().product::<usize>() != s.iter().product::<usize>() {
                return Err(c.err("reshape changes the element count"));
            }
            let d = each_data!(&x.data, a => reshape_any(a, &s));
            one(retype(d, out, x, cv))
        }
        "tpu.Permute" => {
            let x = c.opd(ops, 0)?;
            let order: Vec<usize> = c.ints("order")?.iter().map(|&v| v as usize).collect();
            if order.len() != x.shape().len() {
                return Err(c.err("permute order rank mismatch"));
            }
            let d = each_data!(&x.data, a => a.clone().permuted_axes(IxDyn(&order)).as_standard_layout().into_owned());
            one(retype(d, out, x, cv))
        }
        "tpu.Slice" => {
            let x = c.opd(ops, 0)?;
            let offs = c.ints("offset")?;
            let steps = c.ints_or("steps", &vec![1; offs.len()])?;
            let ends = c.ints("ends")?;
            let d = each_data!(&x.data, a => slice_any(a, &offs, &steps, &ends));
            one(retype(d, out, x, cv))
        }
        _ => float_op(&c, ops, outs, cv),
    }
}

/// `sf · (q − zp)` in f32 of int8 / uint8 storage through a 256-entry table (the cast's
/// arithmetic on its i32 codes, exactly); `None` for other storage.
fn dequantize_bytes(x: &SimTensor, sf: f32) -> Option<ArrayD<f32>> {
    let zp = qparams(&x.ty).1 as i32;
    let mut lut = [0f32; 256];
    match &x.data {
        SimData::I8(a) => {
            for (b, d) in lut.iter_mut().enumerate() {
                *d = sf * (b as u8 as i8 as i32 - zp) as f32;
            }
            Some(a.mapv(|v| lut[v as u8 as usize]))
        }
        SimData::U8(a) => {
            for (b, d) in lut.iter_mut().enumerate() {
                *d = sf * (b as i32 - zp) as f32;
            }
            Some(a.mapv(|v| lut[v as usize]))
        }
        _ => None,
    }
}

/// Keep integer data for integer results; re-round floats to the result type.
fn retype(d: SimData, out: &TensorType, _x: &SimTensor, cv: bool) -> SimTensor {
    let t = SimTensor { data: d, ty: out.clone() };
    if is_int8(out) {
        t
    } else {
        match &t.data {
            SimData::F16(_) | SimData::BF16(_) | SimData::F32(_) if out.elem() == float_elem(&t.data) => t,
            _ => from_f32(t.dequantize(), out, cv),
        }
    }
}

fn float_elem(d: &SimData) -> Option<crate::ir::ElemType> {
    use crate::ir::ElemType;
    Some(match d {
        SimData::F16(_) => ElemType::F16,
        SimData::BF16(_) => ElemType::BF16,
        SimData::F32(_) => ElemType::F32,
        _ => return None,
    })
}

fn upsample<T: Copy + Default>(a: &ArrayD<T>, sh: usize, sw: usize, out: &[usize]) -> ArrayD<T> {
    let s = a.shape();
    let (n, ch, h, w) = (s[0], s[1], s[2], s[3]);
    // Standard layout, the output exactly `sh × sw` times the input: each input row widened once,
    // then copied `sh` times.
    if let Some(src) = a.as_slice().filter(|_| out == [n, ch, h * sh, w * sw] && w > 0) {
        let mut o: Vec<T> = Vec::with_capacity(n * ch * h * sh * w * sw);
        for row in src.chunks(w) {
            let start = o.len();
            for &v in row {
                o.extend(std::iter::repeat_n(v, sw));
            }
            for _ in 1..sh {
                o.extend_from_within(start..start + w * sw);
            }
        }
        if let Ok(o) = ArrayD::from_shape_vec(IxDyn(out), o) {
            return o;
        }
    }
    let mut o = ArrayD::<T>::default(IxDyn(out));
    for b in 0..n {
        for c in 0..ch {
            for y in 0..h * sh {
                for x in 0..w * sw {
                    o[[b, c, y, x]] = a[[b, c, y / sh, x / sw]];
                }
            }
        }
    }
    o
}

fn reshape_any<T: Clone>(a: &ArrayD<T>, s: &[usize]) -> ArrayD<T> {
    let v: Vec<T> = a.iter().cloned().collect();
    ArrayD::from_shape_vec(IxDyn(s), v).expect("reshape size checked")
}

fn slice_any<T: Clone>(a: &ArrayD<T>, offs: &[i64], steps: &[i64], ends: &[i64]) -> ArrayD<T> {
    let mut v = a.view();
    let rank = v.ndim();
    for (ax, &off) in offs.iter().enumerate().take(rank) {
        let len = v.shape()[ax] as i64;
        let st = off.clamp(0, len);
        let en = ends.get(ax).copied().unwrap_or(len).clamp(st, len);
        v.slice_axis_inplace(
            Axis(ax),
            Slice::new(st as isize, Some(en as isize), steps.get(ax).copied().unwrap_or(1).max(1) as isize),
        );
    }
    v.as_standard_layout().into_owned()
}

fn cast(c: &Ctx, x: &SimTensor, out: &TensorType, cv: bool) -> Result<SimTensor, SimError> {
    let in_int = is_int8(&x.ty);
    let out_int = is_int8(out);
    match (in_int, out_int) {
        (false, true) => {
            let (s, _zp, _) = qparams(out);
            if cv {
                let v = x.to_f32();
                let inv = float::cv_bf16_round((1.0 / s) as f32);
                let q = v.mapv(|x| {
                    (float::cv_bf16_mul(float::bf16_bits_to_f32(float::bf16_trunc_bits(x)), inv) as f64)
                        .round_ties_even() as i64
                });
                Ok(from_codes(q, out))
            } else {
                let inv = (1.0 / s) as f32;
                let code = |x: f32| round_to_i64((x * inv) as f64);
                match &x.data {
                    SimData::F32(a) => Ok(codes_from(a.view(), code, out)),
                    _ => Ok(codes_from(x.to_f32().view(), code, out)),
                }
            }
        }
        (true, false) => {
            let (s, _, _) = qparams(&x.ty);
            if !cv {
                if let Some(v) = dequantize_bytes(x, s as f32) {
                    return Ok(from_f32(v, out, cv));
                }
            }
            let q = codes(c, x)?;
            let v = if cv {
                let sb = float::cv_bf16_round(s as f32);
                q.mapv(|q| float::cv_bf16_round(float::cv_bf16_round(q as f32) * sb))
            } else {
                let sf = s as f32;
                q.mapv(|q| sf * q as f32)
            };
            Ok(from_f32(v, out, cv))
        }
        (true, true) => {
            // requant through float (not emitted by the lowering)
            Ok(from_f32(x.to_f32(), out, cv))
        }
        (false, false) => Ok(from_f32(x.to_f32(), out, cv)),
    }
}

fn geom(c: &Ctx, xs: &[usize], ws: &[usize], out: &TensorType, deconv: bool) -> Result<ConvGeom, SimError> {
    if xs.len() != 4 || out.shape().len() != 4 {
        return Err(c.err("only 2-D (NCHW) convolutions are supported"));
    }
    let k = c.ints("kernel_shape")?;
    let s = c.ints_or("strides", &[1, 1])?;
    let p = c.ints_or("pads", &[0, 0, 0, 0])?;
    let d = c.ints_or("dilations", &[1, 1])?;
    let group = c.int("group", 1)?.max(1) as usize;
    let os = out.shape();
    let _ = ws;
    let _ = deconv;
    Ok(ConvGeom {
        n: xs[0],
        ic: xs[1],
        ih: xs[2],
        iw: xs[3],
        oc: os[1],
        kh: k[0] as usize,
        kw: *k.get(1).unwrap_or(&k[0]) as usize,
        sh: s[0] as usize,
        sw: *s.get(1).unwrap_or(&s[0]) as usize,
        pt: p[0] as usize,
        pl: *p.get(1).unwrap_or(&p[0]) as usize,
        dh: d[0] as usize,
        dw: *d.get(1).unwrap_or(&d[0]) as usize,
        group,
        oh: os[2],
        ow: os[3],
    })
}

fn conv2d(
    c: &Ctx,
    ops: &[Option<&SimTensor>],
    out: &TensorType,
    cv: bool,
    deconv: bool,
) -> Result<SimTensor, SimError> {
    let x = c.opd(ops, 0)?;
    let w = c.opd(ops, 1)?;
    let bias = ops.get(2).copied().flatten();
    let g = geom(c, x.shape(), w.shape(), out, deconv)?;
    let relu = c.op.attr_bool("do_relu");
    let oc = g.oc;
    let p = g.oh * g.ow;
    if is_int8(out) {
        if !deconv {
            if let Some(t) = conv2d_int8_i16(c, x, w, bias, &g, out, relu)? {
                return Ok(t);
            }
        }
        let xv = code_vec(c, x)?;
        let wv = code_vec(c, w)?;
        let acc = if deconv { conv::deconv2d(&xv, &wv, &g) } else { conv::conv2d(&xv, &wv, &g) };
        let (per, qdm) = channel_requant(c, bias, oc)?;
        let mut res = vec![0i64; acc.len()];
        // one output channel's plane at a time: its multiplier, shift and bias are fixed
        for (row, (plane, r)) in acc.chunks(p.max(1)).zip(res.chunks_mut(p.max(1))).enumerate() {
            let (m, s, b) = per[row % oc];
            for (&a, r) in plane.iter().zip(r.iter_mut()) {
                let v = a as i64 + b;
                let mut y = if qdm {
                    cv18xx::apply_qdm(v, m, s, RoundMode::HalfAwayFromZero)
                } else {
                    right_shift_round(v * m, s, RoundMode::HalfUp)
                };
                if relu {
                    y = y.max(0);
                }
                *r = y;
            }
        }
        Ok(from_codes(conv::to_array(res, &g), out))
    } else {
        let (xv, wv) = (x.f32_values(), w.f32_values());
        let mut acc = if deconv { conv::deconv2d(&xv, &wv, &g) } else { conv::conv2d(&xv, &wv, &g) };
        if let Some(b) = bias {
            let bv = b.f32_values();
            // Element `i` is in output channel `(i / p) % oc`: one plane of `p` per channel.
            for (row, plane) in acc.chunks_mut(p.max(1)).enumerate() {
                let add = bv.get(row % oc).copied().unwrap_or(0.0);
                for a in plane {
                    *a += add;
                }
            }
        }
        if relu {
            let lim = c.f64("relu_limit", -1.0)? as f32;
            for a in acc.iter_mut() {
                *a = a.max(0.0);
                if lim >= 0.0 {
                    *a = a.min(lim);
                }
            }
        }
        Ok(from_f32(conv::to_array(acc, &g), out, cv))
    }
}

/// `q − zp` of an int8 / uint8 tensor as i16 in logical order, with the largest |q − zp|, in
/// one pass; `None` for other storage.
fn code_vec_i16(t: &SimTensor) -> Option<(Vec<i16>, u64)> {
    let mut v = vec![0i16; t.shape().iter().product()];
    let m = codes_i16_into(t, &mut v)?;
    Some((v, m))
}

/// [`code_vec_i16`] into a scratch buffer of the thread (the convolution's input: a copy per
/// call, so no fresh memory per call).
fn code_scratch_i16(t: &SimTensor) -> Option<(super::scratch::Scratch<i16>, u64)> {
    let mut v = super::scratch::any::<i16>(t.shape().iter().product());
    let m = codes_i16_into(t, &mut v)?;
    Some((v, m))
}

/// `q − zp` of an int8 / uint8 tensor into `dst` (its element count) in logical order; returns
/// the largest |q − zp|, or `None` for other storage.
fn codes_i16_into(t: &SimTensor, dst: &mut [i16]) -> Option<u64> {
    let zp = qparams(&t.ty).1;
    if !(-255..=255).contains(&zp) {
        return None;
    }
    let zp = zp as i16;
    fn flat<T: Copy>(a: &ArrayD<T>, dst: &mut [i16], f: impl Fn(T) -> i16) -> Option<u64> {
        if a.len() != dst.len() {
            return None;
        }
        match a.as_slice() {
            Some(s) => dst.iter_mut().zip(s).for_each(|(d, &v)| *d = f(v)),
            None => dst.iter_mut().zip(a.iter()).for_each(|(d, &v)| *d = f(v)),
        }
        Some(dst.iter().fold(0u16, |m, &x| m.max(x.unsigned_abs())) as u64)
    }
    match &t.data {
        SimData::I8(a) => flat(a, dst, |v| v as i16 - zp),
        SimData::U8(a) => flat(a, dst, |v| v as i16 - zp),
        _ => None,
    }
}

/// One output channel's requantization: multiplier, right shift, bias code.
type ChannelRequant = (i64, i64, i64);

/// Per output channel of an INT8 convolution: its multiplier, shift and bias code (a single
/// multiplier or shift serves every channel), and whether it requantizes in cv18xx's QDM mode.
fn channel_requant(c: &Ctx, bias: Option<&SimTensor>, oc: usize) -> Result<(Vec<ChannelRequant>, bool), SimError> {
    let bv: Vec<i64> = match bias {
        Some(b) => code_vec(c, b)?.iter().map(|&v| v as i64).collect(),
        None => vec![0; oc],
    };
    let mult = c.ints("multiplier")?;
    let rsh = c.ints("rshift")?;
    let qdm = matches!(c.op.attrs.get("quant_mode"), Some(crate::ir::Attr::Enum { value, .. }) if value == "QDM");
    let per = (0..oc)
        .map(|ch| {
            (
                *mult.get(ch).or(mult.first()).unwrap_or(&1),
                *rsh.get(ch).or(rsh.first()).unwrap_or(&0),
                bv.get(ch).copied().unwrap_or(0),
            )
        })
        .collect();
    Ok((per, qdm))
}

/// The filters of `w` packed for the i16 kernels: from the module's cache when there is one.
fn packed_filters(c: &Ctx, w: &SimTensor, g: &ConvGeom) -> Option<std::sync::Arc<PackedFilters>> {
    let make = || code_vec_i16(w).and_then(|(wv, _)| PackedFilters::new(&wv, g));
    match c.prepared {
        Some(p) => p.cache.filters(p.key, make),
        None => make().map(std::sync::Arc::new),
    }
}

/// One channel's run of INT8 convolution sums to stored codes: `+ b`, multiplier `m` and shift `s`
/// (cv18xx's QDM when `qdm`), relu; `store` adds the zero point and saturates.
#[inline(always)]
pub(super) fn requant_row<T>(
    (m, s, b): (i64, i64, i64),
    qdm: bool,
    relu: bool,
    sums: &[i32],
    dst: &mut [T],
    store: impl Fn(i64) -> T,
) {
    // `right_shift_round(x, s, HalfUp)` is `(x + 2^(s-1)) >> s` when that sum cannot
    // overflow: true of every i32 sum when `(2^31 + |b|) · |m| + 2^(s-1) < 2^63`.
    if !qdm && (1..=62).contains(&s) {
        let bound = ((1i128 << 31) + (b as i128).abs()) * (m as i128).abs() + (1i128 << (s - 1));
        if bound < 1i128 << 63 {
            let half = 1i64 << (s - 1);
            for (d, &a) in dst.iter_mut().zip(sums) {
                let y = ((a as i64 + b) * m + half) >> s;
                *d = store(if relu { y.max(0) } else { y });
            }
            return;
        }
    }
    for (d, &a) in dst.iter_mut().zip(sums) {
        let v = a as i64 + b;
        let y = if qdm {
            cv18xx::apply_qdm(v, m, s, RoundMode::HalfAwayFromZero)
        } else {
            right_shift_round(v * m, s, RoundMode::HalfUp)
        };
        *d = store(if relu { y.max(0) } else { y });
    }
}

/// The INT8 convolution on i16 codes with the requantization fused into the kernel's output:
/// the same arithmetic as the general path (`Σ w·x` exact, `+ bias`, multiplier and shift per
/// channel, relu, zero point, saturation), without its i32 and i64 intermediates. `None` when
/// the operands are not int8 codes or too wide for exact i32 sums (the general path runs).
fn conv2d_int8_i16(
    c: &Ctx,
    x: &SimTensor,
    w: &SimTensor,
    bias: Option<&SimTensor>,
    g: &ConvGeom,
    out: &TensorType,
    relu: bool,
) -> Result<Option<SimTensor>, SimError> {
    let Some((xv, x_max)) = code_scratch_i16(x) else {
        return Ok(None);
    };
    let Some(filters) = packed_filters(c, w, g) else {
        return Ok(None);
    };
    let oc = g.oc;
    let (per, qdm) = channel_requant(c, bias, oc)?;
    let (_, zp, signed) = qparams(out);
    let len = g.n * oc * g.oh * g.ow;
    let shape = IxDyn(&[g.n, oc, g.oh, g.ow]);
    // The vector form of each channel's requantization, where it applies (the same codes).
    let range = if signed { (-128, 127, zp) } else { (0, 255, zp) };
    let sum_bound = filters.sum_bound(x_max);
    let clamped: Vec<Option<Clamped>> =
        per.iter().map(|&r| (!qdm).then(|| Clamped::new(r, relu, range, sum_bound)).flatten()).collect();
    let data = if signed {
        let mut o = vec![0i8; len];
        let emit = |ch: usize, sums: &[i32], dst: &mut [i8]| match &clamped[ch] {
            Some(cl) => requant::to_i8(cl, sums, dst),
            None => requant_row(per[ch], qdm, relu, sums, dst, |y| (y + zp).clamp(-128, 127) as i8),
        };
        if !conv::conv2d_i16(&xv, x_max, &filters, g, &mut o, emit) {
            return Ok(None);
        }
        SimData::I8(ArrayD::from_shape_vec(shape, o).map_err(|e| c.err(e.to_string()))?)
    } else {
        let mut o = vec![0u8; len];
        let emit = |ch: usize, sums: &[i32], dst: &mut [u8]| match &clamped[ch] {
            Some(cl) => requant::to_u8(cl, sums, dst),
            None => requant_row(per[ch], qdm, relu, sums, dst, |y| (y + zp).clamp(0, 255) as u8),
        };
        if !conv::conv2d_i16(&xv, x_max, &filters, g, &mut o, emit) {
            return Ok(None);
        }
        SimData::U8(ArrayD::from_shape_vec(shape, o).map_err(|e| c.err(e.to_string()))?)
    };
    Ok(Some(SimTensor { data, ty: out.clone() }))
}

fn leaky(c: &Ctx, x: &SimTensor, out: &TensorType, cv: bool) -> Result<SimTensor, SimError> {
    if is_int8(out) {
        let m = c.int("multiplier", 1)?;
        let r = c.int("rshift", 0)?;
        let (mn, rn) = if cv { (c.int("multiplier_neg", 0)?, c.int("rshift_neg", 0)?) } else { (0, 0) };
        let f = |v: i64| {
            if cv {
                if v >= 0 {
                    if m == 1 && r == 0 {
                        v
                    } else {
                        right_shift_round(v * m, r, RoundMode::HalfUp)
                    }
                } else {
                    right_shift_round(v * mn, rn, RoundMode::HalfUp)
                }
            } else if v >= 0 {
                v
            } else {
                right_shift_round(v * m, r, RoundMode::HalfUp)
            }
        };
        if let Some(t) = map_codes(x, out, f) {
            return Ok(t);
        }
        Ok(from_codes(codes(c, x)?.mapv(|v| f(v as i64)), out))
    } else {
        let a = c.f64("alpha", 0.01)? as f32;
        Ok(from_f32(x.map_f32(|v| if v >= 0.0 { v } else { v * a }), out, cv))
    }
}

/// An elementwise op from int8 storage to an int8 type through a 256-entry table: `f(q − zp)`
/// for every stored code `q`, then the result type's zero point and saturation, exactly as
/// `from_codes(codes(x).mapv(f))`. `None` when `x` is not int8 / uint8 storage.
fn map_codes(x: &SimTensor, out: &TensorType, f: impl Fn(i64) -> i64) -> Option<SimTensor> {
    let zp_in = qparams(&x.ty).1;
    let (_, zp, signed) = match out.quant() {
        Some(Quant::Uniform { .. }) => qparams(out),
        _ => (1.0, 0, true),
    };
    let store = |code: i64| -> u8 {
        let y = f(code - zp_in) + zp;
        if signed {
            y.clamp(-128, 127) as i8 as u8
        } else {
            y.clamp(0, 255) as u8
        }
    };
    // Entry `b`: the result for the stored byte `b` (an array: no bounds checks per element).
    let lut: [u8; 256] = match &x.data {
        SimData::I8(_) => std::array::from_fn(|b| store(b as u8 as i8 as i64)),
        SimData::U8(_) => std::array::from_fn(|b| store(b as i64)),
        _ => return None,
    };
    fn looked_up<T: Copy>(a: &ArrayD<T>, lut: &[u8; 256], byte: impl Fn(T) -> u8) -> Vec<u8> {
        match a.as_slice() {
            Some(s) => s.iter().map(|&v| lut[byte(v) as usize]).collect(),
            None => a.iter().map(|&v| lut[byte(v) as usize]).collect(),
        }
    }
    let (raw, shape) = match &x.data {
        SimData::I8(a) => (looked_up(a, &lut, |v| v as u8), a.raw_dim()),
        SimData::U8(a) => (looked_up(a, &lut, |v| v), a.raw_dim()),
        _ => return None,
    };
    let data = if signed {
        SimData::I8(ArrayD::from_shape_vec(shape, raw.into_iter().map(|b| b as i8).collect()).ok()?)
    } else {
        SimData::U8(ArrayD::from_shape_vec(shape, raw).ok()?)
    };
    Some(SimTensor { data, ty: out.clone() })
}

/// Called per pooling output `[n, c, y, x]` with the in-bounds input positions of its window
/// and the window's size counting padding.
type WindowVisitor<'a> = dyn FnMut([usize; 4], &mut dyn Iterator<Item = [usize; 4]>, i64) + 'a;

fn pool(c: &Ctx, x: &SimTensor, out: &TensorType, cv: bool) -> Result<SimTensor, SimError> {
    let k = c.ints("kernel_shape")?;
    let s = c.ints_or("strides", &k)?;
    let p = c.ints_or("pads", &[0, 0, 0, 0])?;
    let is_max = matches!(c.op.attrs.get("pool_mode"), Some(crate::ir::Attr::Enum { value, .. }) if value == "Max");
    let include_pad = c.op.attr_bool("count_include_pad");
    let xs = x.shape().to_vec();
    let os = out.shape().to_vec();
    if xs.len() != 4 || os.len() != 4 || k.len() != 2 {
        return Err(c.err("only 2-D pooling is supported"));
    }
    let (kh, kw, sh, sw, pt, pl) = (k[0], k[1], s[0], s[1], p[0], p[1]);
    let (ih, iw) = (xs[2] as i64, xs[3] as i64);
    let windows = |f: &mut WindowVisitor<'_>| {
        for n in 0..os[0] {
            for ch in 0..os[1] {
                for oy in 0..os[2] {
                    for ox in 0..os[3] {
                        let y0 = oy as i64 * sh - pt;
                        let x0 = ox as i64 * sw - pl;
                        let ye = (y0 + kh).min(ih + p.get(2).copied().unwrap_or(0));
                        let xe = (x0 + kw).min(iw + p.get(3).copied().unwrap_or(0));
                        let padded_count = (ye - y0) * (xe - x0);
                        let mut it = (y0.max(0)..(y0 + kh).min(ih)).flat_map(move |y| {
                            (x0.max(0)..(x0 + kw).min(iw)).map(move |xx| [n, ch, y as usize, xx as usize])
                        });
                        f([n, ch, oy, ox], &mut it, padded_count);
                    }
                }
            }
        }
    };
    if is_int8(out) {
        let q = codes(c, x)?;
        let mut o = ArrayD::<i64>::zeros(IxDyn(&os));
        if is_max {
            windows(&mut |oi, it, _| {
                o[IxDyn(&oi)] = it.map(|i| q[IxDyn(&i)] as i64).max().unwrap_or(0);
            });
        } else {
            let m = c.int("multiplier", 1)?;
            let r = c.int("rshift", 0)?;
            windows(&mut |oi, it, _| {
                let sum: i64 = it.map(|i| q[IxDyn(&i)] as i64).sum();
                o[IxDyn(&oi)] = if cv {
                    cv18xx::apply_multiplier_and_rshift(sum, m, r, RoundMode::HalfUp)
                } else {
                    right_shift_round(sum * m, r, RoundMode::HalfUp)
                };
            });
        }
        Ok(from_codes(o, out))
    } else {
        let v = x.to_f32();
        let mut o = ArrayD::<f32>::zeros(IxDyn(&os));
        windows(&mut |oi, it, padded| {
            if is_max {
                o[IxDyn(&oi)] = it.map(|i| v[IxDyn(&i)]).fold(f32::NEG_INFINITY, f32::max);
            } else {
                let mut cnt = 0i64;
                let sum: f32 = it
                    .map(|i| {
                        cnt += 1;
                        v[IxDyn(&i)]
                    })
                    .sum();
                let div = if include_pad { padded } else { cnt };
                o[IxDyn(&oi)] = sum / div.max(1) as f32;
            }
        });
        Ok(from_f32(o, out, cv))
    }
}

fn concat(c: &Ctx, ops: &[Option<&SimTensor>], out: &TensorType, cv: bool) -> Result<SimTensor, SimError> {
    let axis = c.int("axis", 1)?;
    let rank = out.shape().len() as i64;
    let axis = if axis < 0 { axis + rank } else { axis } as usize;
    if is_int8(out) {
        let ms = c.ints_or("multipliers", &[])?;
        let rs = c.ints_or("rshifts", &[])?;
        if let Some(t) = concat_bytes(ops, axis, &ms, &rs, out) {
            return Ok(t);
        }
        let mut parts = Vec::new();
        for i in 0..ops.len() {
            let q = codes(c, c.opd(ops, i)?)?.mapv(|v| v as i64);
            let (m, r) = (ms.get(i).copied().unwrap_or(1), rs.get(i).copied().unwrap_or(0));
            let q = if m == 1 && r == 0 {
                q
            } else {
                q.mapv(|v| right_shift_round(v * m, r, RoundMode::HalfUp).clamp(-128, 127))
            };
            parts.push(q);
        }
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        let o = ndarray::concatenate(Axis(axis), &views).map_err(|e| c.err(e.to_string()))?;
        Ok(from_codes(o, out))
    } else {
        let parts: Vec<ArrayD<f32>> =
            (0..ops.len()).map(|i| c.opd(ops, i).map(|t| t.to_f32())).collect::<Result<_, _>>()?;
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        let o = ndarray::concatenate(Axis(axis), &views).map_err(|e| c.err(e.to_string()))?;
        Ok(from_f32(o, out, cv))
    }
}

/// The INT8 concatenation of int8 / uint8 operands in standard layout, byte by byte: each
/// operand's stored byte mapped through a 256-entry table to the result's (its code, requantized
/// by its multiplier and shift, saturated, plus the result's zero point, saturated: the general
/// path's arithmetic), the operands' runs interleaved along `axis`. `None` for other operands.
fn concat_bytes(
    ops: &[Option<&SimTensor>],
    axis: usize,
    ms: &[i64],
    rs: &[i64],
    out: &TensorType,
) -> Option<SimTensor> {
    let (_, zp_out, signed) = qparams(out);
    let os = out.shape();
    if axis >= os.len() || ops.is_empty() {
        return None;
    }
    let outer: usize = os[..axis].iter().product();
    let mut parts: Vec<(&[u8], [u8; 256], usize)> = Vec::with_capacity(ops.len());
    let mut along = 0;
    for (i, t) in ops.iter().enumerate() {
        let t = (*t)?;
        let xs = t.shape();
        if xs.len() != os.len() || xs[..axis] != os[..axis] || xs[axis + 1..] != os[axis + 1..] {
            return None;
        }
        along += xs[axis];
        let zp_in = qparams(&t.ty).1;
        let (m, r) = (ms.get(i).copied().unwrap_or(1), rs.get(i).copied().unwrap_or(0));
        let store = |code: i64| -> u8 {
            let q = if m == 1 && r == 0 {
                code
            } else {
                right_shift_round(code * m, r, RoundMode::HalfUp).clamp(-128, 127)
            };
            if signed {
                (q + zp_out).clamp(-128, 127) as i8 as u8
            } else {
                (q + zp_out).clamp(0, 255) as u8
            }
        };
        let mut lut = [0u8; 256];
        let bytes: &[u8] = match &t.data {
            SimData::I8(a) => {
                for (b, d) in lut.iter_mut().enumerate() {
                    *d = store(b as u8 as i8 as i64 - zp_in);
                }
                let s = a.as_slice()?;
                // SAFETY: i8 and u8 have the same size and alignment, every bit pattern is valid.
                unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u8, s.len()) }
            }
            SimData::U8(a) => {
                for (b, d) in lut.iter_mut().enumerate() {
                    *d = store(b as i64 - zp_in);
                }
                a.as_slice()?
            }
            _ => return None,
        };
        let run: usize = xs[axis..].iter().product();
        parts.push((bytes, lut, run));
    }
    if along != os[axis] {
        return None;
    }
    let mut o: Vec<u8> = Vec::with_capacity(os.iter().product());
    for j in 0..outer {
        for (bytes, lut, run) in &parts {
            o.extend(bytes[j * run..(j + 1) * run].iter().map(|&b| lut[b as usize]));
        }
    }
    let data = if signed {
        SimData::I8(ArrayD::from_shape_vec(IxDyn(os), o.into_iter().map(|b| b as i8).collect()).ok()?)
    } else {
        SimData::U8(ArrayD::from_shape_vec(IxDyn(os), o).ok()?)
    };
    Some(SimTensor { data, ty: out.clone() })
}

fn broadcast2<T: Clone>(
    c: &Ctx,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    shape: &[usize],
) -> Result<(ArrayD<T>, ArrayD<T>), SimError> {
    let a2 = a
        .broadcast(IxDyn(shape))
        .ok_or_else(|| c.err(format!("cannot broadcast {:?} to {:?}", a.shape(), shape)))?
        .to_owned();
    let b2 = b
        .broadcast(IxDyn(shape))
        .ok_or_else(|| c.err(format!("cannot broadcast {:?} to {:?}", b.shape(), shape)))?
        .to_owned();
    Ok((a2, b2))
}

fn add(c: &Ctx, ops: &[Option<&SimTensor>], out: &TensorType, cv: bool) -> Result<SimTensor, SimError> {
    let shape = out.shape().to_vec();
    let relu = c.op.attr_bool("do_relu");
    if is_int8(out) {
        let ms = c.ints_or("multipliers", &[])?;
        let mut acc = ArrayD::<i64>::zeros(IxDyn(&shape));
        if cv {
            let r = c.int("rshift", 0)?;
            for i in 0..ops.len() {
                let q = codes(c, c.opd(ops, i)?)?;
                let q = q.broadcast(IxDyn(&shape)).ok_or_else(|| c.err("broadcast"))?.to_owned();
                let m = ms.get(i).copied().unwrap_or(1);
                acc.zip_mut_with(&q, |a, &v| *a += v as i64 * m);
            }
            acc.mapv_inplace(|v| right_shift_round(v, r, RoundMode::HalfUp));
        } else {
            let rs = c.ints_or("rshifts", &[])?;
            for i in 0..ops.len() {
                let q = codes(c, c.opd(ops, i)?)?;
                let q = q.broadcast(IxDyn(&shape)).ok_or_else(|| c.err("broadcast"))?.to_owned();
                let (m, r) = (ms.get(i).copied().unwrap_or(1), rs.get(i).copied().unwrap_or(0));
                acc.zip_mut_with(&q, |a, &v| *a += right_shift_round(v as i64 * m, r, RoundMode::HalfUp));
            }
        }
        if relu {
            acc.mapv_inplace(|v| v.max(0));
        }
        Ok(from_codes(acc, out))
    } else {
        let mut acc = ArrayD::<f32>::zeros(IxDyn(&shape));
        for i in 0..ops.len() {
            let v = c.opd(ops, i)?.to_f32();
            let v = v.broadcast(IxDyn(&shape)).ok_or_else(|| c.err("broadcast"))?.to_owned();
            acc = acc + v;
        }
        if relu {
            acc.mapv_inplace(|v| v.max(0.0));
        }
        Ok(from_f32(acc, out, cv))
    }
}

/// Float kernels for the remaining ops (inputs decoded to f32, result rounded to its type).
fn float_op(c: &Ctx, ops: &[Option<&SimTensor>], outs: &[&TensorType], cv: bool) -> Res {
    let out = outs[0];
    let shape = out.shape().to_vec();
    let x = || c.opd(ops, 0).map(|t| t.to_f32());
    let bin = |f: fn(f32, f32) -> f32| -> Result<ArrayD<f32>, SimError> {
        let a = c.opd(ops, 0)?.to_f32();
        let b = c.opd(ops, 1)?.to_f32();
        let (a, b) = broadcast2(c, &a, &b, &shape)?;
        Ok(ndarray::Zip::from(&a).and(&b).map_collect(|&x, &y| f(x, y)))
    };
    let relu = c.op.attr_bool("do_relu");
    let v = match c.op.short_kind() {
        "Sigmoid" => x()?.mapv(|v| 1.0 / (1.0 + (-v).exp())),
        "Tanh" => x()?.mapv(f32::tanh),
        "Exp" => x()?.mapv(f32::exp),
        "SiLU" => x()?.mapv(|v| v / (1.0 + (-v).exp())),
        "Mul" => bin(|a, b| a * b)?,
        "Sub" => bin(|a, b| a - b)?,
        "Div" => bin(|a, b| a / b)?,
        "MulConst" => {
            let k = c.f64("const_val", 1.0)? as f32;
            x()?.mapv(|v| v * k)
        }
        "AddConst" => {
            let k = c.f64("const_val", 0.0)? as f32;
            x()?.mapv(|v| v + k)
        }
        "SubConst" => {
            let k = c.f64("const_val", 0.0)? as f32;
            let rev = c.op.attr_bool("is_reverse");
            x()?.mapv(|v| if rev { k - v } else { v - k })
        }
        "Clip" => {
            let lo = c.f64("min", f64::NEG_INFINITY)? as f32;
            let hi = c.f64("max", f64::INFINITY)? as f32;
            x()?.mapv(|v| v.max(lo).min(hi))
        }
        "Softmax" => {
            let a = x()?;
            let ax = c.int("axis", -1)?;
            let ax = if ax < 0 { ax + a.ndim() as i64 } else { ax } as usize;
            let mut o = a.clone();
            for mut lane in o.lanes_mut(Axis(ax)) {
                let m = lane.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                lane.mapv_inplace(|v| (v - m).exp());
                let s: f32 = lane.sum();
                lane.mapv_inplace(|v| v / s);
            }
            o
        }
        _ => return interp_fallback(c, ops, outs, cv),
    };
    let v = if relu { v.mapv(|x| x.max(0.0)) } else { v };
    if v.shape() != shape.as_slice() {
        return Err(c.err(format!("result shape {:?} differs from the type {:?}", v.shape(), shape)));
    }
    Ok(vec![from_f32(v, out, cv)])
}

/// Any other float op: run the top-level twin (`top.<Kind>`, same attributes) with the F32
/// interpreter on the decoded operands, then round the results to their types.
fn interp_fallback(c: &Ctx, ops: &[Option<&SimTensor>], outs: &[&TensorType], cv: bool) -> Res {
    use crate::ir::{Func, Module, Op as IrOp};
    let short = c.op.short_kind();
    let mut f = Func::default();
    let mut mini_ops = Vec::new();
    let mut operand_ids = Vec::new();
    let mut given: Vec<Option<ArrayD<f32>>> = Vec::new();
    for t in ops {
        match t {
            Some(t) => {
                let id = f.add_value(format!("in{}", operand_ids.len()), TensorType::f32(t.shape().to_vec()));
                f.args.push(id);
                operand_ids.push(id);
                given.push(Some(t.to_f32()));
            }
            None => {
                let id = f.add_value("", TensorType::None);
                mini_ops.push(IrOp {
                    kind: "top.None".into(),
                    operands: vec![],
                    results: vec![id],
                    attrs: Default::default(),
                });
                operand_ids.push(id);
                given.push(None);
            }
        }
    }
    let results: Vec<usize> = outs
        .iter()
        .enumerate()
        .map(|(i, t)| f.add_value(format!("{}_{i}", c.name), TensorType::f32(t.shape().to_vec())))
        .collect();
    mini_ops.push(IrOp {
        kind: format!("top.{short}"),
        operands: operand_ids,
        results: results.clone(),
        attrs: c.op.attrs.clone(),
    });
    let idx = mini_ops.len() - 1;
    f.ops = mini_ops;
    f.returns = results;
    let m = Module { name: "sim_op".into(), attrs: Default::default(), func: f };
    let w = crate::ir::weights::Weights::default();
    let interp = crate::interp::Interpreter::new(&m, &w).map_err(|e| c.err(e.to_string()))?;
    let refs: Vec<Option<&ArrayD<f32>>> = given.iter().map(|g| g.as_ref()).collect();
    let res = interp
        .eval_op(idx, &refs)
        .map_err(|e| SimError::Unsupported { op: c.name.to_string(), kind: format!("{} ({e})", c.op.kind) })?;
    if res.len() != outs.len() {
        return Err(c.err(format!("{} results, expected {}", res.len(), outs.len())));
    }
    Ok(res.into_iter().zip(outs).map(|(v, t)| from_f32(v, t, cv)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ElemType;

    #[test]
    fn table_lookup_equals_codes_then_from_codes() {
        let shape = vec![2, 128];
        let q = |signed: bool, zp: i64| Some(Quant::Uniform { signed, bits: 8, scale: 0.5, zero_point: zp });
        let ty = |elem, quant| TensorType::Tensor { shape: shape.clone(), elem, quant };
        let every_byte: Vec<u8> = (0..=255).collect();
        let inputs = [
            SimTensor {
                data: SimData::I8(
                    ArrayD::from_shape_vec(IxDyn(&shape), every_byte.iter().map(|&b| b as i8).collect()).unwrap(),
                ),
                ty: ty(ElemType::I8, q(true, -7)),
            },
            SimTensor {
                data: SimData::U8(ArrayD::from_shape_vec(IxDyn(&shape), every_byte.clone()).unwrap()),
                ty: ty(ElemType::UI8, q(false, 131)),
            },
        ];
        let outs = [ty(ElemType::I8, q(true, 0)), ty(ElemType::I8, q(true, 9)), ty(ElemType::UI8, q(false, 200))];
        let f = |v: i64| if v >= 0 { v * 3 } else { right_shift_round(v * 13, 7, RoundMode::HalfUp) };
        for x in &inputs {
            for out in &outs {
                let want = from_codes(x.codes_i32().unwrap().mapv(|v| f(v as i64)), out);
                assert_eq!(map_codes(x, out, f).unwrap(), want, "{:?} -> {:?}", x.ty, out);
            }
        }
    }

    /// The same logical values in column-major layout (no contiguous slice in logical order), so
    /// that the kernels take their general paths.
    fn column_major(t: &SimTensor) -> SimTensor {
        fn f<T: Copy + Default>(a: &ArrayD<T>) -> ArrayD<T> {
            use ndarray::ShapeBuilder;
            let mut o = ArrayD::<T>::default(IxDyn(a.shape()).f());
            o.assign(a);
            assert!(o.as_slice().is_none() || a.len() <= 1);
            o
        }
        SimTensor { data: each_data!(&t.data, a => f(a)), ty: t.ty.clone() }
    }

    fn op(kind: &str, attrs: &[(&str, crate::ir::Attr)]) -> Op {
        let mut op = Op { kind: kind.into(), operands: vec![], results: vec![], attrs: Default::default() };
        for (k, v) in attrs {
            op.attrs.insert(k.to_string(), v.clone());
        }
        op
    }

    fn codes_i8(seed: &mut u32, shape: &[usize], ty: TensorType) -> SimTensor {
        let n = shape.iter().product();
        let v: Vec<i8> = (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                (*seed >> 20) as u8 as i8
            })
            .collect();
        SimTensor { data: SimData::I8(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()), ty }
    }

    #[test]
    fn byte_concat_and_upsample_equal_the_general_paths() {
        use crate::ir::Attr;
        let q = |signed: bool, zp: i64, shape: &[usize]| TensorType::Tensor {
            shape: shape.to_vec(),
            elem: if signed { ElemType::I8 } else { ElemType::UI8 },
            quant: Some(Quant::Uniform { signed, bits: 8, scale: 0.25, zero_point: zp }),
        };
        let mut seed = 5;
        let a = codes_i8(&mut seed, &[1, 3, 2, 5], q(true, 0, &[1, 3, 2, 5]));
        let b = codes_i8(&mut seed, &[1, 2, 2, 5], q(true, -9, &[1, 2, 2, 5]));
        let u = codes_i8(&mut seed, &[1, 4, 2, 5], q(false, 100, &[1, 4, 2, 5]));
        let u = SimTensor {
            data: match &u.data {
                SimData::I8(x) => SimData::U8(x.mapv(|v| v as u8)),
                _ => unreachable!(),
            },
            ty: u.ty,
        };
        for (mults, shifts) in [(vec![1, 1, 1], vec![0, 0, 0]), (vec![1, 3, 77], vec![0, 1, 6])] {
            let cat = op(
                "tpu.Concat",
                &[
                    ("axis", Attr::Int(1, "i64".into())),
                    ("multipliers", Attr::IntArray(mults)),
                    ("rshifts", Attr::IntArray(shifts)),
                ],
            );
            for out in [q(true, 0, &[1, 9, 2, 5]), q(true, 5, &[1, 9, 2, 5]), q(false, 128, &[1, 9, 2, 5])] {
                let ops = [Some(&a), Some(&b), Some(&u)];
                assert!(concat_bytes(&ops, 1, &[1, 3, 77], &[0, 1, 6], &out).is_some(), "byte path taken");
                let fast = eval(&cat, "cat", &ops, &[&out], false, None).unwrap();
                let (ca, cb, cu) = (column_major(&a), column_major(&b), column_major(&u));
                let slow = eval(&cat, "cat", &[Some(&ca), Some(&cb), Some(&cu)], &[&out], false, None).unwrap();
                assert_eq!(fast, slow, "{out:?}");
            }
        }
        let up =
            op("tpu.Upsample", &[("scale_h", Attr::Int(2, "i64".into())), ("scale_w", Attr::Int(3, "i64".into()))]);
        let out = q(true, 0, &[1, 3, 4, 15]);
        let fast = eval(&up, "up", &[Some(&a)], &[&out], false, None).unwrap();
        let slow = eval(&up, "up", &[Some(&column_major(&a))], &[&out], false, None).unwrap();
        assert_eq!(fast[0].data, slow[0].data);
    }

    #[test]
    fn casts_equal_their_definitions() {
        let shape = [1, 2, 16, 8];
        let q = |signed: bool, zp: i64| TensorType::Tensor {
            shape: shape.to_vec(),
            elem: if signed { ElemType::I8 } else { ElemType::UI8 },
            quant: Some(Quant::Uniform { signed, bits: 8, scale: 0.0173, zero_point: zp }),
        };
        let f32_ty = TensorType::f32(shape.to_vec());
        let cast_op = op("tpu.Cast", &[]);
        let mut seed = 11;
        let int8 = codes_i8(&mut seed, &shape, q(true, -3));
        let uint8 = SimTensor {
            data: match &int8.data {
                SimData::I8(x) => SimData::U8(x.mapv(|v| v as u8)),
                _ => unreachable!(),
            },
            ty: q(false, 131),
        };
        // int8 -> f32: (f32)scale · (q − zp).
        for x in [&int8, &uint8] {
            let got = eval(&cast_op, "c", &[Some(x)], &[&f32_ty], false, None).unwrap();
            let want = x.codes_i32().unwrap().mapv(|c| 0.0173f32 * c as f32);
            assert_eq!(got[0].data, SimData::F32(want));
        }
        // f32 -> int8: round half away from zero of x / scale, zero point, saturation.
        let vals: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) * 0.0173 * 1.37 + 0.00865 * (i % 3) as f32).collect();
        let x = SimTensor { data: SimData::F32(ArrayD::from_shape_vec(IxDyn(&shape), vals).unwrap()), ty: f32_ty };
        for out in [q(true, -3), q(false, 131)] {
            let got = eval(&cast_op, "c", &[Some(&x)], &[&out], false, None).unwrap();
            let inv = (1.0 / 0.0173f64) as f32;
            let want = from_codes(x.to_f32().mapv(|v| ((v * inv) as f64).round() as i64), &out);
            assert_eq!(got[0], want);
        }
    }

    #[test]
    fn requantization_shortcut_equals_right_shift_round() {
        let mut seed = 77u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 16
        };
        let mut sums: Vec<i32> = vec![i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX - 1, i32::MAX];
        sums.extend((0..2000).map(|_| (next() as u32 as i32) >> (next() % 31)));
        let params = [
            (1i64, 0i64, 0i64),
            (1, 1, 0),
            (1_518_500_250, 38, -4000),
            (1_073_741_824, 31, 123_456),
            (-7, 3, 5),
            (i32::MAX as i64, 62, i32::MIN as i64),
            (1 << 31, 20, 1 << 30),
            (1 << 32, 40, 0),
            (3, -2, 9),
        ];
        for (m, sh, b) in params {
            for relu in [false, true] {
                let mut got = vec![0i64; sums.len()];
                requant_row((m, sh, b), false, relu, &sums, &mut got, |y| y);
                for (&a, &g) in sums.iter().zip(&got) {
                    let x = (a as i64 + b).wrapping_mul(m);
                    let y = right_shift_round(x, sh, RoundMode::HalfUp);
                    assert_eq!(g, if relu { y.max(0) } else { y }, "sum {a}, m {m}, s {sh}, b {b}");
                }
            }
        }
    }
}
