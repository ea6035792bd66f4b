//! Float lowering (F32 / F16 / BF16): the top op becomes its `tpu.` twin with the same attributes;
//! operands are cast to the op's float type; conv / matmul filters are stored as f16 / bf16 bit
//! patterns (`<weight>_f16`, `<weight>_bf16`), biases and other constants stay f32.

use super::chip::Mode;
use super::emit::Builder;
use super::LowerError;
use crate::ir::weights::TensorData;
use crate::ir::{attr, ElemType, Op, TensorType, ValueId};
use crate::quant::float;

fn tpu_kind(kind: &str) -> (&str, Option<&'static str>) {
    match kind {
        "Conv" => ("tpu.Conv2D", None),
        "MaxPool" => ("tpu.Pool2D", Some("Max")),
        "AvgPool" => ("tpu.Pool2D", Some("Avg")),
        _ => ("", None),
    }
}

/// Lower one op in the float type `elem`.
pub(crate) fn lower_op(b: &mut Builder, op: &Op, name: &str, elem: ElemType, mode: Mode) -> Result<(), LowerError> {
    let short = op.short_kind();
    let (k, pool) = tpu_kind(short);
    let kind = if k.is_empty() { format!("tpu.{short}") } else { k.to_string() };
    let is_filter_op = matches!(short, "Conv" | "Deconv" | "MatMul");
    let mut attrs = op.attrs.clone();
    if let Some(pm) = pool {
        attrs.insert("pool_mode".into(), attr::tpu_enum("pool_mode", pm));
    }
    if short == "Conv" {
        let has_bias = op.operands.len() > 2 && !b.is_none_value(op.operands[2]);
        attrs = super::int8_ops::conv_attrs(op);
        attrs.insert("quant_mode".into(), attr::tpu_enum("rq_mode", "MultiplierShift"));
        attrs.insert("round_mode".into(), attr::tpu_enum("round_mode", "HalfUp"));
        attrs.insert("with_bias".into(), attr::bool(has_bias));
    }
    for k in ["round_mode", "first_round_mode"] {
        if let Some(crate::ir::Attr::Str(v)) = attrs.get(k).cloned() {
            attrs.insert(k.into(), attr::tpu_enum("round_mode", &v));
        }
    }
    // weights first (bias before filter, as tpu-mlir prints them)
    let mut wmap: Vec<Option<ValueId>> = vec![None; op.operands.len()];
    let mut order: Vec<usize> = (0..op.operands.len()).collect();
    if is_filter_op && order.len() > 2 {
        order.swap(1, 2);
    }
    for &i in &order {
        let v = op.operands[i];
        if !b.is_weight(v) {
            continue;
        }
        let data = b.weight_f32(name, v)?;
        let wname = b.name(v).to_string();
        let nv = if is_filter_op && i == 1 && mode != Mode::F32 {
            let (suffix, bits): (&str, Vec<u16>) = match elem {
                ElemType::F16 => ("f16", data.iter().map(|&x| float::f32_to_f16_bits(x)).collect()),
                _ if b.chip.is_cv18xx() => ("bf16", data.iter().map(|&x| float::cv_f32_to_bf16_bits(x)).collect()),
                _ => ("bf16", data.iter().map(|&x| float::f32_to_bf16_bits(x)).collect()),
            };
            let arr = ndarray::ArrayD::from_shape_vec(data.raw_dim(), bits).map_err(|e| LowerError::Op {
                op: name.into(),
                kind: op.kind.clone(),
                msg: e.to_string(),
            })?;
            b.emit_weight(&format!("{wname}_{suffix}"), TensorData::U16(arr), elem)
        } else {
            b.emit_weight(&wname, TensorData::F32(data), ElemType::F32)
        };
        wmap[i] = Some(nv);
    }
    let mut ins = Vec::new();
    for (i, &v) in op.operands.iter().enumerate() {
        if let Some(w) = wmap[i] {
            ins.push(w);
        } else if b.is_none_value(v) {
            ins.push(b.none());
        } else {
            ins.push(b.float_operand(v, elem, name)?);
        }
    }
    let outs: Vec<(String, TensorType)> = op
        .results
        .iter()
        .map(|&r| {
            let shape = b.shape(r);
            (b.top.values[r].name.clone(), TensorType::Tensor { shape, elem, quant: None })
        })
        .collect();
    let rs = b.emit_multi(&kind, ins, attrs, outs);
    for (i, &r) in op.results.iter().enumerate() {
        b.bind(r, rs[i]);
    }
    Ok(())
}
