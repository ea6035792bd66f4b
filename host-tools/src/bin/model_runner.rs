//! model_runner: run a top-level `.mlir` with the F32 interpreter on an input (npz, npy or image)
//! and write the outputs, or every tensor, to an npz (tpu-mlir's model_runner for `.mlir`).

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use compiler::interp::Interpreter;
use compiler::ir::text::load_module;
use compiler::ir::weights::{TensorData, Weights};
use compiler::ir::{Attr, Module};
use compiler::npz::{read_npz, write_npz};
use compiler::preprocess::{is_image_path, load_input_named, PreprocessConfig};
use std::path::{Path, PathBuf};

/// Command line (tpu-mlir's spellings).
#[derive(Parser, Debug)]
#[command(
    name = "model_runner",
    about = "Run a model on one input and save the results as npz",
    long_about = "Run a top-level .mlir (F32 interpreter) on one input and save its outputs (or every \
                  tensor) as npz. The weights are read from the file named by the module's \
                  weight_file attribute, next to the .mlir. Images are preprocessed with the \
                  parameters recorded on top.Input. A .bmodel runs on the no_std runtime (host arena) on an npz/npy input \
                  already preprocessed; its outputs are saved dequantized to f32."
)]
struct Args {
    /// input: an .npz (arrays matched to the inputs by name, else the first array), an .npy, or
    /// an image (jpg/png, preprocessed as the model's top.Input says)
    #[arg(long)]
    input: PathBuf,
    /// model to run: a top-level .mlir
    #[arg(long)]
    model: PathBuf,
    /// save every intermediate tensor, not only the outputs
    #[arg(long = "dump_all_tensors", alias = "dump-all-tensors")]
    dump_all_tensors: bool,
    /// output npz, written atomically
    #[arg(long)]
    output: PathBuf,
}

/// One model input: its name, its preprocessing (image inputs) and its shape.
type InputSpec = (String, Option<PreprocessConfig>, Vec<usize>);

/// Name and preprocessing of each function argument, from the `top.Input` op that reads it.
fn input_specs(m: &Module) -> Result<Vec<InputSpec>> {
    let f = &m.func;
    let mut out = Vec::new();
    for (i, &arg) in f.args.iter().enumerate() {
        let input_op = f.ops.iter().find(|o| o.kind == "top.Input" && o.operands.first() == Some(&arg));
        let name = input_op.map(|o| f.op_name(o).to_string()).unwrap_or_else(|| format!("input{i}"));
        let cfg = match input_op {
            Some(o) if !matches!(o.attrs.get("do_preprocess"), Some(Attr::Bool(false))) => {
                PreprocessConfig::from_attrs(&o.attrs).with_context(|| format!("input '{name}'"))?
            }
            Some(o) => PreprocessConfig::from_attrs(&o.attrs).ok().flatten(),
            None => None,
        };
        out.push((name, cfg, f.values[arg].ty.shape().to_vec()));
    }
    Ok(out)
}

fn load_weights(mlir: &Path, m: &Module) -> Result<Weights> {
    let mut w = Weights::default();
    if !m.func.ops.iter().any(|o| o.is_weight()) {
        return Ok(w);
    }
    let Some(Attr::Str(file)) = m.attrs.get("weight_file") else {
        bail!("{}: the module has weights but no module.weight_file attribute", mlir.display());
    };
    let path = mlir.parent().unwrap_or(Path::new(".")).join(file);
    for (name, data) in read_npz(&path)? {
        w.insert(name, data);
    }
    Ok(w)
}

fn run(args: &Args) -> Result<()> {
    let ext = args.model.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "mlir" => {}
        "bmodel" => return run_bmodel(args),
        _ => bail!("{}: unknown model type (expected a .mlir or .bmodel file)", args.model.display()),
    }
    let module = load_module(&args.model)?;
    let weights = load_weights(&args.model, &module)?;
    let specs = input_specs(&module)?;
    if specs.len() > 1 && is_image_path(&args.input) {
        bail!("the model has {} inputs: give them as one npz, not an image", specs.len());
    }
    let mut inputs = Vec::with_capacity(specs.len());
    for (name, cfg, shape) in &specs {
        let t = load_input_named(&args.input, cfg.as_ref(), shape, Some(name))
            .with_context(|| format!("input '{name}'"))?;
        inputs.push(t);
    }
    let interp = Interpreter::new(&module, &weights).map_err(|e| anyhow!("{}: {e}", args.model.display()))?;
    let f = &module.func;
    let mut arrays: Vec<(String, TensorData)> = Vec::new();
    if args.dump_all_tensors {
        let mut seen = std::collections::HashSet::new();
        let mut observe = |v: usize, t: &ndarray::ArrayD<f32>| {
            let name = &f.values[v].name;
            if !name.is_empty() && seen.insert(name.clone()) {
                arrays.push((name.clone(), TensorData::F32(t.clone())));
            }
        };
        let outs = interp.run_observe(&inputs, &mut observe).map_err(|e| anyhow!("{}: {e}", args.model.display()))?;
        for (&r, t) in f.returns.iter().zip(outs) {
            let name = f.values[r].name.clone();
            if !arrays.iter().any(|(n, _)| *n == name) {
                arrays.push((name, TensorData::F32(t)));
            }
        }
    } else {
        let outs = interp.run(&inputs).map_err(|e| anyhow!("{}: {e}", args.model.display()))?;
        for (i, (&r, t)) in f.returns.iter().zip(outs).enumerate() {
            let name = f.values[r].name.clone();
            let name = if name.is_empty() { format!("output{i}") } else { name };
            arrays.push((name, TensorData::F32(t)));
        }
    }
    write_npz(&args.output, &arrays)?;
    Ok(())
}

/// Run a bmodel on the runtime: inputs from an npz (by input name, else in order) or an npy.
fn run_bmodel(args: &Args) -> Result<()> {
    let bytes = std::fs::read(&args.model).with_context(|| format!("{}: cannot read", args.model.display()))?;
    let size = runtime::arena_size(&bytes).map_err(|e| anyhow!("{}: {e:?}", args.model.display()))? as usize;
    let mut arena = vec![0u8; size];
    let loaded = runtime::load(&bytes, &mut arena).map_err(|e| anyhow!("{}: {e:?}", args.model.display()))?;
    let specs: Vec<(String, Vec<usize>)> =
        loaded.inputs().iter().map(|t| (t.name.to_string(), t.dims.iter().map(|&d| d as usize).collect())).collect();
    drop(loaded);
    if is_image_path(&args.input) {
        bail!("{}: a .bmodel takes a preprocessed npz or npy input, not an image", args.input.display());
    }
    let mut inputs = Vec::with_capacity(specs.len());
    for (name, shape) in &specs {
        let t = load_input_named(&args.input, None, shape, Some(name)).with_context(|| format!("input '{name}'"))?;
        inputs.push(t.iter().copied().collect::<Vec<f32>>());
    }
    let slices: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let outs = runtime::host::run_f32(&bytes, &slices).map_err(|e| anyhow!("{}: {e:?}", args.model.display()))?;
    let mut arrays: Vec<(String, TensorData)> = Vec::new();
    for o in outs {
        let a = ndarray::ArrayD::from_shape_vec(o.dims.clone(), o.values)
            .map_err(|_| anyhow!("{}: output {} has an inconsistent shape", args.model.display(), o.name))?;
        arrays.push((o.name.clone(), TensorData::F32(a)));
    }
    write_npz(&args.output, &arrays)?;
    Ok(())
}

fn main() {
    host_tools::memory::keep_freed_memory();
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
