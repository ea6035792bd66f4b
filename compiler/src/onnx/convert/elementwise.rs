//! Activations and binary arithmetic.

use super::{Converter, Val};
use crate::ir::{attr, Attrs};
use crate::onnx::error::OnnxError;
use crate::onnx::graph::Node;
use crate::onnx::shape::broadcast;

impl Converter<'_> {
    /// Relu, Sigmoid, Tanh, Exp, HardSwish, LeakyRelu, HardSigmoid, Clip, PRelu.
    pub(super) fn unary(&mut self, n: &Node) -> Result<(), OnnxError> {
        let x = self.operand(n, 0)?;
        let shape = self.shape_of(n, 0)?;
        let mut a = Attrs::new();
        let kind = match n.op_type.as_str() {
            "Relu" => {
                a.insert("relu_limit".into(), attr::f64(-1.0));
                "top.Relu"
            }
            "Sigmoid" => "top.Sigmoid",
            "Tanh" => "top.Tanh",
            "Exp" => "top.Exp",
            "HardSwish" => "top.HardSwish",
            "LeakyRelu" => {
                a.insert("alpha".into(), attr::f64(n.float("alpha", 0.01)? as f64));
                "top.LeakyRelu"
            }
            "HardSigmoid" => {
                a.insert("alpha".into(), attr::f64(n.float("alpha", 0.2)? as f64));
                a.insert("beta".into(), attr::f64(n.float("beta", 0.5)? as f64));
                "top.HardSigmoid"
            }
            "Clip" => {
                let (lo, hi) = if self.opset >= 11 {
                    let bound = |c: &Self, i: usize, d: f64| -> Result<f64, OnnxError> {
                        if n.input(i).is_none() {
                            return Ok(d);
                        }
                        let t = c.require_const(n, i, "Clip bound")?;
                        t.f64_values().first().copied().ok_or_else(|| n.err("empty Clip bound"))
                    };
                    (bound(self, 1, f32::MIN as f64)?, bound(self, 2, f32::MAX as f64)?)
                } else {
                    (n.float("min", f32::MIN)? as f64, n.float("max", f32::MAX)? as f64)
                };
                a.insert("min".into(), attr::f64(lo));
                a.insert("max".into(), attr::f64(hi));
                "top.Clip"
            }
            "PRelu" => {
                let slope = self.operand(n, 1)?;
                let out = broadcast(&shape, &self.shape_of(n, 1)?).map_err(|m| n.err(m))?;
                self.emit(n, "top.PRelu", vec![x, slope], a, out);
                return Ok(());
            }
            other => return Err(n.err(format!("not an activation: {other}"))),
        };
        self.emit(n, kind, vec![x], a, shape);
        Ok(())
    }

    /// Add, Sub, Mul, Div; a scalar constant operand becomes AddConst / SubConst / MulConst.
    pub(super) fn binary(&mut self, n: &Node) -> Result<(), OnnxError> {
        let (sa, sb) = (self.shape_of(n, 0)?, self.shape_of(n, 1)?);
        let out = broadcast(&sa, &sb).map_err(|m| n.err(m))?;
        let (va, vb) = (self.val(n, 0)?.clone(), self.val(n, 1)?.clone());
        // scalar-constant forms (only when the constant does not widen the result)
        let scalar = |v: &Val| match v {
            Val::Const(c) if c.len() == 1 => c.f64_values().first().copied(),
            _ => None,
        };
        let (ca, cb) = (scalar(&va), scalar(&vb));
        let dyn_side = match (&va, &vb, ca, cb) {
            (Val::Dyn(x), _, _, Some(c)) if out == sa => Some((*x, c, false)),
            (_, Val::Dyn(x), Some(c), _) if out == sb => Some((*x, c, true)),
            _ => None,
        };
        if let Some((x, c, const_first)) = dyn_side {
            let mut a = Attrs::new();
            let kind = match (n.op_type.as_str(), const_first) {
                ("Add", _) => Some("top.AddConst"),
                ("Mul", _) => Some("top.MulConst"),
                ("Sub", _) => Some("top.SubConst"),
                ("Div", false) => Some("top.MulConst"),
                _ => None,
            };
            if let Some(kind) = kind {
                let value = if n.op_type == "Div" { 1.0 / (c as f32) as f64 } else { c };
                a.insert("const_val".into(), attr::f64(value));
                if kind == "top.SubConst" {
                    a.insert("is_reverse".into(), attr::bool(const_first));
                } else {
                    a.insert("do_relu".into(), attr::bool(false));
                }
                self.emit(n, kind, vec![x], a, out);
                return Ok(());
            }
        }
        let a_id = self.operand(n, 0)?;
        let b_id = self.operand(n, 1)?;
        let mut a = Attrs::new();
        a.insert("do_relu".into(), attr::bool(false));
        let kind = format!("top.{}", n.op_type);
        self.emit(n, &kind, vec![a_id, b_id], a, out);
        Ok(())
    }
}
