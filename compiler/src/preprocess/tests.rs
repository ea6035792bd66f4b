//! Tests of preprocessing against tpu-mlir's own preprocessed inputs (bundled reference npz).

use super::*;
use ndarray::IxDyn;
use ndarray_npy::NpzReader;
use std::path::PathBuf;

fn asset(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/")).join(rel)
}

fn npz_member(rel: &str, name: &str) -> ArrayD<f32> {
    let mut r = NpzReader::new(std::fs::File::open(asset(rel)).unwrap()).unwrap();
    r.by_name::<ndarray::OwnedRepr<f32>, IxDyn>(name).unwrap()
}

/// (max abs difference, number of differing elements)
fn diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> (f32, usize) {
    assert_eq!(a.shape(), b.shape());
    let mut max = 0f32;
    let mut count = 0;
    for (x, y) in a.iter().zip(b.iter()) {
        let d = (x - y).abs();
        if d > 0.0 {
            count += 1;
        }
        max = max.max(d);
    }
    (max, count)
}

/// The walkthrough's tiny-yolov3 preprocessing (scale 1/255, rgb, letterbox padded with 128).
pub(crate) fn tiny_yolov3_cfg() -> PreprocessConfig {
    PreprocessConfig {
        mean: vec![0.0; 3],
        scale: vec![0.0039216; 3],
        pixel_format: PixelFormat::Rgb,
        channel_format: ChannelFormat::Nchw,
        keep_aspect_ratio: true,
        pad_value: 128,
        pad_type: PadType::Center,
        resize_dims: vec![416, 416],
    }
}

fn yolox_cfg() -> PreprocessConfig {
    PreprocessConfig {
        mean: vec![0.0; 3],
        scale: vec![1.0; 3],
        pixel_format: PixelFormat::Bgr,
        channel_format: ChannelFormat::Nchw,
        keep_aspect_ratio: true,
        pad_value: 114,
        pad_type: PadType::Normal,
        resize_dims: vec![],
    }
}

#[test]
fn tiny_yolov3_input_matches_tpu_mlir() {
    let x =
        load_input(&asset("images/COCO2017/000000124798.jpg"), Some(&tiny_yolov3_cfg()), &[1, 3, 416, 416]).unwrap();
    let r = npz_member("reference/tiny-yolov3/yolov3_tiny_in_f32.npz", "input_1");
    let (max, count) = diff(&x, &r);
    eprintln!("tiny-yolov3 input: max abs diff {max}, {count} differing of {}", x.len());
    // bit-exact: same JPEG decode (libjpeg-turbo rules), same fixed-point bilinear resize
    assert_eq!((max, count), (0.0, 0));
}

#[test]
fn yolox_inputs_match_reference() {
    for name in ["000000124798", "000000366711"] {
        let img = asset(&format!("images/COCO2017/{name}.jpg"));
        let x = load_input(&img, Some(&yolox_cfg()), &[1, 3, 416, 416]).unwrap();
        let r = npz_member(&format!("reference/yolox_nano/yolox_nano_input_{name}.npz"), "images");
        let (max, count) = diff(&x, &r);
        eprintln!("yolox_nano input {name}: max abs diff {max}, {count} differing of {}", x.len());
        assert_eq!((max, count), (0.0, 0));
    }
}

/// (sum, position-weighted checksum, first pixel, last pixel) of a BGR image, as computed with
/// numpy on `cv2.imread` (opencv-python 5.0, libjpeg-turbo).
fn checksums(img: &ImageU8) -> (u64, u64, [u8; 3], [u8; 3]) {
    let sum = img.data.iter().map(|&v| v as u64).sum();
    let weighted =
        img.data.iter().enumerate().fold(0u64, |acc, (i, &v)| (acc + ((i as u64 % 65521) + 1) * v as u64) % (1 << 61));
    let n = img.data.len();
    (sum, weighted, [img.data[0], img.data[1], img.data[2]], [img.data[n - 3], img.data[n - 2], img.data[n - 1]])
}

