//! Shared helpers of the runtime integration tests: asset paths, model loading, comparisons.
#![allow(dead_code)]

use compiler::ir::text::parse_module;
use compiler::ir::weights::{TensorData, Weights};
use compiler::ir::Module;
use ndarray::ArrayD;
use std::path::PathBuf;

/// Path of a bundled asset.
pub fn asset(p: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/")).join(p)
}

/// Parse a bundled `.mlir`.
pub fn module(p: &str) -> Module {
    parse_module(&std::fs::read_to_string(asset(p)).unwrap()).unwrap()
}

/// Read a bundled npz as weights.
pub fn weights(p: &str) -> Weights {
    let mut w = Weights::default();
    for (k, v) in compiler::npz::read_npz(&asset(p)).unwrap() {
        w.insert(k, v);
    }
    w
}

/// Read one f32 array of a bundled npz.
pub fn npz_f32(p: &str, key: &str) -> ArrayD<f32> {
    compiler::npz::read_npz(&asset(p))
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.to_f32())
        .unwrap_or_else(|| panic!("{key} not in {p}"))
}

/// The tiny-yolov3 preprocessed input of 000000124798.jpg.
pub fn yolo_input() -> ArrayD<f32> {
    npz_f32("reference/tiny-yolov3/yolov3_tiny_in_f32.npz", "input_1")
}

/// Count of differing elements between two f32 slices (bitwise).
pub fn bit_diffs(a: &[f32], b: &[f32]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count()
}

/// Keep `TensorData` in scope for tests that build weights by hand.
pub type Data = TensorData;

/// Load and run a possibly corrupt bmodel (arena capped at 64 MiB) as a fuzz target:
/// `Ok(true)` ran, `Ok(false)` rejected by `arena_size` or `load`, `Err` the runtime panicked.
pub fn load_and_run_untrusted(b: &[u8]) -> std::thread::Result<bool> {
    std::panic::catch_unwind(|| {
        let Ok(size) = runtime::arena_size(b) else { return false };
        if size > 64 << 20 {
            return false;
        }
        let mut arena = vec![0u8; size as usize];
        let Ok(mut m) = runtime::load(b, &mut arena) else { return false };
        m.invoke().unwrap();
        true
    })
}
