//! Layout and data-movement ops: reshapes, permutes, slices, splits, gathers, concats, pads,
//! softmax and reductions.

use super::{Converter, Val};
use crate::ir::{attr, Attrs, Op, TensorType};
use crate::onnx::error::OnnxError;
use crate::onnx::graph::Node;
use crate::onnx::shape::{gather_shape, norm_axis, reshape_target, slice_spec, squeeze_shape, unsqueeze_shape};
use crate::onnx::tensor::ConstTensor;

impl Converter<'_> {
    /// Axes given as an attribute (before `from_opset`) or as input `idx` (from `from_opset`).
    fn axes_arg(&self, n: &Node, idx: usize, from_opset: i64) -> Result<Option<Vec<i64>>, OnnxError> {
        if self.opset >= from_opset {
            if n.input(idx).is_none() {
                return Ok(None);
            }
            Ok(Some(self.require_const(n, idx, "axes")?.i64_values()))
        } else {
            n.ints("axes")
        }
    }

    /// Flatten -> `top.Reshape`.
    pub(super) fn flatten(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        let r = xs.len() as i64;
        let axis = n.int("axis", 1)?;
        let axis = if axis < 0 { axis + r } else { axis };
        if !(0..=r).contains(&axis) {
            return Err(n.err(format!("axis {axis} out of range for {xs:?}")));
        }
        let outer: usize = xs[..axis as usize].iter().product();
        let inner: usize = xs[axis as usize..].iter().product();
        let x = self.operand(n, 0)?;
        self.emit_reshape(n, x, vec![outer, inner]);
        Ok(())
    }

    /// Reshape -> `top.Reshape` with the resolved output shape.
    pub(super) fn reshape(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        let spec = if self.opset >= 5 {
            self.require_const(n, 1, "shape")?.i64_values()
        } else {
            n.ints("shape")?.ok_or_else(|| n.err("missing shape"))?
        };
        let out = reshape_target(&xs, &spec, n.int("allowzero", 0)? != 0).map_err(|m| n.err(m))?;
        let x = self.operand(n, 0)?;
        self.emit_reshape(n, x, out);
        Ok(())
    }

    /// Squeeze / Unsqueeze -> `top.Reshape`.
    pub(super) fn squeeze(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        let axes = self.axes_arg(n, 1, 13)?;
        let out = if n.op_type == "Squeeze" {
            squeeze_shape(&xs, &axes.unwrap_or_default())
        } else {
            unsqueeze_shape(&xs, &axes.ok_or_else(|| n.err("axes are required"))?)
        }
        .map_err(|m| n.err(m))?;
        let x = self.operand(n, 0)?;
        self.emit_reshape(n, x, out);
        Ok(())
    }

    /// Transpose -> `top.Permute` (identity permutation removed).
    pub(super) fn transpose(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        let r = xs.len();
        let perm: Vec<usize> = match n.ints("perm")? {
            Some(p) => p.iter().map(|&a| norm_axis(a, r)).collect::<Result<_, _>>().map_err(|m| n.err(m))?,
            None => (0..r).rev().collect(),
        };
        if perm.len() != r {
            return Err(n.err(format!("perm {perm:?} does not match rank {r}")));
        }
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return self.alias(n, 0);
        }
        let out: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
        let x = self.operand(n, 0)?;
        let mut a = Attrs::new();
        a.insert("order".into(), attr::ints(&perm.iter().map(|&p| p as i64).collect::<Vec<_>>()));
        self.emit(n, "top.Permute", vec![x], a, out);
        Ok(())
    }

    /// Softmax -> `top.Softmax` (opset < 13 flattening semantics via reshapes when needed).
    pub(super) fn softmax(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        let r = xs.len();
        let default = if self.opset >= 13 { -1 } else { 1 };
        let axis = norm_axis(n.int("axis", default)?, r).map_err(|m| n.err(m))?;
        let x = self.operand(n, 0)?;
        let mut a = Attrs::new();
        let trailing_ones = xs[axis + 1..].iter().all(|&d| d == 1);
        if self.opset >= 13 || axis + 1 == r || trailing_ones {
            a.insert("axis".into(), attr::i64(axis as i64));
            self.emit(n, "top.Softmax", vec![x], a, xs);
            return Ok(());
        }
        // opset < 13: softmax over the flattened trailing block [axis..]
        let outer: usize = xs[..axis].iter().product();
        let inner: usize = xs[axis..].iter().product();
        let out = n.outputs[0].clone();
        let mut ra = Attrs::new();
        ra.insert("shape".into(), attr::ints(&[outer as i64, inner as i64]));
        let flat = self.emit_aux("top.Reshape", vec![x], ra, format!("{out}_Softmax_flat"), vec![outer, inner]);
        a.insert("axis".into(), attr::i64(1));
        let sm = self.emit_aux("top.Softmax", vec![flat], a, format!("{out}_Softmax_2d"), vec![outer, inner]);
        self.emit_reshape(n, sm, xs);
        Ok(())
    }

    /// Pad -> `top.Pad`.
    pub(super) fn pad(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        let r = xs.len();
        let (pads, val) = if self.opset >= 11 {
            let p = self.require_const(n, 1, "pads")?.i64_values();
            let v = match self.const_in(n, 2) {
                Some(t) => t.f64_values().first().copied().unwrap_or(0.0),
                None if n.input(2).is_some() => return Err(n.err("constant_value must be a constant")),
                None => 0.0,
            };
            (p, v)
        } else {
            (n.ints("pads")?.unwrap_or_default(), n.float("value", 0.0)? as f64)
        };
        // opset 18 `axes`
        let pads = match self.axes_arg(n, 3, 18)? {
            Some(axes) if self.opset >= 18 => {
                let mut full = vec![0i64; 2 * r];
                for (i, &ax) in axes.iter().enumerate() {
                    let a = norm_axis(ax, r).map_err(|m| n.err(m))?;
                    full[a] = *pads.get(i).unwrap_or(&0);
                    full[r + a] = *pads.get(axes.len() + i).unwrap_or(&0);
                }
                full
            }
            _ => pads,
        };
        if pads.len() != 2 * r || pads.iter().any(|&p| p < 0) {
            return Err(n.err(format!("pads {pads:?} must be {} non-negative values", 2 * r)));
        }
        let mode = n.string("mode", "constant")?;
        if !["constant", "reflect", "edge"].contains(&mode.as_str()) {
            return Err(n.err(format!("pad mode '{mode}' is not supported")));
        }
        if pads.iter().all(|&p| p == 0) {
            return self.alias(n, 0);
        }
        let out: Vec<usize> = (0..r).map(|i| xs[i] + pads[i] as usize + pads[r + i] as usize).collect();
        let x = self.operand(n, 0)?;
        let mut a = Attrs::new();
        a.insert("paddings".into(), attr::ints(&pads));
        a.insert("mode".into(), attr::str(&mode));
        a.insert("val".into(), attr::f64(val));
        self.emit(n, "top.Pad", vec![x], a, out);
        Ok(())
    }

    /// Slice -> `top.Slice` with full-rank, clamped offset / steps / ends.
    pub(super) fn slice(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        let (starts, ends, axes, steps) = if self.opset >= 10 {
            let opt = |c: &Self, i: usize, what: &str| -> Result<Option<Vec<i64>>, OnnxError> {
                if n.input(i).is_none() {
                    Ok(None)
                } else {
                    Ok(Some(c.require_const(n, i, what)?.i64_values()))
                }
            };
            (
                self.require_const(n, 1, "starts")?.i64_values(),
                self.require_const(n, 2, "ends")?.i64_values(),
                opt(self, 3, "axes")?,
                opt(self, 4, "steps")?,
            )
        } else {
            (n.ints("starts")?.unwrap_or_default(), n.ints("ends")?.unwrap_or_default(), n.ints("axes")?, None)
        };
        let s = slice_spec(&xs, &starts, &ends, axes.as_deref(), steps.as_deref()).map_err(|m| n.err(m))?;
        let x = self.operand(n, 0)?;
        let v = |u: &[usize]| u.iter().map(|&d| d as i64).collect::<Vec<_>>();
        let mut a = Attrs::new();
        a.insert("offset".into(), attr::ints(&v(&s.offset)));
        a.insert("steps".into(), attr::ints(&v(&s.steps)));
        a.insert("ends".into(), attr::ints(&v(&s.ends)));
        self.emit(n, "top.Slice", vec![x], a, s.shape);
        Ok(())
    }

    /// Split -> one `top.Split` with a result per output (`<output>_Split`).
    pub(super) fn split(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        let axis = norm_axis(n.int("axis", 0)?, xs.len()).map_err(|m| n.err(m))?;
        let parts = n.outputs.len();
        let sizes: Vec<usize> = {
            let given = if self.opset >= 13 {
                if n.input(1).is_some() {
                    Some(self.require_const(n, 1, "split")?.i64_values())
                } else {
                    None
                }
            } else {
                n.ints("split")?
            };
            match given {
                Some(v) => v.iter().map(|&d| d.max(0) as usize).collect(),
                None => {
                    let k = if self.opset >= 18 { n.int("num_outputs", parts as i64)? as usize } else { parts };
                    let d = xs[axis];
                    let chunk = d.div_ceil(k.max(1));
                    (0..k).map(|i| chunk.min(d.saturating_sub(i * chunk))).collect()
                }
            }
        };
        if sizes.iter().sum::<usize>() != xs[axis] || sizes.len() != parts {
            return Err(
                n.err(format!("split sizes {sizes:?} do not cover dim {} of {xs:?} in {parts} parts", xs[axis]))
            );
        }
        let x = self.operand(n, 0)?;
        let mut results = Vec::new();
        for (o, &sz) in n.outputs.iter().zip(&sizes) {
            let mut s = xs.clone();
            s[axis] = sz;
            results.push(self.func.add_value(format!("{o}_Split"), TensorType::f32(s)));
        }
        let mut a = Attrs::new();
        a.insert("axis".into(), attr::i64(axis as i64));
        a.insert("split_size".into(), attr::ints(&sizes.iter().map(|&d| d as i64).collect::<Vec<_>>()));
        self.func.ops.push(Op { kind: "top.Split".into(), operands: vec![x], results: results.clone(), attrs: a });
        for (k, id) in results.into_iter().enumerate() {
            self.bind(n, k, id);
        }
        Ok(())
    }

    /// Gather with constant indices -> `top.Gather` (indices as an f32 weight).
    pub(super) fn gather(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        let axis = norm_axis(n.int("axis", 0)?, xs.len()).map_err(|m| n.err(m))?;
        let idx = self.require_const(n, 1, "indices")?;
        let d = xs[axis] as i64;
        let mut norm = Vec::with_capacity(idx.len());
        for i in idx.i64_values() {
            let j = if i < 0 { i + d } else { i };
            if j < 0 || j >= d {
                return Err(n.err(format!("index {i} out of range for dim {d}")));
            }
            norm.push(j);
        }
        let out = gather_shape(&xs, idx.shape(), axis);
        let t = ConstTensor::ints(&norm).reshaped(idx.shape()).ok_or_else(|| n.err("bad indices"))?;
        let x = self.operand(n, 0)?;
        let name = n.input(1).unwrap_or_default().to_string();
        let i = self.weight(&name, &t);
        let mut a = Attrs::new();
        a.insert("axis".into(), attr::i64(axis as i64));
        self.emit(n, "top.Gather", vec![x, i], a, out);
        Ok(())
    }

    /// Concat -> `top.Concat` (constant parts become weights).
    pub(super) fn concat(&mut self, n: &Node) -> Result<(), OnnxError> {
        let idx: Vec<usize> = (0..n.inputs.len()).filter(|&i| n.input(i).is_some()).collect();
        let first = self.shape_of(n, idx[0])?;
        let axis = norm_axis(n.int("axis", 0)?, first.len()).map_err(|m| n.err(m))?;
        let mut out = first.clone();
        out[axis] = 0;
        let mut operands = Vec::new();
        for &i in &idx {
            let s = self.shape_of(n, i)?;
            if s.len() != first.len() || (0..s.len()).any(|d| d != axis && s[d] != first[d]) {
                return Err(n.err(format!("input shapes {first:?} and {s:?} do not concatenate on axis {axis}")));
            }
            if s[axis] == 0 {
                continue;
            }
            out[axis] += s[axis];
            operands.push(self.operand(n, i)?);
        }
        if operands.len() == 1 {
            if let Some(&i) = idx.iter().find(|&&i| matches!(self.val(n, i), Ok(Val::Dyn(_)))) {
                return self.alias(n, i);
            }
        }
        let mut a = Attrs::new();
        // tpu-mlir types the Concat axis as si32 (readers use `attr_i64`, which accepts it)
        a.insert("axis".into(), attr::si32(axis as i64));
        self.emit(n, "top.Concat", operands, a, out);
        Ok(())
    }

    /// ReduceMean / ReduceMax / ReduceSum -> `top.Reduce`.
    pub(super) fn reduce(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        let r = xs.len();
        let from = if n.op_type == "ReduceSum" { 13 } else { 18 };
        let axes = self.axes_arg(n, 1, from)?.unwrap_or_default();
        let keep = n.int("keepdims", 1)? != 0;
        let mut axes: Vec<usize> = if axes.is_empty() {
            if n.int("noop_with_empty_axes", 0)? != 0 {
                return self.alias(n, 0);
            }
            (0..r).collect()
        } else {
            axes.iter().map(|&a| norm_axis(a, r)).collect::<Result<_, _>>().map_err(|m| n.err(m))?
        };
        axes.sort_unstable();
        axes.dedup();
        let out: Vec<usize> = (0..r)
            .filter_map(|i| {
                if axes.contains(&i) {
                    if keep {
                        Some(1)
                    } else {
                        None
                    }
                } else {
                    Some(xs[i])
                }
            })
            .collect();
        let x = self.operand(n, 0)?;
        let mut a = Attrs::new();
        a.insert("mode".into(), attr::str(&n.op_type));
        a.insert("axes".into(), attr::ints(&axes.iter().map(|&d| d as i64).collect::<Vec<_>>()));
        a.insert("keepdims".into(), attr::bool(keep));
        self.emit(n, "top.Reduce", operands_one(x), a, out);
        Ok(())
    }
}

fn operands_one(x: usize) -> Vec<usize> {
    vec![x]
}