#[test]
fn jpeg_decoding_equals_libjpeg_turbo_for_all_subsamplings() {
    let cases = [
        // 4:4:4 with EXIF and an Adobe marker
        ("misc/cat.jpg", (360, 480), (60033953, 1991923174169, [49, 57, 26], [158, 175, 184])),
        // vertical chroma subsampling (1h2v fancy upsampling)
        ("misc/dog.jpg", (576, 768), (169954419, 5525722991483, [50, 58, 57], [35, 39, 50])),
        // 4:2:0 (2h2v fancy upsampling)
        ("misc/parade.jpg", (709, 1024), (143594973, 4722138940658, [1, 1, 1], [1, 1, 1])),
        ("misc/stock_market.jpg", (1142, 1024), (232478338, 7588299285987, [6, 1, 2], [0, 1, 1])),
    ];
    for (rel, (h, w), expected) in cases {
        let img = read_image(&asset(&format!("images/{rel}")), ReadMode::Bgr).unwrap();
        assert_eq!((img.height, img.width), (h, w), "{rel}");
        assert_eq!(checksums(&img), expected, "{rel}");
    }
}

#[test]
fn missing_and_corrupt_images_name_the_file() {
    let cfg = tiny_yolov3_cfg();
    let missing = asset("images/no_such_image.jpg");
    let e = load_input(&missing, Some(&cfg), &[1, 3, 416, 416]).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: cannot read image:", missing.display())), "{e}");
    let dir = std::env::temp_dir().join(format!("pp-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.jpg");
    std::fs::write(&bad, [0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x43, 0x00, 1, 2, 3]).unwrap();
    let e = load_input(&bad, Some(&cfg), &[1, 3, 416, 416]).unwrap_err().to_string();
    assert_eq!(e, format!("{}: cannot read image: corrupt JPEG: truncated marker segment", bad.display()));
    let txt = dir.join("notes.png");
    std::fs::write(&txt, b"not a picture").unwrap();
    let e = load_input(&txt, Some(&cfg), &[1, 3, 416, 416]).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: cannot read image:", txt.display())), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npz_inputs_are_shape_checked_and_broadcast() {
    let rel = asset("reference/tiny-yolov3/yolov3_tiny_in_f32.npz");
    let r = npz_member("reference/tiny-yolov3/yolov3_tiny_in_f32.npz", "input_1");
    let x = load_input(&rel, None, &[1, 3, 416, 416]).unwrap();
    assert_eq!(x, r);
    // one sample repeated to a batch of 2
    let x2 = load_input_named(&rel, None, &[2, 3, 416, 416], Some("input_1")).unwrap();
    assert_eq!(x2.shape(), &[2, 3, 416, 416]);
    assert_eq!(x2.index_axis(ndarray::Axis(0), 1), r.index_axis(ndarray::Axis(0), 0));
    let e = load_input(&rel, None, &[1, 3, 320, 320]).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{}: array shape [1, 3, 416, 416] does not match the input shape [1, 3, 320, 320]", rel.display())
    );
    let e = load_input(&asset("images/COCO2017/000000124798.jpg"), None, &[1, 3, 416, 416]).unwrap_err().to_string();
    assert!(e.ends_with("the input has no preprocessing configuration (not an image input)"), "{e}");
}

