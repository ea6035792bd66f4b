//! Per-op INT8 lowering (BM1684X MultiplierShift, CV18xx QDM), flow reference sections 5.2-5.6.

use super::cache::{ConvKey, QuantizedConv};
use super::emit::{int8_type, Builder};
use super::LowerError;
use crate::ir::weights::TensorData;
use crate::ir::{attr, Attr, Attrs, ElemType, Op, Quant, ValueId};
use crate::quant::{bm1684x, cv18xx, round};
use ndarray::{ArrayD, IxDyn};
use std::sync::Arc;

fn scale_of(q: Quant) -> (f64, i64, bool) {
    match q {
        Quant::Uniform { scale, zero_point, signed, .. } => (scale, zero_point, signed),
        Quant::Calibrated { max, .. } => (max / 127.0, 0, true),
    }
}

fn op_err(op: &Op, name: &str, msg: impl Into<String>) -> LowerError {
    LowerError::Op { op: name.to_string(), kind: op.kind.clone(), msg: msg.into() }
}

fn copy_attrs(op: &Op, keys: &[&str]) -> Attrs {
    let mut a = Attrs::new();
    for k in keys {
        if let Some(v) = op.attrs.get(*k) {
            a.insert(k.to_string(), v.clone());
        }
    }
    a
}

fn si32(v: i64) -> Attr {
    attr::si32(v)
}

/// Lower one top op in INT8.
pub(crate) fn lower_op(b: &mut Builder, op: &Op, name: &str) -> Result<(), LowerError> {
    match op.short_kind() {
        "Conv" => conv(b, op, name),
        "LeakyRelu" => leaky_relu(b, op, name),
        "Relu" => relu(b, op, name),
        "MaxPool" => max_pool(b, op, name),
        "AvgPool" => avg_pool(b, op, name),
        "Upsample" => upsample(b, op, name),
        "Concat" => concat(b, op, name),
        "Add" => add(b, op, name),
        "Mul" => mul(b, op, name),
        "Sigmoid" => lut(b, op, name, |x| 1.0 / (1.0 + (-x).exp())),
        "Reshape" | "Permute" | "Slice" => data_move(b, op, name),
        k => Err(op_err(op, name, format!("no INT8 lowering for {k}"))),
    }
}

fn out_type(b: &Builder, op: &Op) -> Result<(crate::ir::TensorType, Quant), LowerError> {
    let out = op.results[0];
    let q = b.qtype(out)?;
    Ok((int8_type(b.shape(out), q), q))
}

pub(crate) fn conv_attrs(op: &Op) -> Attrs {
    let mut a = copy_attrs(op, &["dilations", "do_relu", "group", "kernel_shape", "pads", "relu_limit", "strides"]);
    a.entry("dilations".into()).or_insert(attr::ints(&[1, 1]));
    a.entry("do_relu".into()).or_insert(attr::bool(false));
    a.entry("group".into()).or_insert(attr::i64(1));
    a.entry("relu_limit".into()).or_insert(attr::f64(-1.0));
    a.insert("coeff_merged".into(), attr::bool(false));
    a.insert("do_winograd".into(), attr::bool(false));
    a.insert("dynweight_reorderd".into(), attr::bool(false));
    a.insert("kernel_zp".into(), attr::i64(0));
    a.insert("support_compress".into(), attr::bool(true));
    a.insert("use_3ic_optimize".into(), attr::i64(0));
    a.insert("weight_is_coeff".into(), attr::i64(1));
    a
}

