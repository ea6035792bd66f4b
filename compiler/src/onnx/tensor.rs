//! Constant tensors of the import: decoded initializers, Constant nodes and folded values.
//!
//! Two element kinds are enough for import: float (every float type becomes f32, as tpu-mlir
//! converts all weights to f32) and integer (every integer / bool type as i64, so that shape
//! arithmetic stays exact).

use super::error::OnnxError;
use super::proto::{data_type as dt, TensorProto};
use crate::ir::weights::TensorData;
use ndarray::{ArrayD, IxDyn};

/// A constant value known at import time.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstTensor {
    /// float data (f32, f16, f64 sources)
    F32(ArrayD<f32>),
    /// integer data (all integer types and bool)
    I64(ArrayD<i64>),
}

impl ConstTensor {
    /// Shape of the tensor.
    pub fn shape(&self) -> &[usize] {
        match self {
            ConstTensor::F32(a) => a.shape(),
            ConstTensor::I64(a) => a.shape(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// True when the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True for integer tensors.
    pub fn is_int(&self) -> bool {
        matches!(self, ConstTensor::I64(_))
    }

    /// The values as f32 (integers converted).
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            ConstTensor::F32(a) => a.clone(),
            ConstTensor::I64(a) => a.mapv(|x| x as f32),
        }
    }

    /// The values as i64 (floats truncated toward zero, as a Cast would).
    pub fn to_i64(&self) -> ArrayD<i64> {
        match self {
            ConstTensor::F32(a) => a.mapv(|x| x as i64),
            ConstTensor::I64(a) => a.clone(),
        }
    }

    /// Flat list of the values as i64 (row-major).
    pub fn i64_values(&self) -> Vec<i64> {
        self.to_i64().iter().copied().collect()
    }

    /// Flat list of the values as f64 (row-major).
    pub fn f64_values(&self) -> Vec<f64> {
        match self {
            ConstTensor::F32(a) => a.iter().map(|&x| x as f64).collect(),
            ConstTensor::I64(a) => a.iter().map(|&x| x as f64).collect(),
        }
    }

    /// The weight stored in the npz (always f32 at the top level).
    pub fn to_weight(&self) -> TensorData {
        TensorData::F32(self.to_f32().as_standard_layout().to_owned())
    }

    /// A 1-D integer tensor.
    pub fn ints(v: &[i64]) -> Self {
        ConstTensor::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).expect("1-D shape"))
    }

    /// Same data, new shape (element count must match).
    pub fn reshaped(&self, shape: &[usize]) -> Option<Self> {
        Some(match self {
            ConstTensor::F32(a) => {
                ConstTensor::F32(ArrayD::from_shape_vec(IxDyn(shape), a.iter().copied().collect()).ok()?)
            }
            ConstTensor::I64(a) => {
                ConstTensor::I64(ArrayD::from_shape_vec(IxDyn(shape), a.iter().copied().collect()).ok()?)
            }
        })
    }

    /// Decode an ONNX `TensorProto`.
    pub fn from_proto(t: &TensorProto) -> Result<Self, OnnxError> {
        let name = if t.name.is_empty() { "<unnamed>".to_string() } else { t.name.clone() };
        if t.data_location == 1 || !t.external_data.is_empty() {
            return Err(OnnxError::ExternalData(name));
        }
        let mut shape = Vec::with_capacity(t.dims.len());
        for &d in &t.dims {
            if d < 0 {
                return Err(OnnxError::TensorData { name, msg: format!("negative dimension {d} in {:?}", t.dims) });
            }
            shape.push(d as usize);
        }
        let n: usize = shape.iter().product();
        let raw = &t.raw_data;
        let use_raw = !raw.is_empty() || n == 0;
        let bad_len = |have: usize| OnnxError::TensorData {
            name: name.clone(),
            msg: format!("holds {have} values but its dims {:?} need {n}", t.dims),
        };
        let raw_chunks = |size: usize| -> Result<Vec<&[u8]>, OnnxError> {
            if raw.len() != n * size {
                return Err(OnnxError::TensorData {
                    name: name.clone(),
                    msg: format!("raw_data has {} bytes but dims {:?} need {}", raw.len(), t.dims, n * size),
                });
            }
            Ok(raw.chunks_exact(size).collect())
        };
        let floats: Option<Vec<f32>> = match t.data_type {
            dt::FLOAT => Some(if use_raw {
                raw_chunks(4)?.iter().map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            } else {
                t.float_data.clone()
            }),
            dt::DOUBLE => Some(if use_raw {
                raw_chunks(8)?
                    .iter()
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
                    .collect()
            } else {
                t.double_data.iter().map(|&x| x as f32).collect()
            }),
            dt::FLOAT16 => Some(if use_raw {
                raw_chunks(2)?.iter().map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            } else {
                t.int32_data.iter().map(|&x| half::f16::from_bits(x as u16).to_f32()).collect()
            }),
            _ => None,
        };
        if let Some(v) = floats {
            if v.len() != n {
                return Err(bad_len(v.len()));
            }
            return Ok(ConstTensor::F32(ArrayD::from_shape_vec(IxDyn(&shape), v).map_err(|_| bad_len(n))?));
        }
        let ints: Vec<i64> = match t.data_type {
            dt::INT64 => {
                if use_raw {
                    raw_chunks(8)?
                        .iter()
                        .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                        .collect()
                } else {
                    t.int64_data.clone()
                }
            }
            dt::INT32 => {
                if use_raw {
                    raw_chunks(4)?.iter().map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()
                } else {
                    t.int32_data.iter().map(|&x| x as i64).collect()
                }
            }
            dt::INT16 => {
                if use_raw {
                    raw_chunks(2)?.iter().map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect()
                } else {
                    t.int32_data.iter().map(|&x| x as i64).collect()
                }
            }
            dt::UINT16 => {
                if use_raw {
                    raw_chunks(2)?.iter().map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect()
                } else {
                    t.int32_data.iter().map(|&x| x as i64).collect()
                }
            }
            dt::INT8 => {
                if use_raw {
                    raw.iter().map(|&b| b as i8 as i64).collect()
                } else {
                    t.int32_data.iter().map(|&x| x as i64).collect()
                }
            }
            dt::UINT8 | dt::BOOL => {
                if use_raw {
                    raw.iter().map(|&b| b as i64).collect()
                } else {
                    t.int32_data.iter().map(|&x| x as i64).collect()
                }
            }
            dt::UINT32 | dt::UINT64 => {
                if use_raw {
                    let size = if t.data_type == dt::UINT32 { 4 } else { 8 };
                    raw_chunks(size)?
                        .iter()
                        .map(|c| {
                            let mut b = [0u8; 8];
                            b[..size].copy_from_slice(c);
                            u64::from_le_bytes(b) as i64
                        })
                        .collect()
                } else {
                    t.uint64_data.iter().map(|&x| x as i64).collect()
                }
            }
            other => return Err(OnnxError::TensorType { name, data_type: other }),
        };
        if ints.len() != n {
            return Err(bad_len(ints.len()));
        }
        Ok(ConstTensor::I64(ArrayD::from_shape_vec(IxDyn(&shape), ints).map_err(|_| bad_len(n))?))
    }
}

