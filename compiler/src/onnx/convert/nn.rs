//! Convolution, pooling, normalization, dense layers and resizing.

use super::Converter;
use crate::ir::{attr, Attrs};
use crate::onnx::error::OnnxError;
use crate::onnx::graph::Node;
use crate::onnx::shape::{same_pads, window_out};
use crate::onnx::tensor::ConstTensor;
use ndarray::{ArrayD, IxDyn};

/// Spatial parameters of a windowed op, normalised to explicit pads.
struct Window {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    /// [begin..., end...]
    pads: Vec<usize>,
}

fn to_usize(v: &[i64], what: &str, n: &Node) -> Result<Vec<usize>, OnnxError> {
    v.iter().map(|&x| if x < 0 { Err(n.err(format!("negative {what} {v:?}"))) } else { Ok(x as usize) }).collect()
}

fn i64s(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

/// Read kernel / strides / dilations / pads / auto_pad of a node over `spatial` input dims.
fn window(n: &Node, spatial: &[usize], kernel: Vec<usize>) -> Result<Window, OnnxError> {
    let r = spatial.len();
    if kernel.len() != r {
        return Err(n.err(format!("kernel {kernel:?} does not match {r} spatial dims")));
    }
    let strides = match n.ints("strides")? {
        Some(s) => to_usize(&s, "strides", n)?,
        None => vec![1; r],
    };
    let dilations = match n.ints("dilations")? {
        Some(s) => to_usize(&s, "dilations", n)?,
        None => vec![1; r],
    };
    if strides.len() != r || dilations.len() != r {
        return Err(n.err("strides / dilations rank does not match the kernel"));
    }
    let auto_pad = n.string("auto_pad", "NOTSET")?;
    let pads = match auto_pad.as_str() {
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut b = vec![0; r];
            let mut e = vec![0; r];
            for i in 0..r {
                let (pb, pe) = same_pads(spatial[i], kernel[i], strides[i], dilations[i], auto_pad == "SAME_UPPER");
                b[i] = pb;
                e[i] = pe;
            }
            [b, e].concat()
        }
        "VALID" => vec![0; 2 * r],
        "NOTSET" | "" => match n.ints("pads")? {
            Some(p) if p.len() == 2 * r => to_usize(&p, "pads", n)?,
            Some(p) => return Err(n.err(format!("pads {p:?} do not match {r} spatial dims"))),
            None => vec![0; 2 * r],
        },
        other => return Err(n.err(format!("unknown auto_pad '{other}'"))),
    };
    Ok(Window { kernel, strides, dilations, pads })
}

