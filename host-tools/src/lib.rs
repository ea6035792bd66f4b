//! Shared code of the command-line tools and benchmarks.

pub mod bench;
pub mod yolo_model;

pub mod memory;
