//! `model_deploy`: lower a top-level MLIR to the tpu level for one chip and mode (INT8 with a
//! calibration table, F32/F16/BF16, per-layer mixed precision with a qtable), write
//! `<name>_<chip>_<mode>[_sym|_asym]_tpu.mlir` and its weight npz, optionally run the reference
//! simulator on a test input and compare with a reference npz, and write the model file.

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use compiler::compare::{compare_data, Tolerance};
use compiler::ir::weights::{TensorData, Weights};
use compiler::ir::{ElemType, Module, Quant};
use compiler::lower::{self, Chip, LowerOptions, Mode};
use std::path::{Path, PathBuf};

/// Lower a top MLIR for a chip, check it against a reference, and write the model.
#[derive(Parser, Debug)]
#[command(name = "model_deploy", version, rename_all = "snake_case")]
struct Args {
    /// The top-level MLIR written by model_transform (its weight npz is found through the
    /// module's weight_file attribute, next to the MLIR).
    #[arg(long)]
    mlir: PathBuf,
    /// Quantization mode: INT8, F16, BF16 or F32.
    #[arg(long, default_value = "F32")]
    quantize: String,
    /// Asymmetric INT8 (BM1684X only).
    #[arg(long)]
    asymmetric: bool,
    /// Calibration table from run_calibration (required for INT8).
    #[arg(long)]
    calibration_table: Option<PathBuf>,
    /// Mixed-precision table (`name mode` lines) from run_qtable.
    #[arg(long)]
    quantize_table: Option<PathBuf>,
    /// Target: bm1684x, bm1684, cv183x, cv182x, cv181x, cv180x.
    #[arg(long, alias = "processor")]
    chip: String,
    /// Output model file (.bmodel); the lowered MLIR and weights go next to it.
    #[arg(long)]
    model: PathBuf,
    /// Test input: an image (preprocessed with the top.Input attributes), .npy or .npz.
    #[arg(long)]
    test_input: Option<PathBuf>,
    /// Reference npz (e.g. <name>_top_outputs.npz) the simulated tensors are compared with.
    #[arg(long)]
    test_reference: Option<PathBuf>,
    /// Minimum "cosine,euclid" similarity vs the reference (default per mode as tpu-mlir).
    #[arg(long)]
    tolerance: Option<String>,
    /// Save and compare every tensor, not only the outputs.
    #[arg(long)]
    compare_all: bool,
}

fn run() -> Result<()> {
    let a = Args::parse();
    let chip = Chip::parse(&a.chip)
        .ok_or_else(|| anyhow!("unknown chip '{}' (bm1684x, bm1684, cv183x, cv182x, cv181x, cv180x)", a.chip))?;
    let mode = Mode::parse(&a.quantize)
        .ok_or_else(|| anyhow!("unknown --quantize '{}' (INT8, F16, BF16, F32)", a.quantize))?;
    let (top, weights) = compiler::model_file::load_model(&a.mlir)?;
    let table = match &a.calibration_table {
        Some(p) => {
            let t = compiler::calibration::CalibrationTable::read(p).map_err(|e| anyhow!("{e}"))?;
            Some(lower::calib::cali_map_from_table(&t))
        }
        None => None,
    };
    let qtable = match &a.quantize_table {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read the quantize table", p.display()))?;
            Some(lower::parse_qtable(&text, chip).map_err(|e| anyhow!("{}: {e}", p.display()))?)
        }
        None => None,
    };
    let opts = LowerOptions { chip, mode, asymmetric: a.asymmetric, table: table.as_ref(), qtable: qtable.as_ref() };
    let (module, lw) = lower::lower(&top, &weights, &opts).map_err(|e| anyhow!("{e}"))?;

    let out_dir = a.model.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let prefix = lower::file_prefix(&top.name, chip, mode, a.asymmetric);
    let wname = match module.attrs.get("weight_file") {
        Some(compiler::ir::Attr::Str(s)) => s.clone(),
        _ => format!("{prefix}_tpu_weights.npz"),
    };
    let mlir_out = out_dir.join(format!("{prefix}_tpu.mlir"));
    compiler::ir::text::save_module(&mlir_out, &module).map_err(|e| anyhow!("{e}"))?;
    let warrs: Vec<(String, TensorData)> = lw.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    compiler::npz::write_npz(&out_dir.join(&wname), &warrs).map_err(|e| anyhow!("{e}"))?;
    println!(
        "lowered: {} ({} ops), weights {}",
        mlir_out.display(),
        module.func.ops.len(),
        out_dir.join(&wname).display()
    );

    if let Some(input) = &a.test_input {
        run_test(&a, &top, &module, &lw, input, &out_dir, &prefix, mode, qtable.is_some())?;
    }
    // The runtime check runs on the test input, or on a deterministic synthetic one.
    let inputs = match &a.test_input {
        Some(input) => load_inputs(&top, input)?,
        None => {
            top.func.args.iter().enumerate().map(|(i, &v)| synthetic_input(top.func.values[v].ty.shape(), i)).collect()
        }
    };
    write_model(&a.model, &module, &lw, chip, &inputs)?;
    Ok(())
}

