//! Simulator values: raw storage per element type, plus dequantization to f32.

use crate::ir::{ElemType, Quant, TensorType};
use crate::quant::float;
use ndarray::ArrayD;

/// Raw storage of one value.
#[derive(Debug, Clone, PartialEq)]
pub enum SimData {
    /// float32 values
    F32(ArrayD<f32>),
    /// signed int8 codes
    I8(ArrayD<i8>),
    /// unsigned int8 codes
    U8(ArrayD<u8>),
    /// int32 (biases)
    I32(ArrayD<i32>),
    /// f16 bit patterns
    F16(ArrayD<u16>),
    /// bf16 bit patterns
    BF16(ArrayD<u16>),
}

/// One simulated value: storage and its IR type.
#[derive(Debug, Clone, PartialEq)]
pub struct SimTensor {
    /// Raw data.
    pub data: SimData,
    /// The value's type in the lowered module.
    pub ty: TensorType,
}

impl SimTensor {
    /// The raw little-endian bytes of the tensor as the chip (and the runtime's arena) stores
    /// it; what `model_deploy` and the tests compare byte for byte with the runtime's outputs.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match &self.data {
            SimData::F32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            SimData::I8(a) => a.iter().map(|&v| v as u8).collect(),
            SimData::U8(a) => a.iter().copied().collect(),
            SimData::I32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            SimData::F16(a) | SimData::BF16(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// Shape of the value.
    pub fn shape(&self) -> &[usize] {
        match &self.data {
            SimData::F32(a) => a.shape(),
            SimData::I8(a) => a.shape(),
            SimData::U8(a) => a.shape(),
            SimData::I32(a) => a.shape(),
            SimData::F16(a) | SimData::BF16(a) => a.shape(),
        }
    }

    /// Integer codes minus the zero point as i32 (int8 values), or the raw ints.
    pub fn codes_i32(&self) -> Option<ArrayD<i32>> {
        let zp = match self.ty.quant() {
            Some(Quant::Uniform { zero_point, .. }) => zero_point as i32,
            _ => 0,
        };
        match &self.data {
            SimData::I8(a) => Some(a.mapv(|v| v as i32 - zp)),
            SimData::U8(a) => Some(a.mapv(|v| v as i32 - zp)),
            SimData::I32(a) => Some(a.clone()),
            _ => None,
        }
    }

    /// Real values in f32 as tpu-mlir stores them in `*_tpu_outputs.npz`:
    /// int8 → `(f32)scale · (q − zp)`, f16 / bf16 → widened, f32 as is.
    pub fn dequantize(&self) -> ArrayD<f32> {
        let (scale, zp) = match self.ty.quant() {
            Some(Quant::Uniform { scale, zero_point, .. }) => (scale as f32, zero_point as f32),
            _ => (1.0, 0.0),
        };
        match &self.data {
            SimData::F32(a) => a.clone(),
            SimData::I8(a) => a.mapv(|v| scale * (v as f32 - zp)),
            SimData::U8(a) => a.mapv(|v| scale * (v as f32 - zp)),
            SimData::I32(a) => a.mapv(|v| v as f32),
            SimData::F16(a) => a.mapv(float::f16_bits_to_f32),
            SimData::BF16(a) => a.mapv(float::bf16_bits_to_f32),
        }
    }

    /// The values as f32 for float arithmetic (dequantized for int8).
    pub fn to_f32(&self) -> ArrayD<f32> {
        self.dequantize()
    }
}

/// Build a tensor of type `ty` from f32 results, rounding to the element type
/// (f16 RNE, bf16 RNE — CV18xx rule when `cv` — or int8 by round-half-away + saturation).
pub fn from_f32(v: ArrayD<f32>, ty: &TensorType, cv: bool) -> SimTensor {
    let data = match (ty.elem(), ty.quant()) {
        (_, Some(Quant::Uniform { signed, scale, zero_point, .. })) => {
            let inv = (1.0 / scale) as f32;
            let q = |x: f32| ((x * inv) as f64).round() + zero_point as f64;
            if signed {
                SimData::I8(v.mapv(|x| q(x).clamp(-128.0, 127.0) as i8))
            } else {
                SimData::U8(v.mapv(|x| q(x).clamp(0.0, 255.0) as u8))
            }
        }
        (Some(ElemType::F16), _) => SimData::F16(v.mapv(float::f32_to_f16_bits)),
        (Some(ElemType::BF16), _) => {
            if cv {
                SimData::BF16(v.mapv(float::cv_f32_to_bf16_bits))
            } else {
                SimData::BF16(v.mapv(float::f32_to_bf16_bits))
            }
        }
        _ => SimData::F32(v),
    };
    SimTensor { data, ty: ty.clone() }
}

/// Build an int8 tensor of type `ty` from already-requantized integers (saturated here).
pub fn from_codes(v: ArrayD<i64>, ty: &TensorType) -> SimTensor {
    let (signed, zp) = match ty.quant() {
        Some(Quant::Uniform { signed, zero_point, .. }) => (signed, zero_point),
        _ => (true, 0),
    };
    let data = if signed {
        SimData::I8(v.mapv(|x| (x + zp).clamp(-128, 127) as i8))
    } else {
        SimData::U8(v.mapv(|x| (x + zp).clamp(0, 255) as u8))
    };
    SimTensor { data, ty: ty.clone() }
}
