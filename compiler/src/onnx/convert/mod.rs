//! Conversion of the (cut, BN-fused) ONNX graph into the top IR: values are either constants
//! (folded at import) or SSA values of the function; every node is folded or converted in order.

mod elementwise;
mod nn;
mod tensor_ops;

use super::error::OnnxError;
use super::fold;
use super::graph::{Node, OnnxGraph};
use super::tensor::ConstTensor;
use crate::ir::weights::Weights;
use crate::ir::{attr, Attrs, Func, Op, TensorType, ValueId};
use std::collections::HashMap;

/// What an ONNX tensor name stands for during conversion.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    /// known at import time
    Const(ConstTensor),
    /// a value of the function
    Dyn(ValueId),
}

/// Conversion state: the function being built, the weights, and the name -> value map.
pub(crate) struct Converter<'g> {
    pub g: &'g OnnxGraph,
    pub opset: i64,
    pub func: Func,
    pub weights: Weights,
    vals: HashMap<String, Val>,
    weight_ids: HashMap<String, ValueId>,
    none_id: Option<ValueId>,
}

impl<'g> Converter<'g> {
    /// Start a conversion of `g`.
    pub fn new(g: &'g OnnxGraph) -> Self {
        let mut vals = HashMap::new();
        for (k, v) in &g.initializers {
            vals.insert(k.clone(), Val::Const(v.clone()));
        }
        Converter {
            g,
            opset: g.opset,
            func: Func::default(),
            weights: Weights::default(),
            vals,
            weight_ids: HashMap::new(),
            none_id: None,
        }
    }

    /// Add a graph input: a function argument and its `top.Input` op.
    pub fn add_input(&mut self, name: &str, shape: Vec<usize>, attrs: Attrs) {
        let arg = self.func.add_value("", TensorType::f32(shape.clone()));
        self.func.args.push(arg);
        let id = self.func.push_op("top.Input", vec![arg], attrs, name, TensorType::f32(shape));
        self.vals.insert(name.to_string(), Val::Dyn(id));
    }

    /// Convert every node in order.
    pub fn run(&mut self) -> Result<(), OnnxError> {
        let g = self.g;
        for node in &g.nodes {
            self.node(node)?;
        }
        Ok(())
    }

    /// Set the function's returns to the graph outputs.
    pub fn finish(mut self) -> Result<(Func, Weights), OnnxError> {
        let mut rets = Vec::new();
        for o in &self.g.outputs {
            match self.vals.get(o) {
                Some(Val::Dyn(id)) => rets.push(*id),
                Some(Val::Const(_)) => {
                    return Err(OnnxError::Graph(format!(
                        "output '{o}' is a constant after folding; choose another output"
                    )))
                }
                None => return Err(OnnxError::Graph(format!("output '{o}' is not produced by the graph"))),
            }
        }
        self.func.returns = rets;
        let func = compact(self.func);
        let mut weights = Weights::default();
        for op in func.ops.iter().filter(|o| o.is_weight()) {
            let name = func.op_name(op);
            if let Some(w) = self.weights.get(name) {
                weights.insert(name, w.clone());
            }
        }
        Ok((func, weights))
    }

    fn node(&mut self, node: &Node) -> Result<(), OnnxError> {
        if node.op_type == "Constant" {
            let t = constant_value(node)?;
            let out = node.outputs.first().ok_or_else(|| node.err("no output"))?;
            self.vals.insert(out.clone(), Val::Const(t));
            return Ok(());
        }
        // fold when every present input is a constant
        let mut consts: Vec<Option<&ConstTensor>> = Vec::new();
        let mut all_const = true;
        for name in &node.inputs {
            if name.is_empty() {
                consts.push(None);
                continue;
            }
            match self.vals.get(name) {
                Some(Val::Const(c)) => consts.push(Some(c)),
                Some(Val::Dyn(_)) => {
                    all_const = false;
                    consts.push(None)
                }
                None => return Err(OnnxError::DanglingInput { node: node.name.clone(), input: name.clone() }),
            }
        }
        if all_const && !node.inputs.is_empty() {
            if let Some(outs) = fold::eval(node, &consts, self.opset)? {
                for (o, t) in node.outputs.iter().zip(outs) {
                    self.vals.insert(o.clone(), Val::Const(t));
                }
                return Ok(());
            }
        }
        // shape queries of SSA values are constants too
        if node.op_type == "Shape" || node.op_type == "Size" {
            let shape = self.shape_of(node, 0)?;
            let s: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
            let t = if node.op_type == "Shape" {
                ConstTensor::ints(&fold::shape_range(&s, node)?)
            } else {
                ConstTensor::I64(ndarray::ArrayD::from_elem(
                    ndarray::IxDyn(&[]),
                    shape.iter().product::<usize>() as i64,
                ))
            };
            self.vals.insert(node.outputs[0].clone(), Val::Const(t));
            return Ok(());
        }
        self.convert(node)
    }

