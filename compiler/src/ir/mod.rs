//! The graph IR shared by every stage: one `Module` holding one function of ops in SSA form.
//!
//! The same structures carry both levels of tpu-mlir's IR: the *top* dialect (`top.Conv`,
//! float tensors, calibrated types after import of a table) and the lowered *tpu* dialect
//! (`tpu.Conv2D` with quantized element types and multiplier/shift attributes). Ops are generic
//! (kind string + attribute dictionary) so that the textual `.mlir` form round-trips exactly;
//! typed access goes through the attribute getters below.

pub mod text;
pub mod weights;

use std::collections::BTreeMap;
use std::fmt;

/// Index of a value (an SSA result or a function argument) in [`Func::values`].
pub type ValueId = usize;

/// Errors of IR queries (missing or mistyped attributes, unknown names).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum IrError {
    /// An op lacks an attribute its semantics need.
    #[error("op '{op}' ({kind}): missing attribute '{attr}'")]
    MissingAttr { op: String, kind: String, attr: String },
    /// An attribute has another type than expected.
    #[error("op '{op}' ({kind}): attribute '{attr}' is not {expected}")]
    BadAttr { op: String, kind: String, attr: String, expected: &'static str },
    /// A name that is not a value of the graph.
    #[error("no tensor named '{0}' in the graph")]
    UnknownName(String),
}

/// Scalar element type of a tensor, spelled as MLIR spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElemType {
    F32,
    F16,
    BF16,
    /// signless `i8`
    I8,
    /// `si8`
    SI8,
    /// `ui8`
    UI8,
    I16,
    SI16,
    UI16,
    I32,
    SI32,
    UI32,
    I64,
    SI64,
    /// `i1`
    I1,
}

impl ElemType {
    /// MLIR spelling (`f32`, `si8`, ...).
    pub fn mlir_name(self) -> &'static str {
        match self {
            ElemType::F32 => "f32",
            ElemType::F16 => "f16",
            ElemType::BF16 => "bf16",
            ElemType::I8 => "i8",
            ElemType::SI8 => "si8",
            ElemType::UI8 => "ui8",
            ElemType::I16 => "i16",
            ElemType::SI16 => "si16",
            ElemType::UI16 => "ui16",
            ElemType::I32 => "i32",
            ElemType::SI32 => "si32",
            ElemType::UI32 => "ui32",
            ElemType::I64 => "i64",
            ElemType::SI64 => "si64",
            ElemType::I1 => "i1",
        }
    }

    /// Parse an MLIR spelling.
    pub fn from_mlir_name(s: &str) -> Option<Self> {
        Some(match s {
            "f32" => ElemType::F32,
            "f16" => ElemType::F16,
            "bf16" => ElemType::BF16,
            "i8" => ElemType::I8,
            "si8" => ElemType::SI8,
            "ui8" => ElemType::UI8,
            "i16" => ElemType::I16,
            "si16" => ElemType::SI16,
            "ui16" => ElemType::UI16,
            "i32" => ElemType::I32,
            "si32" => ElemType::SI32,
            "ui32" => ElemType::UI32,
            "i64" => ElemType::I64,
            "si64" => ElemType::SI64,
            "i1" => ElemType::I1,
            _ => return None,
        })
    }

    /// True for floating-point element types.
    pub fn is_float(self) -> bool {
        matches!(self, ElemType::F32 | ElemType::F16 | ElemType::BF16)
    }
}

/// Quantization annotation of a tensor type (`!quant.calibrated` / `!quant.uniform`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quant {
    /// `!quant.calibrated<f32<min:max>>`: float tensor with a calibrated range (before lowering).
    Calibrated { min: f64, max: f64 },
    /// `!quant.uniform<i8:f32, scale[:zp]>`: integer storage, real = scale * (q - zp).
    Uniform { signed: bool, bits: u8, scale: f64, zero_point: i64 },
}

/// The type of one tensor value: static shape, element type, optional quantization.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorType {
    /// MLIR `none` (the result of `top.None`, an absent optional operand).
    None,
    /// `tensor<d0xd1x...xT>` with optional quantization.
    Tensor { shape: Vec<usize>, elem: ElemType, quant: Option<Quant> },
}

impl TensorType {
    /// A plain float32 tensor type.
    pub fn f32(shape: Vec<usize>) -> Self {
        TensorType::Tensor { shape, elem: ElemType::F32, quant: None }
    }

