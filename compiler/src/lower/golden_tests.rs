//! Golden tests against tpu-mlir v1.30.2 outputs (assets/reference): lowered op sequence, types,
//! multipliers / shifts, int8 weights / int32 biases, and the simulator's raw tensors.

use super::test_npz::read as read_npz_raw;
use super::*;
use crate::calibration::CalibrationTable;
use crate::ir::text::parse_module;
use crate::ir::weights::TensorData;
use crate::ir::{Attr, Op, Quant, TensorType};
use crate::sim;
use ndarray::ArrayD;
use std::collections::HashMap;
use std::path::PathBuf;

pub(crate) fn asset(p: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/")).join(p)
}

pub(crate) fn load_module(p: &str) -> Module {
    let text = std::fs::read_to_string(asset(p)).unwrap();
    parse_module(&text).unwrap()
}

pub(crate) fn load_weights(p: &str) -> Weights {
    let mut w = Weights::default();
    for (k, v) in read_npz_raw(&asset(p)) {
        w.insert(k, v);
    }
    w
}

pub(crate) fn load_table(p: &str) -> CaliMap {
    let text = std::fs::read_to_string(asset(p)).unwrap();
    let t = CalibrationTable::parse(&text).unwrap();
    calib::cali_map_from_table(&t)
}

fn npz_f32(p: &str) -> HashMap<String, ArrayD<f32>> {
    read_npz_raw(&asset(p)).into_iter().map(|(k, v)| (k, v.to_f32())).collect()
}

fn quant_close(a: &TensorType, b: &TensorType) -> bool {
    if a.shape() != b.shape() {
        return false;
    }
    match (a.quant(), b.quant()) {
        (
            Some(Quant::Uniform { signed: s1, scale: c1, zero_point: z1, .. }),
            Some(Quant::Uniform { signed: s2, scale: c2, zero_point: z2, .. }),
        ) => s1 == s2 && z1 == z2 && ((c1 - c2).abs() <= 1e-12 * c2.abs()),
        (Some(Quant::Calibrated { min: a1, max: b1 }), Some(Quant::Calibrated { min: a2, max: b2 })) => {
            (a1 - a2).abs() <= 1e-9 && (b1 - b2).abs() <= 1e-9
        }
        (None, None) => a.elem() == b.elem(),
        _ => false,
    }
}

const CHECKED_ATTRS: &[&str] = &[
    "multiplier",
    "rshift",
    "multiplier_neg",
    "rshift_neg",
    "multipliers",
    "rshifts",
    "only_merge",
    "param_scale",
    "group",
    "kernel_shape",
    "strides",
    "pads",
    "pool_mode",
    "quant_mode",
    "scale_h",
    "scale_w",
];

fn attr_ints(a: &Attr) -> Option<Vec<i64>> {
    match a {
        Attr::Int(v, _) => Some(vec![*v]),
        Attr::IntArray(v) => Some(v.clone()),
        Attr::Bool(b) => Some(vec![*b as i64]),
        _ => None,
    }
}

