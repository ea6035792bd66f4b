//! End-to-end tests of the `model_deploy` binary on tiny-yolov3 (top MLIR made by model_transform).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn asset(p: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/")).join(p)
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("model_deploy_test_{tag}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn transform(dir: &Path) -> PathBuf {
    let mlir = dir.join("yolov3_tiny.mlir");
    let out = Command::new(env!("CARGO_BIN_EXE_model_transform"))
        .args(["--model_name", "yolov3_tiny", "--model_def"])
        .arg(asset("models/tiny-yolov3-11.onnx"))
        .args(["--input_shapes", "[[1,3,416,416]]", "--output_names", "convolution_output1,convolution_output"])
        .args(["--scale", "0.0039216,0.0039216,0.0039216", "--mean", "0,0,0", "--pixel_format", "rgb"])
        .args(["--keep_aspect_ratio", "--pad_value", "128", "--mlir"])
        .arg(&mlir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    mlir
}

fn deploy(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_model_deploy"))
        .current_dir(dir)
        .env("RUST_BACKTRACE", "0")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn int8_bm1684x_passes_against_the_top_run_and_writes_files() {
    let dir = tmpdir("int8");
    let mlir = transform(&dir);
    let table = asset("reference/tiny-yolov3/tpu-mlir/yolov3_cali_table");
    let input = asset("reference/tiny-yolov3/yolov3_tiny_in_f32.npz");
    let reference = asset("reference/tiny-yolov3/tpu-mlir/yolov3_top_outputs.npz");
    let out = deploy(
        &dir,
        &[
            "--mlir",
            mlir.to_str().unwrap(),
            "--quantize",
            "INT8",
            "--calibration_table",
            table.to_str().unwrap(),
            "--chip",
            "bm1684x",
            "--model",
            "yolov3_int8.bmodel",
            "--test_input",
            input.to_str().unwrap(),
            "--test_reference",
            reference.to_str().unwrap(),
            "--tolerance",
            "0.85,0.45",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("npz compare PASSED (2 tensors, tolerance 0.85,0.45)"), "{stdout}");
    for f in [
        "yolov3_tiny_bm1684x_int8_sym_tpu.mlir",
        "yolov3_tiny_bm1684x_int8_sym_tpu_weights.npz",
        "yolov3_tiny_bm1684x_int8_sym_tpu_outputs.npz",
        "yolov3_int8.bmodel",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    // the lowered MLIR names every op as tpu-mlir does
    let ours = std::fs::read_to_string(dir.join("yolov3_tiny_bm1684x_int8_sym_tpu.mlir")).unwrap();
    let theirs = std::fs::read_to_string(asset(
        "reference/tiny-yolov3/tpu-mlir/int8_bm1684x/yolov3_tiny_bm1684x_int8_sym_tpu.mlir",
    ))
    .unwrap();
    let locs = |t: &str| t.lines().filter(|l| l.starts_with("#loc")).map(|l| l.to_string()).collect::<Vec<_>>();
    let (a, b) = (locs(&ours), locs(&theirs));
    let names = |v: &[String]| {
        v.iter()
            .filter_map(|l| l.split('"').nth(1).map(str::to_string))
            .filter(|n| !n.starts_with("_v_"))
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(names(&a), names(&b));
    // a tolerance the INT8 model cannot meet fails
    let out = deploy(
        &dir,
        &[
            "--mlir",
            mlir.to_str().unwrap(),
            "--quantize",
            "INT8",
            "--calibration_table",
            table.to_str().unwrap(),
            "--chip",
            "bm1684x",
            "--model",
            "y2.bmodel",
            "--test_input",
            input.to_str().unwrap(),
            "--test_reference",
            reference.to_str().unwrap(),
            "--tolerance",
            "0.99999,0.999",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("npz compare FAILED (tolerance 0.99999,0.999): convolution_output1_Conv, convolution_output_Conv"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn user_errors_are_reported() {
    let dir = tmpdir("errors");
    let mlir = transform(&dir);
    let m = mlir.to_str().unwrap();
    let out = deploy(&dir, &["--mlir", m, "--quantize", "F16", "--chip", "cv183x", "--model", "x.bmodel"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mode F16 is not supported on cv183x (float modes: BF16)"));
    let out = deploy(&dir, &["--mlir", m, "--quantize", "INT8", "--chip", "bm1684x", "--model", "x.bmodel"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("INT8 lowering needs a calibration table (--calibration_table)")
    );
    std::fs::write(dir.join("q"), "# mixed\nconv2d_2_Con F32\n").unwrap();
    let table = asset("reference/tiny-yolov3/tpu-mlir/yolov3_cali_table");
    let out = deploy(
        &dir,
        &[
            "--mlir",
            m,
            "--quantize",
            "INT8",
            "--calibration_table",
            table.to_str().unwrap(),
            "--quantize_table",
            "q",
            "--chip",
            "bm1684x",
            "--model",
            "x.bmodel",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("quantize table names 'conv2d_2_Con', which is not a layer of the model (closest: conv2d_2_Conv, conv2d_12_Conv, conv2d_1_Conv)"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
