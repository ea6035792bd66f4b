//! model_transform on the bundled real models: the imported top IR run by the F32 interpreter
//! matches ONNX Runtime's reference outputs, and tiny-yolov3 matches tpu-mlir's own top run.

use compiler::interp::Interpreter;
use compiler::ir::weights::Weights;
use compiler::ir::Module;
use compiler::npz::read_f32_map;
use compiler::onnx::transform::{parse_input_shapes, run as run_transform, TransformConfig};
use compiler::onnx::{import, ImportOptions};
use e2e_tests::{asset, temp_dir, tool, YOLO_FLAGS};
use ndarray::ArrayD;
use std::path::{Path, PathBuf};
use std::process::Command;

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

// ---- the model_transform binary ----

fn model_transform_bin() -> PathBuf {
    tool("model_transform")
}

fn files_in(d: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn binary_walkthrough_reproduces_tpu_mlir_files() {
    let d = temp_dir("walkthrough");
    let out = Command::new(model_transform_bin())
        .args(YOLO_FLAGS)
        .arg("--model_def")
        .arg(asset("models/tiny-yolov3-11.onnx"))
        .args(["--mlir", "yolov3_tiny.mlir", "--test_result", "yolov3_tiny_top_outputs.npz", "--test_input"])
        .arg(asset("images/COCO2017/000000124798.jpg"))
        .current_dir(&d)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("compared 33 tensors with the unsimplified import"), "{stdout}");
    assert_eq!(
        files_in(&d),
        [
            "yolov3_tiny.mlir",
            "yolov3_tiny_in_f32.npz",
            "yolov3_tiny_top_f32_all_weight.npz",
            "yolov3_tiny_top_outputs.npz"
        ]
    );
    // the top MLIR is tpu-mlir's, byte for byte
    let ours = std::fs::read_to_string(d.join("yolov3_tiny.mlir")).unwrap();
    let theirs = std::fs::read_to_string(asset("reference/tiny-yolov3/tpu-mlir/yolov3_tiny.mlir")).unwrap();
    assert_eq!(ours, theirs);
    // the preprocessed input is tpu-mlir's, bit for bit
    let a = one(d.join("yolov3_tiny_in_f32.npz"));
    assert_eq!(a, one(asset("reference/tiny-yolov3/yolov3_tiny_in_f32.npz")));
    // weights: every top.Weight of the module, with its shape
    let (m, _) = yolov3();
    let w = read_f32_map(&d.join("yolov3_tiny_top_f32_all_weight.npz")).unwrap();
    assert_eq!(w.len(), 26);
    for (name, arr) in &w {
        let id = m.func.value_by_name(name).unwrap();
        assert_eq!(arr.shape(), m.func.values[id].ty.shape(), "{name}");
    }
    // every tensor of the run, close to tpu-mlir's own top run
    let res: std::collections::HashMap<String, ArrayD<f32>> =
        read_f32_map(&d.join("yolov3_tiny_top_outputs.npz")).unwrap().into_iter().collect();
    for (name, r) in read_f32_map(&asset("reference/tiny-yolov3/tpu-mlir/yolov3_top_outputs.npz")).unwrap() {
        assert!(cosine(&res[&name], &r) >= 0.99999, "{name}");
    }
}

#[test]
fn binary_help_explains_every_flag() {
    let out = Command::new(model_transform_bin()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--model_name",
        "--model_def",
        "--input_shapes",
        "--scale",
        "--mean",
        "--pixel_format",
        "--channel_format",
        "--keep_aspect_ratio",
        "--pad_value",
        "--pad_type",
        "--output_names",
        "--mlir",
        "--test_input",
        "--test_result",
        "--tolerance",
        "--resize_dims",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

fn failing_run(tag: &str, args: &[&str], model: &Path) -> (String, Vec<String>) {
    let d = temp_dir(tag);
    let out = Command::new(model_transform_bin())
        .args(args)
        .arg("--model_def")
        .arg(model)
        .args(["--mlir", "out.mlir"])
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .current_dir(&d)
        .output()
        .unwrap();
    assert!(!out.status.success());
    (String::from_utf8_lossy(&out.stderr).into_owned(), files_in(&d))
}

#[test]
fn binary_errors_are_clear_and_write_nothing() {
    let yolo = asset("models/tiny-yolov3-11.onnx");
    let (err, files) = failing_run("shapes", &["--model_name", "m", "--input_shapes", "[[1,3,416,416]"], &yolo);
    assert_eq!(
        err.trim(),
        "Error: malformed --input_shapes '[[1,3,416,416]': missing ']' at the end (expected e.g. [[1,3,416,416]])"
    );
    assert!(files.is_empty(), "{files:?}");
    let (err, files) = failing_run("names", &["--model_name", "m", "--output_names", "convolution_output,nope"], &yolo);
    assert_eq!(err.trim(), "Error: output names not found in the graph: nope");
    assert!(files.is_empty(), "{files:?}");
    // a truncated model
    let d = temp_dir("trunc_src");
    let full = std::fs::read(asset("models/yolox_nano.onnx")).unwrap();
    let cut = d.join("cut.onnx");
    std::fs::write(&cut, &full[..full.len() / 3]).unwrap();
    let (err, files) = failing_run("trunc", &["--model_name", "m"], &cut);
    assert!(err.starts_with(&format!("Error: {}: not a valid ONNX model: ", cut.display())), "{err}");
    assert!(files.is_empty(), "{files:?}");
    // the full graph of tiny-yolov3 has ops we do not convert: the error says where to cut
    let (err, _) = failing_run("nms", &["--model_name", "m", "--input_shapes", "[[1,3,416,416],[1,2]]"], &yolo);
    assert!(err.contains("unsupported ONNX op type") && err.contains("--output_names"), "{err}");
}

#[test]
fn transform_flow_checks_yolox_against_the_unfused_import() {
    let d = temp_dir("yolox");
    let cfg = TransformConfig {
        model_name: "yolox_nano".into(),
        model_def: asset("models/yolox_nano.onnx"),
        input_shapes: Some(parse_input_shapes("[1,3,416,416]").unwrap()),
        output_names: vec![],
        preprocess: None,
        mlir: d.join("yolox_nano.mlir"),
        test_input: vec![asset("reference/yolox_nano/yolox_nano_input_000000124798.npz")],
        test_result: None,
        tolerance: (0.99, 0.99),
        excepts: vec![],
    };
    let r = run_transform(&cfg).unwrap();
    assert_eq!(r.op_count, std::fs::read_to_string(&cfg.mlir).unwrap().matches("\"top.").count());
    assert!(r.comparisons.len() > 300, "{}", r.comparisons.len());
    assert!(r.comparisons.iter().all(|c| c.pass));
    let res: std::collections::HashMap<String, ArrayD<f32>> =
        read_f32_map(&d.join("yolox_nano_top_outputs.npz")).unwrap().into_iter().collect();
    let want = one(asset("reference/yolox_nano/yolox_nano_ort_outputs_000000124798.npz"));
    assert!(cosine(&res["output_Transpose"], &want) >= 0.99999);
}
