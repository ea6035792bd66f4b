//! Shared helpers of the command-line tools (argument parsing of tpu-mlir's list syntaxes).
