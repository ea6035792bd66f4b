//! tiny-yolov3 through codegen and the runtime: tpu-mlir's own lowered INT8 modules (bm1684x,
//! cv183x) with its weights, compared with tpu-mlir's reference outputs and with the simulator.

mod common;
use bmodel_format::Chip;
use common::*;
use compiler::codegen::build_bmodel;

fn run_reference(dir: &str, prefix: &str, chip: Chip) {
    let m = module(&format!("reference/tiny-yolov3/tpu-mlir/{dir}/{prefix}_tpu.mlir"));
    let w = weights(&format!("reference/tiny-yolov3/tpu-mlir/{dir}/{prefix}_tpu_weights.npz"));
    let (bytes, report) = build_bmodel(&m, &w, chip).unwrap();
    eprintln!("{prefix}: {} bytes, {report:?}", bytes.len());
    let input = yolo_input();
    let t = std::time::Instant::now();
    let outs = runtime::host::run_f32(&bytes, &[input.as_slice().unwrap()]).unwrap();
    eprintln!("{prefix}: run {:?}", t.elapsed());
    let ref_npz = format!("reference/tiny-yolov3/tpu-mlir/{dir}/{prefix}_tpu_outputs.npz");
    assert_eq!(outs.len(), 2);
    for o in &outs {
        let want = npz_f32(&ref_npz, &o.name);
        assert_eq!(o.values.len(), want.len(), "{}", o.name);
        let d = bit_diffs(&o.values, want.as_slice().unwrap());
        eprintln!("{}: {d} of {} values differ from tpu-mlir", o.name, o.values.len());
        assert_eq!(d, 0, "{} differs from tpu-mlir's reference", o.name);
    }
    // runtime == simulator, byte for byte
    let sim = compiler::sim::run_outputs(&m, &w, &[input]).unwrap();
    for (o, s) in outs.iter().zip(&sim) {
        assert!(o.raw == s.to_le_bytes(), "{}: runtime and simulator bytes differ", o.name);
    }
}

#[test]
fn bm1684x_int8_matches_tpu_mlir_and_simulator() {
    run_reference("int8_bm1684x", "yolov3_tiny_bm1684x_int8_sym", Chip::Bm1684x);
}

#[test]
fn cv183x_int8_matches_tpu_mlir_and_simulator() {
    run_reference("int8_cv183x", "yolov3_tiny_cv183x_int8_sym", Chip::Cv183x);
}