    fn convert(&mut self, n: &Node) -> Result<(), OnnxError> {
        match n.op_type.as_str() {
            "Identity" | "Dropout" => self.alias(n, 0),
            "Cast" => {
                let to = n.int("to", 1)? as i32;
                if super::tensor::is_int_type(to) {
                    return Err(n.err("Cast of a computed tensor to an integer type is not supported"));
                }
                self.alias(n, 0)
            }
            "Relu" | "Sigmoid" | "Tanh" | "Exp" | "HardSwish" | "LeakyRelu" | "HardSigmoid" | "Clip" | "PRelu" => {
                self.unary(n)
            }
            "Add" | "Sub" | "Mul" | "Div" => self.binary(n),
            "Conv" => self.conv(n),
            "ConvTranspose" => self.conv_transpose(n),
            "MaxPool" | "AveragePool" => self.pool(n),
            "GlobalAveragePool" | "GlobalMaxPool" => self.global_pool(n),
            "BatchNormalization" => self.batch_norm(n),
            "Gemm" => self.gemm(n),
            "MatMul" => self.matmul(n),
            "Resize" | "Upsample" => self.resize(n),
            "Flatten" => self.flatten(n),
            "Reshape" => self.reshape(n),
            "Squeeze" | "Unsqueeze" => self.squeeze(n),
            "Transpose" => self.transpose(n),
            "Softmax" => self.softmax(n),
            "Pad" => self.pad(n),
            "Slice" => self.slice(n),
            "Split" => self.split(n),
            "Gather" => self.gather(n),
            "Concat" => self.concat(n),
            "ReduceMean" | "ReduceMax" | "ReduceSum" => self.reduce(n),
            _ => Err(OnnxError::UnsupportedOp { op_type: n.op_type.clone(), node: n.name.clone() }),
        }
    }

    // ---- helpers used by the op converters ----

    /// The value bound to input `i` (must exist).
    pub fn val(&self, n: &Node, i: usize) -> Result<&Val, OnnxError> {
        let name = n.input(i).ok_or_else(|| n.err(format!("input {i} is missing")))?;
        self.vals.get(name).ok_or_else(|| OnnxError::DanglingInput { node: n.name.clone(), input: name.to_string() })
    }

    /// Input `i` as a constant, if it is one (absent -> `None`).
    pub fn const_in(&self, n: &Node, i: usize) -> Option<ConstTensor> {
        let name = n.input(i)?;
        match self.vals.get(name) {
            Some(Val::Const(c)) => Some(c.clone()),
            _ => None,
        }
    }

    /// Input `i` as a constant, or an error saying it must be one.
    pub fn require_const(&self, n: &Node, i: usize, what: &str) -> Result<ConstTensor, OnnxError> {
        self.const_in(n, i).ok_or_else(|| n.err(format!("{what} (input {i}) must be a constant")))
    }

    /// Input `i` as a function value; a constant becomes a `top.Weight` named after the input.
    pub fn operand(&mut self, n: &Node, i: usize) -> Result<ValueId, OnnxError> {
        match self.val(n, i)?.clone() {
            Val::Dyn(id) => Ok(id),
            Val::Const(c) => {
                let name = n.input(i).unwrap_or_default().to_string();
                Ok(self.weight(&name, &c))
            }
        }
    }

    /// Input `i` or `top.None` when absent.
    pub fn operand_or_none(&mut self, n: &Node, i: usize) -> Result<ValueId, OnnxError> {
        if n.input(i).is_some() {
            self.operand(n, i)
        } else {
            Ok(self.none())
        }
    }

    /// The shape of input `i`.
    pub fn shape_of(&self, n: &Node, i: usize) -> Result<Vec<usize>, OnnxError> {
        Ok(match self.val(n, i)? {
            Val::Dyn(id) => self.func.values[*id].ty.shape().to_vec(),
            Val::Const(c) => c.shape().to_vec(),
        })
    }

