//! The textual `.mlir` form (MLIR generic syntax, as tpu-mlir prints it): printer and nom parser.
//!
//! `print_module(parse_module(f))` reproduces tpu-mlir's own files byte for byte, and
//! `parse_module(print_module(m)) == m` for modules whose values are numbered in program order
//! (arguments first, then op results, as the importer and the parser create them).
//!
//! Representation choices for MLIR forms the IR has no dedicated variant for:
//! * `tensor<*xf32>` (unranked, only before shape inference) is the shape `[UNRANKED_DIM]`;
//! * a dictionary attribute `param = {from = "FP32", scale = ...}` is flattened into
//!   `param_from`, `param_scale`, ...; for `tpu.GenericCpu` the printer folds the `param_*`
//!   attributes back into the `param` dictionary, as tpu-mlir prints them;
//! * a unit attribute (a bare name) reads as `true`; an empty array reads as an empty `IntArray`.

mod float;
mod parse;
mod print;

use super::Module;
use std::path::{Path, PathBuf};

/// The one dimension of an unranked tensor type (`tensor<*xf32>`).
pub const UNRANKED_DIM: usize = usize::MAX;

/// A parse failure with its line and column.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[error("line {line}, column {column}: {msg}")]
pub struct ParseError {
    /// 1-based line
    pub line: usize,
    /// 1-based column
    pub column: usize,
    /// what was expected
    pub msg: String,
}

/// Errors of reading or writing an `.mlir` file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum MlirFileError {
    /// The file could not be read or written.
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
    /// The text is not a module this parser understands.
    #[error("{path}: {err}")]
    Parse { path: PathBuf, err: ParseError },
}

/// Print a module in MLIR generic syntax.
pub fn print_module(module: &Module) -> String {
    print::print_module(module)
}

/// Parse a module printed by [`print_module`] or by tpu-mlir.
pub fn parse_module(text: &str) -> Result<Module, ParseError> {
    parse::parse_module(text)
}

/// Read and parse an `.mlir` file.
pub fn load_module(path: &Path) -> Result<Module, MlirFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| MlirFileError::Io { path: path.to_path_buf(), msg: e.to_string() })?;
    parse_module(&text).map_err(|err| MlirFileError::Parse { path: path.to_path_buf(), err })
}

/// Print a module to an `.mlir` file atomically (temporary file in the same directory, then rename).
pub fn save_module(path: &Path, module: &Module) -> Result<(), MlirFileError> {
    crate::atomic_file::write(path, print_module(module).as_bytes())
        .map_err(|e| MlirFileError::Io { path: path.to_path_buf(), msg: e.to_string() })
}

#[cfg(test)]
mod tests;
