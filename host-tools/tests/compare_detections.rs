//! The `compare_detections` binary on the bundled tiny-yolov3 and COCO photos: a model compared
//! with itself agrees perfectly, the photo selection follows --skip / --input_num, and bad input
//! exits with a clear error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ASSETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets");

fn asset(rel: &str) -> PathBuf {
    Path::new(ASSETS).join(rel)
}

fn compare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_compare_detections")).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A data list of the given COCO photos in a fresh directory.
fn data_list(name: &str, photos: &[&str]) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("compare-det-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("list.txt");
    let lines: Vec<String> =
        photos.iter().map(|p| asset(&format!("images/COCO2017/{p}")).display().to_string()).collect();
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    (dir, list)
}

#[test]
fn the_float_model_agrees_with_itself_and_the_walkthrough_photo_has_five_detections() {
    let (dir, list) = data_list("self", &["000000124798.jpg", "000000366711.jpg"]);
    let onnx = asset("models/tiny-yolov3-11.onnx");
    let (onnx, list_s) = (onnx.to_str().unwrap(), list.to_str().unwrap());
    // --input_num 1 keeps the walkthrough photo alone: its 4 cars and the bus.
    let o = compare(&["--reference", onnx, "--data_list", list_s, "--input_num", "1", onnx]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains(" on 1 photos "), "{out}");
    let row = out.lines().last().unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[1..], &["5", "0", "0", "0.00", "0.00"], "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn photo_selection_and_bad_input_give_clear_errors() {
    let (dir, list) = data_list("bad", &["000000124798.jpg"]);
    let onnx = asset("models/tiny-yolov3-11.onnx");
    let (onnx, list_s) = (onnx.to_str().unwrap(), list.to_str().unwrap());

    let o = compare(&["--reference", onnx, "--data_list", list_s, "--skip", "1", onnx]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("no photo left: 1 in the dataset, --skip 1"), "{}", text(&o.stderr));

    let o = compare(&["--reference", onnx, onnx]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("give exactly one of --dataset DIR and --data_list FILE"));

    let garbage = dir.join("x.bmodel");
    std::fs::write(&garbage, b"not a bmodel").unwrap();
    let o = compare(&["--reference", onnx, "--data_list", list_s, garbage.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(e.contains(&format!("{}: not a valid bmodel", garbage.display())), "{e}");

    let npz_dir = dir.join("npz");
    std::fs::create_dir_all(&npz_dir).unwrap();
    std::fs::copy(asset("reference/tiny-yolov3/yolov3_tiny_in_f32.npz"), npz_dir.join("a.npz")).unwrap();
    let o = compare(&["--reference", onnx, "--dataset", npz_dir.to_str().unwrap(), onnx]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("the samples are not photos"), "{}", text(&o.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}