    /// A `top.Weight` for `data` named `name` (created once, right before its first use).
    pub fn weight(&mut self, name: &str, data: &ConstTensor) -> ValueId {
        if let Some(&id) = self.weight_ids.get(name) {
            if self.func.values[id].ty.shape() == data.shape() {
                return id;
            }
        }
        let mut unique = name.to_string();
        let mut k = 1;
        while self.weight_ids.contains_key(&unique) {
            unique = format!("{name}_{k}");
            k += 1;
        }
        let id = self.func.push_op(
            "top.Weight",
            vec![],
            Attrs::new(),
            unique.clone(),
            TensorType::f32(data.shape().to_vec()),
        );
        self.weights.insert(unique.clone(), data.to_weight());
        self.weight_ids.insert(unique, id);
        id
    }

    /// The shared `top.None` value.
    pub fn none(&mut self) -> ValueId {
        if let Some(id) = self.none_id {
            return id;
        }
        let id = self.func.push_op("top.None", vec![], Attrs::new(), "NoneOp", TensorType::None);
        self.none_id = Some(id);
        id
    }

    /// Emit the op of node `n` producing its first output with `shape`.
    pub fn emit(
        &mut self,
        n: &Node,
        kind: &str,
        operands: Vec<ValueId>,
        mut attrs: Attrs,
        shape: Vec<usize>,
    ) -> ValueId {
        tpu_mlir_defaults(kind, &mut attrs);
        let out = n.outputs.first().cloned().unwrap_or_default();
        let name = format!("{out}_{}", n.op_type);
        let id = self.func.push_op(kind, operands, attrs, name, TensorType::f32(shape));
        self.vals.insert(out, Val::Dyn(id));
        id
    }

    /// Emit an auxiliary op (not bound to an ONNX output) named `name`.
    pub fn emit_aux(
        &mut self,
        kind: &str,
        operands: Vec<ValueId>,
        attrs: Attrs,
        name: String,
        shape: Vec<usize>,
    ) -> ValueId {
        self.func.push_op(kind, operands, attrs, name, TensorType::f32(shape))
    }

    /// Bind output `k` of `n` to an existing value.
    pub fn bind(&mut self, n: &Node, k: usize, id: ValueId) {
        if let Some(o) = n.outputs.get(k) {
            self.vals.insert(o.clone(), Val::Dyn(id));
        }
    }

    /// Output 0 of `n` is input `i` (removed op).
    pub fn alias(&mut self, n: &Node, i: usize) -> Result<(), OnnxError> {
        let v = self.val(n, i)?.clone();
        if let Some(o) = n.outputs.first() {
            self.vals.insert(o.clone(), v);
        }
        Ok(())
    }

    /// A `top.Reshape` of `x` to `shape` for node `n`.
    pub fn emit_reshape(&mut self, n: &Node, x: ValueId, shape: Vec<usize>) -> ValueId {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let mut a = Attrs::new();
        a.insert("shape".into(), attr::ints(&dims));
        self.emit(n, "top.Reshape", vec![x], a, shape)
    }
}

/// The default attributes tpu-mlir prints on these top ops besides the ones of TOP_OPS.md
/// (as in its yolov3_tiny top MLIR), so that our text reads like tpu-mlir's. Consumers ignore them.
fn tpu_mlir_defaults(kind: &str, a: &mut Attrs) {
    let mut set = |k: &str, v: crate::ir::Attr| {
        a.entry(k.to_string()).or_insert(v);
    };
    let round = || attr::str("HalfAwayFromZero");
    match kind {
        "top.Conv" => {
            set("dynweight_reorderd", attr::bool(false));
            set("weight_is_coeff", attr::i64(1));
        }
        "top.LeakyRelu" => set("round_mode", round()),
        "top.MaxPool" | "top.AvgPool" => {
            set("do_relu", attr::bool(false));
            set("first_round_mode", round());
            set("is_adaptive", attr::bool(false));
            set("pad_value", attr::i64(0));
            set("relu_limit", attr::f64(-1.0));
            set("round_mode", round());
        }
        "top.Upsample" => {
            set("do_relu", attr::bool(false));
            set("relu_limit", attr::f64(-1.0));
        }
        "top.Concat" => {
            set("do_relu", attr::bool(false));
            set("only_merge", attr::bool(false));
            set("relu_limit", attr::f64(-1.0));
            set("round_mode", round());
        }
        _ => {}
    }
}

