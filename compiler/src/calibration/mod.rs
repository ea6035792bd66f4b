//! Activation calibration as tpu-mlir's `run_calibration.py` does it (flow reference 2.1-2.6):
//! per-tensor statistics streamed over the dataset, KL / max / percentile / MSE thresholds,
//! the threshold tuning pass, and the calibration table file.

pub mod collect;
pub mod dataset;
mod early_exit;
pub mod histogram;
pub mod inputs;
mod kernels;
pub mod kl;
pub mod run;
pub mod stack;
mod statistics;
pub mod table;
pub mod tune;

pub use collect::{calib_tensors, CaliMethod, CalibTensor, Collector, TensorResult};
pub use dataset::{python_shuffle, read_data_list, select_dataset, Dataset, Mt19937, SampleKind};
pub use histogram::{AbsHistogram, TensorStats};
pub use inputs::{InputLoader, ModelInput};
pub use kl::kl_threshold;
pub use run::{run_calibration, CalibEvent, CalibOptions, CalibOutcome, PhaseTimes};
pub use table::{CalibEntry, CalibrationTable, TableHeader};
pub use tune::{fake_quant, fake_quant_weights, tune_thresholds, TuneOptions};

use std::path::PathBuf;

/// Errors of calibration; each names the file, line, tensor or op concerned.
#[derive(Debug, thiserror::Error)]
pub enum CalibError {
    /// A file could not be read or written.
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
    /// A malformed line in a calibration table.
    #[error("{path}:{line}: {msg}")]
    Table { path: PathBuf, line: usize, msg: String },
    /// A problem with the dataset (empty, mixed kinds, missing files).
    #[error("dataset: {0}")]
    Dataset(String),
    /// A sample that cannot be loaded (unreadable image, wrong shape).
    #[error("{path}: {msg}")]
    Sample { path: PathBuf, msg: String },
    /// The model cannot be run.
    #[error("model: {0}")]
    Model(String),
    /// Bad options.
    #[error("{0}")]
    Config(String),
}
