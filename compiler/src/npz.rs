//! npz files (numpy zip archives) as tpu-mlir reads and writes them: weights, inputs, all-tensor dumps.

use crate::ir::weights::TensorData;
use std::path::{Path, PathBuf};

/// Errors reading or writing an npz file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum NpzError {
    /// The file could not be opened, read or written.
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
    /// The file is not a valid npz or holds an unsupported array.
    #[error("{path}: not a valid npz file: {msg}")]
    Format { path: PathBuf, msg: String },
}

/// Read every array of an npz file, in archive order.
pub fn read_npz(path: &Path) -> Result<Vec<(String, TensorData)>, NpzError> {
    let _ = path;
    Err(NpzError::Format { path: path.to_path_buf(), msg: "npz reading not implemented yet".into() })
}

/// Write arrays to an npz file atomically (temporary file, then rename).
pub fn write_npz(path: &Path, arrays: &[(String, TensorData)]) -> Result<(), NpzError> {
    let _ = arrays;
    Err(NpzError::Io { path: path.to_path_buf(), msg: "npz writing not implemented yet".into() })
}
