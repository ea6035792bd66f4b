//! Turning one dataset sample (files) into the model's input tensors: images preprocessed by the
//! `top.Input` attributes (flow reference 1.4), npy per input, or one npz holding every input.

use super::dataset::SampleKind;
use super::CalibError;
use crate::interp::Tensor;
use crate::ir::weights::TensorData;
use crate::ir::Module;
use crate::preprocess::{load_input, PreprocessConfig};
use ndarray::{Axis, IxDyn};
use std::path::{Path, PathBuf};

/// One model input: its name, static shape and preprocessing (images only).
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// Name of the `top.Input` result (the npz key).
    pub name: String,
    /// Static shape of the function argument.
    pub shape: Vec<usize>,
    /// Preprocessing recorded by model_transform, if the input is an image.
    pub preprocess: Option<PreprocessConfig>,
}

/// Loads samples for a module.
#[derive(Debug, Clone)]
pub struct InputLoader {
    /// The function arguments in order.
    pub inputs: Vec<ModelInput>,
}

impl InputLoader {
    /// Read input names, shapes and preprocessing from the module's `top.Input` ops.
    pub fn new(module: &Module) -> Result<Self, CalibError> {
        let f = &module.func;
        let mut inputs = Vec::new();
        for &a in &f.args {
            let shape = f.values[a].ty.shape().to_vec();
            let input_op = f.ops.iter().find(|o| o.kind == "top.Input" && o.operands.first() == Some(&a));
            let (name, preprocess) = match input_op {
                Some(op) => {
                    let name = f.op_name(op).to_string();
                    let pp = PreprocessConfig::from_attrs(&op.attrs)
                        .map_err(|e| CalibError::Model(format!("top.Input '{name}': {e}")))?;
                    (name, pp)
                }
                None => (format!("arg{}", inputs.len()), None),
            };
            inputs.push(ModelInput { name, shape, preprocess });
        }
        if inputs.is_empty() {
            return Err(CalibError::Model("the function has no inputs".into()));
        }
        Ok(InputLoader { inputs })
    }

    /// Batch size (first dimension of the first input, at least 1).
    pub fn batch(&self) -> usize {
        self.inputs[0].shape.first().copied().unwrap_or(1).max(1)
    }

    /// Load one sample: `files` holds one file per input (npy, image), or one npz for all.
    pub fn load(&self, kind: SampleKind, files: &[PathBuf]) -> Result<Vec<Tensor>, CalibError> {
        match kind {
            SampleKind::Npz => {
                let [file] = files else {
                    return Err(sample_err(&files[0], "an npz sample must be a single file".into()));
                };
                if self.inputs.len() == 1 {
                    let i = &self.inputs[0];
                    return load_input(file, None, &i.shape)
                        .map(|t| vec![t])
                        .map_err(|e| CalibError::Sample { path: file.clone(), msg: strip_path(&e.to_string(), file) });
                }
                let arrays = crate::npz::read_npz(file)
                    .map_err(|e| CalibError::Sample { path: file.clone(), msg: strip_path(&e.to_string(), file) })?;
                self.inputs
                    .iter()
                    .map(|i| {
                        let (_, data) = arrays.iter().find(|(n, _)| n == &i.name).ok_or_else(|| {
                            sample_err(file, format!("has no array named '{}' (one per model input)", i.name))
                        })?;
                        fit(file, data, &i.shape)
                    })
                    .collect()
            }
            SampleKind::Yuv => Err(sample_err(&files[0], "yuv samples are not supported".into())),
            SampleKind::Image | SampleKind::Npy => {
                if files.len() != self.inputs.len() {
                    return Err(sample_err(
                        &files[0],
                        format!(
                            "the sample has {} file(s) but the model has {} input(s)",
                            files.len(),
                            self.inputs.len()
                        ),
                    ));
                }
                files
                    .iter()
                    .zip(&self.inputs)
                    .map(|(file, i)| {
                        let cfg = if kind == SampleKind::Image { i.preprocess.as_ref() } else { None };
                        if kind == SampleKind::Image && cfg.is_none() {
                            return Err(sample_err(file, format!("input '{}' has no image preprocessing", i.name)));
                        }
                        load_input(file, cfg, &i.shape).map_err(|e| CalibError::Sample {
                            path: file.clone(),
                            msg: strip_path(&e.to_string(), file),
                        })
                    })
                    .collect()
            }
        }
    }

    /// Load `group` samples (images with a batch > 1: one image per batch row) into one run.
    pub fn load_batched(&self, kind: SampleKind, group: &[&[PathBuf]]) -> Result<Vec<Tensor>, CalibError> {
        if group.len() == 1 {
            return self.load(kind, group[0]);
        }
        let single = InputLoader {
            inputs: self
                .inputs
                .iter()
                .map(|i| {
                    let mut s = i.shape.clone();
                    if let Some(d) = s.first_mut() {
                        *d = 1;
                    }
                    ModelInput { shape: s, ..i.clone() }
                })
                .collect(),
        };
        let mut per_input: Vec<Vec<Tensor>> = vec![Vec::new(); self.inputs.len()];
        for files in group {
            for (k, t) in single.load(kind, files)?.into_iter().enumerate() {
                per_input[k].push(t);
            }
        }
        per_input
            .into_iter()
            .map(|ts| {
                let views: Vec<_> = ts.iter().map(|t| t.view()).collect();
                ndarray::concatenate(Axis(0), &views).map_err(|e| CalibError::Config(format!("batching samples: {e}")))
            })
            .collect()
    }
}

fn sample_err(path: &Path, msg: String) -> CalibError {
    CalibError::Sample { path: path.to_path_buf(), msg }
}

/// Preprocessing errors already start with the path; avoid saying it twice.
fn strip_path(msg: &str, path: &Path) -> String {
    let p = format!("{}: ", path.display());
    msg.strip_prefix(&p).unwrap_or(msg).to_string()
}

/// An npz array as the input tensor: same element count as the input shape (a batch-1 array is
/// repeated to the batch).
fn fit(path: &Path, data: &TensorData, shape: &[usize]) -> Result<Tensor, CalibError> {
    let a = data.to_f32();
    let want: usize = shape.iter().product();
    if a.len() == want {
        return a
            .into_shape_with_order(IxDyn(shape))
            .map_err(|e| sample_err(path, format!("cannot reshape to {shape:?}: {e}")));
    }
    let batch = shape.first().copied().unwrap_or(1);
    if batch > 1 && a.len() * batch == want {
        let flat: Vec<f32> = a.iter().copied().collect();
        let rep: Vec<f32> = (0..batch).flat_map(|_| flat.iter().copied()).collect();
        return Tensor::from_shape_vec(IxDyn(shape), rep)
            .map_err(|e| sample_err(path, format!("cannot reshape to {shape:?}: {e}")));
    }
    Err(sample_err(path, format!("array of shape {:?} does not fit the input shape {shape:?}", data.shape())))
}
