//! The `model_transform` flow as a library call: import, write the top MLIR and its weight npz,
//! and with a test input run the top IR and check it against an unsimplified import of the same
//! ONNX graph (tpu-mlir's `model_validate`, with our own import as the reference instead of ONNX
//! Runtime on the simplified model).

use super::{import_graph, ImportOptions, OnnxError, OnnxGraph, Simplify};
use crate::interp::{InterpError, Interpreter, Tensor};
use crate::ir::text::{save_module, MlirFileError};
use crate::ir::weights::{TensorData, Weights};
use crate::ir::Module;
use crate::npz::{write_npz, NpzError};
use crate::preprocess::{load_input_named, PreprocessConfig, PreprocessError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Everything `model_transform` needs, already parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformConfig {
    /// module name (`yolov3_tiny`)
    pub model_name: String,
    /// the ONNX file
    pub model_def: PathBuf,
    /// `--input_shapes`
    pub input_shapes: Option<Vec<Vec<usize>>>,
    /// `--output_names`
    pub output_names: Vec<String>,
    /// preprocessing of image inputs (`None` = `--channel_format none`)
    pub preprocess: Option<PreprocessConfig>,
    /// output `.mlir` path; the weight npz goes next to it
    pub mlir: PathBuf,
    /// `--test_input`: one file per input, or one npz holding every input by name
    pub test_input: Vec<PathBuf>,
    /// `--test_result`: npz of every tensor of the top run (default `<model_name>_top_outputs.npz`)
    pub test_result: Option<PathBuf>,
    /// `--tolerance` (cosine, euclidean similarity) minimums
    pub tolerance: (f64, f64),
    /// `--excepts`: tensor names left out of the comparison
    pub excepts: Vec<String>,
}

/// Similarity of one tensor of the top run to the reference run (npz_tool semantics).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorComparison {
    /// tensor (layer) name
    pub name: String,
    /// cosine similarity
    pub cosine: f64,
    /// euclidean similarity `1 - |a-b| / (|(a+b)/2| + 1e-7)`
    pub euclid: f64,
    /// identical or allclose at rtol 1e-3
    pub close: bool,
    /// passes the tolerance
    pub pass: bool,
}

/// What a transform wrote and measured.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformReport {
    /// the top MLIR
    pub mlir: PathBuf,
    /// `<model_name>_top_f32_all_weight.npz`
    pub weight_file: PathBuf,
    /// number of ops in the function
    pub op_count: usize,
    /// `<model_name>_in_f32.npz` when a test input was given
    pub input_file: Option<PathBuf>,
    /// all tensors of the top run when a test input was given
    pub test_result: Option<PathBuf>,
    /// per-tensor comparison with the unsimplified reference run
    pub comparisons: Vec<TensorComparison>,
}

