//! The whole calibration run: samples in dataset order through the F32 interpreter, statistics
//! folded as they stream by, thresholds, optional tuning, and the resulting table.

use super::collect::{CaliMethod, Collector, TensorResult};
use super::dataset::Dataset;
use super::inputs::InputLoader;
use super::stack;
use super::statistics::{gather, Gathered, Samples};
use super::table::{now_string, CalibEntry, CalibrationTable, TableHeader};
use super::tune::{tune_thresholds_timed, TuneArgs, TuneOptions};
use super::CalibError;
use crate::interp::Interpreter;
use crate::ir::weights::Weights;
use crate::ir::Module;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Version text written into the table header (tpu-mlir writes pymlir's version there).
pub const TABLE_VERSION: &str = concat!("tpu-mlir-rs ", env!("CARGO_PKG_VERSION"), " cali version 1.0");

/// Options of a calibration run.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibOptions {
    /// Threshold method.
    pub method: CaliMethod,
    /// Bins of a fresh histogram (2048).
    pub histogram_bin_num: usize,
    /// Samples used by the tuning pass (5; 0 disables tuning). Only `kl` is tuned.
    pub tune_num: usize,
    /// Tuning parameters.
    pub tune: TuneOptions,
    /// Skip unreadable samples with a warning instead of failing.
    pub skip_bad: bool,
    /// The MLIR file name written into the header.
    pub mlir_name: String,
    /// Samples the deep ops of the model run on at once in the statistics pass (1: every op one
    /// sample at a time). The deep ops are the run of ops at the end of the function whose
    /// results are small and which compute each sample from that sample alone (see
    /// `stack::split`); their filters are then streamed once per group. Same table either way.
    pub stack_samples: usize,
}

impl Default for CalibOptions {
    fn default() -> Self {
        CalibOptions {
            method: CaliMethod::Kl,
            histogram_bin_num: 2048,
            tune_num: 5,
            tune: TuneOptions::default(),
            skip_bad: false,
            mlir_name: String::new(),
            stack_samples: 4,
        }
    }
}

/// Progress notifications of a run.
#[derive(Debug)]
pub enum CalibEvent<'a> {
    /// `done` of `total` samples processed.
    Sample { done: usize, total: usize },
    /// A sample was skipped (`--skip_bad`).
    Skipped { path: &'a Path, error: &'a CalibError },
    /// Tuning: `done` of `total` ops.
    Tune { done: usize, total: usize },
}

/// Result of a run.
#[derive(Debug, Clone)]
pub struct CalibOutcome {
    /// The final table.
    pub table: CalibrationTable,
    /// Per-tensor numbers before tuning (the `.1` table of tpu-mlir).
    pub untuned: Vec<TensorResult>,
    /// Samples that went into the statistics.
    pub samples_used: usize,
    /// Samples skipped with their error.
    pub skipped: Vec<(PathBuf, String)>,
    /// Where the wall time went (for benchmarks).
    pub times: PhaseTimes,
}

/// Wall time of the parts of a run, as the calling thread saw it (each part may use every core).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseTimes {
    /// Statistics: folding the op results into the per-tensor statistics (min / max / histogram).
    pub observe: Duration,
    /// Statistics: waiting for the next sample's decoding after the model run finished.
    pub load_wait: Duration,
    /// The whole statistics pass (model runs, folding, decoding).
    pub statistics: Duration,
    /// Thresholds from the statistics (the KL searches).
    pub thresholds: Duration,
    /// Tuning: the F32 reference results of the tune samples, op by op.
    pub tune_reference: Duration,
    /// Tuning: candidates evaluated by running the op.
    pub tune_run: Duration,
    /// Tuning: candidates evaluated through a shortcut (no op run).
    pub tune_shortcut: Duration,
    /// Tuning's early exit: bands of output rows evaluated, over all its convolutions and
    /// candidates (one band = every sample's rows of that band).
    pub early_exit_bands: usize,
    /// Bands evaluating every candidate whole would have taken on the same convolutions.
    pub early_exit_bands_whole: usize,
}

/// A float printed and parsed back like the `.1` table tpu-mlir's tuner reads.
fn through_text(v: f64) -> f64 {
    format!("{v:.7}").parse().unwrap_or(v)
}

