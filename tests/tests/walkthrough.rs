//! The walkthrough of `mix_precision.rst`, command by command and with the document's own flags
//! (100 calibration images, the search's default 10), on the bundled tiny-yolov3:
//! model_transform -> run_calibration -> model_deploy INT8 -> run_qtable -> model_deploy mixed ->
//! detect_yolov3 with the .onnx, the INT8 bmodel and the mixed bmodel. The assertions are the
//! document's: the float model's exact detections, INT8 and mixed models that still find three
//! cars and the bus, and a mixed network at least as close to float as all-INT8 (the search's own
//! measure, over its samples). Whether the mixed model's detections are closer to float than
//! INT8's is judged over the 90 photos the search did not see (`compare_detections --skip 10`):
//! on the document's single photo the scores move by whole quantization steps, and there the
//! mixed model is not closer (nor is tpu-mlir's own table; see the note of issue 7), so that
//! per-photo distance is printed, not asserted.

use std::path::Path;
use std::process::{Command, Output};

fn run(work: &Path, tool: &str, args: &[&str]) -> Output {
    let out = Command::new(e2e_tests::tool(tool)).args(args).current_dir(work).output().expect("spawn tool");
    assert!(
        out.status.success(),
        "{tool} {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `model_deploy --quantize INT8` of the walkthrough (with the qtable when given).
fn deploy(work: &Path, qtable: Option<&str>, model: &str) {
    let mut args = vec!["--mlir", "yolov3_tiny.mlir", "--quantize", "INT8", "--calibration_table", "yolov3_cali_table"];
    if let Some(q) = qtable {
        args.extend(["--quantize_table", q]);
    }
    args.extend(["--chip", "bm1684x", "--model", model]);
    run(work, "model_deploy", &args);
}

/// `class:score%` lines -> (class, score).
fn detections(out: &Output) -> Vec<(String, f64)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (c, s) = l.trim().split_once(':')?;
            let v = s.strip_suffix('%')?.parse::<f64>().ok()?;
            Some((c.to_string(), v))
        })
        .collect()
}

/// Sum over the float detections of |score − closest same-class score| (a missing class counts
/// its whole score).
fn distance(float: &[(String, f64)], other: &[(String, f64)]) -> f64 {
    let mut used = vec![false; other.len()];
    let mut d = 0.0;
    for (c, s) in float {
        let best = other
            .iter()
            .enumerate()
            .filter(|(i, (oc, _))| !used[*i] && oc == c)
            .min_by(|a, b| (a.1 .1 - s).abs().total_cmp(&(b.1 .1 - s).abs()));
        match best {
            Some((i, (_, os))) => {
                used[i] = true;
                d += (os - s).abs();
            }
            None => d += s,
        }
    }
    d
}

