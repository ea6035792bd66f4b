//! Reference simulator of the lowered (tpu-level) IR: integer arithmetic exactly as the chip
//! does it (semantics in `lower/TPU_OPS.md`), float ops computed in f32 and rounded to the
//! result's f16 / bf16 type. Produces every value's raw tensor; [`SimTensor::dequantize`] gives
//! the f32 view tpu-mlir stores in `*_tpu_outputs.npz`.

mod cache;
pub mod conv;
mod ops;
mod requant;
mod scratch;
pub mod tensor;

pub use cache::SimCache;
pub use tensor::{SimData, SimTensor};

use crate::ir::weights::{TensorData, Weights};
use crate::ir::{Attr, Module, TensorType};
use ndarray::ArrayD;
#[cfg(test)]
use ndarray::IxDyn;
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
            vals[r] = Some(weight_value(weights, &name, op, &f.values[r].ty)?);
            continue;
        }
        let operands: Vec<Option<&SimTensor>> = op.operands.iter().map(|&v| vals[v].as_ref()).collect();
        let out_tys: Vec<&TensorType> = op.results.iter().map(|&r| &f.values[r].ty).collect();
        let res = eval_op(op, &name, &operands, &out_tys, cv, None)?;
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
    run_seeded_cached(module, weights, inputs, seeds, wanted, &SimCache::new())
}

/// [`run_seeded`] with a cache of prepared weights shared by every run of `module` (one cache per
/// module and weights): runs of many samples prepare each weight once.
pub fn run_seeded_cached(
    module: &Module,
    weights: &Weights,
    inputs: &[ArrayD<f32>],
    seeds: &[Option<Arc<SimTensor>>],
    wanted: &[bool],
    cache: &SimCache,
) -> Result<Vec<Option<Arc<SimTensor>>>, SimError> {
    run_seeded_in(module, weights, inputs, seeds, wanted, cache, None)
}

/// Keys of a module's values and ops in a [`SimCache`] shared by several modules: equal keys
/// must denote equal prepared values (a weight's key its type and contents, an op's key what its
/// prepared filters depend on).
#[derive(Debug, Clone, Default)]
pub struct CacheKeys {
    /// Per value id.
    pub values: Vec<u64>,
    /// Per op index.
    pub ops: Vec<u64>,
}

/// [`run_seeded_cached`] with `cache` looked up by `keys` instead of value ids and op indexes,
/// so that one cache serves the runs of many modules (the mixed-precision search's trials,
/// whose lowerings share most of their weights): a weight prepared for one trial is not
/// prepared again for the next.
pub fn run_seeded_keyed(
    module: &Module,
    weights: &Weights,
    inputs: &[ArrayD<f32>],
    seeds: &[Option<Arc<SimTensor>>],
    wanted: &[bool],
    cache: &SimCache,
    keys: &CacheKeys,
) -> Result<Vec<Option<Arc<SimTensor>>>, SimError> {
    run_seeded_in(module, weights, inputs, seeds, wanted, cache, Some(keys))
}

fn run_seeded_in(
    module: &Module,
    weights: &Weights,
    inputs: &[ArrayD<f32>],
    seeds: &[Option<Arc<SimTensor>>],
    wanted: &[bool],
    cache: &SimCache,
    keys: Option<&CacheKeys>,
) -> Result<Vec<Option<Arc<SimTensor>>>, SimError> {
    let f = &module.func;
    let nv = f.values.len();
    if seeds.len() != nv || wanted.len() != nv {
        return Err(SimError::BadInput {
            index: 0,
            msg: format!("{} seeds and {} wanted flags for {nv} values", seeds.len(), wanted.len()),
        });
    }
    if let Some(k) = keys {
        if k.values.len() != nv || k.ops.len() != f.ops.len() {
            return Err(SimError::BadInput {
                index: 0,
                msg: format!(
                    "{} value keys and {} op keys for {nv} values and {} ops",
                    k.values.len(),
                    k.ops.len(),
                    f.ops.len()
                ),
            });
        }
    }
    // Keys are 64-bit hashes; on a 32-bit target their low half serves.
    let value_key = |v: usize| keys.map_or(v, |k| k.values[v] as usize);
    let op_key = |i: usize| keys.map_or(i, |k| k.ops[i] as usize);
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
            vals[r] = Some(cache.weight(value_key(r), || weight_value(weights, &name, op, &f.values[r].ty))?);
            continue;
        }
        let operands: Vec<Option<&SimTensor>> = op
            .operands
            .iter()
            .map(|&v| vals[v].as_deref().or(if is_arg[v] { None } else { seeds[v].as_deref() }))
            .collect();
        let out_tys: Vec<&TensorType> = op.results.iter().map(|&r| &f.values[r].ty).collect();
        let res = eval_op(op, &name, &operands, &out_tys, cv, Some(ops::Prepared { cache, key: op_key(i) }))?;
        for (&r, t) in op.results.iter().zip(res) {
            let t = Arc::new(t);
            computed[r] = Some(t.clone());
            vals[r] = Some(t);
        }
    }
    Ok(computed)
}