    /// Shape of the tensor (empty for `none`).
    pub fn shape(&self) -> &[usize] {
        match self {
            TensorType::None => &[],
            TensorType::Tensor { shape, .. } => shape,
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape().iter().product()
    }

    /// Element type, `None` for the `none` type.
    pub fn elem(&self) -> Option<ElemType> {
        match self {
            TensorType::None => None,
            TensorType::Tensor { elem, .. } => Some(*elem),
        }
    }

    /// Quantization annotation if any.
    pub fn quant(&self) -> Option<Quant> {
        match self {
            TensorType::None => None,
            TensorType::Tensor { quant, .. } => *quant,
        }
    }
}

/// An attribute value, kept in a form that prints back exactly as parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// `true` / `false`
    Bool(bool),
    /// `5 : i64` (type suffix kept; empty suffix prints the bare integer)
    Int(i64, String),
    /// `1.000000e-01 : f64`
    Float(f64, String),
    /// `"text"`
    Str(String),
    /// `[1, 1]`
    IntArray(Vec<i64>),
    /// `[0.000000e+00, 1.5]`
    FloatArray(Vec<f64>),
    /// `["a", "b"]`
    StrArray(Vec<String>),
    /// `#tpu<round_mode HalfUp>`: dialect, enum kind and value
    Enum { dialect: String, kind: String, value: String },
}

/// Attribute dictionary of an op, sorted by name as MLIR prints it.
pub type Attrs = BTreeMap<String, Attr>;

/// One SSA value: its name (the tpu-mlir layer name, from the `loc`) and its type.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// Layer name (`conv2d_1_Conv`), weight name, or input name. Function arguments: `""`.
    pub name: String,
    /// Type of the value.
    pub ty: TensorType,
}

/// One operation: `%r = "kind"(operands) {attrs} : (...) -> (...) loc(name)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// Fully qualified op kind, e.g. `top.Conv`, `tpu.Conv2D`, `top.Weight`.
    pub kind: String,
    /// Operand values (function arguments or results of earlier ops).
    pub operands: Vec<ValueId>,
    /// Result values (one for almost every op).
    pub results: Vec<ValueId>,
    /// Attribute dictionary.
    pub attrs: Attrs,
}

/// The `main` function: arguments, ops in topological order, returned values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Func {
    /// Every value; arguments first by convention of the importer and the parser.
    pub values: Vec<Value>,
    /// Function arguments (`%arg0`, ...).
    pub args: Vec<ValueId>,
    /// Ops in program order.
    pub ops: Vec<Op>,
    /// Values returned by `return`, in output order.
    pub returns: Vec<ValueId>,
}

/// A whole module: `module @name attributes {...} { func.func @main ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    /// Model name (`yolov3_tiny`).
    pub name: String,
    /// Module attributes without the `module.` prefix (`weight_file`, `state`, `chip`, ...).
    pub attrs: Attrs,
    /// The single function.
    pub func: Func,
}

impl Func {
    /// Add a value and return its id.
    pub fn add_value(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        self.values.push(Value { name: name.into(), ty });
        self.values.len() - 1
    }

    /// Append an op producing one new value named `name`; returns the result id.
    pub fn push_op(
        &mut self,
        kind: &str,
        operands: Vec<ValueId>,
        attrs: Attrs,
        name: impl Into<String>,
        ty: TensorType,
    ) -> ValueId {
        let r = self.add_value(name, ty);
        self.ops.push(Op { kind: kind.to_string(), operands, results: vec![r], attrs });
        r
    }

    /// Name of an op (the name of its first result).
    pub fn op_name(&self, op: &Op) -> &str {
        op.results.first().map(|&r| self.values[r].name.as_str()).unwrap_or("")
    }

    /// Index of the op producing `v`, if `v` is not an argument.
    pub fn producer(&self, v: ValueId) -> Option<usize> {
        self.ops.iter().position(|o| o.results.contains(&v))
    }

    /// Map from value id to the index of its producing op (arguments map to `None`).
    pub fn producers(&self) -> Vec<Option<usize>> {
        let mut p = vec![None; self.values.len()];
        for (i, op) in self.ops.iter().enumerate() {
            for &r in &op.results {
                p[r] = Some(i);
            }
        }
        p
    }

    /// For every value, the indices of the ops that use it (in program order).
    pub fn users(&self) -> Vec<Vec<usize>> {
        let mut u = vec![Vec::new(); self.values.len()];
        for (i, op) in self.ops.iter().enumerate() {
            for &v in &op.operands {
                if !u[v].contains(&i) {
                    u[v].push(i);
                }
            }
        }
        u
    }

    /// Find a value by its name.
    pub fn value_by_name(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name)
    }
}

impl Op {
    /// The op kind without its dialect prefix (`Conv` for `top.Conv`).
    pub fn short_kind(&self) -> &str {
        self.kind.split_once('.').map(|(_, k)| k).unwrap_or(&self.kind)
    }

    /// True for `top.Weight`.
    pub fn is_weight(&self) -> bool {
        self.kind == "top.Weight"
    }

    /// True for `top.None`.
    pub fn is_none(&self) -> bool {
        self.kind == "top.None"
    }