fn conv(b: &mut Builder, op: &Op, name: &str) -> Result<(), LowerError> {
    let x = op.operands[0];
    let (xin, qin) = b.int8_operand(x, name)?;
    let (ty, qout) = out_type(b, op)?;
    let (s_in, zp_in, _) = scale_of(qin);
    let (s_out, _zp_out, _) = scale_of(qout);
    let has_bias = op.operands.len() > 2 && !b.is_none_value(op.operands[2]);
    let key = ConvKey {
        op: name.to_string(),
        weights: op.operands[1..].iter().map(|&v| b.name(v).to_string()).collect(),
        cv18xx: b.chip.is_cv18xx(),
        s_in: s_in.to_bits(),
        zp_in,
        s_out: s_out.to_bits(),
    };
    let q = match b.cache.and_then(|c| c.get(&key)) {
        Some(q) => q,
        None => {
            let q = Arc::new(quantize_conv(b, op, name, has_bias, (s_in, zp_in), s_out)?);
            if let Some(c) = b.cache {
                c.insert(key, q.clone());
            }
            q
        }
    };
    let oc = q.bias.len();
    let fw = b.emit_weight(&format!("{name}_filter_i8"), TensorData::I8(q.filter.clone()), ElemType::SI8);
    let with_bias = has_bias || zp_in != 0;
    let fb = if with_bias {
        b.emit_weight(
            &format!("{name}_bias_int32"),
            TensorData::I32(
                ArrayD::from_shape_vec(IxDyn(&[1, oc, 1, 1]), q.bias.clone())
                    .map_err(|e| op_err(op, name, e.to_string()))?,
            ),
            ElemType::I32,
        )
    } else {
        b.none()
    };
    let mut a = conv_attrs(op);
    a.insert("multiplier".into(), attr::ints(&q.multiplier));
    a.insert("rshift".into(), attr::ints(&q.rshift));
    a.insert(
        "quant_mode".into(),
        attr::tpu_enum("rq_mode", if b.chip.is_cv18xx() { "QDM" } else { "MultiplierShift" }),
    );
    a.insert("round_mode".into(), attr::tpu_enum("round_mode", "HalfUp"));
    a.insert("with_bias".into(), attr::bool(with_bias));
    let r = b.emit("tpu.Conv2D", vec![xin, fw, fb], a, name, ty);
    b.bind(op.results[0], r);
    Ok(())
}

/// The int8 filter, int32 bias and per-channel requantization of an INT8 convolution with input
/// scale and zero point `s_in`, `zp_in` and output scale `s_out`.
fn quantize_conv(
    b: &Builder,
    op: &Op,
    name: &str,
    has_bias: bool,
    (s_in, zp_in): (f64, i64),
    s_out: f64,
) -> Result<QuantizedConv, LowerError> {
    let w = b.weight_f32(name, op.operands[1])?;
    let bias = if has_bias { Some(b.weight_f32(name, op.operands[2])?) } else { None };
    let oc = w.shape()[0];
    let inner = w.len() / oc.max(1);
    let wv: Vec<f32> = w.iter().copied().collect();
    let bv: Vec<f32> = bias.as_ref().map(|a| a.iter().copied().collect()).unwrap_or_default();
    let mut wq = vec![0i8; wv.len()];
    let mut bq = vec![0i32; oc];
    let mut mult = vec![0i64; oc];
    let mut rsh = vec![0i64; oc];
    if b.chip.is_cv18xx() {
        let th_x = (s_in * 127.0) as f32;
        let th_y = (s_out * 127.0) as f32;
        for c in 0..oc {
            let ch = &wv[c * inner..(c + 1) * inner];
            let w_max = ch.iter().fold(0f32, |m, v| m.max(v.abs()));
            let mut qscale = (w_max * th_x) / (127.0f32 * th_y);
            if qscale >= 1.0 {
                qscale = 0.999999;
            }
            if has_bias {
                let qb = bv[c].abs() * 127.0f32 / (0x7FFF_FFFF as f32 * 0.998f32 * th_y);
                if qb > qscale && qb < 1.0 {
                    qscale = qb;
                }
            }
            let (m, r) = cv18xx::get_rshift_and_multiplier_from_qscale(qscale as f64, true, 127);
            mult[c] = m;
            rsh[c] = r;
            let f = ((th_x / th_y) as f64 * 2f64.powi((r + 31) as i32) / m as f64) as f32;
            for (t, &v) in ch.iter().enumerate() {
                wq[c * inner + t] = round::saturate_f64(((v * f) as f64).round_ties_even(), true, 8) as i8;
            }
            if has_bias {
                let fb = ((127.0f32 / th_y) as f64 * 2f64.powi((r + 31) as i32) / m as f64) as f32;
                bq[c] = round::saturate_f64(((bv[c] * fb) as f64).round_ties_even(), true, 32) as i32;
            }
        }
    } else {
        for c in 0..oc {
            let ch = &wv[c * inner..(c + 1) * inner];
            let w_max = ch.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale_w = (w_max / 127.0f32).max(1e-5f32);
            for (t, &v) in ch.iter().enumerate() {
                // tpu-mlir divides in double (its scale is a double): f32 division can make ties
                wq[c * inner + t] = round::to_i8(v as f64 / scale_w as f64);
            }
            if has_bias {
                let mut bi = (bv[c] as f64 / (scale_w as f64 * s_in)).round();
                if zp_in != 0 {
                    let sum: i64 = wq[c * inner..(c + 1) * inner].iter().map(|&q| q as i64).sum();
                    bi -= (sum * zp_in) as f64;
                }
                bq[c] = round::saturate_f64(bi, true, 32) as i32;
            } else if zp_in != 0 {
                let sum: i64 = wq[c * inner..(c + 1) * inner].iter().map(|&q| q as i64).sum();
                bq[c] = (-(sum * zp_in)) as i32;
            }
            let scale_f = (scale_w as f64 * s_in / s_out) as f32;
            let (m, r) = bm1684x::get_scale_and_shift(scale_f, 32);
            mult[c] = m;
            rsh[c] = r;
        }
    }
    let filter = ArrayD::from_shape_vec(IxDyn(w.shape()), wq).map_err(|e| op_err(op, name, e.to_string()))?;
    Ok(QuantizedConv { filter, bias: bq, multiplier: mult, rshift: rsh })
}

