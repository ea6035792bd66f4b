//! The whole calibration run: samples in dataset order through the F32 interpreter, statistics
//! folded as they stream by, thresholds, optional tuning, and the resulting table.

use super::collect::{CaliMethod, Collector, TensorResult};
use super::dataset::Dataset;
use super::inputs::InputLoader;
use super::stack;
use super::table::{now_string, CalibEntry, CalibrationTable, TableHeader};
use super::tune::{tune_thresholds_timed, TuneArgs, TuneOptions};
use super::CalibError;
use crate::interp::{Interpreter, Tensor};
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
    /// Samples run through the model at once in the statistics pass, when every op of the
    /// model computes each sample from that sample alone (1: one by one). Same table either
    /// way; 2 streams the deep layers' filters once for two samples but was not measurably
    /// faster on a busy machine and takes about 200 MiB more, so it is not the default.
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
            stack_samples: 1,
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

/// Every op result of one model run, by value id.
type Results = Vec<Option<Tensor>>;

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
    // several samples per model run when the model allows it (see `stack`)
    let stacked_module = match opts.stack_samples.min(total) {
        n if n > 1 => stack::rebatch(module, n).ok().map(|m| (m, n)),
        _ => None,
    };
    let (run_module, per_run) = match &stacked_module {
        Some((m, n)) => (m, *n),
        None => (module, 1),
    };
    let mut interp = Interpreter::new(run_module, weights).map_err(|e| CalibError::Model(e.to_string()))?;
    interp.set_fast_conv(opts.tune.fast_conv);
    let mut collector = Collector::new(module, opts.method, opts.histogram_bin_num, total);
    let tune = opts.method == CaliMethod::Kl && opts.tune_num > 0;
    let mut tune_inputs: Vec<Vec<Tensor>> = Vec::new();
    // the tune samples' op results, kept from their statistics run as the tuner's references
    let mut tune_references: Vec<Vec<Option<Tensor>>> = Vec::new();
    let mut skipped = Vec::new();
    let mut used = 0usize;

    let mut times = PhaseTimes::default();
    let statistics = Instant::now();
    let runs: Vec<std::ops::Range<usize>> = (0..total).step_by(per_run).map(|s| s..(s + per_run).min(total)).collect();
    let load = |r: &std::ops::Range<usize>| -> Vec<Result<Vec<Tensor>, CalibError>> {
        use rayon::prelude::*;
        groups[r.clone()].par_iter().map(|g| loader.load_batched(dataset.kind, g)).collect()
    };
    // The model runs on one group of samples while the previous group's results are folded
    // into the statistics and the next group is decoded.
    let mut pending: Option<(Results, usize)> = None;
    let mut next = runs.first().map(load);
    for (k, range) in runs.iter().enumerate() {
        let loaded = next.take().unwrap_or_else(|| load(range));
        let mut good: Vec<Vec<Tensor>> = Vec::with_capacity(loaded.len());
        for (j, sample) in loaded.into_iter().enumerate() {
            match sample {
                Ok(inputs) => good.push(inputs),
                Err(e @ CalibError::Sample { .. }) if opts.skip_bad => {
                    let path = groups[range.start + j][0][0].clone();
                    on_event(CalibEvent::Skipped { path: &path, error: &e });
                    skipped.push((path, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        let joined = Instant::now();
        let ((ran, folded), prefetched) = rayon::join(
            || {
                rayon::join(
                    || -> Result<(Option<Results>, Duration), CalibError> {
                        let started = Instant::now();
                        if good.is_empty() {
                            return Ok((None, started.elapsed()));
                        }
                        // a short group is padded with its last sample (whose extra results are
                        // not folded)
                        let mut refs: Vec<&[Tensor]> = good.iter().map(Vec::as_slice).collect();
                        while refs.len() < per_run {
                            refs.push(refs[refs.len() - 1]);
                        }
                        let stacked;
                        let inputs: &[Tensor] = if per_run == 1 {
                            refs[0]
                        } else {
                            stacked = stack::stack_inputs(&refs)
                                .ok_or_else(|| CalibError::Model("samples of different shapes".into()))?;
                            &stacked
                        };
                        let results = interp.run_all(inputs).map_err(|e| CalibError::Model(e.to_string()))?;
                        Ok((Some(results), started.elapsed()))
                    },
                    || -> Result<Duration, CalibError> {
                        let started = Instant::now();
                        if let Some((results, images)) = pending.take() {
                            collector.observe_stacked(&results, per_run, images)?;
                        }
                        Ok(started.elapsed())
                    },
                )
            },
            || runs.get(k + 1).map(load),
        );
        next = prefetched;
        let (results, ran) = ran?;
        let folded = folded?;
        times.observe += folded;
        times.load_wait += joined.elapsed().saturating_sub(ran.max(folded));
        if let Some(results) = results {
            let images = good.len();
            used += images;
            for (j, inputs) in good.into_iter().enumerate() {
                if tune && tune_inputs.len() < opts.tune_num {
                    let refs =
                        results.iter().map(|r| r.as_ref().and_then(|t| stack::image_tensor(t, per_run, j))).collect();
                    tune_inputs.push(inputs);
                    tune_references.push(refs);
                }
            }
            pending = Some((results, images));
        }
        on_event(CalibEvent::Sample { done: range.end, total });
    }
    if let Some((results, images)) = pending.take() {
        let started = Instant::now();
        collector.observe_stacked(&results, per_run, images)?;
        times.observe += started.elapsed();
    }
    if used == 0 {
        return Err(CalibError::Dataset("no sample could be used".into()));
    }
    times.statistics = statistics.elapsed();
    // the tuner evaluates single ops with this interpreter when it ran the model itself (one
    // sample per run); a stacked one is freed (with its packed and transformed filters) here
    let prepared = if stacked_module.is_none() {
        Some(interp)
    } else {
        drop(interp);
        None
    };
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
