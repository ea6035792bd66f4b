//! Reference simulator of the lowered (tpu-level) IR: integer arithmetic exactly as the chip
//! does it (semantics in `lower/TPU_OPS.md`), float ops computed in f32 and rounded to the
//! result's f16 / bf16 type. Produces every value's raw tensor; [`SimTensor::dequantize`] gives
//! the f32 view tpu-mlir stores in `*_tpu_outputs.npz`.

pub mod conv;
mod ops;
pub mod tensor;

pub use tensor::{SimData, SimTensor};

use crate::ir::weights::{TensorData, Weights};
use crate::ir::{Attr, Module, TensorType};
use ndarray::ArrayD;
use std::sync::Arc;

/// Errors of simulation; each names the op.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Inputs do not match the function arguments.
    #[error("input {index}: {msg}")]
    BadInput { index: usize, msg: String },
    /// An op the simulator cannot run.
    #[error("op '{op}': unsupported op kind {kind}")]
    Unsupported { op: String, kind: String },
    /// Any other problem with one op.
    #[error("op '{op}' ({kind}): {msg}")]
    Op { op: String, kind: String, msg: String },
}

/// Run the lowered module on f32 inputs (one per function argument). Returns every op result
/// (weights excluded) by name, in program order.
pub fn run(module: &Module, weights: &Weights, inputs: &[ArrayD<f32>]) -> Result<Vec<(String, SimTensor)>, SimError> {
    let mut all = Vec::new();
    run_observe(module, weights, inputs, &mut |name, t| all.push((name.to_string(), t.clone())))?;
    Ok(all)
}

/// Run and return only the function outputs.
pub fn run_outputs(module: &Module, weights: &Weights, inputs: &[ArrayD<f32>]) -> Result<Vec<SimTensor>, SimError> {
    let f = &module.func;
    let vals = run_values(module, weights, inputs, &mut |_, _| {})?;
    f.returns
        .iter()
        .map(|&r| {
            vals[r].clone().ok_or_else(|| SimError::Op {
                op: f.values[r].name.clone(),
                kind: "return".into(),
                msg: "value not computed".into(),
            })
        })
        .collect()
}

/// Run, calling `observe(name, tensor)` for each op result in program order.
pub fn run_observe(
    module: &Module,
    weights: &Weights,
    inputs: &[ArrayD<f32>],
    observe: &mut dyn FnMut(&str, &SimTensor),
) -> Result<(), SimError> {
    run_values(module, weights, inputs, observe).map(|_| ())
}

fn run_values(
    module: &Module,
    weights: &Weights,
    inputs: &[ArrayD<f32>],
    observe: &mut dyn FnMut(&str, &SimTensor),
) -> Result<Vec<Option<SimTensor>>, SimError> {
    let f = &module.func;
    let cv = match module.attrs.get("chip") {
        Some(Attr::Str(s)) => s.to_ascii_lowercase().starts_with("cv18"),
        _ => false,
    };
    if inputs.len() != f.args.len() {
        return Err(SimError::BadInput {
            index: inputs.len(),
            msg: format!("expected {} inputs, got {}", f.args.len(), inputs.len()),
        });
    }
    let mut vals: Vec<Option<SimTensor>> = vec![None; f.values.len()];
    for (i, (&a, x)) in f.args.iter().zip(inputs).enumerate() {
        let want = f.values[a].ty.shape();
        if !want.is_empty() && x.shape() != want {
            return Err(SimError::BadInput { index: i, msg: format!("shape {:?}, expected {:?}", x.shape(), want) });
        }
        vals[a] = Some(SimTensor { data: SimData::F32(x.clone()), ty: f.values[a].ty.clone() });
    }
    // last use of every value, to free intermediates
    let mut last = vec![usize::MAX; f.values.len()];
    for (i, op) in f.ops.iter().enumerate() {
        for &v in &op.operands {
            last[v] = i;
        }
    }
    for &r in &f.returns {
        last[r] = usize::MAX - 1;
    }
    for (i, op) in f.ops.iter().enumerate() {
        let name = f.op_name(op).to_string();
        if op.is_none() {
            continue;
        }
        if op.is_weight() {
            let r = op.results[0];
            let d = weights.get(&name).ok_or_else(|| SimError::Op {
                op: name.clone(),
                kind: op.kind.clone(),
                msg: "weight missing from the weight file".into(),
            })?;
            vals[r] = Some(weight_tensor(d, &f.values[r].ty));
            continue;
        }
        let operands: Vec<Option<&SimTensor>> = op.operands.iter().map(|&v| vals[v].as_ref()).collect();
        let out_tys: Vec<&TensorType> = op.results.iter().map(|&r| &f.values[r].ty).collect();
        let res = ops::eval(op, &name, &operands, &out_tys, cv)?;
        for (&r, t) in op.results.iter().zip(res) {
            observe(&f.values[r].name, &t);
            vals[r] = Some(t);
        }
        for &v in &op.operands {
            if last[v] == i && !f.args.contains(&v) {
                vals[v] = None;
            }
        }
    }
    Ok(vals)
}