/// Evaluate one op: a fast path for max pooling (the simulator's hottest simple op), every
/// other op (and any pooling the fast path does not cover) by `ops::eval`. Both give the same
/// tensors (tested).
fn eval_op(
    op: &crate::ir::Op,
    name: &str,
    operands: &[Option<&SimTensor>],
    out_tys: &[&TensorType],
    cv: bool,
    prepared: Option<ops::Prepared>,
) -> Result<Vec<SimTensor>, SimError> {
    if let Some(t) = fast_max_pool(op, operands, out_tys, cv) {
        return Ok(vec![t]);
    }
    ops::eval(op, name, operands, out_tys, cv, prepared)
}

/// `tpu.Pool2D` max pooling without relu, 4-D: the maximum over the window's in-image elements
/// (int8: of the codes minus the input zero point, 0 for an empty window, then the output zero
/// point added and saturated; float: from −inf, rounded to the result type). `None` when the op
/// is anything else.
fn fast_max_pool(
    op: &crate::ir::Op,
    operands: &[Option<&SimTensor>],
    out_tys: &[&TensorType],
    cv: bool,
) -> Option<SimTensor> {
    if op.kind != "tpu.Pool2D" || out_tys.len() != 1 || operands.len() != 1 {
        return None;
    }
    let is_max = matches!(op.attrs.get("pool_mode"), Some(Attr::Enum { value, .. }) if value == "Max");
    let flag = |n: &str| matches!(op.attrs.get(n), Some(Attr::Bool(true)));
    if !is_max || flag("do_relu") || flag("is_adaptive") || matches!(op.attrs.get("keepdims"), Some(Attr::Bool(false)))
    {
        return None;
    }
    let x = operands[0]?;
    let out = out_tys[0];
    let k = op.attr_ints("kernel_shape").ok()?;
    let s = op.attr_ints_or("strides", &k).ok()?;
    let p = op.attr_ints_or("pads", &[0, 0, 0, 0]).ok()?;
    let (xs, os) = (x.shape(), out.shape());
    if xs.len() != 4 || os.len() != 4 || k.len() != 2 || s.len() < 2 || p.len() < 2 || xs[..2] != os[..2] {
        return None;
    }
    let g = PoolGeom {
        planes: os[0] * os[1],
        ih: xs[2],
        iw: xs[3],
        oh: os[2],
        ow: os[3],
        kh: k[0],
        kw: k[1],
        sh: s[0],
        sw: s[1],
        pt: p[0],
        pl: p[1],
    };
    if matches!(out.quant(), Some(crate::ir::Quant::Uniform { .. })) {
        let zp = match x.ty.quant() {
            Some(crate::ir::Quant::Uniform { zero_point, .. }) => zero_point,
            _ => 0,
        };
        if let Some(t) = max_pool_int8(&g, x, zp, out) {
            return Some(t);
        }
        let codes: Vec<i64> = match &x.data {
            SimData::I8(a) => a.iter().map(|&v| v as i64 - zp).collect(),
            SimData::U8(a) => a.iter().map(|&v| v as i64 - zp).collect(),
            SimData::I32(a) => a.iter().map(|&v| v as i64).collect(),
            _ => return None,
        };
        let m = g.max(&codes, i64::MIN, |a, b| a.max(b));
        let m: Vec<i64> = m.into_iter().map(|v| if v == i64::MIN { 0 } else { v }).collect();
        let arr = ArrayD::from_shape_vec(ndarray::IxDyn(os), m).ok()?;
        Some(tensor::from_codes(arr, out))
    } else {
        let v = x.f32_values();
        let m = g.max(&v, f32::NEG_INFINITY, f32::max);
        let arr = ArrayD::from_shape_vec(ndarray::IxDyn(os), m).ok()?;
        Some(tensor::from_f32(arr, out, cv))
    }
}

