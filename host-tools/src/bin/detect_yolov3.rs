//! detect_yolov3: tpu-mlir's tiny-yolov3 sample. Preprocesses an image as the sample does
//! (PIL bicubic letterbox), runs the model (.onnx cut at the two YOLO heads, or a top .mlir),
//! decodes and prints one `class:score%` line per detection, and writes the annotated picture.

use anyhow::{bail, Context, Result};
use clap::Parser;
use compiler::interp::Interpreter;
use compiler::ir::weights::Weights;
use compiler::ir::Module;
use compiler::preprocess::{read_image, ReadMode};
use compiler::yolo::{self, Params, Postprocess};
use std::path::{Path, PathBuf};

/// Command line (names as the tpu-mlir sample; `--*_thres` spellings accepted too).
#[derive(Parser, Debug)]
#[command(name = "detect_yolov3", about = "Run tiny-yolov3 on one image and draw the detections")]
struct Args {
    /// model: .onnx (cut at convolution_output1,convolution_output) or top-level .mlir
    #[arg(long)]
    model: PathBuf,
    /// input image (jpg/png)
    #[arg(long)]
    input: PathBuf,
    /// output picture (jpg/png), written atomically
    #[arg(long)]
    output: PathBuf,
    /// net input h,w
    #[arg(long = "net_input_dims", default_value = "416,416")]
    net_input_dims: String,
    /// confidence threshold (accepted, unused by the sample's NMS)
    #[arg(long = "conf_thresh", alias = "conf_thres", default_value_t = 0.001)]
    conf_thresh: f64,
    /// NMS IoU threshold
    #[arg(long = "nms_thresh", alias = "iou_thres", default_value_t = 0.5)]
    nms_thresh: f64,
    /// minimum score of a printed detection
    #[arg(long = "score_thresh", alias = "score_thres", default_value_t = 0.56)]
    score_thresh: f64,
}

/// Names of the two YOLO heads in tiny-yolov3-11.onnx (13x13 first, then 26x26).
const HEAD_NAMES: [&str; 2] = ["convolution_output1", "convolution_output"];

fn parse_dims(s: &str) -> Result<(usize, usize)> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--net_input_dims '{s}': expected h,w"))?;
    match v.as_slice() {
        &[h, w] if h > 0 && w > 0 => Ok((h, w)),
        _ => bail!("--net_input_dims '{s}': expected two positive numbers h,w"),
    }
}

/// Load the model as a top-level module with its weights, and the post-processing the sample
/// applies to it.
fn load_model(path: &Path, net: (usize, usize)) -> Result<(Module, Weights, Postprocess)> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "onnx" => {
            let opts = compiler::onnx::ImportOptions {
                model_name: "yolov3_tiny".into(),
                input_shapes: Some(vec![vec![1, 3, net.0, net.1]]),
                output_names: HEAD_NAMES.iter().map(|s| s.to_string()).collect(),
                preprocess: None,
            };
            let (m, w) =
                compiler::onnx::import(path, &opts).with_context(|| format!("{}: ONNX import", path.display()))?;
            Ok((m, w, Postprocess::OnnxTail))
        }
        "mlir" => {
            let (m, weights) = compiler::model_file::load_model(path)?;
            Ok((m, weights, Postprocess::Sample))
        }
        _ => bail!("{}: unsupported model type (expected .onnx, .mlir or .bmodel)", path.display()),
    }
}

/// Run a bmodel on the no_std runtime (host arena) and return its outputs as f32 arrays.
fn run_bmodel(path: &Path, input: &ndarray::ArrayD<f32>) -> Result<Vec<ndarray::ArrayD<f32>>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let data: Vec<f32> = input.iter().copied().collect();
    let outs = runtime::host::run_f32(&bytes, &[&data]).map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
    outs.into_iter()
        .map(|o| {
            ndarray::ArrayD::from_shape_vec(o.dims.clone(), o.values)
                .with_context(|| format!("{}: output {} has an inconsistent shape", path.display(), o.name))
        })
        .collect()
}

/// Write `img` to `path` atomically (encoded in memory, then [`compiler::atomic_file::write`]).
fn write_atomically(img: &image::RgbImage, path: &Path) -> Result<()> {
    let format = image::ImageFormat::from_path(path)
        .with_context(|| format!("{}: cannot tell the picture format from the extension", path.display()))?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, format).with_context(|| format!("{}: cannot encode the picture", path.display()))?;
    compiler::atomic_file::write(path, bytes.get_ref())
        .with_context(|| format!("{}: cannot write picture", path.display()))
}

fn run(args: &Args) -> Result<()> {
    let (net_h, net_w) = parse_dims(&args.net_input_dims)?;
    let rgb = read_image(&args.input, ReadMode::Rgb)?;
    let input = yolo::preprocess_yolo(&rgb, net_h, net_w);
    let ext = args.model.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let (heads, postprocess) = if ext == "bmodel" {
        (run_bmodel(&args.model, &input)?, Postprocess::Sample)
    } else {
        let (module, weights, postprocess) = load_model(&args.model, (net_h, net_w))?;
        let interp = Interpreter::new(&module, &weights)?;
        let heads = interp.run(&[input]).with_context(|| format!("{}: inference", args.model.display()))?;
        (heads, postprocess)
    };
    let params = Params {
        net_h,
        net_w,
        score_thresh: args.score_thresh,
        nms_thresh: args.nms_thresh,
        conf_thresh: args.conf_thresh,
        postprocess,
        ..Params::default()
    };
    let detections = yolo::decode(&heads, rgb.width, rgb.height, &params)
        .with_context(|| format!("{}: model outputs are not tiny-yolov3 heads", args.model.display()))?;
    if detections.is_empty() {
        println!("No object was detected");
    }
    for d in &detections {
        println!("{}", d.label());
    }
    let mut picture = image::RgbImage::from_raw(rgb.width as u32, rgb.height as u32, rgb.data)
        .context("decoded image has an inconsistent size")?;
    yolo::draw(&mut picture, &detections);
    write_atomically(&picture, &args.output)
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("detect_yolov3: error: {e:#}");
        std::process::exit(1);
    }
}