/// Run only what is missing: `seeds[v]` holds already known values (by value id; a value
/// computed before with the same inputs), `wanted[v]` marks the values the caller needs. An op
/// runs only when one of its results is wanted, directly or as an operand of an op that runs,
/// and is not seeded. Returns every value computed here (by value id; seeded and skipped
/// values are `None`), so the caller can keep them as seeds of later runs.
///
/// Used by the mixed-precision search, whose trials differ from the accepted assignment only
/// downstream of the changed layers.
pub fn run_seeded(
    module: &Module,
    weights: &Weights,
    inputs: &[ArrayD<f32>],
    seeds: &[Option<Arc<SimTensor>>],
    wanted: &[bool],
) -> Result<Vec<Option<Arc<SimTensor>>>, SimError> {
    let f = &module.func;
    let nv = f.values.len();
    if seeds.len() != nv || wanted.len() != nv {
        return Err(SimError::BadInput {
            index: 0,
            msg: format!("{} seeds and {} wanted flags for {nv} values", seeds.len(), wanted.len()),
        });
    }
    let cv = is_cv18xx(module);
    check_inputs(module, inputs)?;
    let is_arg = {
        let mut a = vec![false; nv];
        for &v in &f.args {
            a[v] = true;
        }
        a
    };
    // Backwards: which ops must run.
    let mut need: Vec<bool> = wanted.to_vec();
    let mut runs = vec![false; f.ops.len()];
    for (i, op) in f.ops.iter().enumerate().rev() {
        if op.is_none() {
            continue;
        }
        if op.results.iter().any(|&r| need[r] && seeds[r].is_none()) {
            runs[i] = true;
            for &v in &op.operands {
                need[v] = true;
            }
        }
    }
    let mut vals: Vec<Option<Arc<SimTensor>>> = vec![None; nv];
    for (&a, x) in f.args.iter().zip(inputs) {
        vals[a] = Some(Arc::new(SimTensor { data: SimData::F32(x.clone()), ty: f.values[a].ty.clone() }));
    }
    let mut computed: Vec<Option<Arc<SimTensor>>> = vec![None; nv];
    for (i, op) in f.ops.iter().enumerate() {
        if !runs[i] {
            continue;
        }
        let name = f.op_name(op).to_string();
        if op.is_weight() {
            let r = op.results[0];
            let d = weights.get(&name).ok_or_else(|| SimError::Op {
                op: name.clone(),
                kind: op.kind.clone(),
                msg: "weight missing from the weight file".into(),
            })?;
            vals[r] = Some(Arc::new(weight_tensor(d, &f.values[r].ty)));
            continue;
        }
        let operands: Vec<Option<&SimTensor>> = op
            .operands
            .iter()
            .map(|&v| vals[v].as_deref().or(if is_arg[v] { None } else { seeds[v].as_deref() }))
            .collect();
        let out_tys: Vec<&TensorType> = op.results.iter().map(|&r| &f.values[r].ty).collect();
        let res = ops::eval(op, &name, &operands, &out_tys, cv)?;
        for (&r, t) in op.results.iter().zip(res) {
            let t = Arc::new(t);
            computed[r] = Some(t.clone());
            vals[r] = Some(t);
        }
    }
    Ok(computed)
}

fn is_cv18xx(module: &Module) -> bool {
    match module.attrs.get("chip") {
        Some(Attr::Str(s)) => s.to_ascii_lowercase().starts_with("cv18"),
        _ => false,
    }
}

fn check_inputs(module: &Module, inputs: &[ArrayD<f32>]) -> Result<(), SimError> {
    let f = &module.func;
    if inputs.len() != f.args.len() {
        return Err(SimError::BadInput {
            index: inputs.len(),
            msg: format!("expected {} inputs, got {}", f.args.len(), inputs.len()),
        });
    }
    for (i, (&a, x)) in f.args.iter().zip(inputs).enumerate() {
        let want = f.values[a].ty.shape();
        if !want.is_empty() && x.shape() != want {
            return Err(SimError::BadInput { index: i, msg: format!("shape {:?}, expected {:?}", x.shape(), want) });
        }
    }
    Ok(())
}

fn weight_tensor(d: &TensorData, ty: &TensorType) -> SimTensor {
    let data = match d {
        TensorData::F32(a) => SimData::F32(a.clone()),
        TensorData::I8(a) => SimData::I8(a.clone()),
        TensorData::U8(a) => SimData::U8(a.clone()),
        TensorData::I32(a) => SimData::I32(a.clone()),
        TensorData::U16(a) => match ty.elem() {
            Some(crate::ir::ElemType::BF16) => SimData::BF16(a.clone()),
            _ => SimData::F16(a.clone()),
        },
        TensorData::I64(a) => SimData::F32(a.mapv(|v| v as f32)),
    };
    SimTensor { data, ty: ty.clone() }
}