/// Max pooling of int8 / uint8 storage straight on the stored bytes (the order of the codes is
/// the order of `q − zp`), each maximum then mapped through a 256-entry table to the result
/// type (minus the input zero point, plus the output one, saturated): the i64 path's result.
/// `None` for other storage, or when a window lies wholly in the padding (0 there).
fn max_pool_int8(g: &PoolGeom, x: &SimTensor, zp: i64, out: &TensorType) -> Option<SimTensor> {
    let (signed, zp_out) = match out.quant() {
        Some(crate::ir::Quant::Uniform { signed, zero_point, .. }) => (signed, zero_point),
        _ => (true, 0),
    };
    let store = |code: i64| -> u8 {
        let y = code - zp + zp_out;
        if signed {
            y.clamp(-128, 127) as i8 as u8
        } else {
            y.clamp(0, 255) as u8
        }
    };
    // The same zero point in and out on int8 storage: the table is the identity.
    if let (SimData::I8(a), true) = (&x.data, signed && zp_out == zp) {
        let m = g.max_bytes(a.as_slice()?)?;
        return Some(SimTensor {
            data: SimData::I8(ArrayD::from_shape_vec(ndarray::IxDyn(out.shape()), m).ok()?),
            ty: out.clone(),
        });
    }
    let maxima: Vec<u8> = match &x.data {
        SimData::I8(a) => {
            let m = g.max_bytes(a.as_slice()?)?;
            let lut: Vec<u8> = (0..256).map(|b| store(b as u8 as i8 as i64)).collect();
            m.into_iter().map(|v| lut[v as u8 as usize]).collect()
        }
        SimData::U8(a) => {
            let m = g.max_bytes(a.as_slice()?)?;
            let lut: Vec<u8> = (0..256).map(|b| store(b as i64)).collect();
            m.into_iter().map(|v| lut[v as usize]).collect()
        }
        _ => return None,
    };
    let shape = ndarray::IxDyn(out.shape());
    let data = if signed {
        SimData::I8(ArrayD::from_shape_vec(shape, maxima.into_iter().map(|b| b as i8).collect()).ok()?)
    } else {
        SimData::U8(ArrayD::from_shape_vec(shape, maxima).ok()?)
    };
    Some(SimTensor { data, ty: out.clone() })
}

/// Window geometry of a 2-D pooling over `planes` independent `ih × iw` planes.
struct PoolGeom {
    planes: usize,
    ih: usize,
    iw: usize,
    oh: usize,
    ow: usize,
    kh: i64,
    kw: i64,
    sh: i64,
    sw: i64,
    pt: i64,
    pl: i64,
}

impl PoolGeom {
    /// True for 2 × 2 windows at stride 2 wholly inside the image (no padding read): every output
    /// element is the maximum of two adjacent elements of two adjacent rows.
    fn pairs(&self) -> bool {
        (self.kh, self.kw, self.sh, self.sw, self.pt, self.pl) == (2, 2, 2, 2, 0, 0)
            && 2 * self.oh <= self.ih
            && 2 * self.ow <= self.iw
    }

    /// The in-image range `[lo, hi)` of every window along one axis (`None` if one is empty).
    fn ranges(outs: usize, k: i64, s: i64, pad: i64, len: usize) -> Option<Vec<(usize, usize)>> {
        (0..outs)
            .map(|o| {
                let a = o as i64 * s - pad;
                let (lo, hi) = (a.max(0), (a + k).min(len as i64));
                (lo < hi).then_some((lo as usize, hi as usize))
            })
            .collect()
    }

