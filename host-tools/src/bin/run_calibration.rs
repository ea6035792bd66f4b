//! `run_calibration`: compute a tpu-mlir calibration table for a top-level (F32) MLIR on a
//! dataset of images / npy / npz samples (tpu-mlir's run_calibration.py).

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use compiler::calibration::{
    read_data_list, run_calibration, select_dataset, CaliMethod, CalibEvent, CalibOptions, TuneOptions,
};
use compiler::ir::weights::Weights;
use compiler::ir::Module;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Calibrate a top-level MLIR: per-tensor thresholds (KL + tuning by default), min and max.
#[derive(Parser, Debug)]
#[command(name = "run_calibration", version, rename_all = "snake_case")]
struct Args {
    /// Top-level F32 MLIR (its weight file is read from the same directory)
    mlir_file: PathBuf,
    /// Directory of samples (searched recursively; jpg/jpeg/png/bmp, npy, npz)
    #[arg(long, conflicts_with = "data_list")]
    dataset: Option<PathBuf>,
    /// File listing one sample per line (inputs of one sample comma-separated)
    #[arg(long)]
    data_list: Option<PathBuf>,
    /// Number of samples to use (0 = all)
    #[arg(long, default_value_t = 0)]
    input_num: usize,
    /// Output calibration table
    #[arg(short = 'o', long = "calibration_table")]
    calibration_table: PathBuf,
    /// Threshold method: kl, max, percentile9999, mse
    #[arg(long, default_value = "kl")]
    cali_method: String,
    /// Histogram bins
    #[arg(long, default_value_t = 2048)]
    histogram_bin_num: usize,
    /// Samples used to tune the KL thresholds (0 = no tuning)
    #[arg(long, default_value_t = 5)]
    tune_num: usize,
    /// Debug options `key=value;...` (tune_steps=N, min_tuned_diff=X, fake_quant_weight)
    #[arg(long, default_value = "")]
    debug_cmd: String,
    /// Skip unreadable samples with a warning instead of failing
    #[arg(long)]
    skip_bad: bool,
    /// Run every convolution directly instead of the default Winograd F(4x4,3x3) for dense 3x3
    /// ones: slower (about 1.4x on tiny-yolov3); thresholds, min and max move at float rounding
    /// level only (about 2e-6 relative)
    #[arg(long)]
    exact_conv: bool,
    /// Accepted for older scripts: the Winograd convolution is the default now
    #[arg(long, hide = true, conflicts_with = "exact_conv")]
    fast_conv: bool,
    /// Target chip (accepted for compatibility; calibration does not depend on it)
    #[arg(long, alias = "processor", default_value = "bm1684x")]
    chip: String,
}

/// Parse `key=value;key;...`.
fn parse_debug_cmd(s: &str) -> Result<TuneOptions> {
    let mut t = TuneOptions::default();
    for item in s.split(';').map(str::trim).filter(|x| !x.is_empty()) {
        let (k, v) = item.split_once('=').map(|(k, v)| (k.trim(), Some(v.trim()))).unwrap_or((item, None));
        match (k, v) {
            ("tune_steps", Some(v)) => {
                t.steps = v.parse().with_context(|| format!("--debug_cmd tune_steps: '{v}' is not an integer"))?;
                if t.steps == 0 {
                    bail!("--debug_cmd tune_steps must be at least 1");
                }
            }
            ("min_tuned_diff", Some(v)) => {
                t.min_tuned_diff =
                    v.parse().with_context(|| format!("--debug_cmd min_tuned_diff: '{v}' is not a number"))?
            }
            ("fake_quant_weight", None) => t.quantize_weights = true,
            _ => eprintln!("warning: --debug_cmd '{item}' is not supported, ignored"),
        }
    }
    Ok(t)
}

/// Read the MLIR and its weight file (`module.weight_file`, relative to the MLIR's directory);
/// an unreadable MLIR is reported as "<path>: cannot read: <cause>".
fn load_module(path: &Path) -> Result<(Module, Weights)> {
    use compiler::ir::text::MlirFileError;
    use compiler::model_file::{load_model, ModelFileError};
    load_model(path).map_err(|e| match e {
        ModelFileError::Mlir(MlirFileError::Io { path, msg }) => anyhow!("{}: cannot read: {msg}", path.display()),
        other => anyhow!("{other}"),
    })
}

fn main() {
    host_tools::memory::keep_freed_memory();
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let start = Instant::now();
    let method = CaliMethod::parse(&args.cali_method)?;
    let mut tune = parse_debug_cmd(&args.debug_cmd)?;
    tune.fast_conv = !args.exact_conv;
    let _ = args.fast_conv;
    let dataset = match (&args.dataset, &args.data_list) {
        (Some(d), _) => select_dataset(d, args.input_num)?,
        (None, Some(l)) => read_data_list(l, args.input_num)?,
        (None, None) => bail!("give the samples with --dataset DIR or --data_list FILE"),
    };
    let (module, weights) = load_module(&args.mlir_file)?;
    let opts = CalibOptions {
        method,
        histogram_bin_num: args.histogram_bin_num,
        tune_num: args.tune_num,
        tune,
        skip_bad: args.skip_bad,
        mlir_name: args.mlir_file.display().to_string(),
        ..CalibOptions::default()
    };
    let _ = &args.chip;

    let bar = ProgressBar::new(dataset.samples.len() as u64);
    if std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("samples");
    let mut on_event = |ev: CalibEvent<'_>| match ev {
        CalibEvent::Sample { done, total } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
        CalibEvent::Skipped { path, error } => {
            let _ = path;
            bar.suspend(|| eprintln!("warning: skipped: {error}"));
        }
        CalibEvent::Tune { done, total } => {
            if done <= 1 {
                bar.reset();
                bar.set_message("tuning");
            }
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    };
    let outcome = run_calibration(&module, &weights, &dataset, &opts, &mut on_event)?;
    bar.finish_and_clear();
    outcome.table.write(&args.calibration_table)?;
    eprintln!(
        "calibration table written to {} ({} tensors, {} samples{}, method {}, {:.1} s)",
        args.calibration_table.display(),
        outcome.table.entries.len(),
        outcome.samples_used,
        if outcome.skipped.is_empty() { String::new() } else { format!(", {} skipped", outcome.skipped.len()) },
        method.name(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