/// Compare our lowered module with tpu-mlir's: op sequence (names, kinds), result types and the
/// quantization attributes. Per-channel `multiplier`/`rshift` pairs are counted here (callers
/// assert the count): returns (ops compared, differing channels, channels); a channel whose
/// `m/2^r` differs by more than 1e-5 relative panics.
pub(crate) fn compare_modules(ours: &Module, theirs: &Module) -> (usize, usize, usize) {
    let (mut bad, mut chans) = (0, 0);
    let val = |m: i64, r: i64| m as f64 / 2f64.powi(r as i32);
    let name_of = |m: &Module, op: &Op| m.func.op_name(op).to_string();
    let seq = |m: &Module| -> Vec<(String, String)> {
        m.func.ops.iter().filter(|o| !o.is_weight() && !o.is_none()).map(|o| (name_of(m, o), o.kind.clone())).collect()
    };
    assert_eq!(seq(ours), seq(theirs), "op sequence differs");
    let ours_by: HashMap<String, &Op> = ours.func.ops.iter().map(|o| (name_of(ours, o), o)).collect();
    let mut n = 0;
    for op in &theirs.func.ops {
        if op.is_none() {
            continue;
        }
        let name = name_of(theirs, op);
        let mine = ours_by.get(&name).unwrap_or_else(|| panic!("missing op {name}"));
        assert_eq!(mine.kind, op.kind, "{name}");
        let t_ty = &theirs.func.values[op.results[0]].ty;
        let o_ty = &ours.func.values[mine.results[0]].ty;
        if op.is_weight() {
            assert_eq!(
                o_ty.shape().iter().product::<usize>(),
                t_ty.shape().iter().product::<usize>(),
                "{name} weight size"
            );
            continue;
        }
        assert!(quant_close(o_ty, t_ty), "{name}: type {o_ty:?} vs {t_ty:?}");
        if let (Ok(om), Ok(or), Ok(tm), Ok(tr)) =
            (mine.attr_ints("multiplier"), mine.attr_ints("rshift"), op.attr_ints("multiplier"), op.attr_ints("rshift"))
        {
            assert_eq!(om.len(), tm.len(), "{name} channels");
            chans += tm.len();
            bad += (0..tm.len()).filter(|&c| (om[c], or[c]) != (tm[c], tr[c])).count();
            for c in 0..tm.len() {
                let (a, b) = (val(om[c], or[c]), val(tm[c], tr[c]));
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs(),
                    "{name}[{c}]: ({}, {}) vs ({}, {})",
                    om[c],
                    or[c],
                    tm[c],
                    tr[c]
                );
            }
        }
        for k in CHECKED_ATTRS {
            if (*k == "multiplier" || *k == "rshift") && !matches!(op.attrs.get(*k), Some(Attr::Int(..))) {
                continue;
            }
            match (mine.attrs.get(*k), op.attrs.get(*k)) {
                (_, None) => {}
                (None, Some(t)) => panic!("{name}: attribute {k} missing (theirs {t:?})"),
                (Some(Attr::Float(a, _)), Some(Attr::Float(b, _))) => {
                    assert!((a - b).abs() <= 1e-5 * b.abs(), "{name}.{k}: {a} vs {b}")
                }
                (Some(Attr::Enum { value: a, .. }), Some(Attr::Enum { value: b, .. })) => {
                    assert_eq!(a, b, "{name}.{k}")
                }
                (Some(a), Some(b)) => assert_eq!(attr_ints(a), attr_ints(b), "{name}.{k}"),
            }
        }
        n += 1;
    }
    (n, bad, chans)
}

/// Compare weight arrays by name (flattened); returns (differing elements, elements).
pub(crate) fn weight_diffs(ours: &Weights, theirs: &Weights) -> (usize, usize) {
    let (mut bad, mut all) = (0, 0);
    for (k, t) in &theirs.map {
        let o = ours.get(k).unwrap_or_else(|| panic!("weight {k} missing"));
        let (ov, tv): (Vec<f32>, Vec<f32>) =
            (o.to_f32().iter().copied().collect(), t.to_f32().iter().copied().collect());
        assert_eq!(ov.len(), tv.len(), "{k} size");
        bad += ov.iter().zip(&tv).filter(|(a, b)| a != b).count();
        all += tv.len();
    }
    (bad, all)
}

/// Compare weight arrays by name (flattened), exactly.
pub(crate) fn compare_weights(ours: &Weights, theirs: &Weights) {
    for (k, t) in &theirs.map {
        let o = ours.get(k).unwrap_or_else(|| panic!("weight {k} missing"));
        let (ov, tv): (Vec<f32>, Vec<f32>) =
            (o.to_f32().iter().copied().collect(), t.to_f32().iter().copied().collect());
        let diff = ov.iter().zip(&tv).filter(|(a, b)| a != b).count();
        assert_eq!(ov.len(), tv.len(), "{k} size");
        assert_eq!(diff, 0, "{k}: {diff} of {} elements differ", tv.len());
    }
}

fn opts(chip: Chip, table: &CaliMap) -> LowerOptions<'_> {
    LowerOptions { chip, mode: Mode::Int8, asymmetric: false, table: Some(table), qtable: None }
}