#[test]
fn walkthrough_on_tiny_yolov3() {
    let work = std::env::temp_dir().join(format!("walkthrough-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let r = e2e_tests::root();
    let model = r.join("assets/models/tiny-yolov3-11.onnx");
    let data = r.join("assets/images/COCO2017");
    let img = data.join("000000124798.jpg");
    let (model, data, img) = (model.to_str().unwrap(), data.to_str().unwrap(), img.to_str().unwrap());

    let mut transform_args = e2e_tests::YOLO_FLAGS.to_vec();
    transform_args.extend(["--model_def", model, "--mlir", "yolov3_tiny.mlir"]);
    run(&work, "model_transform", &transform_args);
    assert!(work.join("yolov3_tiny.mlir").exists());
    assert!(work.join("yolov3_tiny_top_f32_all_weight.npz").exists());

    run(
        &work,
        "run_calibration",
        &["yolov3_tiny.mlir", "--dataset", data, "--input_num", "100", "-o", "yolov3_cali_table"],
    );
    let table = std::fs::read_to_string(work.join("yolov3_cali_table")).unwrap();
    assert!(table.contains("\nconv2d_1_Conv "), "the table names tpu-mlir's layers");

    deploy(&work, None, "yolov3_int8.bmodel");
    assert!(work.join("yolov3_int8.bmodel").exists());

    let qtable_out = run(
        &work,
        "run_qtable",
        &[
            "yolov3_tiny.mlir",
            "--dataset",
            data,
            "--calibration_table",
            "yolov3_cali_table",
            "--min_layer_cos",
            "0.999",
            "--expected_cos",
            "0.9999",
            "--chip",
            "bm1684x",
            "-o",
            "yolov3_qtable",
        ],
    );
    let qtable = std::fs::read_to_string(work.join("yolov3_qtable")).unwrap();
    assert!(qtable.contains("# op_name   quantize_mode\n"));
    let float_layers: Vec<&str> = qtable.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert!(!float_layers.is_empty(), "the search sets some layers to float:\n{qtable}");
    assert!(float_layers.iter().all(|l| l.ends_with(" F32")), "bm1684x mixes in F32:\n{qtable}");
    let loss = std::fs::read_to_string(work.join("full_loss_table.txt")).unwrap();
    assert!(loss.contains("# chip: bm1684x  mix_mode: F32\n###\nNo.0   : Layer: "));

    deploy(&work, Some("yolov3_qtable"), "yolov3_mix.bmodel");
    assert!(work.join("yolov3_mix.bmodel").exists());

    let onnx = run(&work, "detect_yolov3", &["--model", model, "--input", img, "--output", "yolov3_onnx.jpg"]);
    let int8 =
        run(&work, "detect_yolov3", &["--model", "yolov3_int8.bmodel", "--input", img, "--output", "yolov3_int8.jpg"]);
    let mix =
        run(&work, "detect_yolov3", &["--model", "yolov3_mix.bmodel", "--input", img, "--output", "yolov3_mix.jpg"]);
    for pic in ["yolov3_onnx.jpg", "yolov3_int8.jpg", "yolov3_mix.jpg"] {
        assert!(work.join(pic).exists(), "{pic} written");
    }

    let f = detections(&onnx);
    let expected: Vec<(String, f64)> = [("car", 81.7), ("car", 72.6), ("car", 71.1), ("car", 66.0), ("bus", 69.5)]
        .iter()
        .map(|(c, s)| (c.to_string(), *s))
        .collect();
    assert_eq!(f, expected, "the float model prints the walkthrough's lines");
    let i8 = detections(&int8);
    assert!(i8.iter().filter(|(c, _)| c == "car").count() >= 3, "INT8 finds at least 3 cars: {i8:?}");
    assert!(i8.iter().any(|(c, _)| c == "bus"), "INT8 finds the bus: {i8:?}");
    let mx = detections(&mix);
    assert!(mx.iter().filter(|(c, _)| c == "car").count() >= 3, "the mixed model finds at least 3 cars: {mx:?}");
    assert!(mx.iter().any(|(c, _)| c == "bus"), "the mixed model finds the bus: {mx:?}");
    // Over the photos the search did not use, the mixed model's detections are closer to the
    // float model's than INT8's (mean points per photo, last column).
    let cmp = run(
        &work,
        "compare_detections",
        &["--reference", model, "--dataset", data, "--skip", "10", "yolov3_int8.bmodel", "yolov3_mix.bmodel"],
    );
    let cmp_text = String::from_utf8_lossy(&cmp.stdout).into_owned();
    assert!(cmp_text.contains(" on 90 photos "), "every photo but the search's 10:\n{cmp_text}");
    let points = |model: &str| -> f64 {
        let line =
            cmp_text.lines().find(|l| l.starts_with(model)).unwrap_or_else(|| panic!("no {model} in:\n{cmp_text}"));
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    let (p_int8, p_mix) = (points("yolov3_int8.bmodel"), points("yolov3_mix.bmodel"));
    assert!(p_mix <= p_int8, "mixed {p_mix} points/photo <= INT8 {p_int8}:\n{cmp_text}");
    eprintln!("{cmp_text}");
    // The search's own measure: the mixed network is at least as close to float as all-INT8.
    let cos_of = |key: &str| -> f64 {
        let text = String::from_utf8_lossy(&qtable_out.stdout).into_owned();
        let line = text.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no '{key}' in:\n{text}"));
        line[key.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let (ci, cm) = (cos_of("int8 outputs_cos:"), cos_of("mix model outputs_cos:"));
    assert!(cm >= ci, "mixed cos {cm} >= INT8 cos {ci}");
    eprintln!(
        "detections: float {f:?}\nINT8 {i8:?} ({:.1} points off)\nmixed {mx:?} ({:.1} points off)",
        distance(&f, &i8),
        distance(&f, &mx)
    );
    let _ = std::fs::remove_dir_all(&work);
}
