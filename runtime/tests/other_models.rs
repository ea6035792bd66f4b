//! yolox_nano and FastestDet lowered by `compiler::lower` in every mode (F32, F16, BF16, INT8 on
//! bm1684x and cv183x, mixed INT8/F32), compiled to bmodels and run on the runtime: every output
//! must equal the simulator's byte for byte. INT8 uses a calibration table made here from two
//! COCO2017 images (method max, no tuning).

mod common;
use common::*;
use compiler::calibration::{run_calibration, select_dataset, CaliMethod, CalibOptions};
use compiler::ir::weights::Weights;
use compiler::ir::Module;
use compiler::lower::{lower, CaliMap, Chip as LChip, LowerOptions, Mode};
use compiler::preprocess::{ChannelFormat, PadType, PixelFormat, PreprocessConfig};
use std::sync::OnceLock;

/// One model: imported top module, its calibration table and a real preprocessed input.
struct Model {
    top: (Module, Weights),
    table: CaliMap,
    input: ndarray::ArrayD<f32>,
}

fn load(name: &str, hw: usize, scale: f64) -> Model {
    let pp = PreprocessConfig {
        mean: vec![0.0; 3],
        scale: vec![scale; 3],
        pixel_format: PixelFormat::Bgr,
        channel_format: ChannelFormat::Nchw,
        keep_aspect_ratio: false,
        pad_value: 0,
        pad_type: PadType::Center,
        resize_dims: vec![hw, hw],
    };
    let opts = compiler::onnx::ImportOptions {
        model_name: name.into(),
        input_shapes: Some(vec![vec![1, 3, hw, hw]]),
        output_names: vec![],
        preprocess: Some(pp),
    };
    let (m, w) = compiler::onnx::import(&asset(&format!("models/{name}.onnx")), &opts).unwrap();
    let ds = select_dataset(&asset("images/COCO2017"), 2).unwrap();
    let co = CalibOptions { method: CaliMethod::Max, tune_num: 0, ..Default::default() };
    let out = run_calibration(&m, &w, &ds, &co, &mut |_| {}).unwrap();
    let table = compiler::lower::calib::cali_map_from_table(&out.table);
    let npz = format!("reference/{name}/{name}_input_000000124798.npz");
    let input = compiler::npz::read_npz(&asset(&npz)).unwrap().into_iter().next().unwrap().1.to_f32();
    Model { top: (m, w), table, input }
}

fn yolox() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| load("yolox_nano", 416, 1.0))
}

fn fastestdet() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| load("FastestDet", 352, 1.0 / 255.0))
}

/// Lower, compile, run on the runtime and on the simulator; every output byte must agree.
fn check(model: &Model, chip: LChip, mode: Mode, qtable: Option<&str>) {
    let (m, w) = &model.top;
    let qt = qtable.map(|t| compiler::lower::parse_qtable(t, chip).unwrap());
    let opts = LowerOptions { chip, mode, asymmetric: false, table: Some(&model.table), qtable: qt.as_ref() };
    let (lm, lw) = lower(m, w, &opts).unwrap();
    let bchip = bmodel_format::Chip::from_name(chip.name()).unwrap();
    let (bytes, report) = compiler::codegen::build_bmodel(&lm, &lw, bchip).unwrap();
    eprintln!("{} {} {:?}: {report:?}", m.name, chip.name(), mode);
    let x = model.input.clone();
    let outs = runtime::host::run_f32(&bytes, &[x.as_slice().unwrap()]).unwrap();
    let sim = compiler::sim::run_outputs(&lm, &lw, &[x]).unwrap();
    assert_eq!(outs.len(), sim.len());
    for (o, s) in outs.iter().zip(&sim) {
        let sb = s.to_le_bytes();
        assert_eq!(o.raw.len(), sb.len(), "{}", o.name);
        let diff = o.raw.iter().zip(&sb).filter(|(a, b)| a != b).count();
        eprintln!("{}: {} bytes, {diff} differ from the simulator", o.name, o.raw.len());
        assert!(o.raw == sb, "{}: runtime and simulator differ in {diff} bytes", o.name);
    }
}

#[test]
fn yolox_bm1684x_f32() {
    check(yolox(), LChip::Bm1684x, Mode::F32, None);
}

#[test]
fn yolox_bm1684x_f16() {
    check(yolox(), LChip::Bm1684x, Mode::F16, None);
}

#[test]
fn yolox_bm1684x_bf16() {
    check(yolox(), LChip::Bm1684x, Mode::BF16, None);
}

#[test]
fn yolox_bm1684x_int8() {
    check(yolox(), LChip::Bm1684x, Mode::Int8, None);
}

#[test]
fn yolox_cv183x_int8() {
    check(yolox(), LChip::Cv183x, Mode::Int8, None);
}

#[test]
fn fastestdet_bm1684x_f32() {
    check(fastestdet(), LChip::Bm1684x, Mode::F32, None);
}

#[test]
fn fastestdet_bm1684x_f16() {
    check(fastestdet(), LChip::Bm1684x, Mode::F16, None);
}

#[test]
fn fastestdet_bm1684x_bf16() {
    check(fastestdet(), LChip::Bm1684x, Mode::BF16, None);
}

#[test]
fn fastestdet_bm1684x_int8() {
    check(fastestdet(), LChip::Bm1684x, Mode::Int8, None);
}

#[test]
fn fastestdet_cv183x_int8() {
    check(fastestdet(), LChip::Cv183x, Mode::Int8, None);
}

#[test]
fn yolox_bm1684x_mixed_int8_f32() {
    let qtable = "onnx::Sigmoid_1177_Conv F32\nonnx::Mul_686_Sigmoid F32\ninput.7_Mul F32\nonnx::Concat_716_Add F32\n";
    check(yolox(), LChip::Bm1684x, Mode::Int8, Some(qtable));
}

#[test]
fn fastestdet_bm1684x_mixed_int8_f32() {
    let qtable = "onnx::Add_945_Conv F32\ninput.576_Add F32\nonnx::Concat_744_Sigmoid F32\n";
    check(fastestdet(), LChip::Bm1684x, Mode::Int8, Some(qtable));
}

#[test]
fn fastestdet_cv183x_bf16() {
    check(fastestdet(), LChip::Cv183x, Mode::BF16, None);
}

#[test]
fn yolox_cv183x_bf16() {
    check(yolox(), LChip::Cv183x, Mode::BF16, None);
}
