//! The bmodel container: header, tensors, memory plan, instruction stream (no_std).
#![no_std]
#![forbid(unsafe_code)]

/// Magic number at the start of every bmodel written by this project.
pub const MAGIC: [u8; 4] = *b"BMRS";
