//! The real [`super::MixedRunner`]: lowers the model per float set and runs the chip simulator
//! (work in progress).