/// Errors of the transform flow; each names the file or tensor.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// ONNX import failed.
    #[error(transparent)]
    Import(#[from] OnnxError),
    /// Writing the MLIR failed.
    #[error(transparent)]
    Mlir(#[from] MlirFileError),
    /// Writing an npz failed.
    #[error(transparent)]
    Npz(#[from] NpzError),
    /// Loading a test input failed.
    #[error(transparent)]
    Input(#[from] PreprocessError),
    /// Running the top IR failed.
    #[error("{what} run: {err}")]
    Run { what: &'static str, err: InterpError },
    /// Bad arguments.
    #[error("{0}")]
    Args(String),
    /// The top run does not match the reference.
    #[error("npz compare FAILED: {0}")]
    Compare(String),
}

/// Parse `--input_shapes` in its Python-literal forms: `[[1,3,416,416]]`, `[1,3,416,416]`
/// (one input, auto-wrapped) or `[[1,3,224,224],[1,2]]`.
pub fn parse_input_shapes(text: &str) -> Result<Vec<Vec<usize>>, TransformError> {
    enum Item {
        Int(usize),
        List(Vec<Item>),
    }
    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }
    impl P<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }
        fn item(&mut self) -> Result<Item, String> {
            self.ws();
            match self.s.get(self.i) {
                Some(b'[') | Some(b'(') => {
                    let close = if self.s[self.i] == b'[' { b']' } else { b')' };
                    self.i += 1;
                    let mut v = Vec::new();
                    loop {
                        self.ws();
                        if self.s.get(self.i) == Some(&close) {
                            self.i += 1;
                            return Ok(Item::List(v));
                        }
                        v.push(self.item()?);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(c) if *c == close => {}
                            Some(c) => return Err(format!("unexpected '{}' at position {}", *c as char, self.i + 1)),
                            None => return Err(format!("missing '{}' at the end", close as char)),
                        }
                    }
                }
                Some(c) if c.is_ascii_digit() => {
                    let start = self.i;
                    while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                        self.i += 1;
                    }
                    let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                    t.parse().map(Item::Int).map_err(|_| format!("dimension '{t}' is too large"))
                }
                Some(c) => Err(format!("unexpected '{}' at position {}", *c as char, self.i + 1)),
                None => Err("unexpected end of text".into()),
            }
        }
    }
    let bad = |m: String| {
        TransformError::Args(format!("malformed --input_shapes '{text}': {m} (expected e.g. [[1,3,416,416]])"))
    };
    let mut p = P { s: text.as_bytes(), i: 0 };
    let top = p.item().map_err(bad)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(bad(format!("unexpected text after position {}", p.i)));
    }
    let Item::List(items) = top else {
        return Err(bad("not a list".into()));
    };
    let dims = |v: Vec<Item>| -> Result<Vec<usize>, String> {
        let mut out = Vec::new();
        for it in v {
            match it {
                Item::Int(0) => return Err("dimensions must be positive".into()),
                Item::Int(d) => out.push(d),
                Item::List(_) => return Err("shapes nest too deep".into()),
            }
        }
        if out.is_empty() {
            return Err("empty shape".into());
        }
        Ok(out)
    };
    if items.is_empty() {
        return Err(bad("no shapes".into()));
    }
    if items.iter().all(|i| matches!(i, Item::Int(_))) {
        return Ok(vec![dims(items).map_err(bad)?]);
    }
    let mut shapes = Vec::new();
    for it in items {
        match it {
            Item::List(v) => shapes.push(dims(v).map_err(bad)?),
            Item::Int(_) => return Err(bad("mixes numbers and lists".into())),
        }
    }
    Ok(shapes)
}

/// The weight npz path: `<dir of mlir>/<lower-cased model_name>_top_f32_all_weight.npz`.
pub fn weight_file_path(mlir: &Path, model_name: &str) -> PathBuf {
    dir_of(mlir).join(format!("{}_top_f32_all_weight.npz", model_name.to_lowercase()))
}