/// Calibrate `module` on `dataset`.
pub fn run_calibration(
    module: &Module,
    weights: &Weights,
    dataset: &Dataset,
    opts: &CalibOptions,
    on_event: &mut dyn FnMut(CalibEvent<'_>),
) -> Result<CalibOutcome, CalibError> {
    if opts.histogram_bin_num < 2 {
        return Err(CalibError::Config("--histogram_bin_num must be at least 2".into()));
    }
    let loader = InputLoader::new(module)?;
    // group samples by the batch size, padding with the last one (tpu-mlir pads the list)
    let batch = loader.batch();
    let mut list: Vec<&[PathBuf]> = dataset.samples.iter().map(|s| s.as_slice()).collect();
    if dataset.kind == super::dataset::SampleKind::Image && batch > 1 {
        while !list.len().is_multiple_of(batch) {
            let last = list[list.len() - 1];
            list.push(last);
        }
    }
    let groups: Vec<Vec<&[PathBuf]>> = if dataset.kind == super::dataset::SampleKind::Image && batch > 1 {
        list.chunks(batch).map(|c| c.to_vec()).collect()
    } else {
        list.iter().map(|s| vec![*s]).collect()
    };
    let total = groups.len();
    let mut interp = Interpreter::new(module, weights).map_err(|e| CalibError::Model(e.to_string()))?;
    interp.set_fast_conv(opts.tune.fast_conv);
    let mut collector = Collector::new(module, opts.method, opts.histogram_bin_num, total);
    let tune = opts.method == CaliMethod::Kl && opts.tune_num > 0;
    let split = stack::split(module, opts.stack_samples.min(total));
    let mut times = PhaseTimes::default();
    let statistics = Instant::now();
    let samples = Samples { loader: &loader, kind: dataset.kind, groups: &groups };
    let gathered = gather(
        &interp,
        &split,
        &mut collector,
        &samples,
        if tune { opts.tune_num } else { 0 },
        opts.skip_bad,
        on_event,
        &mut times,
    )?;
    let Gathered { used, skipped, tune_inputs, tune_references } = gathered;
    if used == 0 {
        return Err(CalibError::Dataset("no sample could be used".into()));
    }
    times.statistics = statistics.elapsed();
    // the tuner evaluates single ops with the same interpreter (filters packed once)
    let prepared = Some(interp);
    let thresholds_started = Instant::now();
    let results = collector.finish();
    times.thresholds = thresholds_started.elapsed();
    let tensors = collector.tensors().to_vec();
    let thresholds: Vec<f64> = if tune {
        let initial: Vec<f64> = results.iter().map(|r| through_text(r.threshold)).collect();
        let abs_max: Vec<f64> = results.iter().map(|r| r.abs_max).collect();
        let mut progress = |done, total| on_event(CalibEvent::Tune { done, total });
        let tune_args = TuneArgs { inputs: &tune_inputs, tensors: &tensors, initial: &initial, abs_max: &abs_max };
        tune_thresholds_timed(
            module,
            weights,
            &tune_args,
            (tune_references, prepared),
            opts.tune,
            &mut progress,
            &mut times,
        )?
        .into_iter()
        .map(|t| if t <= 1e-5 || t.is_nan() { 1e-5 } else { t })
        .collect()
    } else {
        results.iter().map(|r| r.threshold).collect()
    };
    let header = TableHeader {
        version: Some(TABLE_VERSION.to_string()),
        mlir: Some(opts.mlir_name.clone()),
        generated_time: Some(now_string()),
        method: Some(if tune { format!("['{}']", opts.method.name()) } else { opts.method.name().to_string() }),
        histogram_bins: Some(opts.histogram_bin_num),
        sample_number: Some(total),
        tune_number: if tune { Some(opts.tune_num) } else { None },
        fp8: false,
        other: Vec::new(),
    };
    let entries = results
        .iter()
        .zip(&thresholds)
        .map(|(r, &th)| CalibEntry { name: r.name.clone(), threshold: th, min: r.min, max: r.max })
        .collect();
    Ok(CalibOutcome {
        table: CalibrationTable { header, entries, ..Default::default() },
        untuned: results,
        samples_used: used,
        skipped,
        times,
    })
}