impl Converter<'_> {
    /// Conv -> `top.Conv` (1-D or 2-D).
    pub(super) fn conv(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        let ws = self.shape_of(n, 1)?;
        if xs.len() != ws.len() || !(3..=4).contains(&xs.len()) {
            return Err(n.err(format!("only 1-D and 2-D convolutions are supported (input {xs:?}, filter {ws:?})")));
        }
        let kernel = match n.ints("kernel_shape")? {
            Some(k) => to_usize(&k, "kernel_shape", n)?,
            None => ws[2..].to_vec(),
        };
        let w = window(n, &xs[2..], kernel)?;
        let group = n.int("group", 1)?;
        let r = w.kernel.len();
        let mut shape = vec![xs[0], ws[0]];
        for i in 0..r {
            shape.push(
                window_out(xs[2 + i], w.kernel[i], w.strides[i], w.dilations[i], w.pads[i], w.pads[r + i])
                    .map_err(|m| n.err(m))?,
            );
        }
        let x = self.operand(n, 0)?;
        let f = self.operand(n, 1)?;
        let b = self.operand_or_none(n, 2)?;
        let mut a = Attrs::new();
        a.insert("kernel_shape".into(), attr::ints(&i64s(&w.kernel)));
        a.insert("strides".into(), attr::ints(&i64s(&w.strides)));
        a.insert("pads".into(), attr::ints(&i64s(&w.pads)));
        a.insert("dilations".into(), attr::ints(&i64s(&w.dilations)));
        a.insert("group".into(), attr::i64(group));
        a.insert("do_relu".into(), attr::bool(false));
        a.insert("relu_limit".into(), attr::f64(-1.0));
        self.emit(n, "top.Conv", vec![x, f, b], a, shape);
        Ok(())
    }

    /// ConvTranspose -> `top.Deconv`.
    pub(super) fn conv_transpose(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        let ws = self.shape_of(n, 1)?;
        if xs.len() != 4 || ws.len() != 4 {
            return Err(n.err(format!("only 2-D transposed convolutions are supported (input {xs:?})")));
        }
        let kernel = match n.ints("kernel_shape")? {
            Some(k) => to_usize(&k, "kernel_shape", n)?,
            None => ws[2..].to_vec(),
        };
        let group = n.int("group", 1)?;
        let mut w = window(n, &[0, 0], kernel)?;
        let out_pad = match n.ints("output_padding")? {
            Some(p) => to_usize(&p, "output_padding", n)?,
            None => vec![0, 0],
        };
        let mut shape = vec![xs[0], ws[1] * group.max(1) as usize];
        let auto_pad = n.string("auto_pad", "NOTSET")?;
        let full = |i: usize| w.strides[i] * (xs[2 + i] - 1) + out_pad[i] + (w.kernel[i] - 1) * w.dilations[i] + 1;
        if let Some(os) = n.ints("output_shape")? {
            let os = to_usize(&os, "output_shape", n)?;
            let os = if os.len() > 2 { os[os.len() - 2..].to_vec() } else { os };
            for (i, &o) in os.iter().enumerate().take(2) {
                let total = full(i).checked_sub(o).ok_or_else(|| n.err("output_shape too large"))?;
                let (b, e) = if auto_pad == "SAME_UPPER" {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                };
                w.pads[i] = b;
                w.pads[2 + i] = e;
            }
        } else if auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER" {
            for i in 0..2 {
                let total = full(i).saturating_sub(xs[2 + i] * w.strides[i]);
                let (b, e) = if auto_pad == "SAME_UPPER" {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                };
                w.pads[i] = b;
                w.pads[2 + i] = e;
            }
        }
        for i in 0..2 {
            let f = full(i);
            let p = w.pads[i] + w.pads[2 + i];
            shape.push(f.checked_sub(p).ok_or_else(|| n.err("pads larger than the output"))?);
        }
        let x = self.operand(n, 0)?;
        let f = self.operand(n, 1)?;
        let b = self.operand_or_none(n, 2)?;
        let mut a = Attrs::new();
        a.insert("kernel_shape".into(), attr::ints(&i64s(&w.kernel)));
        a.insert("strides".into(), attr::ints(&i64s(&w.strides)));
        a.insert("pads".into(), attr::ints(&i64s(&w.pads)));
        a.insert("dilations".into(), attr::ints(&i64s(&w.dilations)));
        a.insert("group".into(), attr::i64(group));
        a.insert("output_padding".into(), attr::ints(&i64s(&out_pad)));
        a.insert("do_relu".into(), attr::bool(false));
        self.emit(n, "top.Deconv", vec![x, f, b], a, shape);
        Ok(())
    }

    /// MaxPool / AveragePool -> `top.MaxPool` / `top.AvgPool` (ceil_mode folded into end pads).
    pub(super) fn pool(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        if !(3..=4).contains(&xs.len()) {
            return Err(n.err(format!("only 1-D and 2-D pooling is supported (input {xs:?})")));
        }
        let kernel =
            to_usize(&n.ints("kernel_shape")?.ok_or_else(|| n.err("kernel_shape is required"))?, "kernel_shape", n)?;
        let mut w = window(n, &xs[2..], kernel)?;
        if w.dilations.iter().any(|&d| d != 1) {
            return Err(n.err("dilated pooling is not supported"));
        }
        if n.outputs.get(1).is_some_and(|o| !o.is_empty()) {
            return Err(n.err("the MaxPool Indices output is not supported"));
        }
        let ceil = n.int("ceil_mode", 0)? != 0;
        let r = w.kernel.len();
        let mut shape = xs[..2].to_vec();
        for i in 0..r {
            let (k, s, pb, pe) = (w.kernel[i], w.strides[i], w.pads[i], w.pads[r + i]);
            let padded = xs[2 + i] + pb + pe;
            if padded < k || s == 0 {
                return Err(n.err(format!("kernel {k} larger than padded input {padded}")));
            }
            let mut out = if ceil { (padded - k).div_ceil(s) + 1 } else { (padded - k) / s + 1 };
            if ceil && (out - 1) * s >= xs[2 + i] + pb {
                out -= 1;
            }
            // extend the end pad so that floor arithmetic gives the same size
            let need = (out - 1) * s + k;
            if need > padded {
                w.pads[r + i] = pe + (need - padded);
            }
            shape.push(out);
        }
        let x = self.operand(n, 0)?;
        let mut a = Attrs::new();
        a.insert("kernel_shape".into(), attr::ints(&i64s(&w.kernel)));
        a.insert("strides".into(), attr::ints(&i64s(&w.strides)));
        a.insert("pads".into(), attr::ints(&i64s(&w.pads)));
        let include = n.op_type == "AveragePool" && n.int("count_include_pad", 0)? != 0;
        a.insert("count_include_pad".into(), attr::bool(include));
        a.insert("keepdims".into(), attr::bool(true));
        let kind = if n.op_type == "MaxPool" { "top.MaxPool" } else { "top.AvgPool" };
        self.emit(n, kind, vec![x], a, shape);
        Ok(())
    }

    /// GlobalAveragePool / GlobalMaxPool -> a pool with the whole spatial extent as kernel.
    pub(super) fn global_pool(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        if xs.len() < 3 {
            return Err(n.err(format!("input {xs:?} has no spatial dims")));
        }
        let spatial = xs[2..].to_vec();
        let r = spatial.len();
        let x = self.operand(n, 0)?;
        let mut a = Attrs::new();
        a.insert("kernel_shape".into(), attr::ints(&i64s(&spatial)));
        a.insert("strides".into(), attr::ints(&vec![1; r]));
        a.insert("pads".into(), attr::ints(&vec![0; 2 * r]));
        a.insert("count_include_pad".into(), attr::bool(false));
        a.insert("keepdims".into(), attr::bool(true));
        let mut shape = xs[..2].to_vec();
        shape.extend(std::iter::repeat_n(1, r));
        let kind = if n.op_type == "GlobalMaxPool" { "top.MaxPool" } else { "top.AvgPool" };
        self.emit(n, kind, vec![x], a, shape);
        Ok(())
    }

    /// BatchNormalization not folded into a Conv -> `top.Scale`.
    pub(super) fn batch_norm(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        let p = |c: &Self, i: usize, what: &str| -> Result<Vec<f32>, OnnxError> {
            Ok(c.require_const(n, i, what)?.to_f32().iter().copied().collect())
        };
        let (gamma, beta, mean, var) =
            (p(self, 1, "scale")?, p(self, 2, "B")?, p(self, 3, "mean")?, p(self, 4, "var")?);
        let eps = n.float("epsilon", 1e-5)?;
        let c = xs.get(1).copied().unwrap_or(0);
        if [gamma.len(), beta.len(), mean.len(), var.len()].iter().any(|&l| l != c) {
            return Err(n.err(format!("parameters do not match the {c} channels of {xs:?}")));
        }
        let scale: Vec<f32> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
        let bias: Vec<f32> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
        let mk = |v: Vec<f32>| ConstTensor::F32(ArrayD::from_shape_vec(IxDyn(&[c]), v).expect("1-D"));
        let x = self.operand(n, 0)?;
        let out = n.outputs[0].clone();
        let s = self.weight(&format!("{out}_scale"), &mk(scale));
        let b = self.weight(&format!("{out}_bias"), &mk(bias));
        let mut a = Attrs::new();
        a.insert("do_relu".into(), attr::bool(false));
        self.emit(n, "top.Scale", vec![x, s, b], a, xs);
        Ok(())
    }

    /// Gemm -> `top.MatMul` with B as [K, N] (transB, alpha applied) and beta·C as bias.
    pub(super) fn gemm(&mut self, n: &Node) -> Result<(), OnnxError> {
        let a_shape = self.shape_of(n, 0)?;
        if n.int("transA", 0)? != 0 || a_shape.len() != 2 {
            return Err(n.err("only Gemm with a 2-D, non-transposed A is supported"));
        }
        let alpha = n.float("alpha", 1.0)?;
        let beta = n.float("beta", 1.0)?;
        let trans_b = n.int("transB", 0)? != 0;
        let bname = n.input(1).unwrap_or_default().to_string();
        let b = self.require_const(n, 1, "B")?;
        let mut bm = b.to_f32();
        if bm.ndim() != 2 {
            return Err(n.err(format!("B must be 2-D, got {:?}", bm.shape())));
        }
        if trans_b {
            bm = bm.reversed_axes().as_standard_layout().to_owned();
        }
        let changed = trans_b || alpha != 1.0;
        if alpha != 1.0 {
            bm.mapv_inplace(|v| v * alpha);
        }
        let (k, nn) = (bm.shape()[0], bm.shape()[1]);
        if a_shape[1] != k {
            return Err(n.err(format!("A {a_shape:?} and B [{k}, {nn}] do not multiply")));
        }
        let x = self.operand(n, 0)?;
        let wname = if changed { format!("{bname}_fix") } else { bname };
        let b_id = self.weight(&wname, &ConstTensor::F32(bm));
        let mut extra_add = None;
        let bias = match n.input(2) {
            None => self.none(),
            Some(cname) => {
                let cname = cname.to_string();
                let c = self.require_const(n, 2, "C")?;
                let mut cm = c.to_f32();
                if beta != 1.0 {
                    cm.mapv_inplace(|v| v * beta);
                }
                if cm.len() == nn && (cm.ndim() == 1 || cm.shape()[0] == 1) {
                    let flat = cm.iter().copied().collect();
                    let t = ConstTensor::F32(ArrayD::from_shape_vec(IxDyn(&[nn]), flat).expect("1-D"));
                    let name = if beta != 1.0 || cm.ndim() != 1 { format!("{cname}_fix") } else { cname };
                    self.weight(&name, &t)
                } else if cm.len() == 1 {
                    let t = ConstTensor::F32(ArrayD::from_elem(IxDyn(&[nn]), cm.iter().next().copied().unwrap_or(0.0)));
                    self.weight(&format!("{cname}_fix"), &t)
                } else {
                    extra_add = Some((cname, cm));
                    self.none()
                }
            }
        };
        let mut a = Attrs::new();
        a.insert("do_relu".into(), attr::bool(false));
        let shape = vec![a_shape[0], nn];
        if let Some((cname, cm)) = extra_add {
            let out = n.outputs[0].clone();
            let mm = self.emit_aux(
                "top.MatMul",
                vec![x, b_id, bias],
                a.clone(),
                format!("{out}_Gemm_matmul"),
                shape.clone(),
            );
            let c = self.weight(&format!("{cname}_fix"), &ConstTensor::F32(cm));
            self.emit(n, "top.Add", vec![mm, c], a, shape);
        } else {
            self.emit(n, "top.MatMul", vec![x, b_id, bias], a, shape);
        }
        Ok(())
    }

    /// MatMul -> `top.MatMul` (no bias).
    pub(super) fn matmul(&mut self, n: &Node) -> Result<(), OnnxError> {
        let (sa, sb) = (self.shape_of(n, 0)?, self.shape_of(n, 1)?);
        if sa.len() < 2 || sb.len() < 2 {
            return Err(n.err(format!("1-D MatMul operands are not supported ({sa:?} x {sb:?})")));
        }
        let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
        let (k2, nn) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        if k != k2 {
            return Err(n.err(format!("{sa:?} and {sb:?} do not multiply")));
        }
        let batch = crate::onnx::shape::broadcast(&sa[..sa.len() - 2], &sb[..sb.len() - 2]).map_err(|e| n.err(e))?;
        let mut shape = batch;
        shape.extend([m, nn]);
        let a_id = self.operand(n, 0)?;
        let b_id = self.operand(n, 1)?;
        let none = self.none();
        let mut a = Attrs::new();
        a.insert("do_relu".into(), attr::bool(false));
        self.emit(n, "top.MatMul", vec![a_id, b_id, none], a, shape);
        Ok(())
    }

    /// Resize / Upsample: nearest with equal integer ratios -> `top.Upsample`, ratio 1 -> removed,
    /// anything else -> `top.Interp`.
    pub(super) fn resize(&mut self, n: &Node) -> Result<(), OnnxError> {
        let xs = self.shape_of(n, 0)?;
        if xs.len() != 4 {
            return Err(n.err(format!("only 4-D resizes are supported (input {xs:?})")));
        }
        let is_upsample = n.op_type == "Upsample";
        let scales_in = if is_upsample || self.opset < 11 { 1 } else { 2 };
        let mut scales: Option<Vec<f32>> = None;
        let mut sizes: Option<Vec<usize>> = None;
        if is_upsample && self.opset < 9 {
            scales = n.floats("scales")?;
        } else {
            if let Some(t) = self.const_in(n, scales_in).filter(|t| !t.is_empty()) {
                scales = Some(t.to_f32().iter().copied().collect());
            } else if n.input(scales_in).is_some() && self.const_in(n, scales_in).is_none() {
                return Err(n.err("scales must be a constant"));
            }
            if !is_upsample && self.opset >= 11 && scales.is_none() {
                if let Some(t) = self.const_in(n, 3).filter(|t| !t.is_empty()) {
                    sizes = Some(t.i64_values().iter().map(|&v| v.max(0) as usize).collect());
                } else if n.input(3).is_some() {
                    return Err(n.err("sizes must be a constant"));
                }
            }
        }
        let out: Vec<usize> = match (&scales, &sizes) {
            (Some(s), _) if s.len() == 4 => (0..4).map(|i| (xs[i] as f32 * s[i]).floor() as usize).collect(),
            (_, Some(s)) if s.len() == 4 => s.clone(),
            _ => return Err(n.err("needs 4 scales or 4 sizes")),
        };
        if out[0] != xs[0] || out[1] != xs[1] {
            return Err(n.err("resizing the batch or channel dim is not supported"));
        }
        let (sh, sw) = match &scales {
            Some(s) => (s[2] as f64, s[3] as f64),
            None => (out[2] as f64 / xs[2] as f64, out[3] as f64 / xs[3] as f64),
        };
        let mode = n.string("mode", "nearest")?;
        let mode = match mode.as_str() {
            "nearest" => "nearest",
            "linear" | "bilinear" => "linear",
            other => return Err(n.err(format!("resize mode '{other}' is not supported"))),
        };
        if out == xs {
            return self.alias(n, 0);
        }
        let int_ratio =
            out[2].is_multiple_of(xs[2]) && out[3].is_multiple_of(xs[3]) && out[2] / xs[2] == out[3] / xs[3];
        let x = self.operand(n, 0)?;
        let mut a = Attrs::new();
        if mode == "nearest" && int_ratio {
            a.insert("scale_h".into(), attr::i64((out[2] / xs[2]) as i64));
            a.insert("scale_w".into(), attr::i64((out[3] / xs[3]) as i64));
            self.emit(n, "top.Upsample", vec![x], a, out);
            return Ok(());
        }
        let default_coord = if is_upsample || self.opset < 11 { "asymmetric" } else { "half_pixel" };
        let coord = n.string("coordinate_transformation_mode", default_coord)?;
        let coord = match coord.as_str() {
            "asymmetric" | "half_pixel" | "pytorch_half_pixel" | "align_corners" => coord,
            other => return Err(n.err(format!("coordinate_transformation_mode '{other}' is not supported"))),
        };
        a.insert("mode".into(), attr::str(mode));
        a.insert("coord_mode".into(), attr::str(&coord));
        a.insert("scale_h".into(), attr::f64(sh));
        a.insert("scale_w".into(), attr::f64(sw));
        self.emit(n, "top.Interp", vec![x], a, out);
        Ok(())
    }
}
