//! ONNX import into the top IR (tpu-mlir's `model_transform` front end).
//!
//! Steps: decode the protobuf ([`proto`], hand-written prost messages), cut the graph at the
//! requested outputs ([`graph`]), fold BatchNormalization into convolutions as onnxsim does
//! ([`fuse`]), then convert node by node ([`convert`]) with static shape inference and constant
//! folding of shape subgraphs ([`fold`]). Layer names are `<first ONNX output>_<OpType>`,
//! weight names the initializer (or Constant output) names.

mod convert;
pub mod error;
pub mod fold;
pub mod fuse;
pub mod graph;
pub mod proto;
pub mod shape;
pub mod tensor;
#[cfg(test)]
mod tests;
pub mod transform;

pub use error::OnnxError;
pub use graph::OnnxGraph;

use crate::ir::weights::Weights;
use crate::ir::{attr, Attrs, Module};
use crate::preprocess::{ChannelFormat, PreprocessConfig};
use std::path::Path;

/// What `model_transform` tells the importer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportOptions {
    /// module name (`yolov3_tiny`); the weight file is `<lower-cased name>_top_f32_all_weight.npz`
    pub model_name: String,
    /// shapes of the graph inputs in order (override symbolic / fixed dims)
    pub input_shapes: Option<Vec<Vec<usize>>>,
    /// cut the graph at these tensors (return order = this order); empty = graph outputs
    pub output_names: Vec<String>,
    /// preprocessing recorded on image-like `top.Input`s
    pub preprocess: Option<PreprocessConfig>,
}

/// Which graph simplifications the import applies (tpu-mlir's onnxsim step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simplify {
    /// fold BatchNormalization into the preceding Conv (else it becomes `top.Scale`)
    pub fuse_batchnorm: bool,
}

impl Default for Simplify {
    fn default() -> Self {
        Simplify { fuse_batchnorm: true }
    }
}

/// Import an ONNX file into a top-level module and its weights (with BN fusion).
pub fn import(path: &Path, opts: &ImportOptions) -> Result<(Module, Weights), OnnxError> {
    import_with(path, opts, Simplify::default())
}

/// [`import`] with explicit simplification switches (used to build an unsimplified reference).
pub fn import_with(path: &Path, opts: &ImportOptions, simplify: Simplify) -> Result<(Module, Weights), OnnxError> {
    let g = OnnxGraph::load(path)?;
    import_graph(g, opts, simplify)
}

/// Import an already decoded graph.
pub fn import_graph(
    mut g: OnnxGraph,
    opts: &ImportOptions,
    simplify: Simplify,
) -> Result<(Module, Weights), OnnxError> {
    g.select_outputs(&opts.output_names)?;
    if simplify.fuse_batchnorm {
        fuse::fuse_bn_into_conv(&mut g)?;
    }
    let shapes = input_shapes(&g, opts.input_shapes.as_deref())?;
    let mut conv = convert::Converter::new(&g);
    for (inp, shape) in g.inputs.iter().zip(&shapes) {
        let attrs = input_attrs(shape, opts.preprocess.as_ref());
        conv.add_input(&inp.name, shape.clone(), attrs);
    }
    conv.run()?;
    let (func, weights) = conv.finish()?;
    let mut attrs = Attrs::new();
    attrs.insert("FLOPs".into(), attr::i64(convert::flops(&func)));
    let lname = opts.model_name.to_lowercase();
    attrs.insert("weight_file".into(), attr::str(&format!("{lname}_top_f32_all_weight.npz")));
    attrs.insert("platform".into(), attr::str("ONNX"));
    attrs.insert("state".into(), attr::str("TOP_F32"));
    attrs.insert("chip".into(), attr::str("ALL"));
    attrs.insert("top_run_mode".into(), attr::str("STATIC"));
    Ok((Module { name: opts.model_name.clone(), attrs, func }, weights))
}

/// Resolve every input's static shape from the model and `--input_shapes`.
fn input_shapes(g: &OnnxGraph, given: Option<&[Vec<usize>]>) -> Result<Vec<Vec<usize>>, OnnxError> {
    if let Some(given) = given {
        if given.len() != g.inputs.len() {
            let names: Vec<&str> = g.inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(OnnxError::InputShape(format!(
                "{} shape(s) given but the (cut) graph has {} input(s): {}",
                given.len(),
                names.len(),
                names.join(", ")
            )));
        }
        for (inp, s) in g.inputs.iter().zip(given) {
            if s.contains(&0) {
                return Err(OnnxError::InputShape(format!("input '{}': shape {s:?} has a zero dim", inp.name)));
            }
            if !inp.dims.is_empty() && inp.dims.len() != s.len() {
                return Err(OnnxError::InputShape(format!(
                    "input '{}' has rank {} but shape {s:?} was given",
                    inp.name,
                    inp.dims.len()
                )));
            }
        }
        return Ok(given.to_vec());
    }
    g.inputs
        .iter()
        .map(|i| {
            if i.dims.is_empty() || i.dims.iter().any(|d| d.is_none()) {
                let shown: Vec<String> = i.dims.iter().map(|d| d.map_or("?".to_string(), |v| v.to_string())).collect();
                Err(OnnxError::InputShape(format!(
                    "input '{}' has dynamic dims [{}]; give --input_shapes",
                    i.name,
                    shown.join(",")
                )))
            } else {
                Ok(i.dims.iter().map(|d| d.unwrap_or(1)).collect())
            }
        })
        .collect()
}

/// `top.Input` attributes: the preprocessing only for image-like inputs (tpu-mlir's rule:
/// 3-D, or 4-D with at most 4 channels on the channel axis), else `do_preprocess=false`.
fn input_attrs(shape: &[usize], pre: Option<&PreprocessConfig>) -> Attrs {
    let image_like = |cfg: &PreprocessConfig| match shape.len() {
        3 => true,
        4 => {
            let c = match cfg.channel_format {
                ChannelFormat::Nchw => shape[1],
                ChannelFormat::Nhwc => shape[3],
            };
            c <= 4
        }
        _ => false,
    };
    match pre {
        Some(cfg) if image_like(cfg) => {
            let mut cfg = cfg.clone();
            if cfg.resize_dims.is_empty() {
                let (h, w) = match (shape.len(), cfg.channel_format) {
                    (4, ChannelFormat::Nchw) => (shape[2], shape[3]),
                    (4, ChannelFormat::Nhwc) => (shape[1], shape[2]),
                    (_, ChannelFormat::Nchw) => (shape[1], shape[2]),
                    (_, ChannelFormat::Nhwc) => (shape[0], shape[1]),
                };
                cfg.resize_dims = vec![h, w];
            }
            cfg.to_attrs()
        }
        _ => {
            let mut a = Attrs::new();
            a.insert("do_preprocess".into(), attr::bool(false));
            a
        }
    }
}
