//! Tests of the sample's preprocessing and of the tiny-yolov3 decode on the bundled ONNX
//! Runtime heads. Expected numbers: a numpy re-run of detect_yolov3.py's `postprocess`
//! (numpy 1.26) and ONNX Runtime 1.16.3 running the model's own decode + NMS tail.

use super::*;
use crate::preprocess::{read_image, ReadMode};
use ndarray::IxDyn;
use ndarray_npy::NpzReader;
use std::path::PathBuf;

fn asset(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/")).join(rel)
}

fn ort_heads() -> Vec<ArrayD<f32>> {
    let f = std::fs::File::open(asset("reference/tiny-yolov3/ort_outputs.npz")).unwrap();
    let mut r = NpzReader::new(f).unwrap();
    ["convolution_output1", "convolution_output"]
        .iter()
        .map(|n| r.by_name::<ndarray::OwnedRepr<f32>, IxDyn>(n).unwrap())
        .collect()
}

fn check(got: &[Detection], expected: &[(&str, f64, [f64; 4])], score_tol: f64, box_tol: f64) {
    let labels: Vec<String> = got.iter().map(|d| d.label()).collect();
    let want: Vec<&str> = expected.iter().map(|e| e.0).collect();
    assert_eq!(labels, want);
    for (d, (_, score, b)) in got.iter().zip(expected) {
        assert!((d.score - score).abs() <= score_tol, "{d:?} vs {score}");
        for (v, w) in [d.x0, d.y0, d.x1, d.y1].iter().zip(b) {
            assert!((v - w).abs() <= box_tol, "{d:?} vs {b:?}");
        }
    }
}

#[test]
fn sample_postprocess_on_ort_heads() {
    let got = decode(&ort_heads(), 640, 427, &Params::default()).unwrap();
    check(
        &got,
        &[
            (
                "car:77.2%",
                0.7720503551834846,
                [575.1099497235609, 310.0725545425482, 641.9041217904696, 426.21901057661165],
            ),
            (
                "car:66.5%",
                0.6654452653867952,
                [10.8847047024594, 287.93816716328195, 150.36461107805096, 364.2694680256834],
            ),
            (
                "car:66.4%",
                0.6637449746919001,
                [411.1741939632646, 299.38838219013917, 467.7887122205525, 356.7180035334431],
            ),
            (
                "bus:72.7%",
                0.7267086658922081,
                [154.089524520534, 252.03442784086403, 396.94690461726293, 351.1890156392742],
            ),
        ],
        1e-9,
        1e-6,
    );
}

#[test]
fn onnx_tail_postprocess_on_ort_heads() {
    let p = Params { postprocess: Postprocess::OnnxTail, ..Params::default() };
    let got = decode(&ort_heads(), 640, 427, &p).unwrap();
    check(
        &got,
        &[
            (
                "car:77.2%",
                0.7720504999160767,
                [575.1099243164062, 310.0725402832031, 641.9041748046875, 426.2190246582031],
            ),
            (
                "car:73.9%",
                0.7391044497489929,
                [550.1759033203125, 311.8146057128906, 594.7435302734375, 341.9971618652344],
            ),
            (
                "car:66.5%",
                0.6654452681541443,
                [10.88470458984375, 287.93817138671875, 150.36460876464844, 364.26947021484375],
            ),
            (
                "car:66.4%",
                0.6637448072433472,
                [411.1741638183594, 299.38836669921875, 467.7886962890625, 356.71795654296875],
            ),
            (
                "bus:72.7%",
                0.7267086505889893,
                [154.08950805664062, 252.03443908691406, 396.9468994140625, 351.1889953613281],
            ),
        ],
        2e-6,
        1e-3,
    );
}

#[test]
fn score_threshold_and_no_detection() {
    let p = Params { score_thresh: 0.7, ..Params::default() };
    let got = decode(&ort_heads(), 640, 427, &p).unwrap();
    assert_eq!(got.iter().map(|d| d.label()).collect::<Vec<_>>(), vec!["car:77.2%", "bus:72.7%"]);
    let p = Params { score_thresh: 0.99, ..Params::default() };
    assert!(decode(&ort_heads(), 640, 427, &p).unwrap().is_empty());
}

#[test]
fn bad_heads_are_rejected() {
    let heads = ort_heads();
    let e = decode(&heads[..1], 640, 427, &Params::default()).unwrap_err().to_string();
    assert_eq!(e, "expected 2 YOLO heads (model outputs), got 1");
    let wrong = vec![heads[0].clone(), ArrayD::zeros(IxDyn(&[1, 85, 26, 26]))];
    let e = decode(&wrong, 640, 427, &Params::default()).unwrap_err().to_string();
    assert_eq!(e, "YOLO head 1 has shape [1, 85, 26, 26]; expected [1, 255, H, W]");
}

#[test]
fn sample_preprocessing_equals_pil() {
    let rgb = read_image(&asset("images/COCO2017/000000124798.jpg"), ReadMode::Rgb).unwrap();
    let x = preprocess_yolo(&rgb, 416, 416);
    assert_eq!(x.shape(), &[1, 3, 416, 416]);
    // checksums of PIL's letterboxed uint8 image (Pillow 13, BICUBIC) on the same photo
    let codes: Vec<u64> = x.iter().map(|&v| (v * 255.0).round() as u64).collect();
    let sum: u64 = codes.iter().sum();
    let weighted = codes.iter().enumerate().fold(0u64, |acc, (i, &v)| (acc + ((i as u64 % 65521) + 1) * v) % (1 << 61));
    assert_eq!((sum, weighted), (58990998, 1923383372385));
    // values exactly as numpy's float32 `/ 255.`
    assert_eq!(x[[0, 0, 200, 300]], 80.0f32 / 255.0);
    assert_eq!(x[[0, 0, 200, 300]] as f64, 0.3137255012989044);
    assert_eq!(x[[0, 2, 69, 0]] as f64, 0.7568627595901489);
    assert_eq!(x[[0, 1, 68, 0]], 128.0 / 255.0);
}
