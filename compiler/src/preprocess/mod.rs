//! Image preprocessing exactly as tpu-mlir does it (flow reference 1.4): decode, resize or
//! letterbox, channel order, `(x - mean) * scale`, layout. Also loads npz / npy inputs.

pub mod config;

pub use config::{ChannelFormat, PadType, PixelFormat, PreprocessConfig, PreprocessError};

use ndarray::ArrayD;
use std::path::Path;

/// Load one model input from an image (jpg/png, preprocessed by `cfg`), an `.npy`, or the first
/// array of an `.npz`, checked against the expected `shape` (a single image is repeated to the batch).
pub fn load_input(
    path: &Path,
    cfg: Option<&PreprocessConfig>,
    shape: &[usize],
) -> Result<ArrayD<f32>, PreprocessError> {
    let _ = (cfg, shape);
    Err(PreprocessError::Image { path: path.to_path_buf(), msg: "input loading not implemented yet".into() })
}
