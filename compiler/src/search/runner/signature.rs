//! Structural signatures of lowered values: two values with the same signature are computed by
//! the same ops from the same inputs and weights, so one can stand for the other.
//!
//! A function argument's signature is its position and type; a weight's is its type and a hash
//! of its contents; an op result's is the op kind, attributes, result types, the operands'
//! signatures and the result's position. The op and value names are not part of it (they do not
//! change what is computed); the module's chip attribute is (it selects the arithmetic).

use crate::ir::weights::{TensorData, Weights};
use crate::ir::Module;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// The signature of every value of `module` (indexed by value id; 0 for values nothing defines).
pub(super) fn signatures(module: &Module, weights: &Weights) -> Vec<u64> {
    let f = &module.func;
    let chip = format!("{:?}", module.attrs.get("chip"));
    let mut sig = vec![0u64; f.values.len()];
    for (i, &a) in f.args.iter().enumerate() {
        let mut h = DefaultHasher::new();
        ("arg", i, &chip, format!("{:?}", f.values[a].ty)).hash(&mut h);
        sig[a] = h.finish();
    }
    for op in &f.ops {
        if op.is_weight() {
            let r = op.results[0];
            let mut h = DefaultHasher::new();
            ("weight", format!("{:?}", f.values[r].ty)).hash(&mut h);
            match weights.get(f.op_name(op)) {
                Some(d) => hash_weight(d, &mut h),
                None => "missing".hash(&mut h),
            }
            sig[r] = h.finish();
            continue;
        }
        let mut h = DefaultHasher::new();
        ("op", &chip, &op.kind, format!("{:?}", op.attrs)).hash(&mut h);
        for &r in &op.results {
            format!("{:?}", f.values[r].ty).hash(&mut h);
        }
        for &v in &op.operands {
            sig[v].hash(&mut h);
        }
        let base = h.finish();
        for (j, &r) in op.results.iter().enumerate() {
            let mut h = DefaultHasher::new();
            (base, j).hash(&mut h);
            sig[r] = h.finish();
        }
    }
    sig
}

/// Per op, the key of what the simulator prepares for it once per cache (an INT8 convolution's
/// packed filters): the op kind, attributes and chip, the types of its operands and results, and
/// the signatures of its weight operands. Unlike the result's signature it does not depend on
/// where the op's input comes from, so a layer downstream of a trial's change keeps its key.
pub(super) fn prepared_keys(module: &Module, sig: &[u64]) -> Vec<u64> {
    let f = &module.func;
    let chip = format!("{:?}", module.attrs.get("chip"));
    let producers = f.producers();
    f.ops
        .iter()
        .map(|op| {
            let mut h = DefaultHasher::new();
            ("prepared", &chip, &op.kind, format!("{:?}", op.attrs)).hash(&mut h);
            for &r in &op.results {
                format!("{:?}", f.values[r].ty).hash(&mut h);
            }
            for &v in &op.operands {
                match producers[v] {
                    Some(p) if f.ops[p].is_weight() => ("weight", sig[v]).hash(&mut h),
                    _ => ("operand", format!("{:?}", f.values[v].ty)).hash(&mut h),
                }
            }
            h.finish()
        })
        .collect()
}

/// Bytes of a slice of plain numbers.
fn bytes<T: Copy>(s: &[T]) -> &[u8] {
    // SAFETY: only instantiated with primitive integer and float types, which have no padding
    // and whose every byte is initialised.
    unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u8, std::mem::size_of_val(s)) }
}

fn hash_array<T: Copy + Hash>(tag: &str, a: &ndarray::ArrayD<T>, h: &mut DefaultHasher) {
    (tag, a.shape()).hash(h);
    match a.as_slice() {
        Some(s) => h.write(bytes(s)),
        None => a.iter().for_each(|v| v.hash(h)),
    }
}

fn hash_weight(d: &TensorData, h: &mut DefaultHasher) {
    match d {
        TensorData::F32(a) => {
            ("f32", a.shape()).hash(h);
            match a.as_slice() {
                Some(s) => h.write(bytes(s)),
                None => a.iter().for_each(|v| v.to_bits().hash(h)),
            }
        }
        TensorData::I8(a) => hash_array("i8", a, h),
        TensorData::U8(a) => hash_array("u8", a, h),
        TensorData::I32(a) => hash_array("i32", a, h),
        TensorData::U16(a) => hash_array("u16", a, h),
        TensorData::I64(a) => hash_array("i64", a, h),
    }
}
