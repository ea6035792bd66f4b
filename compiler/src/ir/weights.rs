//! Weight (coefficient) storage: the contents of `<name>_top_f32_all_weight.npz` and of the
//! lowered `*_tpu_weights.npz`, keyed by the `top.Weight` op's name.

use ndarray::ArrayD;
use std::collections::BTreeMap;

/// One stored array, in the element type it has in the npz.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// float32 (top-level weights, float lowering)
    F32(ArrayD<f32>),
    /// int8 (quantized filters)
    I8(ArrayD<i8>),
    /// uint8 (unsigned filters, LUTs)
    U8(ArrayD<u8>),
    /// int32 (quantized biases)
    I32(ArrayD<i32>),
    /// 16-bit patterns of f16 / bf16 weights (tpu-mlir stores them as uint16)
    U16(ArrayD<u16>),
    /// int64 (shape constants)
    I64(ArrayD<i64>),
}

impl TensorData {
    /// Shape of the array.
    pub fn shape(&self) -> &[usize] {
        match self {
            TensorData::F32(a) => a.shape(),
            TensorData::I8(a) => a.shape(),
            TensorData::U8(a) => a.shape(),
            TensorData::I32(a) => a.shape(),
            TensorData::U16(a) => a.shape(),
            TensorData::I64(a) => a.shape(),
        }
    }

    /// The values converted to f32 (integer codes as their numeric value).
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            TensorData::F32(a) => a.clone(),
            TensorData::I8(a) => a.mapv(|x| x as f32),
            TensorData::U8(a) => a.mapv(|x| x as f32),
            TensorData::I32(a) => a.mapv(|x| x as f32),
            TensorData::U16(a) => a.mapv(|x| x as f32),
            TensorData::I64(a) => a.mapv(|x| x as f32),
        }
    }

    /// Borrow as f32 if that is the stored type.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            TensorData::F32(a) => Some(a),
            _ => None,
        }
    }
}

/// All weights of a module, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    /// name -> array
    pub map: BTreeMap<String, TensorData>,
}

impl Weights {
    /// Insert or replace a weight.
    pub fn insert(&mut self, name: impl Into<String>, data: TensorData) {
        self.map.insert(name.into(), data);
    }

    /// Look a weight up by name.
    pub fn get(&self, name: &str) -> Option<&TensorData> {
        self.map.get(name)
    }
}
