//! A tiny-yolov3 model as `detect_yolov3` and `compare_detections` run it: an .onnx (our F32
//! interpreter on the graph cut at the two heads), a top-level .mlir, or a .bmodel (the no_std
//! runtime with a host arena). Loaded once, then run on many photos.

use anyhow::{bail, Context, Result};
use compiler::interp::Interpreter;
use compiler::ir::weights::Weights;
use compiler::ir::Module;
use compiler::preprocess::{read_image, ImageU8, ReadMode};
use compiler::yolo::{self, Detection, Params, Postprocess};
use std::path::{Path, PathBuf};

/// Names of the two YOLO heads in tiny-yolov3-11.onnx (13x13 first, then 26x26).
pub const HEAD_NAMES: [&str; 2] = ["convolution_output1", "convolution_output"];

/// What runs the model.
enum Engine {
    /// A top-level graph on the F32 interpreter.
    Graph(Box<(Module, Weights)>),
    /// A serialized bmodel on the runtime.
    Bmodel(Vec<u8>),
}

/// A loaded tiny-yolov3 model and the post-processing the sample applies to its outputs.
pub struct YoloModel {
    path: PathBuf,
    engine: Engine,
    postprocess: Postprocess,
}

/// Detection thresholds and the network input size.
#[derive(Debug, Clone, Copy)]
pub struct DetectOptions {
    /// Network input height and width.
    pub net: (usize, usize),
    /// Minimum score of a kept detection.
    pub score_thresh: f64,
    /// NMS IoU threshold.
    pub nms_thresh: f64,
    /// Confidence threshold (accepted, unused by the sample's NMS).
    pub conf_thresh: f64,
}

impl Default for DetectOptions {
    fn default() -> Self {
        let p = Params::default();
        DetectOptions {
            net: (416, 416),
            score_thresh: p.score_thresh,
            nms_thresh: p.nms_thresh,
            conf_thresh: p.conf_thresh,
        }
    }
}

impl YoloModel {
    /// Load `path` by its extension (.onnx, .mlir, .bmodel) for the network input `net` (h, w).
    pub fn load(path: &Path, net: (usize, usize)) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let (engine, postprocess) = match ext.as_str() {
            "onnx" => {
                let opts = compiler::onnx::ImportOptions {
                    model_name: "yolov3_tiny".into(),
                    input_shapes: Some(vec![vec![1, 3, net.0, net.1]]),
                    output_names: HEAD_NAMES.iter().map(|s| s.to_string()).collect(),
                    preprocess: None,
                };
                let (m, w) =
                    compiler::onnx::import(path, &opts).with_context(|| format!("{}: ONNX import", path.display()))?;
                (Engine::Graph(Box::new((m, w))), Postprocess::OnnxTail)
            }
            "mlir" => {
                let (m, w) = compiler::model_file::load_model(path)?;
                (Engine::Graph(Box::new((m, w))), Postprocess::Sample)
            }
            "bmodel" => {
                let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
                runtime::arena_size(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: not a valid bmodel: {e:?}", path.display()))?;
                (Engine::Bmodel(bytes), Postprocess::Sample)
            }
            _ => bail!("{}: unsupported model type (expected .onnx, .mlir or .bmodel)", path.display()),
        };
        Ok(YoloModel { path: path.to_path_buf(), engine, postprocess })
    }

    /// The file the model came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Prepare the model for running: the interpreter (with its packed filters) is built here,
    /// once, not for every photo.
    pub fn runner(&self) -> Result<YoloRunner<'_>> {
        let engine = match &self.engine {
            Engine::Graph(g) => RunEngine::Graph(Interpreter::new(&g.0, &g.1)?),
            Engine::Bmodel(bytes) => RunEngine::Bmodel(bytes),
        };
        Ok(YoloRunner { model: self, engine })
    }
}

/// What runs a prepared model.
enum RunEngine<'a> {
    /// The F32 interpreter over the model's graph.
    Graph(Interpreter<'a>),
    /// The bmodel bytes, run on the runtime with a fresh host arena per photo.
    Bmodel(&'a [u8]),
}

/// A [`YoloModel`] ready to run on many photos (shareable across threads).
pub struct YoloRunner<'a> {
    model: &'a YoloModel,
    engine: RunEngine<'a>,
}

impl YoloRunner<'_> {
    /// Run the network on a preprocessed `[1, 3, h, w]` input and return the two heads.
    pub fn heads(&self, input: &ndarray::ArrayD<f32>) -> Result<Vec<ndarray::ArrayD<f32>>> {
        let path = &self.model.path;
        match &self.engine {
            RunEngine::Graph(interp) => {
                interp.run(std::slice::from_ref(input)).with_context(|| format!("{}: inference", path.display()))
            }
            RunEngine::Bmodel(bytes) => {
                let data: Vec<f32> = input.iter().copied().collect();
                let outs = runtime::host::run_f32(bytes, &[&data])
                    .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
                outs.into_iter()
                    .map(|o| {
                        ndarray::ArrayD::from_shape_vec(o.dims.clone(), o.values)
                            .with_context(|| format!("{}: output {} has an inconsistent shape", path.display(), o.name))
                    })
                    .collect()
            }
        }
    }

    /// Preprocess `rgb` as the sample does, run the model and decode its detections.
    pub fn detect(&self, rgb: &ImageU8, opts: &DetectOptions) -> Result<Vec<Detection>> {
        let (net_h, net_w) = opts.net;
        let input = yolo::preprocess_yolo(rgb, net_h, net_w);
        let heads = self.heads(&input)?;
        let params = Params {
            net_h,
            net_w,
            score_thresh: opts.score_thresh,
            nms_thresh: opts.nms_thresh,
            conf_thresh: opts.conf_thresh,
            postprocess: self.model.postprocess,
            ..Params::default()
        };
        yolo::decode(&heads, rgb.width, rgb.height, &params)
            .with_context(|| format!("{}: model outputs are not tiny-yolov3 heads", self.model.path().display()))
    }
}

/// Read a photo as RGB (the sample reads with PIL).
pub fn read_photo(path: &Path) -> Result<ImageU8> {
    Ok(read_image(path, ReadMode::Rgb)?)
}
