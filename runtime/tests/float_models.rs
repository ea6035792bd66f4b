//! tiny-yolov3 lowered by `compiler::lower` in float and mixed modes, compiled to bmodels and run:
//! every output must equal the simulator's byte for byte.

mod common;
use common::*;
use compiler::lower::{lower, CaliMap, Chip as LChip, LowerOptions, Mode};
use compiler::onnx::{import, ImportOptions};
use std::sync::OnceLock;

fn top() -> &'static (compiler::ir::Module, compiler::ir::weights::Weights) {
    static TOP: OnceLock<(compiler::ir::Module, compiler::ir::weights::Weights)> = OnceLock::new();
    TOP.get_or_init(|| {
        let opts = ImportOptions {
            model_name: "yolov3_tiny".into(),
            input_shapes: Some(vec![vec![1, 3, 416, 416]]),
            output_names: vec!["convolution_output1".into(), "convolution_output".into()],
            preprocess: None,
        };
        import(&asset("models/tiny-yolov3-11.onnx"), &opts).unwrap()
    })
}

fn table() -> CaliMap {
    let text = std::fs::read_to_string(asset("reference/tiny-yolov3/tpu-mlir/yolov3_cali_table")).unwrap();
    let t = compiler::calibration::CalibrationTable::parse(&text).unwrap();
    compiler::lower::calib::cali_map_from_table(&t)
}

fn check(chip: LChip, mode: Mode, qtable: Option<&str>) {
    let (m, w) = top();
    let table = table();
    let qt = qtable.map(|p| compiler::lower::parse_qtable(&std::fs::read_to_string(asset(p)).unwrap(), chip).unwrap());
    let opts = LowerOptions { chip, mode, asymmetric: false, table: Some(&table), qtable: qt.as_ref() };
    let (lm, lw) = lower(m, w, &opts).unwrap();
    let bchip = bmodel_format::Chip::from_name(chip.name()).unwrap();
    let (bytes, report) = compiler::codegen::build_bmodel(&lm, &lw, bchip).unwrap();
    eprintln!("{} {:?}: {report:?}", chip.name(), mode);
    let x = yolo_input();
    let inputs: Vec<ndarray::ArrayD<f32>> = lm
        .func
        .args
        .iter()
        .enumerate()
        .map(|(i, &a)| if i == 0 { x.clone() } else { ndarray::ArrayD::zeros(lm.func.values[a].ty.shape()) })
        .collect();
    let slices: Vec<&[f32]> = inputs.iter().map(|a| a.as_slice().unwrap()).collect();
    let outs = runtime::host::run_f32(&bytes, &slices).unwrap();
    let sim = compiler::sim::run_outputs(&lm, &lw, &inputs).unwrap();
    assert_eq!(outs.len(), sim.len());
    for (o, s) in outs.iter().zip(&sim) {
        let sb = s.to_le_bytes();
        let diff = o.raw.iter().zip(&sb).filter(|(a, b)| a != b).count();
        eprintln!("{}: {} bytes, {diff} differ from the simulator", o.name, o.raw.len());
        assert_eq!(o.raw.len(), sb.len(), "{}", o.name);
        assert!(o.raw == sb, "{}: runtime and simulator differ in {diff} bytes", o.name);
    }
}

#[test]
fn bm1684x_f16_equals_simulator() {
    check(LChip::Bm1684x, Mode::F16, None);
}

#[test]
fn bm1684x_bf16_equals_simulator() {
    check(LChip::Bm1684x, Mode::BF16, None);
}

#[test]
fn bm1684x_f32_equals_simulator() {
    check(LChip::Bm1684x, Mode::F32, None);
}

#[test]
fn cv183x_bf16_equals_simulator() {
    check(LChip::Cv183x, Mode::BF16, None);
}

#[test]
fn bm1684x_mixed_int8_f32_equals_simulator() {
    check(LChip::Bm1684x, Mode::Int8, Some("reference/tiny-yolov3/tpu-mlir/mix_search/yolov3_qtable_f32"));
}

#[test]
fn bm1684x_mixed_int8_f16_equals_simulator() {
    check(LChip::Bm1684x, Mode::Int8, Some("reference/tiny-yolov3/tpu-mlir/mix_search/yolov3_qtable"));
}

#[test]
fn bm1684x_int8_lowered_by_compiler_equals_simulator() {
    check(LChip::Bm1684x, Mode::Int8, None);
}

#[test]
fn cv183x_int8_lowered_by_compiler_equals_simulator() {
    check(LChip::Cv183x, Mode::Int8, None);
}
