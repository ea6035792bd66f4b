//! The lowering driver: walks the top ops in order, picks each op's mode, emits tpu ops, weights
//! and the boundary casts (`<producer><consumer>_<type>`, `<producer>_f32` before `return`).

use super::calib::{self, Ranges};
use super::chip::{Chip, Mode};
use super::qtable::closest;
use super::{float_ops, int8_ops, LowerCache, LowerError, LowerOptions};
use crate::ir::weights::{TensorData, Weights};
use crate::ir::{attr, Attrs, ElemType, Func, Module, Op, Quant, TensorType, ValueId};
use ndarray::ArrayD;
use std::collections::HashMap;

/// Lowering state shared by the per-op lowerings.
pub(crate) struct Builder<'a> {
    pub top: &'a Func,
    pub top_weights: &'a Weights,
    pub chip: Chip,
    pub asymmetric: bool,
    ranges: Ranges,
    pub func: Func,
    pub weights: Weights,
    vmap: Vec<Option<ValueId>>,
    none: Option<ValueId>,
    casts: HashMap<(ValueId, String), ValueId>,
    /// ops per top-op bucket, and ops inserted right after a bucket
    buckets: Vec<Vec<Op>>,
    after: Vec<Vec<Op>>,
    /// bucket of each new value's producer
    bucket_of: Vec<usize>,
    pub cur: usize,
    top_producers: Vec<Option<usize>>,
    /// Quantized convolutions of earlier lowerings of the same model.
    pub cache: Option<&'a LowerCache<'a>>,
}

impl<'a> Builder<'a> {
    /// Name of a top value.
    pub fn name(&self, v: ValueId) -> &str {
        &self.top.values[v].name
    }

    /// Shape of a top value.
    pub fn shape(&self, v: ValueId) -> Vec<usize> {
        self.top.values[v].ty.shape().to_vec()
    }

    /// The INT8 quantization of a top value from its propagated range.
    pub fn qtype(&self, v: ValueId) -> Result<Quant, LowerError> {
        let r = self
            .ranges
            .get(v)
            .copied()
            .flatten()
            .ok_or_else(|| LowerError::MissingCalibration(self.name(v).to_string()))?;
        Ok(calib::range_to_uniform(r, self.chip, self.asymmetric))
    }

    /// The f32 data of a top weight operand.
    pub fn weight_f32(&self, op_name: &str, v: ValueId) -> Result<ArrayD<f32>, LowerError> {
        let name = self.name(v);
        self.top_weights
            .get(name)
            .map(|d| d.to_f32())
            .ok_or_else(|| LowerError::MissingWeight { op: op_name.to_string(), weight: name.to_string() })
    }

    /// True if the top value is produced by `top.Weight`.
    pub fn is_weight(&self, v: ValueId) -> bool {
        self.top_producers[v].map(|i| self.top.ops[i].is_weight()).unwrap_or(false)
    }

    /// True if the top value is produced by `top.None`.
    pub fn is_none_value(&self, v: ValueId) -> bool {
        self.top_producers[v].map(|i| self.top.ops[i].is_none()).unwrap_or(false)
    }