fn leaky_relu(b: &mut Builder, op: &Op, name: &str) -> Result<(), LowerError> {
    let (xin, qin) = b.int8_operand(op.operands[0], name)?;
    let (ty, qout) = out_type(b, op)?;
    let alpha = op.attr_f64_or("alpha", 0.01).map_err(|e| op_err(op, name, e.to_string()))?;
    let mut a = Attrs::new();
    a.insert("round_mode".into(), attr::tpu_enum("round_mode", "HalfAwayFromZero"));
    if b.chip.is_cv18xx() {
        let th_x = scale_of(qin).0 * 127.0;
        let th_y = scale_of(qout).0 * 127.0;
        let qpos = th_x / th_y;
        let (mp, rp) = if (th_x - th_y).abs() < 1e-5 * th_x.min(th_y) {
            (1, 0)
        } else {
            cv18xx::get_rshift_and_multiplier_from_qscale(qpos, false, 127)
        };
        let (mn, rn) = cv18xx::get_rshift_and_multiplier_from_qscale((qpos * alpha).abs(), false, 127);
        a.insert("alpha".into(), attr::f64(alpha));
        a.insert("multiplier".into(), si32(mp));
        a.insert("rshift".into(), si32(rp));
        a.insert("multiplier_neg".into(), si32(mn));
        a.insert("rshift_neg".into(), si32(rn));
        let r = b.emit("tpu.LeakyRelu", vec![xin], a, name, ty);
        b.bind(op.results[0], r);
    } else {
        let (m, r) = bm1684x::get_scale_and_shift(alpha as f32, 8);
        a.insert("multiplier".into(), si32(m));
        a.insert("rshift".into(), si32(r));
        // in/out share the scale after propagation: the result takes the input type
        let ty = int8_type(b.shape(op.results[0]), qin);
        let _ = ty.clone();
        let res = b.emit(
            "tpu.LeakyRelu",
            vec![xin],
            a,
            name,
            if qin == qout { ty } else { int8_type(b.shape(op.results[0]), qin) },
        );
        b.bind(op.results[0], res);
    }
    Ok(())
}

fn relu(b: &mut Builder, op: &Op, name: &str) -> Result<(), LowerError> {
    let (xin, qin) = b.int8_operand(op.operands[0], name)?;
    let mut a = copy_attrs(op, &["relu_limit"]);
    a.insert("relu_limit".into(), attr::f64(-1.0));
    let r = b.emit("tpu.Relu", vec![xin], a, name, int8_type(b.shape(op.results[0]), qin));
    b.bind(op.results[0], r);
    Ok(())
}

fn pool_attrs(op: &Op, mode: &str) -> Attrs {
    let mut a = copy_attrs(
        op,
        &[
            "count_include_pad",
            "do_relu",
            "is_adaptive",
            "keepdims",
            "kernel_shape",
            "pad_value",
            "pads",
            "relu_limit",
            "strides",
        ],
    );
    a.entry("count_include_pad".into()).or_insert(attr::bool(false));
    a.entry("do_relu".into()).or_insert(attr::bool(false));
    a.entry("keepdims".into()).or_insert(attr::bool(true));
    a.entry("relu_limit".into()).or_insert(attr::f64(-1.0));
    a.insert("first_round_mode".into(), attr::tpu_enum("round_mode", "HalfAwayFromZero"));
    a.insert("round_mode".into(), attr::tpu_enum("round_mode", "HalfAwayFromZero"));
    a.insert("pool_mode".into(), attr::tpu_enum("pool_mode", mode));
    a
}