    /// The maximum of every window of totally ordered values: the column maxima of the window's
    /// rows, then the maximum of the window's columns. `None` when a window is empty.
    fn max_bytes<T: Copy + Ord + Send + Sync>(&self, x: &[T]) -> Option<Vec<T>> {
        use rayon::prelude::*;
        let rows = Self::ranges(self.oh, self.kh, self.sh, self.pt, self.ih)?;
        let cols = Self::ranges(self.ow, self.kw, self.sw, self.pl, self.iw)?;
        if x.len() < self.planes * self.ih * self.iw || self.oh * self.ow == 0 {
            return None;
        }
        let mut out = vec![x[0]; self.planes * self.oh * self.ow];
        if self.pairs() {
            let (iw, ow) = (self.iw, self.ow);
            out.par_chunks_mut(self.oh * ow).enumerate().for_each(|(pl, o)| {
                let plane = &x[pl * self.ih * iw..(pl + 1) * self.ih * iw];
                for (oy, orow) in o.chunks_exact_mut(ow).enumerate() {
                    let r0 = &plane[2 * oy * iw..2 * oy * iw + 2 * ow];
                    let r1 = &plane[(2 * oy + 1) * iw..(2 * oy + 1) * iw + 2 * ow];
                    for (d, (a, b)) in orow.iter_mut().zip(r0.chunks_exact(2).zip(r1.chunks_exact(2))) {
                        *d = a[0].max(a[1]).max(b[0].max(b[1]));
                    }
                }
            });
            return Some(out);
        }
        out.par_chunks_mut(self.oh * self.ow).enumerate().for_each(|(pl, o)| {
            let plane = &x[pl * self.ih * self.iw..(pl + 1) * self.ih * self.iw];
            let mut colmax = vec![x[0]; self.iw];
            for (orow, &(ya, yb)) in o.chunks_exact_mut(self.ow).zip(&rows) {
                colmax.copy_from_slice(&plane[ya * self.iw..(ya + 1) * self.iw]);
                for y in ya + 1..yb {
                    for (m, &v) in colmax.iter_mut().zip(&plane[y * self.iw..(y + 1) * self.iw]) {
                        *m = (*m).max(v);
                    }
                }
                for (d, &(xa, xb)) in orow.iter_mut().zip(&cols) {
                    *d = colmax[xa..xb].iter().copied().max().unwrap_or(colmax[xa]);
                }
            }
        });
        Some(out)
    }

