//! Simulator values: raw storage per element type, plus dequantization to f32.

use crate::ir::{ElemType, Quant, TensorType};
use crate::quant::float;
use ndarray::ArrayD;
use std::borrow::Cow;

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

    /// [`SimTensor::to_f32`] as a flat slice in logical order, borrowed (not copied) when the
    /// tensor is stored as f32 in standard layout.
    pub fn f32_values(&self) -> Cow<'_, [f32]> {
        match &self.data {
            SimData::F32(a) => match a.as_slice() {
                Some(s) => Cow::Borrowed(s),
                None => Cow::Owned(a.iter().copied().collect()),
            },
            _ => Cow::Owned(self.dequantize().iter().copied().collect()),
        }
    }

    /// `self.to_f32().mapv(f)`, without the copy of f32 storage.
    pub fn map_f32(&self, f: impl Fn(f32) -> f32) -> ArrayD<f32> {
        match &self.data {
            SimData::F32(a) => a.mapv(f),
            _ => self.dequantize().mapv_into(f),
        }
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

/// `from_codes(v.mapv(f), ty)` without the array of i64 codes: each element mapped by `f` to
/// its requantized code, then the zero point added and saturated to the storage type.
pub fn codes_from<T: Copy>(v: ndarray::ArrayViewD<'_, T>, f: impl Fn(T) -> i64, ty: &TensorType) -> SimTensor {
    let (signed, zp) = match ty.quant() {
        Some(Quant::Uniform { signed, zero_point, .. }) => (signed, zero_point),
        _ => (true, 0),
    };
    let data = if signed {
        SimData::I8(v.mapv(|x| (f(x) + zp).clamp(-128, 127) as i8))
    } else {
        SimData::U8(v.mapv(|x| (f(x) + zp).clamp(0, 255) as u8))
    };
    SimTensor { data, ty: ty.clone() }
}

/// `x.round() as i64` (half away from zero, saturating, NaN to 0) without the call to the C
/// library's `round` that `f64::round` compiles to: exact, the fraction is exactly representable
/// below 2^52 (and every larger f64 is an integer, taken by the library path).
#[inline]
pub fn round_to_i64(x: f64) -> i64 {
    if x.abs() < 4_503_599_627_370_496.0 {
        let t = x as i64;
        let frac = x - t as f64;
        t + (frac >= 0.5) as i64 - (frac <= -0.5) as i64
    } else {
        x.round() as i64
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_to_i64_is_round_then_cast() {
        let mut seed = 3u64;
        let mut cases = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.49999999999999994,
            -0.49999999999999994,
            4_503_599_627_370_495.5,
            -4_503_599_627_370_495.5,
            4_503_599_627_370_496.0,
            9.3e18,
            -9.3e18,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        for _ in 0..100_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let scale = [1.0, 300.0, 1e6, 1e16][(seed >> 60) as usize % 4];
            cases.push(((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * scale);
            cases.push(((seed >> 20) as i64 - (1 << 43)) as f64 + 0.5);
        }
        for x in cases {
            assert_eq!(round_to_i64(x), x.round() as i64, "{x:?}");
        }
    }
}