fn max_pool(b: &mut Builder, op: &Op, name: &str) -> Result<(), LowerError> {
    let (xin, qin) = b.int8_operand(op.operands[0], name)?;
    let r = b.emit("tpu.Pool2D", vec![xin], pool_attrs(op, "Max"), name, int8_type(b.shape(op.results[0]), qin));
    b.bind(op.results[0], r);
    Ok(())
}

fn avg_pool(b: &mut Builder, op: &Op, name: &str) -> Result<(), LowerError> {
    let (xin, qin) = b.int8_operand(op.operands[0], name)?;
    let (ty, qout) = out_type(b, op)?;
    let k = op.attr_ints("kernel_shape").map_err(|e| op_err(op, name, e.to_string()))?;
    let area: i64 = k.iter().product::<i64>().max(1);
    let scale = (scale_of(qin).0 / (scale_of(qout).0 * area as f64)) as f32;
    let (m, r) = if b.chip.is_cv18xx() {
        cv18xx::get_rshift_and_multiplier_from_qscale(scale as f64, false, 127)
    } else {
        bm1684x::get_scale_and_shift(scale, 8)
    };
    let mut a = pool_attrs(op, "Avg");
    a.insert("multiplier".into(), si32(m));
    a.insert("rshift".into(), si32(r));
    let res = b.emit("tpu.Pool2D", vec![xin], a, name, ty);
    b.bind(op.results[0], res);
    Ok(())
}

fn upsample(b: &mut Builder, op: &Op, name: &str) -> Result<(), LowerError> {
    let (xin, qin) = b.int8_operand(op.operands[0], name)?;
    let (ty, qout) = out_type(b, op)?;
    let sh = op.attr_i64_or("scale_h", 2).map_err(|e| op_err(op, name, e.to_string()))?;
    let sw = op.attr_i64_or("scale_w", 2).map_err(|e| op_err(op, name, e.to_string()))?;
    if b.chip.is_cv18xx() && qin != qout {
        // depthwise k x k deconv, stride k, weights 1.0 quantized with the conv rules
        let c = b.shape(op.operands[0]).get(1).copied().unwrap_or(1);
        let th_x = (scale_of(qin).0 * 127.0) as f32;
        let th_y = (scale_of(qout).0 * 127.0) as f32;
        let mut qscale = th_x / (127.0f32 * th_y);
        if qscale >= 1.0 {
            qscale = 0.999999;
        }
        let (m, r) = cv18xx::get_rshift_and_multiplier_from_qscale(qscale as f64, true, 127);
        let f = ((th_x / th_y) as f64 * 2f64.powi((r + 31) as i32) / m as f64) as f32;
        let wq = round::saturate_f64((f as f64).round_ties_even(), true, 8) as i8;
        let (kh, kw) = (sh as usize, sw as usize);
        let wdata = ArrayD::from_elem(IxDyn(&[c, 1, 1, kh, kw]), wq);
        let fw = b.emit_weight(&format!("{name}_filter_i8"), TensorData::I8(wdata), ElemType::SI8);
        let none = b.none();
        let mut a = Attrs::new();
        a.insert("dilations".into(), attr::ints(&[1, 1]));
        a.insert("do_relu".into(), attr::bool(false));
        a.insert("dynweight_reorderd".into(), attr::bool(false));
        a.insert("group".into(), attr::i64(c as i64));
        a.insert("inserts".into(), attr::ints(&[0, 0]));
        a.insert("kernel_shape".into(), attr::ints(&[sh, sw]));
        a.insert("multiplier".into(), attr::ints(&vec![m; c]));
        a.insert("pads".into(), attr::ints(&[0, 0, 0, 0]));
        a.insert("quant_mode".into(), attr::tpu_enum("rq_mode", "QDM"));
        a.insert("relu_limit".into(), attr::f64(-1.0));
        a.insert("rshift".into(), attr::ints(&vec![r; c]));
        a.insert("strides".into(), attr::ints(&[sh, sw]));
        a.insert("with_bias".into(), attr::bool(false));
        let res = b.emit("tpu.Deconv", vec![xin, fw, none], a, name, ty);
        b.bind(op.results[0], res);
        return Ok(());
    }
    let none = b.none();
    let mut a = Attrs::new();
    a.insert("do_relu".into(), attr::bool(false));
    a.insert("relu_limit".into(), attr::f64(-1.0));
    a.insert("scale_h".into(), attr::i64(sh));
    a.insert("scale_w".into(), attr::i64(sw));
    let res = b.emit("tpu.Upsample", vec![xin, none], a, name, int8_type(b.shape(op.results[0]), qin));
    b.bind(op.results[0], res);
    Ok(())
}

