//! run_qtable: find which layers must stay in float for the network to keep the float model's
//! accuracy, and write the quantization table and the per-layer loss table.

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use compiler::calibration::{read_data_list, select_dataset, CalibrationTable, InputLoader};
use compiler::lower::{calib::cali_map_from_table, Chip, Mode};
use compiler::search::report::{loss_table_text, qtable_text, ReportHeader};
use compiler::search::runner::SimRunner;
use compiler::search::{plot, search, SearchParams};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Per-layer mixed-precision search (tpu-mlir's run_qtable): every layer whose INT8 output is
/// too far from the float model's is tried in float together with its immediate successors, and
/// kept in float only when the whole network's cos improves.
#[derive(Parser, Debug)]
#[command(name = "run_qtable", version)]
struct Args {
    /// The top-level .mlir written by model_transform (its weight npz next to it).
    mlir_file: PathBuf,
    /// Directory of input samples (jpg/png images preprocessed as the model's input op says, npz or npy).
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// A file listing one sample per line (instead of --dataset).
    #[arg(long = "data_list")]
    data_list: Option<PathBuf>,
    /// Calibration table written by run_calibration (or by tpu-mlir).
    #[arg(long = "calibration_table")]
    calibration_table: PathBuf,
    /// Target chip: bm1684x, bm1684, cv183x, cv182x, cv181x, cv180x.
    #[arg(long)]
    chip: String,
    /// Number of samples used for the search.
    #[arg(long = "input_num", default_value_t = 10)]
    input_num: usize,
    /// Stop once the network output cos exceeds this (the smaller, the fewer float layers).
    #[arg(long = "expected_cos", default_value_t = 0.99)]
    expected_cos: f64,
    /// A layer whose cos is under this is tried in float.
    #[arg(long = "min_layer_cos", default_value_t = 0.99)]
    min_layer_cos: f64,
    /// Float mode of the mixed layers: auto (bm1684x F32, cv18xx BF16), F32, F16 or BF16.
    #[arg(long = "fp_type", default_value = "auto")]
    fp_type: String,
    /// Layers whose outputs define the network cos, `a,b` or weighted `a:0.3,b:0.7` (default: the outputs).
    #[arg(long = "global_compare_layers")]
    global_compare_layers: Option<String>,
    /// Where to write the per-layer loss table.
    #[arg(long = "loss_table", default_value = "full_loss_table.txt")]
    loss_table: PathBuf,
    /// Draw the per-layer cos and the network cos against the float-layer count to this SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Debug options: `no_reuse` simulates the whole network at every trial instead of only what
    /// changed (same results, slower); others are accepted for compatibility and ignored.
    #[arg(long = "debug_cmd", default_value = "")]
    debug_cmd: String,
    /// Output quantization table.
    #[arg(short = 'o')]
    output: PathBuf,
}

fn float_mode(chip: Chip, fp_type: &str) -> Result<Mode> {
    if fp_type.eq_ignore_ascii_case("auto") {
        return Ok(if chip.is_cv18xx() { Mode::BF16 } else { Mode::F32 });
    }
    let m = Mode::parse(fp_type).ok_or_else(|| anyhow!("--fp_type '{fp_type}': expected auto, F32, F16 or BF16"))?;
    if m == Mode::Int8 || !chip.float_modes().contains(&m) {
        bail!("--fp_type {fp_type} is not a float mode of {}", chip.name());
    }
    Ok(m)
}

fn parse_compare(s: &str) -> Result<Vec<(String, f64)>> {
    let items: Vec<&str> = s.split(',').map(str::trim).filter(|x| !x.is_empty()).collect();
    let n = items.len().max(1) as f64;
    items
        .iter()
        .map(|it| match it.rsplit_once(':') {
            Some((name, rate)) if rate.parse::<f64>().is_ok() => Ok((name.to_string(), rate.parse::<f64>()?)),
            _ => Ok((it.to_string(), 1.0 / n)),
        })
        .collect()
}

/// Write `text` to `path` atomically.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    compiler::atomic_file::write(path, text.as_bytes()).map_err(|e| anyhow!("{}: cannot write: {e}", path.display()))
}

