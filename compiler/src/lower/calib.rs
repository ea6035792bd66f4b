//! Calibration import (table entry -> calibrated range per value) and the threshold propagation
//! tpu-mlir performs before lowering (flow reference 2.7, observed v1.30.2 behaviour).
//!
//! Ranges are `(min, max)` like the `!quant.calibrated<f32<min:max>>` types. The INT8 scale of a
//! range is derived in [`range_to_uniform`]: symmetric `th = max(|min|, |max|)`, `th/127` when
//! `min < 0` else `th/255` (unsigned, BM1684X only).

use super::chip::Chip;
use crate::ir::{Func, Quant};
use std::collections::BTreeMap;

/// One table entry: threshold, min, max.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaliEntry {
    /// KL (or other) threshold.
    pub threshold: f64,
    /// Observed minimum.
    pub min: f64,
    /// Observed maximum.
    pub max: f64,
}

/// Calibration entries by tensor (layer) name.
pub type CaliMap = BTreeMap<String, CaliEntry>;

/// Convert the calibration module's table into the map used here.
pub fn cali_map_from_table(t: &crate::calibration::CalibrationTable) -> CaliMap {
    t.entries.iter().map(|e| (e.name.clone(), CaliEntry { threshold: e.threshold, min: e.min, max: e.max })).collect()
}

/// Calibrated range per value id (None = not calibrated: weights, none, missing entries).
pub type Ranges = Vec<Option<(f64, f64)>>;

/// Import table entries as ranges (ImportCalibrationTable).
pub fn import_ranges(func: &Func, table: &CaliMap, chip: Chip, asymmetric: bool) -> Ranges {
    let mut r: Ranges = vec![None; func.values.len()];
    for op in &func.ops {
        if op.is_weight() || op.is_none() {
            continue;
        }
        for &res in &op.results {
            let name = &func.values[res].name;
            let kind = op.short_kind();
            let range = if kind == "Sigmoid" || kind == "Softmax" {
                Some(if chip.is_cv18xx() { (-1.0, 1.0) } else { (0.0, 1.0) })
            } else {
                table.get(name).map(|e| {
                    if asymmetric {
                        (e.min, e.max)
                    } else if chip.is_cv18xx() || kind == "Abs" || (e.min < 0.0 && !op.attr_bool("do_relu")) {
                        // CV18xx is signed everywhere; Abs and negative ranges without relu too
                        (-e.threshold, e.threshold)
                    } else {
                        (0.0, e.threshold)
                    }
                })
            };
            r[res] = range;
        }
    }
    r
}

fn users_count(func: &Func) -> Vec<usize> {
    let mut n = vec![0usize; func.values.len()];
    for op in &func.ops {
        for &v in &op.operands {
            n[v] += 1;
        }
    }
    for &v in &func.returns {
        n[v] += 1;
    }
    n
}

