//! The F32 reference interpreter of the top IR (ndarray, rayon).

use crate::ir::weights::Weights;
use crate::ir::{Module, ValueId};
use ndarray::ArrayD;

/// A float tensor in NCHW (row-major) layout.
pub type Tensor = ArrayD<f32>;

/// Errors of interpretation; each names the op.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    /// An op kind the interpreter does not know.
    #[error("op '{name}': unsupported op type {kind}")]
    Unsupported { name: String, kind: String },
    /// Inputs given do not match the function arguments.
    #[error("input {index}: {msg}")]
    BadInput { index: usize, msg: String },
    /// Anything else wrong with one op (missing weight, bad attribute, shape mismatch).
    #[error("op '{name}' ({kind}): {msg}")]
    Op { name: String, kind: String, msg: String },
}

/// A prepared interpreter for one module (weights resolved once, reused across samples).
pub struct Interpreter<'a> {
    module: &'a Module,
    weights: &'a Weights,
}

impl<'a> Interpreter<'a> {
    /// Prepare a module for repeated runs.
    pub fn new(module: &'a Module, weights: &'a Weights) -> Result<Self, InterpError> {
        Ok(Interpreter { module, weights })
    }

    /// Run the whole function; `observe(value, tensor)` sees every op result in program order
    /// (intermediates are freed as soon as no later op needs them). Returns the outputs.
    pub fn run_observe(
        &self,
        inputs: &[Tensor],
        observe: &mut dyn FnMut(ValueId, &Tensor),
    ) -> Result<Vec<Tensor>, InterpError> {
        let _ = (inputs, observe, self.module, self.weights);
        Err(InterpError::Unsupported { name: String::new(), kind: "interpreter not implemented yet".into() })
    }

    /// Run and return the function outputs only.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InterpError> {
        self.run_observe(inputs, &mut |_, _| {})
    }

    /// Run and keep every op result, indexed by value id (weights and `none` stay `None`).
    pub fn run_all(&self, inputs: &[Tensor]) -> Result<Vec<Option<Tensor>>, InterpError> {
        let mut all: Vec<Option<Tensor>> = vec![None; self.module.func.values.len()];
        self.run_observe(inputs, &mut |v, t| all[v] = Some(t.clone()))?;
        Ok(all)
    }

    /// Evaluate the single op `op_index` of the function on the given operand tensors
    /// (weights are taken from the store; pass `None` for weight and `none` operands).
    pub fn eval_op(&self, op_index: usize, operands: &[Option<&Tensor>]) -> Result<Vec<Tensor>, InterpError> {
        let _ = (op_index, operands);
        Err(InterpError::Unsupported { name: String::new(), kind: "interpreter not implemented yet".into() })
    }
}
