//! Host compiler of the tpu-mlir-compatible quantization flow.
//!
//! Data flow: ONNX ([`onnx`]) -> top IR ([`ir`], textual form in [`ir::text`], weights in
//! [`npz`]) -> F32 run ([`interp`]) -> [`calibration`] -> lowering per chip ([`lower`], chip
//! arithmetic in [`quant`]) -> reference simulator ([`sim`]) -> bmodel ([`codegen`]);
//! [`search`] is the mixed-precision search, [`yolo`] the detection post-processing.

pub mod atomic_file;
mod batch;
pub mod calibration;
pub mod codegen;
pub mod compare;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod model_file;
pub mod npz;
pub mod onnx;
pub mod preprocess;
pub mod quant;
pub mod search;
pub mod sim;
pub mod yolo;
