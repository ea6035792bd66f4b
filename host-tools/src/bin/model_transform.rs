//! `model_transform`: ONNX model -> top-level MLIR (`<mlir>`) and its weights
//! (`<model_name>_top_f32_all_weight.npz` next to it), with tpu-mlir's flags. With `--test_input`
//! the top IR is run on the input and checked against an unsimplified import of the same graph.

use anyhow::{bail, Context, Result};
use clap::Parser;
use compiler::onnx::transform::{parse_input_shapes, run, TransformConfig};
use compiler::preprocess::{ChannelFormat, PadType, PixelFormat, PreprocessConfig};
use std::path::PathBuf;

/// Convert an ONNX model into a top-level MLIR module plus its f32 weight npz.
#[derive(Parser, Debug)]
#[command(name = "model_transform", version, rename_all = "snake_case")]
struct Args {
    /// Name of the model: the MLIR module name and the prefix of the generated files
    /// (`<model_name>_top_f32_all_weight.npz` is lower-cased, `<model_name>_in_f32.npz` is not).
    #[arg(long)]
    model_name: String,
    /// The ONNX model file to convert.
    #[arg(long)]
    model_def: PathBuf,
    /// Shapes of the model inputs as a Python-style list, e.g. [[1,3,416,416]] or
    /// [[1,3,224,224],[1,2]]; overrides dynamic or fixed dims of the ONNX inputs.
    #[arg(long)]
    input_shapes: Option<String>,
    /// Per-channel scale applied after the mean, comma separated (e.g. 0.0039216,0.0039216,0.0039216).
    #[arg(long, default_value = "1.0,1.0,1.0", allow_hyphen_values = true)]
    scale: String,
    /// Per-channel mean subtracted before scaling, comma separated (e.g. 0,0,0; negative values
    /// need the --mean=-1,-1,-1 form or are accepted as is).
    #[arg(long, default_value = "0.0,0.0,0.0", allow_hyphen_values = true)]
    mean: String,
    /// Channel order the model expects: rgb, bgr or gray.
    #[arg(long, default_value = "bgr")]
    pixel_format: String,
    /// Layout of the model input: nchw, nhwc, or none (the input is not an image: no preprocessing).
    #[arg(long, default_value = "nchw")]
    channel_format: String,
    /// Resize keeping the aspect ratio and pad (letterbox) instead of stretching.
    #[arg(long)]
    keep_aspect_ratio: bool,
    /// Fill value of the letterbox border, in raw pixel units (before mean and scale).
    #[arg(long, default_value_t = 0)]
    pad_value: i64,
    /// Where the resized image goes in the letterbox: center or normal (top-left).
    #[arg(long, default_value = "center")]
    pad_type: String,
    /// Cut the graph at these tensors, comma separated (--output_names=a,b); the model returns
    /// them in this order and everything after them (e.g. an NMS tail) is dropped.
    #[arg(long, value_delimiter = ',')]
    output_names: Vec<String>,
    /// Output path of the top-level MLIR; the weight npz is written in the same directory.
    #[arg(long)]
    mlir: PathBuf,
    /// Test input(s), comma separated: an image (jpg/png, preprocessed as above), an .npy per
    /// input, or one .npz holding every input by name. Writes <model_name>_in_f32.npz, runs the
    /// top MLIR and compares it with an unsimplified import of the same ONNX graph.
    #[arg(long, value_delimiter = ',')]
    test_input: Vec<PathBuf>,
    /// Where to write every tensor of the top MLIR run on --test_input
    /// (default <model_name>_top_outputs.npz next to the mlir).
    #[arg(long)]
    test_result: Option<PathBuf>,
    /// Minimum cosine and euclidean similarity of the comparison, "cos,euclid".
    #[arg(long, default_value = "0.99,0.99")]
    tolerance: String,
    /// Tensor names left out of the comparison, comma separated.
    #[arg(long, value_delimiter = ',')]
    excepts: Vec<String>,
    /// Resize target "h,w" before cropping to the net input (default: the net input h,w).
    #[arg(long)]
    resize_dims: Option<String>,
}

/// Mean / scale are float32 in tpu-mlir (numpy) and printed widened to f64.
fn f32_list(flag: &str, text: &str) -> Result<Vec<f64>> {
    Ok(floats(flag, text)?.into_iter().map(|v| v as f32 as f64).collect())
}

fn floats(flag: &str, text: &str) -> Result<Vec<f64>> {
    text.split(',')
        .map(|s| s.trim().parse::<f64>().with_context(|| format!("--{flag} '{text}': '{s}' is not a number")))
        .collect()
}

fn preprocess(a: &Args) -> Result<Option<PreprocessConfig>> {
    if a.channel_format == "none" {
        return Ok(None);
    }
    let resize_dims = match &a.resize_dims {
        None => Vec::new(),
        Some(t) => {
            let v: Vec<usize> = t
                .split(',')
                .map(|s| s.trim().parse::<usize>().with_context(|| format!("--resize_dims '{t}': '{s}' is not a size")))
                .collect::<Result<_>>()?;
            if v.len() != 2 {
                bail!("--resize_dims '{t}': expected two sizes h,w");
            }
            v
        }
    };
    Ok(Some(PreprocessConfig {
        mean: f32_list("mean", &a.mean)?,
        scale: f32_list("scale", &a.scale)?,
        pixel_format: PixelFormat::parse(&a.pixel_format)?,
        channel_format: ChannelFormat::parse(&a.channel_format)?,
        keep_aspect_ratio: a.keep_aspect_ratio,
        pad_value: a.pad_value,
        pad_type: PadType::parse(&a.pad_type)?,
        resize_dims,
    }))
}

fn real_main() -> Result<()> {
    let a = Args::parse();
    let tol = floats("tolerance", &a.tolerance)?;
    if tol.len() != 2 {
        bail!("--tolerance '{}': expected two numbers cos,euclid", a.tolerance);
    }
    let cfg = TransformConfig {
        model_name: a.model_name.clone(),
        model_def: a.model_def.clone(),
        input_shapes: a.input_shapes.as_deref().map(parse_input_shapes).transpose()?,
        output_names: a.output_names.iter().filter(|s| !s.is_empty()).cloned().collect(),
        preprocess: preprocess(&a)?,
        mlir: a.mlir.clone(),
        test_input: a.test_input.clone(),
        test_result: a.test_result.clone(),
        tolerance: (tol[0], tol[1]),
        excepts: a.excepts.clone(),
    };
    let report = run(&cfg)?;
    println!("top MLIR: {} ({} ops)", report.mlir.display(), report.op_count);
    println!("weights:  {}", report.weight_file.display());
    if let Some(p) = &report.input_file {
        println!("input:    {}", p.display());
    }
    if let Some(p) = &report.test_result {
        println!("result:   {}", p.display());
    }
    if !report.comparisons.is_empty() {
        let worst = report.comparisons.iter().min_by(|x, y| x.cosine.total_cmp(&y.cosine));
        if let Some(w) = worst {
            println!(
                "compared {} tensors with the unsimplified import: all within {},{} (lowest cosine {:.6} at {})",
                report.comparisons.len(),
                cfg.tolerance.0,
                cfg.tolerance.1,
                w.cosine,
                w.name
            );
        }
    }
    Ok(())
}

fn main() {
    host_tools::memory::keep_freed_memory();
    if let Err(e) = real_main() {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}