    /// The top op producing `v`.
    pub fn top_producer(&self, v: ValueId) -> Option<&'a Op> {
        self.top_producers[v].map(|i| &self.top.ops[i])
    }

    /// The shared `top.None` value.
    pub fn none(&mut self) -> ValueId {
        if let Some(n) = self.none {
            return n;
        }
        let id = self.func.add_value("", TensorType::None);
        self.bucket_of.push(0);
        self.none = Some(id);
        id
    }

    fn new_value(&mut self, name: &str, ty: TensorType, bucket: usize) -> ValueId {
        let id = self.func.add_value(name, ty);
        if self.bucket_of.len() < self.func.values.len() {
            self.bucket_of.resize(self.func.values.len(), 0);
        }
        self.bucket_of[id] = bucket;
        id
    }

    /// Emit an op in the current bucket; returns its result.
    pub fn emit(&mut self, kind: &str, operands: Vec<ValueId>, attrs: Attrs, name: &str, ty: TensorType) -> ValueId {
        let r = self.new_value(name, ty, self.cur);
        self.buckets[self.cur].push(Op { kind: kind.to_string(), operands, results: vec![r], attrs });
        r
    }

    /// Emit an op with several results (names and types given) in the current bucket.
    pub fn emit_multi(
        &mut self,
        kind: &str,
        operands: Vec<ValueId>,
        attrs: Attrs,
        outs: Vec<(String, TensorType)>,
    ) -> Vec<ValueId> {
        let rs: Vec<ValueId> = outs.into_iter().map(|(n, t)| self.new_value(&n, t, self.cur)).collect();
        self.buckets[self.cur].push(Op { kind: kind.to_string(), operands, results: rs.clone(), attrs });
        rs
    }

    /// Emit an op right after the producer of `after_value` (casts, requants).
    pub fn emit_after(
        &mut self,
        after_value: ValueId,
        kind: &str,
        operands: Vec<ValueId>,
        attrs: Attrs,
        name: &str,
        ty: TensorType,
    ) -> ValueId {
        let b = self.bucket_of.get(after_value).copied().unwrap_or(0);
        let r = self.new_value(name, ty, b);
        self.after[b].push(Op { kind: kind.to_string(), operands, results: vec![r], attrs });
        r
    }

    /// Emit a `top.Weight` holding `data`, named `name`, in the current bucket.
    pub fn emit_weight(&mut self, name: &str, data: TensorData, elem: ElemType) -> ValueId {
        let shape = data.shape().to_vec();
        self.weights.insert(name, data);
        self.emit("top.Weight", vec![], Attrs::new(), name, TensorType::Tensor { shape, elem, quant: None })
    }

    /// Map a top value to its lowered value.
    pub fn mapped(&mut self, v: ValueId) -> Result<ValueId, LowerError> {
        if self.is_none_value(v) {
            return Ok(self.none());
        }
        self.vmap[v].ok_or_else(|| LowerError::Op {
            op: self.top.values[v].name.clone(),
            kind: "?".into(),
            msg: "value used before it is lowered".into(),
        })
    }

    /// Type of a lowered value.
    pub fn new_ty(&self, nv: ValueId) -> &TensorType {
        &self.func.values[nv].ty
    }

    /// The lowered operand `v` as INT8 in its own calibrated type (casting a float producer).
    pub fn int8_operand(&mut self, v: ValueId, consumer: &str) -> Result<(ValueId, Quant), LowerError> {
        let q = self.qtype(v)?;
        let nv = self.mapped(v)?;
        if let Some(Quant::Uniform { .. }) = self.new_ty(nv).quant() {
            let have = self.new_ty(nv).quant().unwrap_or(q);
            return Ok((nv, have));
        }
        let Quant::Uniform { signed, scale, zero_point, .. } = q else { unreachable!() };
        let suffix = if signed { "si8" } else { "ui8" };
        let key = (nv, format!("{q:?}"));
        if let Some(&c) = self.casts.get(&key) {
            return Ok((c, q));
        }
        let name = format!("{}{}_{}", self.func.values[nv].name, consumer, suffix);
        let ty = int8_type(self.shape(v), q);
        let from_input = self.top_producer(v).map(|o| o.kind == "top.Input").unwrap_or(false);
        let c = if self.chip.is_cv18xx() && from_input {
            let mut a = Attrs::new();
            a.insert("cpu_op_name".into(), attr::str("quant"));
            a.insert("param_from".into(), attr::str("FP32"));
            a.insert("param_to".into(), attr::str("INT8"));
            a.insert("param_scale".into(), Attr_f32((1.0 / scale) as f32));
            let _ = zero_point;
            self.emit_after(nv, "tpu.GenericCpu", vec![nv], a, &name, ty)
        } else {
            self.emit_after(nv, "tpu.Cast", vec![nv], cast_attrs(), &name, ty)
        };
        self.casts.insert(key, c);
        Ok((c, q))
    }

    /// The lowered operand `v` in float element type `elem` (casting when needed).
    pub fn float_operand(&mut self, v: ValueId, elem: ElemType, consumer: &str) -> Result<ValueId, LowerError> {
        let nv = self.mapped(v)?;
        Ok(self.cast_to_float(nv, elem, consumer))
    }

    /// Cast a lowered value to a float type unless it already is one; `consumer` names the cast.
    pub fn cast_to_float(&mut self, nv: ValueId, elem: ElemType, consumer: &str) -> ValueId {
        let ty = self.new_ty(nv).clone();
        let is_uniform = matches!(ty.quant(), Some(Quant::Uniform { .. }));
        if !is_uniform && ty.elem() == Some(elem) {
            return nv;
        }
        if matches!(ty, TensorType::None) {
            return nv;
        }
        let key = (nv, elem.mlir_name().to_string());
        if let Some(&c) = self.casts.get(&key) {
            return c;
        }
        let name = format!("{}{}_{}", self.func.values[nv].name, consumer, elem.mlir_name());
        let c = self.emit_after(
            nv,
            "tpu.Cast",
            vec![nv],
            cast_attrs(),
            &name,
            TensorType::Tensor { shape: ty.shape().to_vec(), elem, quant: None },
        );
        self.casts.insert(key, c);
        c
    }

    /// Record the lowered value of a top value.
    pub fn bind(&mut self, top_v: ValueId, nv: ValueId) {
        self.vmap[top_v] = Some(nv);
    }
}