fn tnet(chip: Chip) {
    let top = load_module("reference/tpu-mlir-vectors/tnet.mlir");
    let w = load_weights("reference/tpu-mlir-vectors/tnet_top_f32_all_weight.npz");
    let table = load_table("reference/tpu-mlir-vectors/tnet_cali");
    let (m, lw) = lower(&top, &w, &opts(chip, &table)).unwrap();
    let theirs = load_module(&format!("reference/tpu-mlir-vectors/tnet_{}_int8.mlir", chip.name()));
    assert_eq!(compare_modules(&m, &theirs).1, 0);
    compare_weights(&lw, &load_weights(&format!("reference/tpu-mlir-vectors/tnet_{}_w.npz", chip.name())));
    let res = npz_f32("reference/tpu-mlir-vectors/res.npz");
    let x = res["x"].clone();
    let out = sim::run(&m, &lw, &[x]).unwrap();
    let mut checked = 0;
    for (name, t) in &out {
        let Some(r) = res.get(&format!("{}__{name}", chip.name())) else { continue };
        let ours = if matches!(t.ty.quant(), Some(Quant::Uniform { .. })) {
            t.codes_i32().unwrap().mapv(|v| v as f32)
        } else {
            t.dequantize()
        };
        assert_eq!(ours.shape(), r.shape(), "{name}");
        let diff = ours.iter().zip(r.iter()).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{name}: {diff} elements differ");
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[test]
fn tnet_bm1684x_bit_exact() {
    tnet(Chip::Bm1684x);
}

#[test]
fn tnet_cv183x_bit_exact() {
    tnet(Chip::Cv183x);
}

fn cnet(chip: Chip) {
    let top = load_module("reference/tpu-mlir-vectors/cnet.mlir");
    let w = load_weights("reference/tpu-mlir-vectors/cnet_top_f32_all_weight.npz");
    let table = load_table("reference/tpu-mlir-vectors/c_cali");
    let (m, lw) = lower(&top, &w, &opts(chip, &table)).unwrap();
    let theirs = load_module(&format!("reference/tpu-mlir-vectors/c_{}.mlir", chip.name()));
    assert_eq!(compare_modules(&m, &theirs).1, 0);
    compare_weights(&lw, &load_weights(&format!("reference/tpu-mlir-vectors/c_{}_w.npz", chip.name())));
    // the simulator runs the lowered graph
    let x = npz_f32("reference/tpu-mlir-vectors/res.npz")["x"].clone();
    let out = sim::run_outputs(&m, &lw, &[x]).unwrap();
    assert_eq!(out[0].shape(), &[1, 8, 8, 8]);
}

#[test]
fn cnet_bm1684x_matches() {
    cnet(Chip::Bm1684x);
}

#[test]
fn cnet_cv183x_matches() {
    cnet(Chip::Cv183x);
}

#[test]
fn missing_table_entry_is_named() {
    let top = load_module("reference/tpu-mlir-vectors/tnet.mlir");
    let w = load_weights("reference/tpu-mlir-vectors/tnet_top_f32_all_weight.npz");
    let mut table = load_table("reference/tpu-mlir-vectors/tnet_cali");
    table.remove("conv_Conv");
    table.remove("lrelu_LeakyRelu");
    table.remove("pool_MaxPool");
    let e = lower(&top, &w, &opts(Chip::Bm1684x, &table)).unwrap_err();
    assert_eq!(e.to_string(), "calibration table has no entry for tensor 'conv_Conv' (needed by its INT8 lowering)");
}

#[test]
fn qtable_errors() {
    let top = load_module("reference/tpu-mlir-vectors/tnet.mlir");
    let w = load_weights("reference/tpu-mlir-vectors/tnet_top_f32_all_weight.npz");
    let table = load_table("reference/tpu-mlir-vectors/tnet_cali");
    let qt = parse_qtable("conv_Con F32\n", Chip::Bm1684x).unwrap();
    let o = LowerOptions { qtable: Some(&qt), ..opts(Chip::Bm1684x, &table) };
    let e = lower(&top, &w, &o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "quantize table names 'conv_Con', which is not a layer of the model (closest: conv_Conv, input, pool_MaxPool)"
    );
    let o = LowerOptions { mode: Mode::F16, ..opts(Chip::Cv183x, &table) };
    let e = lower(&top, &w, &o).unwrap_err();
    assert_eq!(e.to_string(), "mode F16 is not supported on cv183x (float modes: BF16)");
}

#[test]
fn tnet_mixed_conv_f32_runs() {
    let top = load_module("reference/tpu-mlir-vectors/tnet.mlir");
    let w = load_weights("reference/tpu-mlir-vectors/tnet_top_f32_all_weight.npz");
    let table = load_table("reference/tpu-mlir-vectors/tnet_cali");
    let qt = parse_qtable("conv_Conv F32\n", Chip::Bm1684x).unwrap();
    let o = LowerOptions { qtable: Some(&qt), ..opts(Chip::Bm1684x, &table) };
    let (m, lw) = lower(&top, &w, &o).unwrap();
    let names: Vec<String> =
        m.func.ops.iter().filter(|o| !o.is_weight()).map(|o| format!("{}:{}", o.kind, m.func.op_name(o))).collect();
    assert_eq!(
        names,
        vec![
            "top.Input:input",
            "tpu.Conv2D:conv_Conv",
            "tpu.Cast:conv_Convlrelu_LeakyRelu_si8",
            "tpu.LeakyRelu:lrelu_LeakyRelu",
            "tpu.Pool2D:pool_MaxPool",
            "tpu.Cast:pool_MaxPool_f32"
        ]
    );
    assert!(matches!(lw.get("w"), Some(TensorData::F32(_))));
    let x = npz_f32("reference/tpu-mlir-vectors/res.npz")["x"].clone();
    let out = sim::run_outputs(&m, &lw, &[x]).unwrap();
    assert_eq!(out[0].shape(), &[1, 4, 4, 4]);
}

/// tiny-yolov3 top module from the bundled ONNX (cut at the two heads) and its weights.
pub(crate) fn yolo_top() -> (Module, Weights) {
    let opts = crate::onnx::ImportOptions {
        model_name: "yolov3_tiny".into(),
        input_shapes: Some(vec![vec![1, 3, 416, 416]]),
        output_names: vec!["convolution_output1".into(), "convolution_output".into()],
        preprocess: None,
    };
    crate::onnx::import(&asset("models/tiny-yolov3-11.onnx"), &opts).unwrap()
}

/// Per-tensor agreement of the simulator with tpu-mlir's `*_tpu_outputs.npz`, in quantization
/// steps of each tensor: (name, identical fraction, max |diff| in steps).
pub(crate) fn agreement(
    out: &[(String, sim::SimTensor)],
    reference: &HashMap<String, ArrayD<f32>>,
) -> Vec<(String, f64, f64)> {
    let mut rows = Vec::new();
    let mut last_scale = 1.0f64;
    for (name, t) in out {
        let Some(r) = reference.get(name) else { continue };
        let (ours, theirs, step): (Vec<f64>, Vec<f64>, f64) = match t.ty.quant() {
            Some(Quant::Uniform { scale, .. }) => {
                last_scale = scale;
                (
                    t.codes_i32().unwrap().iter().map(|&v| v as f64).collect(),
                    r.iter().map(|&v| (v as f64 / scale).round()).collect(),
                    1.0,
                )
            }
            _ => {
                (t.dequantize().iter().map(|&v| v as f64).collect(), r.iter().map(|&v| v as f64).collect(), last_scale)
            }
        };
        assert_eq!(ours.len(), theirs.len(), "{name}");
        let same = ours.iter().zip(&theirs).filter(|(a, b)| (*a - *b).abs() <= step * 1e-3).count();
        let maxd = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs() / step).fold(0f64, f64::max);
        rows.push((name.clone(), same as f64 / ours.len() as f64, maxd));
    }
    rows
}

/// What the INT8 tiny-yolov3 lowering of one chip must reproduce of tpu-mlir's.
struct YoloExpect {
    /// Conv channels carrying a multiplier/rshift pair (all must equal tpu-mlir's).
    channels: usize,
    /// int8 weight elements allowed to differ: (weight, flat index, ours, tpu-mlir's).
    weight_diffs: &'static [(&'static str, usize, f32, f32)],
    /// Tensors allowed to differ: (name, differing elements, by at most one step); every other
    /// simulated tensor must be 100% identical.
    tensor_diffs: &'static [(&'static str, usize)],
}

