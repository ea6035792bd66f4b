//! Model inputs given as arrays: `.npy` files and members of `.npz` files, converted to f32 and
//! fitted to the input shape (a single sample is repeated to the batch, as tpu-mlir does).

use super::PreprocessError;
use ndarray::{ArrayD, Axis, IxDyn};
use ndarray_npy::{NpzReader, ReadNpyExt};
use std::fs::File;
use std::path::Path;

fn array_err(path: &Path, msg: impl Into<String>) -> PreprocessError {
    PreprocessError::Array { path: path.to_path_buf(), msg: msg.into() }
}

/// Read an `.npy` file holding f32, f64, u8, i8, i32 or i64 values as f32.
pub fn read_npy_f32(path: &Path) -> Result<ArrayD<f32>, PreprocessError> {
    macro_rules! try_type {
        ($t:ty) => {{
            let f = File::open(path).map_err(|e| array_err(path, e.to_string()))?;
            if let Ok(a) = ArrayD::<$t>::read_npy(f) {
                return Ok(a.mapv(|v| v as f32));
            }
        }};
    }
    let f = File::open(path).map_err(|e| array_err(path, e.to_string()))?;
    let first = ArrayD::<f32>::read_npy(f);
    let first_err = match first {
        Ok(a) => return Ok(a),
        Err(e) => e.to_string(),
    };
    try_type!(f64);
    try_type!(u8);
    try_type!(i8);
    try_type!(i32);
    try_type!(i64);
    Err(array_err(path, format!("not a readable numeric npy array: {first_err}")))
}

/// Read one member of an `.npz` file as f32: the one called `name` when given and present,
/// else the first member.
pub fn read_npz_member_f32(path: &Path, name: Option<&str>) -> Result<ArrayD<f32>, PreprocessError> {
    let open = || -> Result<NpzReader<File>, PreprocessError> {
        let f = File::open(path).map_err(|e| array_err(path, e.to_string()))?;
        NpzReader::new(f).map_err(|e| array_err(path, format!("not a valid npz file: {e}")))
    };
    let names = open()?.names().map_err(|e| array_err(path, format!("not a valid npz file: {e}")))?;
    let member = match name.filter(|n| names.iter().any(|m| m == n)) {
        Some(n) => n.to_string(),
        None => names.first().cloned().ok_or_else(|| array_err(path, "npz file holds no array"))?,
    };
    macro_rules! try_type {
        ($t:ty) => {{
            if let Ok(a) = open()?.by_name::<ndarray::OwnedRepr<$t>, IxDyn>(&member) {
                return Ok(a.mapv(|v| v as f32));
            }
        }};
    }
    let first_err = match open()?.by_name::<ndarray::OwnedRepr<f32>, IxDyn>(&member) {
        Ok(a) => return Ok(a),
        Err(e) => e.to_string(),
    };
    try_type!(f64);
    try_type!(u8);
    try_type!(i8);
    try_type!(i32);
    try_type!(i64);
    Err(array_err(path, format!("array '{member}' is not numeric: {first_err}")))
}

/// Fit `a` to `shape`: equal shapes pass; an array equal to one sample (`shape[1..]`, or
/// `shape` with batch 1) is repeated to the batch; anything else is an error naming both shapes.
pub fn fit_to_shape(path: &Path, a: ArrayD<f32>, shape: &[usize]) -> Result<ArrayD<f32>, PreprocessError> {
    if a.shape() == shape {
        return Ok(a);
    }
    if let Some((&n, rest)) = shape.split_first() {
        let sample = if a.shape() == rest {
            Some(a.clone().insert_axis(Axis(0)))
        } else if a.ndim() == shape.len() && a.shape()[0] == 1 && &a.shape()[1..] == rest {
            Some(a.clone())
        } else {
            None
        };
        if let Some(s) = sample {
            let views: Vec<_> = (0..n).map(|_| s.view()).collect();
            return ndarray::concatenate(Axis(0), &views).map_err(|e| array_err(path, e.to_string()));
        }
    }
    Err(array_err(path, format!("array shape {:?} does not match the input shape {:?}", a.shape(), shape)))
}