/// BM1684X requant of `v` (type `qin`) into `qout` via `tpu.MulShift` named `<producer>_to_<consumer>`.
fn mul_shift(b: &mut Builder, top_v: ValueId, nv: ValueId, qin: Quant, qout: Quant, consumer: &str) -> ValueId {
    let ratio = (scale_of(qin).0 / scale_of(qout).0) as f32;
    let (m, r) = bm1684x::get_scale_and_shift_positive(ratio, 8);
    let mut a = Attrs::new();
    a.insert("multiplier".into(), si32(m));
    a.insert("rshift".into(), si32(r));
    let pname = b.func.values[nv].name.clone();
    let name = format!("{pname}_to_{consumer}");
    b.emit_after(nv, "tpu.MulShift", vec![nv], a, &name, int8_type(b.shape(top_v), qout))
}

fn concat(b: &mut Builder, op: &Op, name: &str) -> Result<(), LowerError> {
    let (ty, qout) = out_type(b, op)?;
    let axis = op.attr_i64_or("axis", 1).map_err(|e| op_err(op, name, e.to_string()))?;
    let mut ins = Vec::new();
    let mut a = Attrs::new();
    a.insert("axis".into(), si32(axis));
    a.insert("do_relu".into(), attr::bool(false));
    a.insert("relu_limit".into(), attr::f64(-1.0));
    if b.chip.is_cv18xx() {
        let th_out = scale_of(qout).0 * 127.0;
        let (mut ms, mut rs) = (Vec::new(), Vec::new());
        for &v in &op.operands {
            let (nv, q) = b.int8_operand(v, name)?;
            let th = scale_of(q).0 * 127.0;
            let (m, r) = if (th - th_out).abs() <= 1e-5 {
                (1, 0)
            } else {
                cv18xx::get_rshift_and_multiplier_from_qscale(th / th_out, false, 127)
            };
            ms.push(m);
            rs.push(r);
            ins.push(nv);
        }
        let only = ms.iter().zip(&rs).all(|(&m, &r)| m == 1 && r == 0);
        a.insert("multipliers".into(), attr::ints(&ms));
        a.insert("rshifts".into(), attr::ints(&rs));
        a.insert("only_merge".into(), attr::bool(only));
    } else {
        for &v in &op.operands {
            let (nv, q) = b.int8_operand(v, name)?;
            let nv = if q != qout { mul_shift(b, v, nv, q, qout, name) } else { nv };
            ins.push(nv);
        }
        a.insert("only_merge".into(), attr::bool(false));
    }
    let r = b.emit("tpu.Concat", ins, a, name, ty);
    b.bind(op.results[0], r);
    Ok(())
}

fn add(b: &mut Builder, op: &Op, name: &str) -> Result<(), LowerError> {
    if op.operands.iter().any(|&v| b.is_weight(v)) {
        return super::float_ops::lower_op(
            b,
            op,
            name,
            b.chip.fallback_float().float_elem().unwrap_or(ElemType::F32),
            b.chip.fallback_float(),
        );
    }
    let (ty, qout) = out_type(b, op)?;
    let s_out = scale_of(qout).0;
    let coeffs = op.attr_floats("coeff").unwrap_or_default();
    let mut ins = Vec::new();
    let mut qs = Vec::new();
    for (i, &v) in op.operands.iter().enumerate() {
        let (nv, q) = b.int8_operand(v, name)?;
        ins.push(nv);
        qs.push(coeffs.get(i).copied().unwrap_or(1.0) * scale_of(q).0 / s_out);
    }
    let mut a = Attrs::new();
    a.insert("do_relu".into(), attr::bool(op.attr_bool("do_relu")));
    a.insert("relu_limit".into(), attr::f64(-1.0));
    if b.chip.is_cv18xx() {
        let mx = qs.iter().fold(0f64, |m, q| m.max(q.abs()));
        let (_, r) = cv18xx::get_rshift_and_multiplier_from_qscale(mx, false, 127);
        let ms: Vec<i64> = qs.iter().map(|q| (q * 2f64.powi(r as i32)).trunc() as i64).collect();
        a.insert("multipliers".into(), attr::ints(&ms));
        a.insert("rshift".into(), si32(r));
    } else {
        let (mut ms, mut rs) = (Vec::new(), Vec::new());
        for q in &qs {
            let (m, r) = bm1684x::get_scale_and_shift_positive(*q as f32, 8);
            ms.push(m);
            rs.push(r);
        }
        a.insert("multipliers".into(), attr::ints(&ms));
        a.insert("rshifts".into(), attr::ints(&rs));
    }
    let r = b.emit("tpu.Add", ins, a, name, ty);
    b.bind(op.results[0], r);
    Ok(())
}

