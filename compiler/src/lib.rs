//! Host compiler of the tpu-mlir-compatible quantization flow.
//!
//! Data flow: ONNX ([`onnx`]) -> top IR ([`ir`]) -> F32 run ([`interp`]) -> calibration
//! -> lowering per chip -> reference simulator -> bmodel codegen.

pub mod ir;