/// tpu-mlir's `module.FLOPs` count of the ops it knows a formula for (Conv: out·(2·K + bias),
/// MatMul: out·(2·K + bias), pools: out·kh·kw, activations / element-wise / Upsample: out;
/// data movement counts 0). Exact for tiny-yolov3's reference (5,582,872,243).
pub(crate) fn flops(func: &Func) -> i64 {
    let numel = |v: ValueId| func.values[v].ty.numel() as i64;
    let has_bias =
        |op: &Op, i: usize| op.operands.get(i).is_some_and(|&b| !matches!(func.values[b].ty, TensorType::None));
    let mut total = 0i64;
    for op in &func.ops {
        let Some(&out) = op.results.first() else { continue };
        let o = numel(out);
        total += match op.kind.as_str() {
            "top.Conv" | "top.Deconv" => {
                let w = func.values[op.operands[1]].ty.shape();
                let k: usize = w.iter().skip(1).product();
                o * (2 * k as i64 + has_bias(op, 2) as i64)
            }
            "top.MatMul" => {
                let a = func.values[op.operands[0]].ty.shape();
                let k = *a.last().unwrap_or(&1) as i64;
                o * (2 * k + has_bias(op, 2) as i64)
            }
            "top.MaxPool" | "top.AvgPool" => {
                o * op.attr_ints("kernel_shape").unwrap_or_default().iter().product::<i64>()
            }
            "top.Relu" | "top.LeakyRelu" | "top.PRelu" | "top.Clip" | "top.Sigmoid" | "top.HardSigmoid"
            | "top.HardSwish" | "top.Tanh" | "top.Exp" | "top.Add" | "top.Sub" | "top.Mul" | "top.Div"
            | "top.AddConst" | "top.SubConst" | "top.MulConst" | "top.Upsample" | "top.Interp" | "top.Scale"
            | "top.Softmax" | "top.Reduce" => o,
            _ => 0,
        };
    }
    total
}

/// The tensor of a Constant node (any of its value attributes).
fn constant_value(n: &Node) -> Result<ConstTensor, OnnxError> {
    if let Some(t) = n.tensor("value")? {
        return Ok(t);
    }
    if n.has("value_float") {
        return Ok(ConstTensor::F32(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[]), n.float("value_float", 0.0)?)));
    }
    if let Some(v) = n.floats("value_floats")? {
        return Ok(ConstTensor::F32(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[v.len()]), v).map_err(|e| n.err(e.to_string()))?,
        ));
    }
    if n.has("value_int") {
        return Ok(ConstTensor::I64(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[]), n.int("value_int", 0)?)));
    }
    if let Some(v) = n.ints("value_ints")? {
        return Ok(ConstTensor::ints(&v));
    }
    if n.has("sparse_value") {
        return Err(n.err("sparse Constant values are not supported"));
    }
    Err(n.err("Constant without a value attribute"))
}

/// Renumber the function: `top.None` first, then the remaining ops in order; drop ops whose
/// results nobody uses (except returns), and values no op or argument refers to.
fn compact(func: Func) -> Func {
    let mut ops: Vec<Op> = Vec::with_capacity(func.ops.len());
    if let Some(none) = func.ops.iter().find(|o| o.is_none()) {
        ops.push(none.clone());
    }
    ops.extend(func.ops.iter().filter(|o| !o.is_none()).cloned());
    // dead-op elimination, backwards
    let mut live = vec![false; func.values.len()];
    for &r in &func.returns {
        live[r] = true;
    }
    let mut keep = vec![false; ops.len()];
    for (i, op) in ops.iter().enumerate().rev() {
        if op.results.iter().any(|&r| live[r]) {
            keep[i] = true;
            for &o in &op.operands {
                live[o] = true;
            }
        }
    }
    let ops: Vec<Op> = ops.into_iter().zip(keep).filter(|(_, k)| *k).map(|(o, _)| o).collect();
    let mut map = vec![usize::MAX; func.values.len()];
    let mut out = Func::default();
    for &a in &func.args {
        map[a] = out.add_value(func.values[a].name.clone(), func.values[a].ty.clone());
        out.args.push(map[a]);
    }
    for op in &ops {
        let results: Vec<ValueId> = op
            .results
            .iter()
            .map(|&r| {
                map[r] = out.add_value(func.values[r].name.clone(), func.values[r].ty.clone());
                map[r]
            })
            .collect();
        out.ops.push(Op {
            kind: op.kind.clone(),
            operands: op.operands.iter().map(|&o| map[o]).collect(),
            results,
            attrs: op.attrs.clone(),
        });
    }
    out.returns = func.returns.iter().map(|&r| map[r]).collect();
    out
}