/// The model inputs for `input`: one per top.Input, preprocessed with its attributes.
fn load_inputs(top: &Module, input: &Path) -> Result<Vec<ndarray::ArrayD<f32>>> {
    // inputs: one per top.Input, preprocessed with its attributes
    let f = &top.func;
    let mut inputs = Vec::new();
    for &arg in &f.args {
        let inp = f.ops.iter().find(|o| o.kind == "top.Input" && o.operands.first() == Some(&arg));
        let shape = f.values[arg].ty.shape().to_vec();
        let (cfg, name) = match inp {
            Some(o) => (
                compiler::preprocess::PreprocessConfig::from_attrs(&o.attrs).map_err(|e| anyhow!("{e}"))?,
                Some(f.op_name(o).to_string()),
            ),
            None => (None, None),
        };
        let x = compiler::preprocess::load_input_named(input, cfg.as_ref(), &shape, name.as_deref())
            .map_err(|e| anyhow!("{e}"))?;
        inputs.push(x);
    }
    Ok(inputs)
}

/// A deterministic input in [0, 1) (the value range of the image models' preprocessed inputs).
fn synthetic_input(shape: &[usize], salt: usize) -> ndarray::ArrayD<f32> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i * 7919 + salt * 104729) % 1000) as f32 / 1000.0).collect();
    ndarray::ArrayD::from_shape_vec(shape.to_vec(), v).unwrap_or_else(|_| ndarray::ArrayD::zeros(shape.to_vec()))
}

fn default_tolerance(mode: Mode, mixed: bool) -> Tolerance {
    let (c, e) = match mode {
        Mode::Int8 => (0.9, 0.8),
        Mode::F16 | Mode::BF16 => (0.99, 0.9),
        Mode::F32 if mixed => (0.9, 0.8),
        Mode::F32 => (0.99, 0.99),
    };
    Tolerance { cosine: c, euclid: e }
}

