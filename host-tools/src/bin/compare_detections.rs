//! compare_detections: how closely quantized tiny-yolov3 models agree with the float model over a
//! whole folder of photos, not one. The walkthrough judges INT8 and the mixed model by the lines
//! printed for a single photo, where a score moves by whole quantization steps; this tool runs the
//! reference and every model on each photo and reports the mean score distance per photo.

use anyhow::{bail, Context, Result};
use clap::Parser;
use compiler::calibration::{read_data_list, select_dataset, Dataset, SampleKind};
use compiler::yolo::agreement::{compare, AgreementSummary};
use host_tools::yolo_model::{read_photo, DetectOptions, YoloModel};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Compare the detections of tiny-yolov3 models (.bmodel, .mlir, .onnx) with a reference model's
/// over a folder of photos. Per photo, each reference detection is matched to the same-class
/// detection that overlaps it most (IoU >= --iou_thresh); a matched pair costs the score
/// difference, a missed or an extra detection its whole score (percent points). The table gives
/// the mean cost per photo: the smaller, the closer to the reference.
#[derive(Parser, Debug)]
#[command(name = "compare_detections", version)]
struct Args {
    /// The models to judge (.bmodel, .mlir or .onnx).
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// The reference model, usually the float .onnx.
    #[arg(long)]
    reference: PathBuf,
    /// Folder of photos, taken in run_calibration/run_qtable's order (sorted, then tpu-mlir's
    /// seeded shuffle), so that --skip leaves out the photos a search used.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// A file listing one photo per line (instead of --dataset).
    #[arg(long = "data_list")]
    data_list: Option<PathBuf>,
    /// Leave out the first N photos (run_qtable searches on the first --input_num, 10 by default).
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Use at most N photos after the skipped ones (0 = all).
    #[arg(long = "input_num", default_value_t = 0)]
    input_num: usize,
    /// Minimum overlap of a matched pair.
    #[arg(long = "iou_thresh", default_value_t = 0.5)]
    iou_thresh: f64,
    /// Minimum score of a detection (as detect_yolov3).
    #[arg(long = "score_thresh", default_value_t = 0.56)]
    score_thresh: f64,
    /// NMS IoU threshold (as detect_yolov3).
    #[arg(long = "nms_thresh", default_value_t = 0.5)]
    nms_thresh: f64,
}

/// The photos to compare on, after --skip and --input_num.
fn photos(args: &Args) -> Result<Vec<PathBuf>> {
    let ds: Dataset = match (&args.dataset, &args.data_list) {
        (Some(d), None) => select_dataset(d, 0)?,
        (None, Some(l)) => read_data_list(l, 0)?,
        _ => bail!("give exactly one of --dataset DIR and --data_list FILE"),
    };
    if ds.kind != SampleKind::Image {
        bail!("the samples are not photos (jpg/png): compare_detections needs images to draw boxes on");
    }
    let total = ds.samples.len();
    let mut list: Vec<PathBuf> = ds.samples.into_iter().skip(args.skip).filter_map(|s| s.into_iter().next()).collect();
    if args.input_num > 0 {
        list.truncate(args.input_num);
    }
    if list.is_empty() {
        bail!("no photo left: {total} in the dataset, --skip {}", args.skip);
    }
    Ok(list)
}

fn run(args: &Args) -> Result<()> {
    let list = photos(args)?;
    let opts =
        DetectOptions { score_thresh: args.score_thresh, nms_thresh: args.nms_thresh, ..DetectOptions::default() };
    let reference_model = YoloModel::load(&args.reference, opts.net)?;
    let loaded: Vec<YoloModel> = args.models.iter().map(|p| YoloModel::load(p, opts.net)).collect::<Result<_>>()?;
    // Prepared once, shared by the threads that run the photos.
    let reference = reference_model.runner()?;
    let models = loaded.iter().map(YoloModel::runner).collect::<Result<Vec<_>>>()?;
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(list.len() as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} photos  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    // One row of per-model agreements per photo, photos in parallel.
    let rows: Vec<Vec<compiler::yolo::agreement::ImageAgreement>> = list
        .par_iter()
        .map(|photo| {
            let rgb = read_photo(photo)?;
            let base = reference.detect(&rgb, &opts).with_context(|| format!("{}", photo.display()))?;
            let row = models
                .iter()
                .map(|m| {
                    let d = m.detect(&rgb, &opts).with_context(|| format!("{}", photo.display()))?;
                    Ok(compare(&base, &d, args.iou_thresh))
                })
                .collect::<Result<Vec<_>>>();
            bar.inc(1);
            row
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();

    let name_w = args.models.iter().map(|p| p.display().to_string().len()).max().unwrap_or(5).max(5);
    println!(
        "reference {} on {} photos (IoU >= {}, score >= {})",
        args.reference.display(),
        list.len(),
        args.iou_thresh,
        args.score_thresh
    );
    println!(
        "{:<name_w$}  {:>8}  {:>6}  {:>6}  {:>15}  {:>14}",
        "model", "matched", "missed", "extra", "|d score| match", "points/photo"
    );
    for (i, path) in args.models.iter().enumerate() {
        let mut s = AgreementSummary::default();
        for row in &rows {
            s.add(&row[i]);
        }
        println!(
            "{:<name_w$}  {:>8}  {:>6}  {:>6}  {:>15.2}  {:>14.2}",
            path.display(),
            s.total.matched,
            s.total.missed,
            s.total.extra,
            s.mean_matched_difference(),
            s.mean_distance()
        );
    }
    Ok(())
}

fn main() {
    host_tools::memory::keep_freed_memory();
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("compare_detections: error: {e:#}");
        std::process::exit(1);
    }
}