#[test]
fn npy_inputs_load() {
    let dir = std::env::temp_dir().join(format!("pp-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("x.npy");
    let a = ndarray::Array::from_shape_vec((1, 2, 3), vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    ndarray_npy::write_npy(&p, &a).unwrap();
    let x = load_input(&p, None, &[1, 2, 3]).unwrap();
    assert_eq!(x.iter().copied().collect::<Vec<f32>>(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stretch_nhwc_bgr_with_mean() {
    // tiny synthetic check of the tensor layout and arithmetic: 2x2 BGR image, stretch to 4x4
    let img =
        ImageU8 { height: 2, width: 2, channels: 3, data: vec![10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120] };
    let cfg = PreprocessConfig {
        mean: vec![1.0, 2.0, 3.0],
        scale: vec![0.5, 0.25, 2.0],
        pixel_format: PixelFormat::Rgb,
        channel_format: ChannelFormat::Nhwc,
        keep_aspect_ratio: false,
        pad_value: 0,
        pad_type: PadType::Center,
        resize_dims: vec![],
    };
    let x = preprocess_image(&img, &cfg, &[1, 4, 4, 3]).unwrap();
    // top-left output pixel equals the source pixel (B 10, G 20, R 30); RGB order, (x - mean) * scale
    assert_eq!(x[[0, 0, 0, 0]], (30.0 - 1.0) * 0.5);
    assert_eq!(x[[0, 0, 0, 1]], (20.0 - 2.0) * 0.25);
    assert_eq!(x[[0, 0, 0, 2]], (10.0 - 3.0) * 2.0);
    // bottom-right: (B 100, G 110, R 120)
    assert_eq!(x[[0, 3, 3, 0]], (120.0 - 1.0) * 0.5);
}

/// The bundled photos (`assets/images/COCO2017` and `misc`, jpg), sorted.
fn bundled_photos() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["images/COCO2017", "images/misc"] {
        let Ok(rd) = std::fs::read_dir(asset(dir)) else { continue };
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        files.extend(paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "jpg")));
    }
    files
}

/// FNV-1a over the bits of a tensor's shape and values, folded into `h`.
fn tensor_digest(mut h: u64, x: &ArrayD<f32>) -> u64 {
    let shape = x.shape().iter().flat_map(|&d| (d as u64).to_le_bytes());
    let values = x.iter().flat_map(|v| v.to_bits().to_le_bytes());
    for b in shape.chain(values) {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h
}

/// Preprocessing variants covering every branch: letterbox centred / top-left, stretch, crop
/// after a larger resize, rgb / bgr / gray, nchw / nhwc, batch 2, means and scales.
fn digest_configs() -> Vec<(&'static str, PreprocessConfig, Vec<usize>)> {
    let stretch = PreprocessConfig {
        mean: vec![103.94, 116.78, 123.68],
        scale: vec![0.017, 0.017, 0.017],
        pixel_format: PixelFormat::Bgr,
        channel_format: ChannelFormat::Nhwc,
        keep_aspect_ratio: false,
        pad_value: 0,
        pad_type: PadType::Center,
        resize_dims: vec![256, 240],
    };
    let gray = PreprocessConfig {
        mean: vec![127.5],
        scale: vec![1.0 / 127.5],
        pixel_format: PixelFormat::Gray,
        keep_aspect_ratio: true,
        resize_dims: vec![],
        ..stretch.clone()
    };
    let big_rgb = PreprocessConfig { pixel_format: PixelFormat::Rgb, resize_dims: vec![700, 900], ..stretch.clone() };
    vec![
        ("tiny-yolov3", tiny_yolov3_cfg(), vec![1, 3, 416, 416]),
        ("yolox", yolox_cfg(), vec![1, 3, 416, 416]),
        ("stretch-crop-nhwc-batch2", stretch, vec![2, 224, 200, 3]),
        ("gray-letterbox-nhwc", gray, vec![1, 300, 200, 1]),
        ("upscale-rgb-nhwc", big_rgb, vec![1, 640, 800, 3]),
    ]
}

/// Digests of every bundled photo preprocessed by each of [`digest_configs`], recorded with the
/// preprocessing of commit bfdc1f4 (before the fast paths of decoding, resize and tensor fill):
/// the outputs stay bit-identical.
#[test]
fn preprocessed_photos_are_bit_identical_to_before() {
    let files = bundled_photos();
    assert!(files.len() >= 100);
    let mut got = Vec::new();
    for (name, cfg, shape) in digest_configs() {
        let mut h = 0xcbf29ce484222325u64;
        for f in &files {
            h = tensor_digest(h, &load_input(f, Some(&cfg), &shape).unwrap());
        }
        got.push(format!("{name} {h:016x}"));
    }
    let want = [
        "tiny-yolov3 112207db75d4c9f2",
        "yolox 02b78a965f0bb208",
        "stretch-crop-nhwc-batch2 4213a009badb84b1",
        "gray-letterbox-nhwc e3b9c7f6750cac2d",
        "upscale-rgb-nhwc 6bb22c9556e6d7dc",
    ];
    assert_eq!(got, want);
}

/// The channel split (AVX2 where available) against a per-sample split on random lengths.
#[test]
fn split_channels_equals_scalar() {
    let mut state = 3u64;
    for c in 1..=4 {
        for n in 0..200 {
            let data: Vec<u8> = (0..n * c)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (state >> 40) as u8
                })
                .collect();
            let want: Vec<Vec<u8>> = (0..c).map(|k| (0..n).map(|i| data[i * c + k]).collect()).collect();
            assert_eq!(split_channels(&data, c), want, "{c} channels, {n} pixels");
        }
    }
}
