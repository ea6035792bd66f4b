//! The `detect_yolov3` binary end to end on the bundled tiny-yolov3 and COCO photos: printed
//! detections (the reference prints of tpu-mlir's sample), the drawn picture, error exits.

use compiler::model_file::save_model;
use compiler::onnx::ImportOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ASSETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets");

fn asset(rel: &str) -> PathBuf {
    Path::new(ASSETS).join(rel)
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("detect-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn detect(model: &Path, input: &Path, output: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_detect_yolov3"))
        .args(["--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()])
        .args(["--output", output.to_str().unwrap()])
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Box colour of a class as the sample draws it: palette x 255 read as B, G, R.
fn rgb_of(palette: [f32; 3]) -> [u8; 3] {
    let v = |x: f32| (x * 255.0) as u8;
    [v(palette[2]), v(palette[1]), v(palette[0])]
}

#[test]
fn onnx_detects_the_reference_objects_and_draws_them() {
    let dir = scratch("onnx");
    let out = dir.join("out.png");
    let o = detect(&asset("models/tiny-yolov3-11.onnx"), &asset("images/COCO2017/000000124798.jpg"), &out);
    assert!(o.status.success(), "{}", stderr(&o));
    // tpu-mlir's documented print for the ONNX model on this photo, in its order
    assert_eq!(stdout(&o), "car:81.7%\ncar:72.6%\ncar:71.1%\ncar:66.0%\nbus:69.5%\n");
    let img = image::open(&out).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (640, 427));
    // bus box: corners (154, 259)-(397, 352) after truncation; bottom edge and left edge
    let bus = rgb_of([0.301, 0.745, 0.933]);
    assert_eq!(img.get_pixel(300, 352).0, bus);
    assert_eq!(img.get_pixel(154, 330).0, bus);
    // far from every box the photo is unchanged
    let photo = image::open(asset("images/COCO2017/000000124798.jpg")).unwrap().to_rgb8();
    for (x, y) in [(300, 100), (20, 20), (600, 30), (300, 400)] {
        let (a, b) = (img.get_pixel(x, y).0, photo.get_pixel(x, y).0);
        let d = a.iter().zip(b.iter()).map(|(&p, &q)| (p as i32 - q as i32).abs()).max().unwrap();
        assert!(d <= 3, "pixel ({x},{y}) changed: {a:?} vs {b:?}");
        assert_ne!(a, bus);
    }
    // no temporary file left behind
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn onnx_second_reference_photo() {
    let dir = scratch("onnx2");
    let o =
        detect(&asset("models/tiny-yolov3-11.onnx"), &asset("images/COCO2017/000000366711.jpg"), &dir.join("o.jpg"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "person:60.7%\norange:77.5%\n");
    assert!(dir.join("o.jpg").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mlir_uses_the_samples_own_postprocess() {
    let dir = scratch("mlir");
    let opts = ImportOptions {
        model_name: "yolov3_tiny".into(),
        input_shapes: Some(vec![vec![1, 3, 416, 416]]),
        output_names: vec!["convolution_output1".into(), "convolution_output".into()],
        preprocess: None,
    };
    let (mut m, w) = compiler::onnx::import(&asset("models/tiny-yolov3-11.onnx"), &opts).unwrap();
    let mlir = dir.join("yolov3_tiny.mlir");
    save_model(&mlir, &mut m, &w, "yolov3_tiny_top_f32_all_weight.npz").unwrap();
    let o = detect(&mlir, &asset("images/COCO2017/000000124798.jpg"), &dir.join("o.jpg"));
    assert!(o.status.success(), "{}", stderr(&o));
    // detect_yolov3.py's postprocess (numpy re-run on ONNX Runtime heads of the same input):
    // its quirky NMS drops the 71.1% car that the model's own NMS keeps
    assert_eq!(stdout(&o), "car:81.7%\ncar:72.6%\ncar:66.0%\nbus:69.5%\n");

    // a model with one head only is rejected with a clear message
    let opts1 = ImportOptions { output_names: vec!["convolution_output1".into()], ..opts };
    let (mut m1, w1) = compiler::onnx::import(&asset("models/tiny-yolov3-11.onnx"), &opts1).unwrap();
    let mlir1 = dir.join("one_head.mlir");
    save_model(&mlir1, &mut m1, &w1, "one_head_weight.npz").unwrap();
    let o = detect(&mlir1, &asset("images/COCO2017/000000124798.jpg"), &dir.join("o1.jpg"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("model outputs are not tiny-yolov3 heads: expected 2 YOLO heads (model outputs), got 1"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("o1.jpg").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_fail_clearly() {
    let dir = scratch("bad");
    let not_image = dir.join("notes.jpg");
    std::fs::write(&not_image, b"hello").unwrap();
    let o = detect(&asset("models/tiny-yolov3-11.onnx"), &not_image, &dir.join("o.jpg"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&format!("{}: cannot read image", not_image.display())), "{}", stderr(&o));

    let garbage = dir.join("model.bmodel");
    std::fs::write(&garbage, b"not a bmodel").unwrap();
    let o = detect(&garbage, &asset("images/COCO2017/000000124798.jpg"), &dir.join("o.jpg"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&garbage.display().to_string()), "{}", stderr(&o));

    let txt = dir.join("model.txt");
    std::fs::write(&txt, b"x").unwrap();
    let o = detect(&txt, &asset("images/COCO2017/000000124798.jpg"), &dir.join("o.jpg"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unsupported model type"), "{}", stderr(&o));
    assert!(!dir.join("o.jpg").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nothing_above_the_score_threshold() {
    let dir = scratch("none");
    let out = dir.join("o.png");
    let o = Command::new(env!("CARGO_BIN_EXE_detect_yolov3"))
        .args(["--model", asset("models/tiny-yolov3-11.onnx").to_str().unwrap()])
        .args(["--input", asset("images/COCO2017/000000124798.jpg").to_str().unwrap()])
        .args([
            "--output",
            out.to_str().unwrap(),
            "--score_thresh",
            "0.9",
            "--nms_thresh",
            "0.5",
            "--conf_thresh",
            "0.001",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "No object was detected\n");
    // the picture is the photo, undrawn
    let img = image::open(&out).unwrap().to_rgb8();
    let photo = compiler::preprocess::read_image(
        &asset("images/COCO2017/000000124798.jpg"),
        compiler::preprocess::ReadMode::Rgb,
    )
    .unwrap();
    assert_eq!(img.into_raw(), photo.data);
    std::fs::remove_dir_all(&dir).unwrap();
}