fn dir_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Run the whole flow.
pub fn run(cfg: &TransformConfig) -> Result<TransformReport, TransformError> {
    if cfg.model_name.is_empty() {
        return Err(TransformError::Args("--model_name must not be empty".into()));
    }
    let graph = OnnxGraph::load(&cfg.model_def)?;
    let opts = ImportOptions {
        model_name: cfg.model_name.clone(),
        input_shapes: cfg.input_shapes.clone(),
        output_names: cfg.output_names.clone(),
        preprocess: cfg.preprocess.clone(),
    };
    let (module, weights) = import_graph(graph.clone(), &opts, Simplify::default())?;
    let weight_file = weight_file_path(&cfg.mlir, &cfg.model_name);
    let arrays: Vec<(String, TensorData)> = weights.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    write_npz(&weight_file, &arrays)?;
    if let Err(e) = save_module(&cfg.mlir, &module) {
        let _ = std::fs::remove_file(&weight_file);
        return Err(e.into());
    }
    let mut report = TransformReport {
        mlir: cfg.mlir.clone(),
        weight_file,
        op_count: module.func.ops.len(),
        input_file: None,
        test_result: None,
        comparisons: Vec::new(),
    };
    if cfg.test_input.is_empty() {
        return Ok(report);
    }
    let dir = dir_of(&cfg.mlir);
    let inputs = load_test_inputs(&module, &cfg.test_input)?;
    let input_file = dir.join(format!("{}_in_f32.npz", cfg.model_name));
    let names = input_names(&module);
    let in_arrays: Vec<(String, TensorData)> =
        names.iter().zip(&inputs).map(|(n, t)| (n.clone(), TensorData::F32(t.clone()))).collect();
    write_npz(&input_file, &in_arrays)?;
    report.input_file = Some(input_file);

    let top = run_all(&module, &weights, &inputs, "top")?;
    let result = cfg.test_result.clone().unwrap_or_else(|| dir.join(format!("{}_top_outputs.npz", cfg.model_name)));
    let arrays: Vec<(String, TensorData)> = top.iter().map(|(n, t)| (n.clone(), TensorData::F32(t.clone()))).collect();
    write_npz(&result, &arrays)?;
    report.test_result = Some(result);

    let (ref_module, ref_weights) = import_graph(graph, &opts, Simplify { fuse_batchnorm: false })?;
    let mut reference: HashMap<String, Tensor> =
        run_all(&ref_module, &ref_weights, &inputs, "reference")?.into_iter().collect();
    // a Conv fused with its BatchNormalization stands for the BN output of the unfused graph
    let rf = &ref_module.func;
    for op in rf.ops.iter().filter(|o| o.kind == "top.Scale") {
        let Some(p) = op.operands.first().and_then(|&x| rf.producer(x)) else { continue };
        if rf.ops[p].kind == "top.Conv" {
            if let Some(t) = reference.get(rf.op_name(op)).cloned() {
                reference.insert(rf.op_name(&rf.ops[p]).to_string(), t);
            }
        }
    }
    let mut failures = Vec::new();
    for (name, t) in &top {
        if cfg.excepts.contains(name) {
            continue;
        }
        let Some(r) = reference.get(name) else { continue };
        let c = compare_tensors(name, t, r, cfg.tolerance);
        if !c.pass {
            failures.push(format!("{} (cosine {:.6}, euclid {:.6})", c.name, c.cosine, c.euclid));
        }
        report.comparisons.push(c);
    }
    if !failures.is_empty() {
        return Err(TransformError::Compare(format!(
            "{} of {} tensors below tolerance {:?}: {}",
            failures.len(),
            report.comparisons.len(),
            cfg.tolerance,
            failures.join(", ")
        )));
    }
    Ok(report)
}

