//! The bmodel runtime (no_std, no allocation on the run path).
#![no_std]
