//! Real-model test: tiny-yolov3 imported from the bundled ONNX, run on tpu-mlir's preprocessed
//! input, against ONNX Runtime's heads and tpu-mlir's own F32 run of every tensor.

use super::*;
use crate::onnx::{import, ImportOptions};
use ndarray_npy::NpzReader;
use std::fs::File;

const REF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/reference/tiny-yolov3");
const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/models/tiny-yolov3-11.onnx");

fn npz(path: &str) -> NpzReader<File> {
    NpzReader::new(File::open(path).unwrap()).unwrap()
}

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b.iter()) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// tiny-yolov3 cut at its two heads, and the bundled reference input.
fn tiny_yolov3() -> (Module, Weights, Tensor) {
    let opts = ImportOptions {
        model_name: "yolov3_tiny".into(),
        output_names: vec!["convolution_output1".into(), "convolution_output".into()],
        ..Default::default()
    };
    let (module, weights) = import(std::path::Path::new(MODEL), &opts).unwrap();
    let input: Tensor = npz(&format!("{REF}/yolov3_tiny_in_f32.npz")).by_name("input_1").unwrap();
    (module, weights, input)
}

#[test]
fn tiny_yolov3_matches_onnx_runtime_and_tpu_mlir() {
    let (module, weights, input) = tiny_yolov3();
    let interp = Interpreter::new(&module, &weights).unwrap();

    let mut tpu = npz(&format!("{REF}/tpu-mlir/yolov3_top_outputs.npz"));
    let names = tpu.names().unwrap();
    let mut compared = Vec::new();
    let outputs = interp
        .run_observe(std::slice::from_ref(&input), &mut |v, t| {
            let name = &module.func.values[v].name;
            if names.contains(name) {
                let want: Tensor = tpu.by_name(name).unwrap();
                let c = cosine(t, &want);
                assert!(c >= 0.9999, "{name}: cosine {c} against tpu-mlir");
                compared.push(name.clone());
            }
        })
        .unwrap();
    // every tensor tpu-mlir dumped (33, input included) has a counterpart
    assert_eq!(compared.len(), names.len(), "compared {compared:?}");

    let mut ort = npz(&format!("{REF}/ort_outputs.npz"));
    for (out, head) in outputs.iter().zip(["convolution_output1", "convolution_output"]) {
        let want: Tensor = ort.by_name(head).unwrap();
        let c = cosine(out, &want);
        assert!(c >= 0.99999, "{head}: cosine {c} against ONNX Runtime");
        let max_err = out.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max_err < 1e-2, "{head}: max abs error {max_err}");
    }
}

/// Import `model` whole, run it on `input` (an npz holding `input_name`) and compare the single
/// output `output_name` with ONNX Runtime's.
fn whole_model_matches_ort(model: &str, input: &str, input_name: &str, reference: &str, output_name: &str) {
    let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets");
    let opts = ImportOptions { model_name: model.into(), ..Default::default() };
    let path = format!("{assets}/models/{model}.onnx");
    let (module, weights) = import(std::path::Path::new(&path), &opts).unwrap();
    let x: Tensor = npz(&format!("{assets}/reference/{input}")).by_name(input_name).unwrap();
    let interp = Interpreter::new(&module, &weights).unwrap();
    let fused = interp.run(std::slice::from_ref(&x)).unwrap();
    let observed = interp.run_observe(std::slice::from_ref(&x), &mut |_, _| {}).unwrap();
    assert_eq!(fused, observed, "{model}: fused and observed runs differ");
    let want: Tensor = npz(&format!("{assets}/reference/{reference}")).by_name(output_name).unwrap();
    let c = cosine(&fused[0], &want);
    assert!(c >= 0.99999, "{model}: cosine {c} against ONNX Runtime");
}

#[test]
fn yolox_nano_matches_onnx_runtime() {
    whole_model_matches_ort(
        "yolox_nano",
        "yolox_nano/yolox_nano_input_000000124798.npz",
        "images",
        "yolox_nano/yolox_nano_ort_outputs_000000124798.npz",
        "output",
    );
}

#[test]
fn fastestdet_matches_onnx_runtime() {
    whole_model_matches_ort(
        "FastestDet",
        "FastestDet/FastestDet_input_000000366711.npz",
        "input.1",
        "FastestDet/FastestDet_ort_outputs_000000366711.npz",
        "758",
    );
}

/// Largest |a - b| and that divided by the largest |b|.
fn max_diff(a: &Tensor, b: &Tensor) -> (f32, f32) {
    assert_eq!(a.shape(), b.shape());
    let abs = a.iter().zip(b.iter()).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    let scale = b.iter().fold(0f32, |m, y| m.max(y.abs()));
    (abs, abs / scale)
}

/// tiny-yolov3 with the Winograd fast convolution (8 of its 9 3x3 convolutions) against ONNX
/// Runtime's heads and against the interpreter's own direct convolution.
#[test]
fn tiny_yolov3_fast_conv_matches_onnx_runtime() {
    let (module, weights, input) = tiny_yolov3();
    let mut interp = Interpreter::new(&module, &weights).unwrap();
    let direct = interp.run(std::slice::from_ref(&input)).unwrap();
    interp.set_fast_conv(true);
    let winograd_convs = interp.winograd.iter().filter(|f| f.is_some()).count();
    assert_eq!(winograd_convs, 8, "every 3x3 conv but the 3-channel first one");
    let fast = interp.run(std::slice::from_ref(&input)).unwrap();
    let mut ort = npz(&format!("{REF}/ort_outputs.npz"));
    for ((f, d), head) in fast.iter().zip(&direct).zip(["convolution_output1", "convolution_output"]) {
        let want: Tensor = ort.by_name(head).unwrap();
        let (fast_abs, fast_rel) = max_diff(f, &want);
        let (direct_abs, direct_rel) = max_diff(d, &want);
        let (fd_abs, fd_rel) = max_diff(f, d);
        eprintln!(
            "{head}: fast vs ORT max abs {fast_abs:e} rel {fast_rel:e}; direct vs ORT {direct_abs:e} rel \
             {direct_rel:e}; fast vs direct {fd_abs:e} rel {fd_rel:e}; cosine {}",
            cosine(f, &want)
        );
        assert!(cosine(f, &want) >= 0.99999, "{head}: cosine {} against ONNX Runtime", cosine(f, &want));
        assert!(fast_rel < 2e-5, "{head}: max error {fast_abs} ({fast_rel} of the largest output)");
        assert!(fd_rel < 2e-5, "{head}: fast vs direct {fd_abs} ({fd_rel} of the largest output)");
    }
}
