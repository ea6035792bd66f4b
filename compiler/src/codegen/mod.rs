//! Code generation: lowered `ir::Module` + `Weights` -> bmodel bytes.
//!
//! [`emit`] turns each tpu op into instructions (coefficients into the blob of [`coeff`]),
//! [`plan`] places activations by liveness (reuse, in-place element-wise ops, chip alignment),
//! then the placeholders are relocated and the file is written with `bmodel_format`'s layout.
//! Same input -> same bytes (no maps with random order, no timestamps).

pub mod coeff;
pub mod emit;
pub mod plan;
pub mod strided;
pub mod types;

use crate::ir::weights::Weights;
use crate::ir::Module;
use bmodel_format::scratch::scratch_bytes;
use bmodel_format::{Chip, IoTensor, MemoryPlan, NetMeta, Region};

/// Errors of code generation; messages name the op, tensor or weight and the cause.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// An op kind the instruction set does not cover.
    #[error("op '{op}': kind {kind} is not supported by the bmodel code generator")]
    Unsupported {
        /// op name
        op: String,
        /// op kind
        kind: String,
    },
    /// An op with attributes or operands codegen cannot handle.
    #[error("op {op}: {why}")]
    Op {
        /// op name and kind
        op: String,
        /// cause
        why: String,
    },
    /// A tensor type without a storage form.
    #[error("tensor '{tensor}': {why}")]
    Type {
        /// tensor name
        tensor: String,
        /// cause
        why: String,
    },
    /// A missing or mistyped weight.
    #[error("weight '{name}': {why}")]
    Weight {
        /// weight name
        name: String,
        /// cause
        why: String,
    },
    /// A region over the 32-bit sizes of the format.
    #[error("{0} exceeds 4 GiB")]
    TooLarge(&'static str),
    /// The chip name is unknown.
    #[error("unknown chip '{0}'")]
    UnknownChip(String),
    /// The produced model failed its own verification (a code generator bug).
    #[error("generated bmodel does not verify: {0}")]
    Verify(String),
}

/// Figures of the memory plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanReport {
    /// total arena bytes (activations + scratch)
    pub arena_size: u64,
    /// activation region bytes
    pub activation_size: u64,
    /// kernels' scratch bytes
    pub scratch_size: u64,
    /// coefficient bytes
    pub coeff_size: u64,
    /// sum of all activation tensors' sizes (what a plan without reuse would need)
    pub naive_sum: u64,
    /// number of instructions
    pub instr_count: usize,
    /// element-wise results computed in place
    pub in_place: usize,
    /// activation alignment used
    pub alignment: u32,
}

/// Activation alignment per chip (BM1684X local-memory bank rows are 64 bytes, CV18xx 16).
pub fn alignment_for(chip: Chip) -> u32 {
    if chip.is_cv18xx() {
        16
    } else {
        64
    }
}

/// Chip of a module from its `chip` attribute.
pub fn module_chip(module: &Module) -> Result<Chip, CodegenError> {
    let name = match module.attrs.get("chip") {
        Some(crate::ir::Attr::Str(s)) => s.clone(),
        _ => return Err(CodegenError::UnknownChip("(missing module.chip)".into())),
    };
    Chip::from_name(&name).ok_or(CodegenError::UnknownChip(name))
}

/// Compile a lowered module to bmodel bytes and report the memory plan.
pub fn build_bmodel(module: &Module, weights: &Weights, chip: Chip) -> Result<(Vec<u8>, PlanReport), CodegenError> {
    let names = io_names(module);
    build_with_names(module, weights, chip, &names)
}

/// Names of the network inputs (the `top.Input` consuming each argument) and outputs.
fn io_names(module: &Module) -> (Vec<String>, Vec<String>) {
    let func = &module.func;
    let users = func.users();
    let inputs = func
        .args
        .iter()
        .enumerate()
        .map(|(k, &a)| {
            users[a]
                .iter()
                .find(|&&u| func.ops[u].kind == "top.Input")
                .map(|&u| func.op_name(&func.ops[u]).to_string())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| format!("input{k}"))
        })
        .collect();
    let outputs = func
        .returns
        .iter()
        .enumerate()
        .map(|(k, &r)| {
            let n = &func.values[r].name;
            if n.is_empty() {
                format!("output{k}")
            } else {
                n.clone()
            }
        })
        .collect();
    (inputs, outputs)
}

