//! model_transform on the bundled real models: the imported top IR run by the F32 interpreter
//! matches ONNX Runtime's reference outputs, and tiny-yolov3 matches tpu-mlir's own top run.

use compiler::interp::Interpreter;
use compiler::ir::weights::Weights;
use compiler::ir::Module;
use compiler::npz::read_f32_map;
use compiler::onnx::{import, ImportOptions};
use ndarray::ArrayD;
use std::path::PathBuf;

fn asset(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/")).join(rel)
}

fn cosine(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b.iter()) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn one(path: PathBuf) -> ArrayD<f32> {
    read_f32_map(&path).unwrap().remove(0).1
}

fn run(m: &Module, w: &Weights, input: ArrayD<f32>) -> Vec<ArrayD<f32>> {
    Interpreter::new(m, w).unwrap().run(&[input]).unwrap()
}

fn yolov3() -> (Module, Weights) {
    let o = ImportOptions {
        model_name: "yolov3_tiny".into(),
        input_shapes: Some(vec![vec![1, 3, 416, 416]]),
        output_names: vec!["convolution_output1".into(), "convolution_output".into()],
        preprocess: None,
    };
    import(&asset("models/tiny-yolov3-11.onnx"), &o).unwrap()
}

#[test]
fn tiny_yolov3_heads_match_onnxruntime() {
    let (m, w) = yolov3();
    let outs = run(&m, &w, one(asset("reference/tiny-yolov3/yolov3_tiny_in_f32.npz")));
    let refs = read_f32_map(&asset("reference/tiny-yolov3/ort_outputs.npz")).unwrap();
    assert_eq!(refs[0].0, "convolution_output1");
    for (o, (name, r)) in outs.iter().zip(&refs) {
        let c = cosine(o, r);
        eprintln!("{name}: cosine {c:.9} max|diff| {:e}", max_abs_diff(o, r));
        assert!(c >= 0.99999, "{name}: cosine {c}");
        assert!(max_abs_diff(o, r) < 1e-2, "{name}: max diff {}", max_abs_diff(o, r));
    }
}

#[test]
fn tiny_yolov3_every_tensor_matches_tpu_mlir_top_run() {
    let (m, w) = yolov3();
    let input = one(asset("reference/tiny-yolov3/yolov3_tiny_in_f32.npz"));
    let all = Interpreter::new(&m, &w).unwrap().run_all(&[input]).unwrap();
    let refs = read_f32_map(&asset("reference/tiny-yolov3/tpu-mlir/yolov3_top_outputs.npz")).unwrap();
    assert_eq!(refs.len(), 33);
    for (name, r) in &refs {
        let id = m.func.value_by_name(name).unwrap_or_else(|| panic!("no value {name}"));
        let t = all[id].as_ref().unwrap_or_else(|| panic!("{name} not computed"));
        let c = cosine(t, r);
        eprintln!("{name}: cosine {c:.9} max|diff| {:e}", max_abs_diff(t, r));
        assert!(c >= 0.99999, "{name}: cosine {c}");
    }
}

#[test]
fn yolox_nano_matches_onnxruntime() {
    let o = ImportOptions { model_name: "yolox_nano".into(), ..Default::default() };
    let (m, w) = import(&asset("models/yolox_nano.onnx"), &o).unwrap();
    for img in ["000000124798", "000000366711"] {
        let input = one(asset(&format!("reference/yolox_nano/yolox_nano_input_{img}.npz")));
        let want = one(asset(&format!("reference/yolox_nano/yolox_nano_ort_outputs_{img}.npz")));
        let got = run(&m, &w, input);
        let c = cosine(&got[0], &want);
        eprintln!("{img}: cosine {c:.9} max|diff| {:e}", max_abs_diff(&got[0], &want));
        assert!(c >= 0.99999, "{img}: cosine {c}");
    }
}

#[test]
fn fastestdet_matches_onnxruntime() {
    let o = ImportOptions { model_name: "FastestDet".into(), ..Default::default() };
    let (m, w) = import(&asset("models/FastestDet.onnx"), &o).unwrap();
    for img in ["000000124798", "000000366711"] {
        let input = one(asset(&format!("reference/FastestDet/FastestDet_input_{img}.npz")));
        let want = one(asset(&format!("reference/FastestDet/FastestDet_ort_outputs_{img}.npz")));
        let got = run(&m, &w, input);
        let c = cosine(&got[0], &want);
        eprintln!("{img}: cosine {c:.9} max|diff| {:e}", max_abs_diff(&got[0], &want));
        assert!(c >= 0.99999, "{img}: cosine {c}");
    }
}