/// `f32` attribute (printed `: f32`).
#[allow(non_snake_case)]
pub(crate) fn Attr_f32(v: f32) -> crate::ir::Attr {
    crate::ir::Attr::Float(v as f64, "f32".into())
}

/// Attributes of every `tpu.Cast`.
pub(crate) fn cast_attrs() -> Attrs {
    let mut a = Attrs::new();
    a.insert("round_mode".into(), attr::tpu_enum("round_mode", "HalfAwayFromZero"));
    a.insert("with_scale".into(), attr::bool(true));
    a
}

/// Tensor type of an INT8 value.
pub(crate) fn int8_type(shape: Vec<usize>, q: Quant) -> TensorType {
    let elem = match q {
        Quant::Uniform { signed: false, .. } => ElemType::UI8,
        _ => ElemType::I8,
    };
    TensorType::Tensor { shape, elem, quant: Some(q) }
}

/// Ops that have an INT8 lowering on the given chip.
fn has_int8(kind: &str, chip: Chip, asymmetric: bool) -> bool {
    let base = matches!(
        kind,
        "Conv"
            | "LeakyRelu"
            | "Relu"
            | "MaxPool"
            | "Upsample"
            | "Concat"
            | "Add"
            | "Mul"
            | "Sigmoid"
            | "Reshape"
            | "Permute"
            | "Slice"
            | "AvgPool"
    );
    if asymmetric && !chip.is_cv18xx() {
        return base && !matches!(kind, "LeakyRelu" | "Add" | "Mul" | "AvgPool" | "Concat" | "Upsample");
    }
    base
}