fn mul(b: &mut Builder, op: &Op, name: &str) -> Result<(), LowerError> {
    if op.operands.len() != 2 || op.operands.iter().any(|&v| b.is_weight(v)) {
        return super::float_ops::lower_op(
            b,
            op,
            name,
            b.chip.fallback_float().float_elem().unwrap_or(ElemType::F32),
            b.chip.fallback_float(),
        );
    }
    let (ty, qout) = out_type(b, op)?;
    let (na, qa) = b.int8_operand(op.operands[0], name)?;
    let (nb, qb) = b.int8_operand(op.operands[1], name)?;
    let scale = scale_of(qa).0 * scale_of(qb).0 / scale_of(qout).0;
    let (m, r) = if b.chip.is_cv18xx() {
        cv18xx::get_rshift_and_multiplier_from_qscale(scale, false, 127)
    } else {
        bm1684x::get_scale_and_shift(scale as f32, 32)
    };
    let mut a = Attrs::new();
    a.insert("do_relu".into(), attr::bool(op.attr_bool("do_relu")));
    a.insert("multiplier".into(), si32(m));
    a.insert("rshift".into(), si32(r));
    a.insert("relu_limit".into(), attr::f64(-1.0));
    let res = b.emit("tpu.Mul", vec![na, nb], a, name, ty);
    b.bind(op.results[0], res);
    Ok(())
}

fn lut(b: &mut Builder, op: &Op, name: &str, f: impl Fn(f64) -> f64) -> Result<(), LowerError> {
    let (xin, qin) = b.int8_operand(op.operands[0], name)?;
    let (ty, qout) = out_type(b, op)?;
    let (s_in, z_in, in_signed) = scale_of(qin);
    let (s_out, z_out, out_signed) = scale_of(qout);
    let mut table = vec![0i64; 256];
    for code in 0..256i64 {
        let i = if in_signed { code - 128 } else { code };
        let y = f((i - z_in) as f64 * s_in) / s_out + z_out as f64;
        table[(i as u8) as usize] = round::saturate_f64(y.round(), out_signed, 8);
    }
    let data = if out_signed {
        TensorData::I8(
            ArrayD::from_shape_vec(IxDyn(&[1, 1, 16, 16]), table.iter().map(|&v| v as i8).collect())
                .map_err(|e| op_err(op, name, e.to_string()))?,
        )
    } else {
        TensorData::U8(
            ArrayD::from_shape_vec(IxDyn(&[1, 1, 16, 16]), table.iter().map(|&v| v as u8).collect())
                .map_err(|e| op_err(op, name, e.to_string()))?,
        )
    };
    let tw = b.emit_weight(&format!("{name}_table"), data, if out_signed { ElemType::SI8 } else { ElemType::UI8 });
    let r = b.emit("tpu.Lut", vec![xin, tw], Attrs::new(), name, ty);
    b.bind(op.results[0], r);
    Ok(())
}

fn data_move(b: &mut Builder, op: &Op, name: &str) -> Result<(), LowerError> {
    let (xin, qin) = b.int8_operand(op.operands[0], name)?;
    let ins = vec![xin];
    let kind = format!("tpu.{}", op.short_kind());
    let r = b.emit(&kind, ins, op.attrs.clone(), name, int8_type(b.shape(op.results[0]), qin));
    b.bind(op.results[0], r);
    Ok(())
}