fn yolo_int8(chip: Chip, want: YoloExpect) {
    let (top, w) = yolo_top();
    let table = load_table("reference/tiny-yolov3/tpu-mlir/yolov3_cali_table");
    let (m, lw) = lower(&top, &w, &opts(chip, &table)).unwrap();
    let dir = if chip.is_cv18xx() { "int8_cv183x" } else { "int8_bm1684x" };
    let prefix = format!("reference/tiny-yolov3/tpu-mlir/{dir}/yolov3_tiny_{}_int8_sym_tpu", chip.name());
    let theirs = load_module(&format!("{prefix}.mlir"));
    // Our top weights come from our own ONNX import (tpu-mlir's top npz is not bundled); its
    // BatchNorm fold uses ONNX Runtime's sqrt like tpu-mlir's model_transform, so every
    // channel's multiplier/shift is tpu-mlir's.
    let (n, bad, chans) = compare_modules(&m, &theirs);
    let their_w = load_weights(&format!("{prefix}_weights.npz"));
    let (wbad, wall) = weight_diffs(&lw, &their_w);
    eprintln!("{chip}: multiplier/rshift identical for {}/{chans} channels", chans - bad);
    eprintln!("{chip}: int8/int32 weights identical {}/{wall}", wall - wbad);
    let x = npz_f32("reference/tiny-yolov3/yolov3_tiny_in_f32.npz")["input_1"].clone();
    let out = sim::run(&m, &lw, &[x]).unwrap();
    let reference = npz_f32(&format!("{prefix}_outputs.npz"));
    let rows = agreement(&out, &reference);
    for (name, same, maxd) in &rows {
        eprintln!("{chip} {name}: {:.4}% identical, max diff {maxd} steps", same * 100.0);
    }
    assert!(n >= 36, "{n} ops compared");
    assert_eq!((bad, chans), (0, want.channels), "{chip}: (differing channels, channels)");
    assert_eq!(wbad, want.weight_diffs.len(), "{chip}: int8/int32 weight elements differing");
    for &(name, i, ours, theirs) in want.weight_diffs {
        let flat = |w: &Weights| w.get(name).unwrap().to_f32().iter().copied().collect::<Vec<f32>>();
        assert_eq!((flat(&lw)[i], flat(&their_w)[i]), (ours, theirs), "{name}[{i}]");
    }
    assert_eq!(rows.len(), reference.len(), "every reference tensor is compared");
    if !want.weight_diffs.is_empty() {
        // with tpu-mlir's values in those elements, every tensor is identical: they are the
        // whole remaining difference
        let mut patched = lw.clone();
        for &(name, i, _, theirs) in want.weight_diffs {
            let Some(TensorData::I8(a)) = lw.get(name) else { panic!("{name} is not int8") };
            let mut a = a.clone();
            a.as_slice_mut().unwrap()[i] = theirs as i8;
            patched.insert(name, TensorData::I8(a));
        }
        let x = npz_f32("reference/tiny-yolov3/yolov3_tiny_in_f32.npz")["input_1"].clone();
        let out = sim::run(&m, &patched, &[x]).unwrap();
        for (name, same, maxd) in agreement(&out, &reference) {
            assert!(same == 1.0, "{chip} {name} with tpu-mlir's weights: {:.4}% ({maxd} steps)", same * 100.0);
        }
    }
    for (name, same, maxd) in &rows {
        let numel = reference[name].len();
        let differing = ((1.0 - same) * numel as f64).round() as usize;
        let allowed = want.tensor_diffs.iter().find(|(n, _)| n == name).map_or(0, |&(_, k)| k);
        assert_eq!(differing, allowed, "{chip} {name}: {:.4}% identical", same * 100.0);
        assert!(*maxd <= if allowed > 0 { 1.0 } else { 0.0 }, "{chip} {name}: max diff {maxd} steps");
    }
}