    /// Fold every window's in-image elements (row by row, left to right) with `f` from `init`.
    fn max<T: Copy + Send + Sync>(&self, x: &[T], init: T, f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
        use rayon::prelude::*;
        let (ih, iw) = (self.ih as i64, self.iw as i64);
        let mut out = vec![init; self.planes * self.oh * self.ow];
        if self.pairs() {
            // The window's elements in the general loop's order: row by row, left to right.
            let (iw, ow) = (self.iw, self.ow);
            out.par_chunks_mut((self.oh * ow).max(1)).enumerate().for_each(|(pl, o)| {
                let plane = &x[pl * self.ih * iw..(pl + 1) * self.ih * iw];
                for (oy, orow) in o.chunks_exact_mut(ow).enumerate() {
                    let r0 = &plane[2 * oy * iw..2 * oy * iw + 2 * ow];
                    let r1 = &plane[(2 * oy + 1) * iw..(2 * oy + 1) * iw + 2 * ow];
                    for (d, (a, b)) in orow.iter_mut().zip(r0.chunks_exact(2).zip(r1.chunks_exact(2))) {
                        *d = f(f(f(f(init, a[0]), a[1]), b[0]), b[1]);
                    }
                }
            });
            return out;
        }
        out.par_chunks_mut((self.oh * self.ow).max(1)).enumerate().for_each(|(pl, o)| {
            let plane = &x[pl * self.ih * self.iw..(pl + 1) * self.ih * self.iw];
            for oy in 0..self.oh {
                let y0 = oy as i64 * self.sh - self.pt;
                let (ya, yb) = (y0.max(0), (y0 + self.kh).min(ih));
                for ox in 0..self.ow {
                    let x0 = ox as i64 * self.sw - self.pl;
                    let (xa, xb) = (x0.max(0), (x0 + self.kw).min(iw));
                    let mut acc = init;
                    if xb > xa {
                        for y in ya..yb {
                            let row = &plane[(y * iw) as usize..((y + 1) * iw) as usize];
                            for &v in &row[xa as usize..xb as usize] {
                                acc = f(acc, v);
                            }
                        }
                    }
                    o[oy * self.ow + ox] = acc;
                }
            }
        });
        out
    }
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

/// The weight op `op` named `name` as a tensor of type `ty`, or an error naming it.
fn weight_value(weights: &Weights, name: &str, op: &crate::ir::Op, ty: &TensorType) -> Result<SimTensor, SimError> {
    let d = weights.get(name).ok_or_else(|| SimError::Op {
        op: name.to_string(),
        kind: op.kind.clone(),
        msg: "weight missing from the weight file".into(),
    })?;
    Ok(weight_tensor(d, ty))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{ElemType, Op, Quant};

    fn pool_op(k: [i64; 2], s: [i64; 2], p: [i64; 4]) -> Op {
        let mut op = Op { kind: "tpu.Pool2D".into(), operands: vec![0], results: vec![1], attrs: Default::default() };
        op.attrs.insert("kernel_shape".into(), Attr::IntArray(k.to_vec()));
        op.attrs.insert("strides".into(), Attr::IntArray(s.to_vec()));
        op.attrs.insert("pads".into(), Attr::IntArray(p.to_vec()));
        op.attrs.insert("do_relu".into(), Attr::Bool(false));
        op.attrs.insert("pool_mode".into(), crate::ir::attr::tpu_enum("pool_mode", "Max"));
        op
    }

    fn ty(shape: &[usize], elem: ElemType, quant: Option<Quant>) -> TensorType {
        TensorType::Tensor { shape: shape.to_vec(), elem, quant }
    }

    #[test]
    fn fast_max_pool_equals_the_op_evaluator() {
        let q = |zp| Some(Quant::Uniform { signed: true, bits: 8, scale: 0.5, zero_point: zp });
        let uq = Some(Quant::Uniform { signed: false, bits: 8, scale: 0.25, zero_point: 3 });
        // (kernel, strides, pads, input h/w, output h/w): tiny-yolov3's two kinds, padding, overlap.
        type PoolGeom = ([i64; 2], [i64; 2], [i64; 4], [usize; 2], [usize; 2]);
        let geoms: [PoolGeom; 4] = [
            ([2, 2], [2, 2], [0, 0, 0, 0], [8, 10], [4, 5]),
            ([2, 2], [1, 1], [0, 0, 1, 1], [5, 5], [5, 5]),
            ([3, 3], [2, 2], [1, 1, 1, 1], [7, 6], [4, 3]),
            ([3, 2], [1, 3], [2, 1, 2, 1], [4, 7], [6, 3]),
        ];
        let mut seed = 12345u32;
        let mut next = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            seed >> 8
        };
        for (k, s, p, [ih, iw], [oh, ow]) in geoms {
            let op = pool_op(k, s, p);
            let (xs, os) = (vec![2, 3, ih, iw], vec![2, 3, oh, ow]);
            let n = xs.iter().product::<usize>();
            let i8s = ArrayD::from_shape_vec(IxDyn(&xs), (0..n).map(|_| (next() % 256) as u8 as i8).collect()).unwrap();
            let u8s = i8s.mapv(|v| v as u8);
            let f32s = ArrayD::from_shape_vec(
                IxDyn(&xs),
                (0..n).map(|i| if i % 5 == 0 { -0.0 } else { (next() % 1000) as f32 / 7.0 - 70.0 }).collect(),
            )
            .unwrap();
            let cases = [
                (
                    SimTensor { data: SimData::I8(i8s.clone()), ty: ty(&xs, ElemType::I8, q(0)) },
                    ty(&os, ElemType::I8, q(0)),
                ),
                (SimTensor { data: SimData::I8(i8s), ty: ty(&xs, ElemType::I8, q(-5)) }, ty(&os, ElemType::I8, q(7))),
                (SimTensor { data: SimData::U8(u8s), ty: ty(&xs, ElemType::UI8, uq) }, ty(&os, ElemType::UI8, uq)),
                (
                    SimTensor { data: SimData::F32(f32s.clone()), ty: ty(&xs, ElemType::F32, None) },
                    ty(&os, ElemType::F32, None),
                ),
                (
                    SimTensor { data: SimData::F32(f32s), ty: ty(&xs, ElemType::F32, None) },
                    ty(&os, ElemType::F16, None),
                ),
            ];
            for (x, out) in cases {
                let fast = fast_max_pool(&op, &[Some(&x)], &[&out], false).expect("fast path taken");
                let slow = ops::eval(&op, "pool", &[Some(&x)], &[&out], false, None).unwrap();
                let bits = |t: &SimTensor| match &t.data {
                    SimData::F32(a) => format!("{:?}", a.mapv(f32::to_bits)),
                    d => format!("{d:?}"),
                };
                assert_eq!(bits(&fast), bits(&slow[0]), "{k:?} {s:?} {p:?} {:?}", out);
            }
        }
        // Not covered: relu, average pooling.
        let mut op = pool_op([2, 2], [2, 2], [0, 0, 0, 0]);
        op.attrs.insert("do_relu".into(), Attr::Bool(true));
        let x = SimTensor {
            data: SimData::F32(ArrayD::zeros(IxDyn(&[1, 1, 2, 2]))),
            ty: ty(&[1, 1, 2, 2], ElemType::F32, None),
        };
        assert!(fast_max_pool(&op, &[Some(&x)], &[&ty(&[1, 1, 1, 1], ElemType::F32, None)], false).is_none());
    }
}
