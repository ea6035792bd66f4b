//! Similarity metrics as tpu-mlir's npz_tool computes them (work in progress).
