//! detect_yolov3: tpu-mlir's tiny-yolov3 sample. Preprocesses an image as the sample does
//! (PIL bicubic letterbox), runs the model (.onnx cut at the two YOLO heads, or a top .mlir),
//! decodes and prints one `class:score%` line per detection, and writes the annotated picture.

use anyhow::{bail, Context, Result};
use clap::Parser;
use compiler::yolo;
use host_tools::yolo_model::{read_photo, DetectOptions, YoloModel};
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
    let net = parse_dims(&args.net_input_dims)?;
    let rgb = read_photo(&args.input)?;
    let model = YoloModel::load(&args.model, net)?;
    let opts = DetectOptions {
        net,
        score_thresh: args.score_thresh,
        nms_thresh: args.nms_thresh,
        conf_thresh: args.conf_thresh,
    };
    let detections = model.runner()?.detect(&rgb, &opts)?;
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
    host_tools::memory::keep_freed_memory();
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("detect_yolov3: error: {e:#}");
        std::process::exit(1);
    }
}