/// BM1684X: every multiplier/shift, int8 weight, int32 bias and simulated tensor is tpu-mlir's
/// (the weight division is done in double as tpu-mlir does; in f32 two elements of conv2d_7
/// become ties, 36.5 and 18.5, and round the other way).
#[test]
fn tiny_yolov3_bm1684x_int8_matches_tpu_mlir() {
    yolo_int8(Chip::Bm1684x, YoloExpect { channels: 3707, weight_diffs: &[], tensor_diffs: &[] });
}

/// CV183x: every multiplier/shift, int8 weight, int32 bias and simulated tensor is tpu-mlir's.
#[test]
fn tiny_yolov3_cv183x_int8_matches_tpu_mlir() {
    yolo_int8(Chip::Cv183x, YoloExpect { channels: 3833, weight_diffs: &[], tensor_diffs: &[] });
}

fn cosine(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b.iter()) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-30)
}

fn float_opts(mode: Mode) -> LowerOptions<'static> {
    LowerOptions { chip: Chip::Bm1684x, mode, asymmetric: false, table: None, qtable: None }
}

#[test]
fn tiny_yolov3_f16_bf16_close_to_f32() {
    let (top, w) = yolo_top();
    let x = npz_f32("reference/tiny-yolov3/yolov3_tiny_in_f32.npz")["input_1"].clone();
    let (m32, w32) = lower(&top, &w, &float_opts(Mode::F32)).unwrap();
    let f32_out: Vec<ArrayD<f32>> =
        sim::run_outputs(&m32, &w32, std::slice::from_ref(&x)).unwrap().iter().map(|t| t.dequantize()).collect();
    // all-F32 lowering == tpu-mlir's top F32 run
    let top_ref = npz_f32("reference/tiny-yolov3/tpu-mlir/yolov3_top_outputs.npz");
    for (o, n) in f32_out.iter().zip(["convolution_output1_Conv", "convolution_output_Conv"]) {
        let c = cosine(o, &top_ref[n]);
        let maxd = o.iter().zip(top_ref[n].iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("F32 {n}: cosine vs tpu-mlir top run {c:.8}, max |diff| {maxd:e}");
        assert!(c >= 0.99999 && maxd < 1e-2, "{n}");
    }
    for (mode, dir) in
        [(Mode::F16, "F16/yolov3_tiny_bm1684x_f16_tpu.mlir"), (Mode::BF16, "BF16/yolov3_tiny_bm1684x_bf16_tpu.mlir")]
    {
        let (m, lw) = lower(&top, &w, &float_opts(mode)).unwrap();
        let theirs = load_module(&format!("reference/tiny-yolov3/tpu-mlir/{dir}"));
        compare_modules(&m, &theirs);
        let out = sim::run_outputs(&m, &lw, std::slice::from_ref(&x)).unwrap();
        for (o, r) in out.iter().zip(&f32_out) {
            let c = cosine(&o.dequantize(), r);
            eprintln!("{mode}: output cosine vs F32 {c:.7}");
            assert!(c >= 0.9999, "{mode}: cosine {c}");
        }
    }
}

#[test]
fn tiny_yolov3_mixed_precision_bm1684x_and_cv183x() {
    let (top, w) = yolo_top();
    let table = load_table("reference/tiny-yolov3/tpu-mlir/yolov3_cali_table");
    let x = npz_f32("reference/tiny-yolov3/yolov3_tiny_in_f32.npz")["input_1"].clone();
    let text = std::fs::read_to_string(asset("reference/tiny-yolov3/tpu-mlir/mix_search/yolov3_qtable_f32")).unwrap();
    let (m32, w32) = lower(&top, &w, &float_opts(Mode::F32)).unwrap();
    let f32_out: Vec<ArrayD<f32>> =
        sim::run_outputs(&m32, &w32, std::slice::from_ref(&x)).unwrap().iter().map(|t| t.dequantize()).collect();
    for chip in [Chip::Bm1684x, Chip::Cv183x] {
        let qt = parse_qtable(&text, chip).unwrap();
        assert_eq!(qt.len(), 6);
        let o = LowerOptions { qtable: Some(&qt), ..opts(chip, &table) };
        let (m, lw) = lower(&top, &w, &o).unwrap();
        let kind = |n: &str| {
            m.func.ops.iter().find(|op| m.func.op_name(op) == n).map(|op| m.func.values[op.results[0]].ty.elem())
        };
        let want = if chip.is_cv18xx() { crate::ir::ElemType::BF16 } else { crate::ir::ElemType::F32 };
        assert_eq!(kind("conv2d_2_Conv"), Some(Some(want)));
        // the boundary casts tpu-mlir would insert
        let names: Vec<String> = m.func.ops.iter().map(|op| m.func.op_name(op).to_string()).collect();
        let q = if chip.is_cv18xx() { "bf16" } else { "f32" };
        assert!(names.contains(&format!("max_pooling2d_1_MaxPoolconv2d_2_Conv_{q}")), "{names:?}");
        assert!(names.contains(&"max_pooling2d_5_MaxPoolconv2d_4_Conv_si8".to_string()), "{names:?}");
        let out = sim::run_outputs(&m, &lw, std::slice::from_ref(&x)).unwrap();
        for (o, r) in out.iter().zip(&f32_out) {
            let c = cosine(&o.dequantize(), r);
            eprintln!("{chip} mixed: output cosine vs F32 {c:.5}");
            assert!(c >= 0.95, "{chip} mixed: cosine {c}");
        }
    }
}