fn build_with_names<'n>(
    module: &Module,
    weights: &Weights,
    chip: Chip,
    names: &'n (Vec<String>, Vec<String>),
) -> Result<(Vec<u8>, PlanReport), CodegenError> {
    let func = &module.func;
    let em = emit::emit(module, weights, chip)?;
    let alignment = alignment_for(chip);
    let ap = plan::plan(func, &em.storage, alignment as u64);
    let to32 = |v: u64, what| u32::try_from(v).map_err(|_| CodegenError::TooLarge(what));
    // relocate activation placeholders (value ids) to planned offsets
    let mut instrs = Vec::with_capacity(em.instrs.len());
    let mut scratch = 0u64;
    for (_, mut ins) in em.instrs {
        let mut bad = None;
        ins.for_each_operand_mut(|t| {
            if t.region == Region::Activation {
                match ap.offset.get(t.offset as usize).copied().flatten() {
                    Some(o) => t.offset = o as u32,
                    None => bad = Some(t.offset),
                }
            }
        });
        if let Some(v) = bad {
            return Err(CodegenError::Type {
                tensor: func.values[v as usize].name.clone(),
                why: "has no storage".into(),
            });
        }
        scratch = scratch.max(scratch_bytes(&ins));
        instrs.push(ins);
    }
    let activation_size = ap.size.div_ceil(64) * 64;
    let plan = MemoryPlan {
        alignment,
        coeff_size: to32(em.coeff.bytes.len() as u64, "coefficient region")?,
        activation_size: to32(activation_size, "activation region")?,
        scratch_offset: to32(activation_size, "arena")?,
        scratch_size: to32(scratch, "scratch")?,
    };
    let io = |v: usize, name: &'n str| -> Result<IoTensor<'n>, CodegenError> {
        let val = &func.values[v];
        let root = {
            let mut r = v;
            while let emit::Storage::Alias(p) = em.storage[r] {
                r = p;
            }
            r
        };
        let offset = ap.offset[root]
            .ok_or_else(|| CodegenError::Type { tensor: val.name.clone(), why: "has no storage".into() })?;
        let (scale, zp) = types::scale_zp(&val.ty);
        Ok(IoTensor {
            name,
            dims: val.ty.shape().iter().map(|&d| d as u32).collect(),
            storage: bmodel_format::TensorRef {
                region: Region::Activation,
                offset: to32(offset, "arena")?,
                shape: types::shape4(val.ty.shape(), &val.name)?,
                dtype: types::dtype_of(&val.ty, &val.name)?,
            },
            scale: scale as f32,
            zero_point: zp as i32,
        })
    };
    let mut inputs = bmodel_format::heapless::Vec::<IoTensor<'_>, { bmodel_format::MAX_IO }>::new();
    for (&a, name) in func.args.iter().zip(&names.0) {
        inputs.push(io(a, name)?).map_err(|_| CodegenError::TooLarge("input count"))?;
    }
    let mut outputs = bmodel_format::heapless::Vec::<IoTensor<'_>, { bmodel_format::MAX_IO }>::new();
    for (&r, name) in func.returns.iter().zip(&names.1) {
        outputs.push(io(r, name)?).map_err(|_| CodegenError::TooLarge("output count"))?;
    }
    let mut stream = Vec::new();
    for ins in &instrs {
        stream.extend(postcard::to_allocvec(ins).map_err(|e| CodegenError::Verify(e.to_string()))?);
    }
    let name = module.name.clone();
    let meta = NetMeta { name: &name, plan, inputs, outputs, instr_count: instrs.len() as u32, instrs: &stream };
    let meta_bytes = postcard::to_allocvec(&meta).map_err(|e| CodegenError::Verify(e.to_string()))?;
    let mut out = vec![0u8; bmodel_format::writer::assembled_len(meta_bytes.len(), em.coeff.bytes.len())];
    bmodel_format::writer::assemble_into(&mut out, chip, &meta_bytes, &em.coeff.bytes)
        .map_err(|e| CodegenError::Verify(e.to_string()))?;
    bmodel_format::verify(&out).map_err(|e| CodegenError::Verify(e.to_string()))?;
    let report = PlanReport {
        arena_size: plan.arena_size(),
        activation_size: plan.activation_size as u64,
        scratch_size: plan.scratch_size as u64,
        coeff_size: plan.coeff_size as u64,
        naive_sum: ap.naive_sum,
        instr_count: instrs.len(),
        in_place: em.in_place,
        alignment,
    };
    Ok((out, report))
}
