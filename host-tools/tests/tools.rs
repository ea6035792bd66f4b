//! The npz_tool and model_runner binaries on the bundled tpu-mlir reference files.

use compiler::compare::cosine_similarity;
use compiler::ir::weights::TensorData;
use compiler::npz::{read_f32_map, read_npz, write_npz};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/reference/tiny-yolov3");

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tools_test_{tag}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn npz_tool(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_npz_tool"), args)
}

#[test]
fn compare_file_with_itself_passes() {
    let f = format!("{REF}/tpu-mlir/yolov3_top_outputs.npz");
    let o = npz_tool(&["compare", &f, &f]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("33 compared\n33 passed\n  33 equal, 0 close, 0 similar\n0 failed\n"), "{out}");
    assert!(out.contains("[conv2d_1_Conv                   ]        EQUAL [PASSED]"), "{out}");
    assert!(out.trim_end().ends_with("npz compare PASSED."));
}

#[test]
fn int8_outputs_against_float_golden_similarities() {
    let t = format!("{REF}/tpu-mlir/int8_bm1684x/yolov3_tiny_bm1684x_int8_sym_tpu_outputs.npz");
    let r = format!("{REF}/tpu-mlir/yolov3_top_outputs.npz");
    // model_deploy's INT8 tolerance passes ...
    let o = npz_tool(&["compare", &t, &r, "--tolerance", "0.90,0.60", "-v"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let head = "[convolution_output_Conv         ]      SIMILAR [PASSED]\n    (1, 255, 26, 26) float32 \n";
    let i = out.find(head).expect(&out);
    // numpy: cosine 0.9983556757634681, euclid 0.9392066550674134
    assert!(out[i + head.len()..]
        .starts_with("    cosine_similarity      = 0.998356\n    euclidean_similarity   = 0.939207\n"));
    // ... the F32 default does not
    let o = npz_tool(&["compare", &t, &r]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stdout(&o).contains("NOT_SIMLIAR [FAILED]"));
    assert!(stdout(&o).trim_end().ends_with("npz compare FAILED."));
}

#[test]
fn perturbed_copy_fails() {
    let dir = tmp_dir("perturb");
    let src = format!("{REF}/ort_outputs.npz");
    let mut arrays = read_npz(Path::new(&src)).unwrap();
    assert_eq!(arrays[1].0, "convolution_output");
    if let TensorData::F32(a) = &mut arrays[1].1 {
        // flip the sign of every 3rd value
        a.iter_mut().step_by(3).for_each(|x| *x = -*x);
    }
    let bad = dir.join("bad.npz");
    write_npz(&bad, &arrays).unwrap();
    let o = npz_tool(&["compare", bad.to_str().unwrap(), &src]);
    assert_eq!(o.status.code(), Some(255), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("[convolution_output1             ]        EQUAL [PASSED]"), "{out}");
    assert!(out.contains("[convolution_output              ]  NOT_SIMLIAR [FAILED]"), "{out}");
    assert!(out.contains("2 compared\n1 passed\n"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npz_tool_bad_input_is_one_clear_error() {
    let o = npz_tool(&["compare", "/nonexistent.npz", "/nonexistent2.npz"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: npz_tool compare: /nonexistent.npz: No such file or directory (os error 2)\n"
    );
    let o = npz_tool(&["dump", &format!("{REF}/ort_outputs.npz"), "convolution_output1"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("convolution_output1: shape (1, 255, 13, 13) float32\n"), "{}", stdout(&o));
}

#[test]
fn model_runner_bad_input_is_one_error_without_output() {
    let dir = tmp_dir("runner_bad");
    let out = dir.join("o.npz");
    let bin = env!("CARGO_BIN_EXE_model_runner");
    let o = run(bin, &["--model", "m.bmodel", "--input", "x.npz", "--output", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: m.bmodel: cannot read: No such file or directory (os error 2)\n"
    );
    let mlir = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/reference/tpu-mlir-vectors/tnet.mlir");
    let o = run(bin, &["--model", mlir, "--input", "/nonexistent.npz", "--output", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: input 'input': /nonexistent.npz"));
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no partial or temporary file");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// model_transform then model_runner on tiny-yolov3: every tensor matches tpu-mlir's F32 run.
#[test]
fn model_runner_reproduces_tpu_mlir_top_run() {
    let dir = tmp_dir("runner_yolo");
    let mlir = dir.join("yolov3_tiny.mlir");
    let onnx = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/models/tiny-yolov3-11.onnx");
    let o = run(
        env!("CARGO_BIN_EXE_model_transform"),
        &[
            "--model_name",
            "yolov3_tiny",
            "--model_def",
            onnx,
            "--input_shapes",
            "[[1,3,416,416]]",
            "--scale",
            "0.0039216,0.0039216,0.0039216",
            "--mean",
            "0,0,0",
            "--pixel_format",
            "rgb",
            "--keep_aspect_ratio",
            "--pad_value",
            "128",
            "--output_names",
            "convolution_output1,convolution_output",
            "--mlir",
            mlir.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // importer + printer reproduce tpu-mlir's top MLIR byte for byte
    let ours = std::fs::read_to_string(&mlir).unwrap();
    let theirs = std::fs::read_to_string(format!("{REF}/tpu-mlir/yolov3_tiny.mlir")).unwrap();
    assert!(ours == theirs, "generated MLIR differs from tpu-mlir's");
    let out = dir.join("all.npz");
    let input = format!("{REF}/yolov3_tiny_in_f32.npz");
    let o = run(
        env!("CARGO_BIN_EXE_model_runner"),
        &[
            "--model",
            mlir.to_str().unwrap(),
            "--input",
            &input,
            "--dump_all_tensors",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ours = read_f32_map(&out).unwrap();
    let golden = read_f32_map(Path::new(&format!("{REF}/tpu-mlir/yolov3_top_outputs.npz"))).unwrap();
    assert_eq!(ours.len(), golden.len());
    for (name, g) in &golden {
        let (_, a) = ours.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!(a.shape(), g.shape(), "{name}");
        let c = cosine_similarity(a.as_slice().unwrap(), g.as_slice().unwrap());
        assert!(c > 0.999999, "{name}: cosine {c}");
    }
    // an image input is preprocessed with the top.Input attributes (letterbox, /255)
    let img = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/images/COCO2017/000000124798.jpg");
    let out_img = dir.join("img.npz");
    let o = run(
        env!("CARGO_BIN_EXE_model_runner"),
        &["--model", mlir.to_str().unwrap(), "--input", img, "--output", out_img.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let outs = read_f32_map(&out_img).unwrap();
    let names: Vec<&str> = outs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["convolution_output1_Conv", "convolution_output_Conv"]);
    for (name, a) in &outs {
        let (_, g) = golden.iter().find(|(n, _)| n == name).unwrap();
        let c = cosine_similarity(a.as_slice().unwrap(), g.as_slice().unwrap());
        assert!(c > 0.999999, "{name}: cosine {c}");
    }
    // the tool agrees
    let o = npz_tool(&["compare", out.to_str().unwrap(), &format!("{REF}/tpu-mlir/yolov3_top_outputs.npz")]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn model_runner_runs_a_bmodel_like_the_runtime() {
    use compiler::ir::weights::TensorData;
    let dir = tmp_dir("runner_bmodel");
    let bmodel = concat!(env!("CARGO_MANIFEST_DIR"), "/../firmware-examples/assets/tnet.bmodel");
    let res = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/reference/tpu-mlir-vectors/res.npz");
    let x = compiler::npz::read_f32_map(std::path::Path::new(res))
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "x")
        .map(|(_, a)| a)
        .unwrap();
    let input = dir.join("in.npz");
    compiler::npz::write_npz(&input, &[("input".to_string(), TensorData::F32(x.clone()))]).unwrap();
    let out = dir.join("out.npz");
    let o = run(
        env!("CARGO_BIN_EXE_model_runner"),
        &["--model", bmodel, "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let got = compiler::npz::read_f32_map(&out).unwrap();
    let bytes = std::fs::read(bmodel).unwrap();
    let flat: Vec<f32> = x.iter().copied().collect();
    let want = runtime::host::run_f32(&bytes, &[&flat]).unwrap();
    assert_eq!(got.len(), want.len());
    for ((name, a), w) in got.iter().zip(&want) {
        assert_eq!(name, &w.name);
        assert_eq!(a.shape(), w.dims.as_slice());
        let same = a.iter().zip(&w.values).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{name}: model_runner's output differs from the runtime's");
    }
}