pub(crate) fn lower_module<'a>(
    top: &'a Module,
    tw: &'a Weights,
    opts: &LowerOptions,
    cache: Option<&'a LowerCache<'a>>,
) -> Result<(Module, Weights), LowerError> {
    let chip = opts.chip;
    if opts.asymmetric && chip.is_cv18xx() {
        return Err(LowerError::AsymmetricNotSupported(chip.name().into()));
    }
    if opts.mode != Mode::Int8 && !chip.float_modes().contains(&opts.mode) {
        return Err(LowerError::mode_not_supported(chip, opts.mode));
    }
    let f = &top.func;
    // qtable names must be layers
    if let Some(qt) = opts.qtable {
        let names: Vec<&str> = f
            .ops
            .iter()
            .filter(|o| !o.is_weight() && !o.is_none())
            .flat_map(|o| o.results.iter().map(|&r| f.values[r].name.as_str()))
            .collect();
        for (n, m) in qt {
            if !names.contains(&n.as_str()) {
                return Err(LowerError::UnknownLayer {
                    name: n.clone(),
                    closest: closest(n, names.iter().copied(), 3).join(", "),
                });
            }
            if *m != Mode::Int8 && !chip.float_modes().contains(m) {
                return Err(LowerError::mode_not_supported(chip, *m));
            }
        }
    }
    let uses_int8 =
        opts.mode == Mode::Int8 || opts.qtable.map(|q| q.values().any(|m| *m == Mode::Int8)).unwrap_or(false);
    let mut ranges: Ranges = vec![None; f.values.len()];
    if let Some(t) = opts.table {
        ranges = calib::import_ranges(f, t, chip, opts.asymmetric);
        calib::propagate(f, &mut ranges, chip);
    } else if uses_int8 {
        return Err(LowerError::NoCalibrationTable);
    }
    let nb = f.ops.len() + 1;
    let mut b = Builder {
        top: f,
        top_weights: tw,
        chip,
        asymmetric: opts.asymmetric,
        ranges,
        func: Func::default(),
        weights: Weights::default(),
        vmap: vec![None; f.values.len()],
        none: None,
        casts: HashMap::new(),
        buckets: vec![Vec::new(); nb],
        after: vec![Vec::new(); nb],
        bucket_of: Vec::new(),
        cur: 0,
        top_producers: f.producers(),
        cache,
    };
    for &a in &f.args {
        let id = b.new_value("", f.values[a].ty.clone(), 0);
        b.func.args.push(id);
        b.bind(a, id);
    }
    for (i, op) in f.ops.iter().enumerate() {
        b.cur = i + 1;
        if op.is_weight() || op.is_none() {
            continue;
        }
        let name = f.op_name(op).to_string();
        if op.kind == "top.Input" {
            let inp = b.mapped(op.operands[0])?;
            let out = op.results[0];
            let mut ty = f.values[out].ty.clone();
            if let (TensorType::Tensor { quant, .. }, Some((mn, mx))) = (&mut ty, b.ranges[out]) {
                *quant = Some(Quant::Calibrated { min: mn, max: mx });
            }
            let r = b.emit("top.Input", vec![inp], op.attrs.clone(), &name, ty);
            b.bind(out, r);
            continue;
        }
        let mut mode = opts.qtable.and_then(|q| q.get(&name).copied()).unwrap_or(opts.mode);
        let kind = op.short_kind();
        if mode == Mode::Int8 && !has_int8(kind, chip, opts.asymmetric) {
            mode = if opts.asymmetric && chip == Chip::Bm1684x { Mode::F16 } else { chip.fallback_float() };
        }
        if mode == Mode::Int8 {
            int8_ops::lower_op(&mut b, op, &name)?;
        } else {
            let elem = mode.float_elem().unwrap_or(ElemType::F32);
            float_ops::lower_op(&mut b, op, &name, elem, mode)?;
        }
    }
    // returns
    b.cur = nb - 1;
    let mut rets = Vec::new();
    for &r in &f.returns {
        let nv = b.mapped(r)?;
        let ty = b.new_ty(nv).clone();
        let plain_f32 = ty.elem() == Some(ElemType::F32) && !matches!(ty.quant(), Some(Quant::Uniform { .. }));
        if plain_f32 {
            rets.push(nv);
        } else {
            let name = format!("{}_f32", b.func.values[nv].name);
            let key = (nv, "ret_f32".to_string());
            let c = if let Some(&c) = b.casts.get(&key) {
                c
            } else {
                let c =
                    b.emit_after(nv, "tpu.Cast", vec![nv], cast_attrs(), &name, TensorType::f32(ty.shape().to_vec()));
                b.casts.insert(key, c);
                c
            };
            rets.push(c);
        }
    }
    // assemble
    let mut func = std::mem::take(&mut b.func);
    let mut ops = Vec::new();
    if let Some(n) = b.none {
        ops.push(Op { kind: "top.None".into(), operands: vec![], results: vec![n], attrs: Attrs::new() });
    }
    for (bk, af) in b.buckets.into_iter().zip(b.after) {
        ops.extend(bk);
        ops.extend(af);
    }
    func.ops = ops;
    func.returns = rets;
    let mut attrs = top.attrs.clone();
    attrs.insert("chip".into(), attr::str(chip.name()));
    attrs.insert("mode".into(), attr::str(opts.mode.name()));
    attrs.insert("state".into(), attr::str("TPU_LOWERED"));
    attrs.insert("asymmetric".into(), attr::bool(opts.asymmetric));
    attrs.insert("addr_mode".into(), attr::str("basic"));
    attrs.insert("cores".into(), attr::i64(1));
    attrs.insert("devices".into(), attr::i64(1));
    attrs.insert("high_precision".into(), attr::bool(false));
    attrs.insert("q_group_size".into(), attr::i64(0));
    attrs.insert("q_symmetric".into(), attr::bool(false));
    let prefix = super::file_prefix(&top.name, chip, opts.mode, opts.asymmetric);
    let wf = if opts.qtable.is_some() {
        format!("{prefix}_tpu_qtable_weights.npz")
    } else {
        format!("{prefix}_tpu_weights.npz")
    };
    attrs.insert("weight_file".into(), attr::str(&wf));
    Ok((Module { name: top.name.clone(), attrs, func }, b.weights))
}