    fn missing(&self, name: &str) -> IrError {
        IrError::MissingAttr { op: String::new(), kind: self.kind.clone(), attr: name.to_string() }
    }

    fn bad(&self, name: &str, expected: &'static str) -> IrError {
        IrError::BadAttr { op: String::new(), kind: self.kind.clone(), attr: name.to_string(), expected }
    }

    /// Integer attribute.
    pub fn attr_i64(&self, name: &str) -> Result<i64, IrError> {
        match self.attrs.get(name) {
            Some(Attr::Int(v, _)) => Ok(*v),
            Some(Attr::Bool(b)) => Ok(*b as i64),
            Some(_) => Err(self.bad(name, "an integer")),
            None => Err(self.missing(name)),
        }
    }

    /// Integer attribute with a default when absent.
    pub fn attr_i64_or(&self, name: &str, default: i64) -> Result<i64, IrError> {
        if self.attrs.contains_key(name) {
            self.attr_i64(name)
        } else {
            Ok(default)
        }
    }

    /// Float attribute (integers are accepted).
    pub fn attr_f64(&self, name: &str) -> Result<f64, IrError> {
        match self.attrs.get(name) {
            Some(Attr::Float(v, _)) => Ok(*v),
            Some(Attr::Int(v, _)) => Ok(*v as f64),
            Some(_) => Err(self.bad(name, "a float")),
            None => Err(self.missing(name)),
        }
    }

    /// Float attribute with a default when absent.
    pub fn attr_f64_or(&self, name: &str, default: f64) -> Result<f64, IrError> {
        if self.attrs.contains_key(name) {
            self.attr_f64(name)
        } else {
            Ok(default)
        }
    }

    /// Boolean attribute, `false` when absent.
    pub fn attr_bool(&self, name: &str) -> bool {
        match self.attrs.get(name) {
            Some(Attr::Bool(b)) => *b,
            Some(Attr::Int(v, _)) => *v != 0,
            _ => false,
        }
    }

    /// String attribute (enum attributes give their value).
    pub fn attr_str(&self, name: &str) -> Result<&str, IrError> {
        match self.attrs.get(name) {
            Some(Attr::Str(s)) => Ok(s),
            Some(Attr::Enum { value, .. }) => Ok(value),
            Some(_) => Err(self.bad(name, "a string")),
            None => Err(self.missing(name)),
        }
    }

    /// Integer array attribute.
    pub fn attr_ints(&self, name: &str) -> Result<Vec<i64>, IrError> {
        match self.attrs.get(name) {
            Some(Attr::IntArray(v)) => Ok(v.clone()),
            Some(Attr::Int(v, _)) => Ok(vec![*v]),
            Some(_) => Err(self.bad(name, "an integer array")),
            None => Err(self.missing(name)),
        }
    }

    /// Integer array attribute, or `default` when absent.
    pub fn attr_ints_or(&self, name: &str, default: &[i64]) -> Result<Vec<i64>, IrError> {
        if self.attrs.contains_key(name) {
            self.attr_ints(name)
        } else {
            Ok(default.to_vec())
        }
    }

    /// Float array attribute (integer arrays are converted).
    pub fn attr_floats(&self, name: &str) -> Result<Vec<f64>, IrError> {
        match self.attrs.get(name) {
            Some(Attr::FloatArray(v)) => Ok(v.clone()),
            Some(Attr::IntArray(v)) => Ok(v.iter().map(|&x| x as f64).collect()),
            Some(Attr::Float(v, _)) => Ok(vec![*v]),
            Some(_) => Err(self.bad(name, "a float array")),
            None => Err(self.missing(name)),
        }
    }
}

/// Attribute constructors used by the importer and the lowering, so spelling stays uniform.
pub mod attr {
    use super::Attr;

    /// `v : i64`
    pub fn i64(v: i64) -> Attr {
        Attr::Int(v, "i64".into())
    }
    /// `v : si32`
    pub fn si32(v: i64) -> Attr {
        Attr::Int(v, "si32".into())
    }
    /// `v : f64`
    pub fn f64(v: f64) -> Attr {
        Attr::Float(v, "f64".into())
    }
    /// `[a, b, ...]` of integers
    pub fn ints(v: &[i64]) -> Attr {
        Attr::IntArray(v.to_vec())
    }
    /// `[a, b, ...]` of floats
    pub fn floats(v: &[f64]) -> Attr {
        Attr::FloatArray(v.to_vec())
    }
    /// `"s"`
    pub fn str(s: &str) -> Attr {
        Attr::Str(s.to_string())
    }
    /// `true` / `false`
    pub fn bool(b: bool) -> Attr {
        Attr::Bool(b)
    }
    /// `#tpu<kind value>`
    pub fn tpu_enum(kind: &str, value: &str) -> Attr {
        Attr::Enum { dialect: "tpu".into(), kind: kind.into(), value: value.into() }
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mlir_name())
    }
}
