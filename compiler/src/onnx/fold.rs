//! Constant folding: evaluate a node whose inputs are all known at import time (shape
//! subgraphs `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`, Constant arithmetic, ...).

use super::error::OnnxError;
use super::graph::Node;
use super::proto::data_type as dt;
use super::shape::{broadcast, gather_shape, norm_axis, reshape_target, slice_spec, squeeze_shape, unsqueeze_shape};
use super::tensor::ConstTensor;
use ndarray::{ArrayD, Axis, IxDyn, Slice, Zip};

type C = ConstTensor;

/// Evaluate `node` on constant inputs (`None` = absent optional input). Returns `Ok(None)` when
/// the op is not one the folder knows (the caller then converts it as a normal op).
pub fn eval(node: &Node, inputs: &[Option<&C>], opset: i64) -> Result<Option<Vec<C>>, OnnxError> {
    let e = |m: String| node.err(m);
    let get = |i: usize| -> Result<&C, OnnxError> {
        inputs.get(i).copied().flatten().ok_or_else(|| node.err(format!("missing input {i}")))
    };
    let axes_of = |attr_name: &str, input_idx: usize, from_opset: i64| -> Result<Option<Vec<i64>>, OnnxError> {
        if opset >= from_opset {
            Ok(inputs.get(input_idx).copied().flatten().map(|t| t.i64_values()))
        } else {
            node.ints(attr_name)
        }
    };
    let out = match node.op_type.as_str() {
        "Identity" | "Dropout" => get(0)?.clone(),
        "Cast" => cast(get(0)?, node.int("to", dt::FLOAT as i64)? as i32),
        "Shape" => {
            let s: Vec<i64> = get(0)?.shape().iter().map(|&d| d as i64).collect();
            C::ints(&shape_range(&s, node)?)
        }
        "Size" => C::I64(ArrayD::from_elem(IxDyn(&[]), get(0)?.len() as i64)),
        "Reshape" => {
            let x = get(0)?;
            let spec = if opset >= 5 { get(1)?.i64_values() } else { node.ints("shape")?.unwrap_or_default() };
            let target = reshape_target(x.shape(), &spec, node.int("allowzero", 0)? != 0).map_err(e)?;
            x.reshaped(&target).ok_or_else(|| node.err("reshape failed"))?
        }
        "Flatten" => {
            let x = get(0)?;
            let axis = node.int("axis", 1)?;
            let r = x.shape().len();
            let a = if axis < 0 { axis + r as i64 } else { axis }.clamp(0, r as i64) as usize;
            let outer: usize = x.shape()[..a].iter().product();
            x.reshaped(&[outer, x.len() / outer.max(1)]).ok_or_else(|| node.err("flatten failed"))?
        }
        "Squeeze" => {
            let x = get(0)?;
            let axes = axes_of("axes", 1, 13)?.unwrap_or_default();
            let s = squeeze_shape(x.shape(), &axes).map_err(e)?;
            x.reshaped(&s).ok_or_else(|| node.err("squeeze failed"))?
        }
        "Unsqueeze" => {
            let x = get(0)?;
            let axes = axes_of("axes", 1, 13)?.ok_or_else(|| node.err("Unsqueeze without axes"))?;
            let s = unsqueeze_shape(x.shape(), &axes).map_err(e)?;
            x.reshaped(&s).ok_or_else(|| node.err("unsqueeze failed"))?
        }
        "Concat" => {
            let ts: Vec<&C> = inputs.iter().flatten().copied().collect();
            let rank = ts.first().map(|t| t.shape().len()).unwrap_or(0);
            let axis = norm_axis(node.int("axis", 0)?, rank).map_err(e)?;
            concat(&ts, axis).map_err(e)?
        }
        "Gather" => {
            let x = get(0)?;
            let idx = get(1)?;
            let axis = norm_axis(node.int("axis", 0)?, x.shape().len()).map_err(e)?;
            gather(x, idx, axis).map_err(e)?
        }
        "Slice" => {
            let x = get(0)?;
            let (starts, ends, axes, steps) = if opset >= 10 {
                (
                    get(1)?.i64_values(),
                    get(2)?.i64_values(),
                    inputs.get(3).copied().flatten().map(|t| t.i64_values()),
                    inputs.get(4).copied().flatten().map(|t| t.i64_values()),
                )
            } else {
                (
                    node.ints("starts")?.unwrap_or_default(),
                    node.ints("ends")?.unwrap_or_default(),
                    node.ints("axes")?,
                    None,
                )
            };
            let spec = slice_spec(x.shape(), &starts, &ends, axes.as_deref(), steps.as_deref()).map_err(e)?;
            let f = |ax: ndarray::AxisDescription| {
                let i = ax.axis.index();
                Slice::new(spec.offset[i] as isize, Some(spec.ends[i] as isize), spec.steps[i] as isize)
            };
            match x {
                C::F32(a) => C::F32(a.slice_each_axis(f).to_owned()),
                C::I64(a) => C::I64(a.slice_each_axis(f).to_owned()),
            }
        }
        "Transpose" => {
            let x = get(0)?;
            let r = x.shape().len();
            let perm: Vec<usize> = match node.ints("perm")? {
                Some(p) => p.iter().map(|&a| norm_axis(a, r)).collect::<Result<_, _>>().map_err(e)?,
                None => (0..r).rev().collect(),
            };
            match x {
                C::F32(a) => C::F32(a.clone().permuted_axes(IxDyn(&perm)).as_standard_layout().to_owned()),
                C::I64(a) => C::I64(a.clone().permuted_axes(IxDyn(&perm)).as_standard_layout().to_owned()),
            }
        }
        "Expand" => {
            let x = get(0)?;
            let s: Vec<usize> = get(1)?.i64_values().iter().map(|&d| d.max(0) as usize).collect();
            let out = broadcast(x.shape(), &s).map_err(e)?;
            match x {
                C::F32(a) => C::F32(a.broadcast(IxDyn(&out)).ok_or_else(|| node.err("expand failed"))?.to_owned()),
                C::I64(a) => C::I64(a.broadcast(IxDyn(&out)).ok_or_else(|| node.err("expand failed"))?.to_owned()),
            }
        }
        "ConstantOfShape" => {
            let s: Vec<usize> = get(0)?.i64_values().iter().map(|&d| d.max(0) as usize).collect();
            match node.tensor("value")? {
                Some(C::I64(v)) => C::I64(ArrayD::from_elem(IxDyn(&s), v.iter().next().copied().unwrap_or(0))),
                Some(C::F32(v)) => C::F32(ArrayD::from_elem(IxDyn(&s), v.iter().next().copied().unwrap_or(0.0))),
                None => C::F32(ArrayD::zeros(IxDyn(&s))),
            }
        }
        "Range" => {
            let (s, l, d) = (get(0)?, get(1)?, get(2)?);
            if s.is_int() && l.is_int() && d.is_int() {
                let (s, l, d) = (s.i64_values()[0], l.i64_values()[0], d.i64_values()[0]);
                if d == 0 {
                    return Err(node.err("Range with delta 0"));
                }
                let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as i64;
                C::ints(&(0..n).map(|i| s + i * d).collect::<Vec<_>>())
            } else {
                let (s, l, d) = (s.f64_values()[0] as f32, l.f64_values()[0] as f32, d.f64_values()[0] as f32);
                let n = ((l - s) / d).ceil().max(0.0) as usize;
                C::F32(
                    ArrayD::from_shape_vec(IxDyn(&[n]), (0..n).map(|i| s + i as f32 * d).collect())
                        .map_err(|x| e(x.to_string()))?,
                )
            }
        }
        "Add" => binary(get(0)?, get(1)?, |a, b| a.wrapping_add(b), |a, b| a + b).map_err(e)?,
        "Sub" => binary(get(0)?, get(1)?, |a, b| a.wrapping_sub(b), |a, b| a - b).map_err(e)?,
        "Mul" => binary(get(0)?, get(1)?, |a, b| a.wrapping_mul(b), |a, b| a * b).map_err(e)?,
        "Div" => binary(get(0)?, get(1)?, |a, b| if b == 0 { 0 } else { a / b }, |a, b| a / b).map_err(e)?,
        "Pow" => {
            let (a, b) = (get(0)?, get(1)?);
            if a.is_int() {
                binary(a, &C::I64(b.to_i64()), |a, b| a.pow(b.clamp(0, 63) as u32), |a, b| a.powf(b)).map_err(e)?
            } else {
                binary(a, &C::F32(b.to_f32()), |a, b| a.pow(b.clamp(0, 63) as u32), |a, b| a.powf(b)).map_err(e)?
            }
        }
        "Max" | "Min" => {
            let ts: Vec<&C> = inputs.iter().flatten().copied().collect();
            let mut acc = (*ts.first().ok_or_else(|| node.err("no inputs"))?).clone();
            let max = node.op_type == "Max";
            for t in &ts[1..] {
                acc = if max {
                    binary(&acc, t, |a, b| a.max(b), |a, b| a.max(b)).map_err(e)?
                } else {
                    binary(&acc, t, |a, b| a.min(b), |a, b| a.min(b)).map_err(e)?
                };
            }
            acc
        }
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" => {
            let (a, b) = (get(0)?, get(1)?);
            let op = node.op_type.as_str();
            let cmp = |o: std::cmp::Ordering| match op {
                "Equal" => o.is_eq(),
                "Less" => o.is_lt(),
                "Greater" => o.is_gt(),
                "LessOrEqual" => o.is_le(),
                _ => o.is_ge(),
            };
            let r = if a.is_int() && b.is_int() {
                binary(a, b, |x, y| cmp(x.cmp(&y)) as i64, |_, _| 0.0)
            } else {
                binary(
                    &C::F32(a.to_f32()),
                    &C::F32(b.to_f32()),
                    |_, _| 0,
                    |x, y| x.partial_cmp(&y).map(|o| cmp(o) as i32 as f32).unwrap_or(0.0),
                )
                .map(|t| C::I64(t.to_i64()))
            };
            r.map_err(e)?
        }
        "Not" => C::I64(get(0)?.to_i64().mapv(|x| (x == 0) as i64)),
        "Where" => {
            let (c, x, y) = (get(0)?.to_i64(), get(1)?, get(2)?);
            let s = broadcast(&broadcast(c.shape(), x.shape()).map_err(e)?, y.shape()).map_err(e)?;
            let cb = c.broadcast(IxDyn(&s)).ok_or_else(|| node.err("where broadcast"))?.to_owned();
            if x.is_int() && y.is_int() {
                let (xa, ya) = (x.to_i64(), y.to_i64());
                let (xb, yb) = (xa.broadcast(IxDyn(&s)).unwrap(), ya.broadcast(IxDyn(&s)).unwrap());
                C::I64(Zip::from(&cb).and(&xb).and(&yb).map_collect(|&c, &x, &y| if c != 0 { x } else { y }))
            } else {
                let (xa, ya) = (x.to_f32(), y.to_f32());
                let (xb, yb) = (xa.broadcast(IxDyn(&s)).unwrap(), ya.broadcast(IxDyn(&s)).unwrap());
                C::F32(Zip::from(&cb).and(&xb).and(&yb).map_collect(|&c, &x, &y| if c != 0 { x } else { y }))
            }
        }
        "Neg" => match get(0)? {
            C::F32(a) => C::F32(a.mapv(|x| -x)),
            C::I64(a) => C::I64(a.mapv(|x| -x)),
        },
        "Abs" => match get(0)? {
            C::F32(a) => C::F32(a.mapv(f32::abs)),
            C::I64(a) => C::I64(a.mapv(i64::abs)),
        },
        "Sqrt" | "Exp" | "Floor" | "Ceil" | "Reciprocal" | "Sigmoid" | "Tanh" | "Relu" | "Round" => {
            let f: fn(f32) -> f32 = match node.op_type.as_str() {
                "Sqrt" => f32::sqrt,
                "Exp" => f32::exp,
                "Floor" => f32::floor,
                "Ceil" => f32::ceil,
                "Reciprocal" => |x| 1.0 / x,
                "Sigmoid" => |x| 1.0 / (1.0 + (-x).exp()),
                "Tanh" => f32::tanh,
                "Relu" => |x| x.max(0.0),
                _ => f32::round_ties_even,
            };
            match get(0)? {
                C::I64(a) if node.op_type != "Sqrt" && node.op_type != "Exp" && node.op_type != "Reciprocal" => {
                    C::I64(a.mapv(|x| f(x as f32) as i64))
                }
                t => C::F32(t.to_f32().mapv(f)),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(vec![out]))
}

/// The `start`/`end` attributes of Shape (opset 15).
pub fn shape_range(s: &[i64], node: &Node) -> Result<Vec<i64>, OnnxError> {
    let r = s.len() as i64;
    let norm = |v: i64| if v < 0 { (v + r).clamp(0, r) } else { v.clamp(0, r) };
    let start = norm(node.int("start", 0)?) as usize;
    let end = norm(node.int("end", r)?) as usize;
    Ok(if start < end { s[start..end].to_vec() } else { Vec::new() })
}

fn cast(x: &C, to: i32) -> C {
    match to {
        dt::FLOAT | dt::DOUBLE | dt::FLOAT16 | 16 => C::F32(x.to_f32()),
        dt::BOOL => C::I64(match x {
            C::F32(a) => a.mapv(|v| (v != 0.0) as i64),
            C::I64(a) => a.mapv(|v| (v != 0) as i64),
        }),
        _ => C::I64(x.to_i64()),
    }
}

fn binary(a: &C, b: &C, fi: impl Fn(i64, i64) -> i64, ff: impl Fn(f32, f32) -> f32) -> Result<C, String> {
    let s = broadcast(a.shape(), b.shape())?;
    let sh = IxDyn(&s);
    if a.is_int() && b.is_int() {
        let (x, y) = (a.to_i64(), b.to_i64());
        let (xb, yb) = (x.broadcast(sh.clone()).ok_or("broadcast")?, y.broadcast(sh).ok_or("broadcast")?);
        Ok(C::I64(Zip::from(&xb).and(&yb).map_collect(|&p, &q| fi(p, q))))
    } else {
        let (x, y) = (a.to_f32(), b.to_f32());
        let (xb, yb) = (x.broadcast(sh.clone()).ok_or("broadcast")?, y.broadcast(sh).ok_or("broadcast")?);
        Ok(C::F32(Zip::from(&xb).and(&yb).map_collect(|&p, &q| ff(p, q))))
    }
}

fn concat(ts: &[&C], axis: usize) -> Result<C, String> {
    let err = |e: ndarray::ShapeError| format!("concat: {e}");
    if ts.iter().all(|t| t.is_int()) {
        let arrs: Vec<ArrayD<i64>> = ts.iter().map(|t| t.to_i64()).collect();
        let views: Vec<_> = arrs.iter().map(|a| a.view()).collect();
        Ok(C::I64(ndarray::concatenate(Axis(axis), &views).map_err(err)?))
    } else {
        let arrs: Vec<ArrayD<f32>> = ts.iter().map(|t| t.to_f32()).collect();
        let views: Vec<_> = arrs.iter().map(|a| a.view()).collect();
        Ok(C::F32(ndarray::concatenate(Axis(axis), &views).map_err(err)?))
    }
}

/// numpy `take` along `axis` with integer indices (negative indices count from the end).
pub fn gather(x: &C, idx: &C, axis: usize) -> Result<C, String> {
    let d = x.shape()[axis] as i64;
    let mut flat = Vec::with_capacity(idx.len());
    for &i in idx.i64_values().iter() {
        let j = if i < 0 { i + d } else { i };
        if j < 0 || j >= d {
            return Err(format!("gather index {i} out of range for axis size {d}"));
        }
        flat.push(j as usize);
    }
    let out = gather_shape(x.shape(), idx.shape(), axis);
    let res = match x {
        C::F32(a) => C::F32(a.select(Axis(axis), &flat)),
        C::I64(a) => C::I64(a.select(Axis(axis), &flat)),
    };
    res.reshaped(&out).ok_or_else(|| "gather reshape failed".to_string())
}