/// Threshold propagation (ConvertTopToTpu::calibration_process as observed in v1.30.2):
/// forward Reshape/Permute; keep the sign of pools; Concat backward (inputs take the output's
/// range when each input is used only by the Concat or by MaxPools); backward through
/// Relu/MaxPool (single-use input := output) and LeakyRelu (BM1684X keeps the input's min, CV18xx
/// copies); then forward through Relu, MaxPool, Reshape, Permute, Slice, Pad, LeakyRelu, Abs,
/// Upsample (BM only; CV18xx keeps the Upsample's own range and rewrites it to a Deconv), MulConst.
pub fn propagate(func: &Func, r: &mut Ranges, chip: Chip) {
    let producers = func.producers();
    let users = func.users();
    let nuse = users_count(func);
    let kind_of = |v: usize| producers[v].map(|i| func.ops[i].short_kind().to_string()).unwrap_or_default();
    let fwd = |r: &mut Ranges, kinds: &[&str]| {
        for op in &func.ops {
            if !kinds.contains(&op.short_kind()) || op.operands.is_empty() {
                continue;
            }
            let Some(inr) = r[op.operands[0]] else { continue };
            let out = op.results[0];
            let new = if op.short_kind() == "MulConst" {
                let c = op.attr_f64_or("const_val", 1.0).unwrap_or(1.0);
                let (lo, hi) = if c >= 0.0 { (inr.0, inr.1) } else { (inr.1, inr.0) };
                if c != 0.0 {
                    (lo * c, hi * c)
                } else {
                    (lo, hi)
                }
            } else {
                inr
            };
            r[out] = Some(new);
        }
    };
    // 1. forward Reshape / Permute
    fwd(r, &["Reshape", "Permute"]);
    // 2. keep sign of pools
    keep_sign(func, r);
    // 3. Concat backward
    for op in &func.ops {
        if op.short_kind() != "Concat" {
            continue;
        }
        let out = op.results[0];
        let Some(out_r) = r[out] else { continue };
        let ok = op.operands.iter().all(|&v| {
            r[v].is_some()
                && (nuse[v] == 1
                    || users[v]
                        .iter()
                        .all(|&u| func.ops[u].short_kind() == "MaxPool" || std::ptr::eq(&func.ops[u], op)))
        });
        if !ok {
            continue;
        }
        let first = r[op.operands[0]].unwrap_or_default();
        let unsigned0 = first.0 >= 0.0;
        if op.operands.iter().any(|&v| (r[v].unwrap_or_default().0 >= 0.0) != unsigned0) {
            continue;
        }
        if op.operands.iter().all(|&v| r[v] == Some(first)) {
            r[out] = Some(first);
            continue;
        }
        for &v in &op.operands {
            r[v] = Some(out_r);
            // one level of Reshape/Permute backward
            if let Some(p) = producers[v] {
                let pk = func.ops[p].short_kind();
                if (pk == "Reshape" || pk == "Permute") && !func.ops[p].operands.is_empty() {
                    r[func.ops[p].operands[0]] = Some(out_r);
                }
            }
        }
    }
    // 4. backward
    loop {
        let mut changed = false;
        for op in func.ops.iter().rev() {
            let k = op.short_kind();
            if !matches!(k, "Relu" | "MaxPool" | "LeakyRelu" | "Abs") || op.operands.is_empty() {
                continue;
            }
            let inp = op.operands[0];
            let Some(out_r) = r[op.results[0]] else { continue };
            if nuse[inp] != 1 || producers[inp].is_none() {
                continue;
            }
            let keep_min = k == "LeakyRelu" && !chip.is_cv18xx();
            let new = match (keep_min, r[inp]) {
                (true, Some(ir)) => (ir.0, out_r.1),
                _ => out_r,
            };
            if r[inp] != Some(new) {
                r[inp] = Some(new);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let _ = kind_of;
    // 5. forward
    let mut kinds = vec!["Relu", "MaxPool", "Reshape", "Permute", "Slice", "Pad", "LeakyRelu", "Abs", "MulConst"];
    if !chip.is_cv18xx() {
        kinds.push("Upsample");
    }
    fwd(r, &kinds);
    // 6. keep sign again
    keep_sign(func, r);
}

fn keep_sign(func: &Func, r: &mut Ranges) {
    for op in &func.ops {
        if !matches!(op.short_kind(), "MaxPool" | "AvgPool" | "Abs") || op.operands.is_empty() {
            continue;
        }
        let (Some(i), Some(o)) = (r[op.operands[0]], r[op.results[0]]) else { continue };
        if i.0 < 0.0 && o.0 >= 0.0 {
            r[op.results[0]] = Some((-o.1 * 0.1, o.1));
        } else if i.0 >= 0.0 && o.0 < 0.0 {
            r[op.results[0]] = Some((0.0, o.1));
        }
    }
}

/// The INT8 type of a calibrated range: symmetric `th = max(|min|, |max|)`, signed `th/127`,
/// unsigned (min ≥ 0, not CV18xx) `th/255`; asymmetric: TFLite-style scale and zero point.
pub fn range_to_uniform(range: (f64, f64), chip: Chip, asymmetric: bool) -> Quant {
    let (min, max) = range;
    if asymmetric && !chip.is_cv18xx() {
        let (qmin, qmax, signed) = if min < 0.0 { (-128.0, 127.0, true) } else { (0.0, 255.0, false) };
        let min = min.min(0.0);
        let max = max.max(0.0);
        let mut scale = (max - min) / (qmax - qmin);
        if scale == 0.0 {
            scale = 1e-5;
        }
        let zp_f = qmin - min / scale;
        let zp = zp_f.round().clamp(qmin, qmax);
        if zp_f.round() < qmin {
            scale = max / (qmax - zp);
        } else if zp_f.round() > qmax {
            scale = min / (qmin - zp);
        }
        return Quant::Uniform { signed, bits: 8, scale, zero_point: zp as i64 };
    }
    let th = min.abs().max(max.abs());
    let signed = chip.is_cv18xx() || min < 0.0;
    let th = if th <= 0.0 { 1e-5 } else { th };
    Quant::Uniform { signed, bits: 8, scale: th / if signed { 127.0 } else { 255.0 }, zero_point: 0 }
}