fn run() -> Result<()> {
    let args = Args::parse();
    let start = Instant::now();
    let chip = Chip::parse(&args.chip).ok_or_else(|| anyhow!("--chip '{}': unknown chip", args.chip))?;
    let mode = float_mode(chip, &args.fp_type)?;
    let (top, weights) = compiler::model_file::load_model(&args.mlir_file)?;
    let table = CalibrationTable::read(&args.calibration_table)
        .with_context(|| format!("reading the calibration table {}", args.calibration_table.display()))?;
    let cali = cali_map_from_table(&table);

    let dataset = match (&args.dataset, &args.data_list) {
        (Some(d), None) => select_dataset(d, args.input_num)?,
        (None, Some(l)) => read_data_list(l, args.input_num)?,
        _ => bail!("give exactly one of --dataset DIR and --data_list FILE"),
    };
    let loader = InputLoader::new(&top)?;
    let samples = compiler::search::runner::load_samples(&loader, &dataset)?;
    let compare = match &args.global_compare_layers {
        Some(s) => parse_compare(s)?,
        None => Vec::new(),
    };
    eprintln!("running the {} float model on {} samples", mode.name(), samples.len());
    let mut runner = SimRunner::new(&top, &weights, &cali, chip, mode, samples, compare)?;
    if args.debug_cmd.split([',', ';', ' ']).any(|c| c == "no_reuse") {
        runner.set_reuse(false);
    }
    let n_samples = runner.sample_count();
    let n_layers = compiler::search::MixedRunner::layers(&runner).len();

    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(n_layers as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} layers  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let params = SearchParams { expected_cos: args.expected_cos, min_layer_cos: args.min_layer_cos };
    let result = search(&runner, &params, &mut |i, name, best| {
        bar.set_position(i as u64);
        bar.set_message(format!("{name}  best cos {best:.6}"));
    })?;
    bar.finish_and_clear();

    println!("int8 outputs_cos:{:.6} old", result.int8_cos);
    if result.int8_enough {
        println!(
            "the all-INT8 network cos {:.6} already exceeds --expected_cos {}: no need for mix precision, no table written",
            result.int8_cos, args.expected_cos
        );
        return Ok(());
    }
    let header = ReportHeader {
        time: compiler::calibration::table::now_string(),
        samples: n_samples,
        chip: chip.name().to_string(),
        mix_mode: mode.name().to_string(),
    };
    write_atomic(&args.loss_table, &loss_table_text(&header, &result))?;
    write_atomic(&args.output, &qtable_text(&header, &result))?;
    if let Some(p) = &args.plot {
        write_atomic(p, &plot::render_svg(&result, args.min_layer_cos, args.expected_cos))?;
    }
    println!("mix model outputs_cos:{:.6}", result.mixed_cos);
    println!("Output mix quantization table to {}", args.output.display());
    println!("Output loss table to {}", args.loss_table.display());
    // Summary: what the user needs to decide.
    let size = estimated_size(&top, &weights, &result.float_layers, mode);
    println!("summary:");
    println!("  INT8 network cos    {:.6}", result.int8_cos);
    println!(
        "  mixed network cos   {:.6} ({})",
        result.mixed_cos,
        if result.reached { "reached --expected_cos" } else { "--expected_cos not reached" }
    );
    println!(
        "  float layers        {} of {} ({})",
        result.float_layers.len(),
        n_layers,
        layer_list(&result.float_layers, &args.output)
    );
    println!(
        "  weights             {:.2} MB all-INT8, {:.2} MB mixed (estimated)",
        size.0 as f64 / 1e6,
        size.1 as f64 / 1e6
    );
    println!("total time: {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The float layers for the summary: all of them when few, else the first ones and where the
/// rest are (a long list would bury the summary).
fn layer_list(layers: &[String], qtable: &Path) -> String {
    const SHOWN: usize = 12;
    if layers.len() <= SHOWN {
        return layers.join(", ");
    }
    format!("{}, ... and {} more in {}", layers[..SHOWN].join(", "), layers.len() - SHOWN, qtable.display())
}

/// Estimated weight bytes of the all-INT8 and of the mixed model: int8 filters and int32 biases,
/// or float bytes for the layers in the float mode.
fn estimated_size(
    top: &compiler::ir::Module,
    weights: &compiler::ir::weights::Weights,
    float_layers: &[String],
    mode: Mode,
) -> (usize, usize) {
    let f = &top.func;
    let fbytes = match mode {
        Mode::F32 => 4,
        _ => 2,
    };
    let (mut int8, mut mixed) = (0usize, 0usize);
    for op in &f.ops {
        if op.is_weight() || op.is_none() {
            continue;
        }
        let is_float = float_layers.iter().any(|n| n == f.op_name(op));
        for (k, &v) in op.operands.iter().enumerate() {
            let name = &f.values[v].name;
            let Some(w) = weights.get(name) else { continue };
            let n: usize = w.shape().iter().product();
            let q = if k == 2 { 4 * n } else { n };
            int8 += q;
            mixed += if is_float { fbytes * n } else { q };
        }
    }
    (int8, mixed)
}

fn main() {
    host_tools::memory::keep_freed_memory();
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::layer_list;
    use std::path::Path;

    #[test]
    fn a_long_float_list_is_cut_in_the_summary() {
        let few: Vec<String> = (0..3).map(|i| format!("l{i}")).collect();
        assert_eq!(layer_list(&few, Path::new("q")), "l0, l1, l2");
        let many: Vec<String> = (0..94).map(|i| format!("l{i}")).collect();
        assert_eq!(
            layer_list(&many, Path::new("yolox_qtable")),
            "l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, ... and 82 more in yolox_qtable"
        );
    }
}