/// Map an ONNX element type to the kind the importer keeps (`true` = integer).
pub fn is_int_type(data_type: i32) -> bool {
    !matches!(data_type, dt::FLOAT | dt::DOUBLE | dt::FLOAT16 | 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_raw_and_typed_data() {
        let t = TensorProto {
            dims: vec![2],
            data_type: dt::FLOAT,
            raw_data: [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat(),
            name: "w".into(),
            ..Default::default()
        };
        assert_eq!(ConstTensor::from_proto(&t).unwrap().f64_values(), vec![1.5, -2.0]);
        let t = TensorProto { dims: vec![3], data_type: dt::INT64, int64_data: vec![1, -1, 7], ..Default::default() };
        assert_eq!(ConstTensor::from_proto(&t).unwrap().i64_values(), vec![1, -1, 7]);
        let t = TensorProto { dims: vec![], data_type: dt::INT32, int32_data: vec![5], ..Default::default() };
        let c = ConstTensor::from_proto(&t).unwrap();
        assert_eq!(c.shape(), &[] as &[usize]);
        assert_eq!(c.i64_values(), vec![5]);
    }

    #[test]
    fn rejects_wrong_length_and_external_data() {
        let t = TensorProto {
            dims: vec![4],
            data_type: dt::FLOAT,
            float_data: vec![1.0],
            name: "w".into(),
            ..Default::default()
        };
        assert_eq!(
            ConstTensor::from_proto(&t).unwrap_err().to_string(),
            "tensor 'w': holds 1 values but its dims [4] need 4"
        );
        let t = TensorProto {
            dims: vec![4],
            data_type: dt::FLOAT,
            data_location: 1,
            name: "w".into(),
            ..Default::default()
        };
        assert!(ConstTensor::from_proto(&t).unwrap_err().to_string().contains("external data"));
    }
}