#[allow(clippy::too_many_arguments)]
fn run_test(
    a: &Args,
    top: &Module,
    module: &Module,
    lw: &Weights,
    input: &Path,
    out_dir: &Path,
    prefix: &str,
    mode: Mode,
    mixed: bool,
) -> Result<()> {
    let inputs = load_inputs(top, input)?;
    let all = compiler::sim::run(module, lw, &inputs).map_err(|e| anyhow!("{e}"))?;
    // which tensors to keep: outputs and the tensor before an output cast, or all
    let mf = &module.func;
    let mut keep: Vec<String> = Vec::new();
    for &r in &mf.returns {
        keep.push(mf.values[r].name.clone());
        if let Some(p) = mf.producer(r) {
            let op = &mf.ops[p];
            if op.kind == "tpu.Cast" {
                if let Some(&src) = op.operands.first() {
                    keep.push(mf.values[src].name.clone());
                }
            }
        }
    }
    let saved: Vec<(String, TensorData)> = all
        .iter()
        .filter(|(n, _)| a.compare_all || keep.contains(n))
        .map(|(n, t)| (n.clone(), TensorData::F32(t.dequantize())))
        .collect();
    let out_npz = out_dir.join(format!("{prefix}_tpu_outputs.npz"));
    compiler::npz::write_npz(&out_npz, &saved).map_err(|e| anyhow!("{e}"))?;
    println!("simulated: {}", out_npz.display());
    let Some(rp) = &a.test_reference else { return Ok(()) };
    let tol = match &a.tolerance {
        Some(s) => Tolerance::parse(s).map_err(|e| anyhow!(e))?,
        None => default_tolerance(mode, mixed),
    };
    let reference: Vec<(String, TensorData)> = compiler::npz::read_npz(rp).map_err(|e| anyhow!("{e}"))?;
    let mut compared = 0;
    let mut failed = Vec::new();
    for (name, t) in &saved {
        let Some((_, r)) = reference.iter().find(|(n, _)| n == name) else { continue };
        let res = compare_data(t, r, tol);
        println!(
            "{name:<48} {:<12} cos {:.6} euclid {:.6}",
            res.class.to_string(),
            res.cosine.unwrap_or(1.0),
            res.euclid.unwrap_or(1.0)
        );
        compared += 1;
        if !res.passed() {
            failed.push(name.clone());
        }
    }
    if compared == 0 {
        bail!("{}: no tensor in common with the simulated outputs ({})", rp.display(), keep.join(", "));
    }
    if !failed.is_empty() {
        bail!("npz compare FAILED (tolerance {},{}): {}", tol.cosine, tol.euclid, failed.join(", "));
    }
    println!("npz compare PASSED ({compared} tensors, tolerance {},{})", tol.cosine, tol.euclid);
    Ok(())
}

/// Compile to a bmodel, run it on the no_std runtime and require every output byte to equal the
/// simulator's, then write it atomically and report the memory plan.
fn write_model(path: &Path, module: &Module, lw: &Weights, chip: Chip, inputs: &[ndarray::ArrayD<f32>]) -> Result<()> {
    let bchip = bmodel_chip(chip)?;
    let (bytes, report) = compiler::codegen::build_bmodel(module, lw, bchip).map_err(|e| anyhow!("model file: {e}"))?;
    let sim = compiler::sim::run_outputs(module, lw, inputs).map_err(|e| anyhow!("{e}"))?;
    let flat: Vec<Vec<f32>> = inputs.iter().map(|a| a.iter().copied().collect()).collect();
    let slices: Vec<&[f32]> = flat.iter().map(|v| v.as_slice()).collect();
    let outs = runtime::host::run_f32(&bytes, &slices).map_err(|e| anyhow!("the runtime rejects the bmodel: {e:?}"))?;
    if outs.len() != sim.len() {
        bail!("the bmodel has {} outputs, the simulator {}", outs.len(), sim.len());
    }
    for (o, s) in outs.iter().zip(&sim) {
        let sb = s.to_le_bytes();
        let diff = o.raw.iter().zip(&sb).filter(|(x, y)| x != y).count() + o.raw.len().abs_diff(sb.len());
        if diff != 0 {
            bail!("output {}: the runtime differs from the simulator in {diff} of {} bytes", o.name, sb.len());
        }
    }
    println!("runtime == simulator on every byte of {} output(s)", outs.len());
    compiler::atomic_file::write(path, &bytes).with_context(|| format!("{}: cannot write", path.display()))?;
    println!("model: {} ({} bytes)", path.display(), bytes.len());
    println!(
        "arena: {} bytes (activations {} + scratch {}; every tensor separately would need {}), coefficients {} bytes, {} instructions",
        report.arena_size, report.activation_size, report.scratch_size, report.naive_sum, report.coeff_size, report.instr_count
    );
    Ok(())
}

fn bmodel_chip(chip: Chip) -> Result<bmodel_format::Chip> {
    bmodel_format::Chip::from_name(chip.name()).ok_or_else(|| anyhow!("no model file format for {chip}"))
}

#[allow(dead_code)]
fn is_quantized(t: &compiler::ir::TensorType) -> bool {
    matches!(t.quant(), Some(Quant::Uniform { .. })) || t.elem() != Some(ElemType::F32)
}

fn main() {
    host_tools::memory::keep_freed_memory();
    if let Err(e) = run() {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}