fn input_names(m: &Module) -> Vec<String> {
    let f = &m.func;
    f.args
        .iter()
        .map(|&a| {
            f.ops
                .iter()
                .find(|o| o.kind == "top.Input" && o.operands.first() == Some(&a))
                .map(|o| f.op_name(o).to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// Load the test inputs for every function argument (images preprocessed by the `top.Input`
/// attributes).
fn load_test_inputs(m: &Module, files: &[PathBuf]) -> Result<Vec<Tensor>, TransformError> {
    let f = &m.func;
    let names = input_names(m);
    let single_npz = files.len() == 1 && files[0].extension().is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    if !single_npz && files.len() != f.args.len() {
        return Err(TransformError::Args(format!(
            "--test_input has {} file(s) but the model has {} input(s) ({})",
            files.len(),
            f.args.len(),
            names.join(", ")
        )));
    }
    let mut out = Vec::new();
    for (k, &a) in f.args.iter().enumerate() {
        let shape = f.values[a].ty.shape().to_vec();
        let input_op = f.ops.iter().find(|o| o.kind == "top.Input" && o.operands.first() == Some(&a));
        let cfg = match input_op {
            Some(op) if op.attr_bool("do_preprocess") => PreprocessConfig::from_attrs(&op.attrs)?,
            _ => None,
        };
        let file = if single_npz { &files[0] } else { &files[k] };
        out.push(load_input_named(file, cfg.as_ref(), &shape, Some(&names[k]))?);
    }
    Ok(out)
}

fn run_all(
    m: &Module,
    w: &Weights,
    inputs: &[Tensor],
    what: &'static str,
) -> Result<Vec<(String, Tensor)>, TransformError> {
    let it = Interpreter::new(m, w).map_err(|err| TransformError::Run { what, err })?;
    let all = it.run_all(inputs).map_err(|err| TransformError::Run { what, err })?;
    let mut out = Vec::new();
    for op in &m.func.ops {
        if op.is_weight() || op.is_none() {
            continue;
        }
        for &r in &op.results {
            if let Some(t) = &all[r] {
                out.push((m.func.values[r].name.clone(), t.clone()));
            }
        }
    }
    Ok(out)
}

/// Compare two tensors as tpu-mlir's npz_tool does (allclose shortcut, then cosine and
/// euclidean similarity with NaN -> 0, ±inf -> ±10000).
pub fn compare_tensors(name: &str, a: &Tensor, b: &Tensor, tol: (f64, f64)) -> TensorComparison {
    let fail =
        |c: f64, e: f64| TensorComparison { name: name.to_string(), cosine: c, euclid: e, close: false, pass: false };
    if a.shape() != b.shape() {
        return fail(0.0, 0.0);
    }
    let clean = |x: f32| -> f64 {
        if x.is_nan() {
            0.0
        } else if x.is_infinite() {
            10000.0f64.copysign(x as f64)
        } else {
            x as f64
        }
    };
    let close = a.iter().zip(b.iter()).all(|(&x, &y)| {
        let (x, y) = (x as f64, y as f64);
        (x - y).abs() <= 1e-8 + 1e-3 * y.abs()
    });
    let (mut ab, mut aa, mut bb, mut dd, mut ss) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b.iter()) {
        let (x, y) = (clean(x), clean(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
        dd += (x - y) * (x - y);
        ss += ((x + y) / 2.0) * ((x + y) / 2.0);
    }
    let cosine = if aa == 0.0 || bb == 0.0 { 0.0 } else { ab / (aa.sqrt() * bb.sqrt()) };
    let euclid = 1.0 - dd.sqrt() / (ss.sqrt() + 1e-7);
    let pass = close || (cosine > tol.0 && euclid > tol.1);
    TensorComparison { name: name.to_string(), cosine, euclid, close, pass }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_shapes_forms() {
        assert_eq!(parse_input_shapes("[[1,3,416,416]]").unwrap(), vec![vec![1, 3, 416, 416]]);
        assert_eq!(parse_input_shapes(" [1, 3, 416, 416] ").unwrap(), vec![vec![1, 3, 416, 416]]);
        assert_eq!(parse_input_shapes("[[1,3,224,224],[1,2]]").unwrap(), vec![vec![1, 3, 224, 224], vec![1, 2]]);
        assert_eq!(
            parse_input_shapes("[[1,3,416,416]").unwrap_err().to_string(),
            "malformed --input_shapes '[[1,3,416,416]': missing ']' at the end (expected e.g. [[1,3,416,416]])"
        );
        assert_eq!(
            parse_input_shapes("[[1,3,a,416]]").unwrap_err().to_string(),
            "malformed --input_shapes '[[1,3,a,416]]': unexpected 'a' at position 7 (expected e.g. [[1,3,416,416]])"
        );
        assert!(parse_input_shapes("1,3,416,416").is_err());
        assert!(parse_input_shapes("[[1,0]]").is_err());
        assert!(parse_input_shapes("[]").is_err());
        assert!(parse_input_shapes("[[1,2],3]").is_err());
    }

    #[test]
    fn comparison_follows_npz_tool() {
        let a = Tensor::from_shape_vec(ndarray::IxDyn(&[4]), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let c = compare_tensors("a", &a, &a, (0.99, 0.99));
        assert!(c.close && c.pass && (c.cosine - 1.0).abs() < 1e-12);
        let b = Tensor::from_shape_vec(ndarray::IxDyn(&[4]), vec![-1.0, -2.0, -3.0, -4.0]).unwrap();
        let c = compare_tensors("a", &a, &b, (0.99, 0.99));
        assert!(!c.pass && (c.cosine + 1.0).abs() < 1e-12);
    }
}
