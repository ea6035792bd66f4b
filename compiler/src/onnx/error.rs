//! Errors of ONNX import; every message names the file, node or tensor and the cause.

use std::path::PathBuf;

/// Everything that can go wrong while importing an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read.
    #[error("{path}: cannot read file: {msg}")]
    Io { path: PathBuf, msg: String },
    /// The file is not a (complete) ONNX protobuf model.
    #[error("{path}: not a valid ONNX model: {msg}")]
    Format { path: PathBuf, msg: String },
    /// An initializer or Constant keeps its data in an external file.
    #[error("tensor '{0}': external data is not supported (re-save the model with all tensors inline)")]
    ExternalData(String),
    /// A tensor with an element type the importer cannot hold.
    #[error("tensor '{name}': unsupported element type {data_type}")]
    TensorType { name: String, data_type: i32 },
    /// A tensor whose data length does not match its dims.
    #[error("tensor '{name}': {msg}")]
    TensorData { name: String, msg: String },
    /// An op type with no conversion.
    #[error("unsupported ONNX op type '{op_type}' (node '{node}'); cut the graph before it with --output_names")]
    UnsupportedOp { op_type: String, node: String },
    /// A supported op used with attributes / inputs the importer cannot convert.
    #[error("node '{node}' ({op_type}): {msg}")]
    Node { node: String, op_type: String, msg: String },
    /// `--output_names` entries that are no tensor of the graph.
    #[error("output names not found in the graph: {}", .0.join(", "))]
    OutputNotFound(Vec<String>),
    /// Problems with the graph inputs or `--input_shapes`.
    #[error("input shapes: {0}")]
    InputShape(String),
    /// A node input that no node, input or initializer produces.
    #[error("node '{node}': input '{input}' is not produced by any node, graph input or initializer")]
    DanglingInput { node: String, input: String },
    /// Anything else about the graph.
    #[error("{0}")]
    Graph(String),
}
