//! Typed runtime errors (no_std, `Display` without allocation).

use bmodel_format::FormatError;
use core::fmt;

/// Why loading or running failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RuntimeError {
    /// The bmodel failed a format or verification check.
    Format(FormatError),
    /// The caller's arena is smaller than the plan needs.
    ArenaTooSmall {
        /// bytes needed
        needed: u64,
        /// bytes given
        got: usize,
    },
    /// Wrong number of input buffers.
    InputCount {
        /// inputs of the network
        expected: usize,
        /// buffers given
        got: usize,
    },
    /// An input buffer has the wrong size.
    InputSize {
        /// input index
        index: usize,
        /// bytes expected
        expected: usize,
        /// bytes given
        got: usize,
    },
    /// Wrong number of output buffers.
    OutputCount {
        /// outputs of the network
        expected: usize,
        /// buffers given
        got: usize,
    },
    /// An output buffer has the wrong size.
    OutputSize {
        /// output index
        index: usize,
        /// bytes expected
        expected: usize,
        /// bytes given
        got: usize,
    },
    /// No input/output with this index.
    NoSuchTensor(usize),
}

impl From<FormatError> for RuntimeError {
    fn from(e: FormatError) -> Self {
        RuntimeError::Format(e)
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Format(e) => write!(f, "invalid bmodel: {e}"),
            RuntimeError::ArenaTooSmall { needed, got } => {
                write!(f, "arena too small: needs {needed} bytes, got {got}")
            }
            RuntimeError::InputCount { expected, got } => write!(f, "network has {expected} inputs, {got} given"),
            RuntimeError::InputSize { index, expected, got } => {
                write!(f, "input {index} needs {expected} bytes, {got} given")
            }
            RuntimeError::OutputCount { expected, got } => write!(f, "network has {expected} outputs, {got} given"),
            RuntimeError::OutputSize { index, expected, got } => {
                write!(f, "output {index} holds {expected} bytes, buffer has {got}")
            }
            RuntimeError::NoSuchTensor(i) => write!(f, "no input/output with index {i}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RuntimeError {}
