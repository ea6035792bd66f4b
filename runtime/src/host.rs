//! Host helpers (feature `std`): run a bmodel on f32 inputs and get each output's raw bytes and
//! its dequantized f32 values.

use crate::kernels::num::{bf16_to_f32, code8, f16_to_f32, f32_to_bf16, f32_to_f16};
use crate::{load, RuntimeError};
use bmodel_format::{DType, IoTensor};
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

/// One output of a host run.
#[derive(Debug, Clone, PartialEq)]
pub struct HostOutput {
    /// tensor name
    pub name: String,
    /// logical shape
    pub dims: Vec<usize>,
    /// stored type
    pub dtype: DType,
    /// raw bytes as the runtime wrote them
    pub raw: Vec<u8>,
    /// values as f32 (`scale·(q − zp)` for integer outputs)
    pub values: Vec<f32>,
}

/// Encode f32 values in an input's storage type (float types by RNE; integer inputs by
/// `round_half_away(x/scale) + zp`).
pub fn encode_input(t: &IoTensor<'_>, values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.storage.byte_len() as usize);
    for &v in values {
        match t.storage.dtype {
            DType::F32 => out.extend_from_slice(&v.to_le_bytes()),
            DType::F16 => out.extend_from_slice(&f32_to_f16(v).to_le_bytes()),
            DType::BF16 => out.extend_from_slice(&f32_to_bf16(v, false).to_le_bytes()),
            DType::I8 | DType::U8 => {
                let q = crate::kernels::num::round_f32(v / t.scale, bmodel_format::RoundMode::HalfAwayFromZero)
                    + t.zero_point as i64;
                out.push(crate::kernels::num::sat8(q, t.storage.dtype == DType::U8));
            }
            DType::I16 => out.extend_from_slice(&((v / t.scale) as i16).to_le_bytes()),
            DType::I32 => out.extend_from_slice(&((v / t.scale) as i32).to_le_bytes()),
        }
    }
    out
}

/// Decode raw output bytes to f32.
pub fn decode_output(t: &IoTensor<'_>, raw: &[u8]) -> Vec<f32> {
    let n = t.storage.numel() as usize;
    (0..n)
        .map(|i| match t.storage.dtype {
            DType::F32 => f32::from_le_bytes([raw[4 * i], raw[4 * i + 1], raw[4 * i + 2], raw[4 * i + 3]]),
            DType::F16 => f16_to_f32(u16::from_le_bytes([raw[2 * i], raw[2 * i + 1]])),
            DType::BF16 => bf16_to_f32(u16::from_le_bytes([raw[2 * i], raw[2 * i + 1]])),
            DType::I8 | DType::U8 => t.scale * (code8(raw[i], t.storage.dtype == DType::U8) - t.zero_point) as f32,
            DType::I16 => i16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]) as f32 * t.scale,
            DType::I32 => {
                i32::from_le_bytes([raw[4 * i], raw[4 * i + 1], raw[4 * i + 2], raw[4 * i + 3]]) as f32 * t.scale
            }
        })
        .collect()
}

/// Load `bytes` into a fresh arena, run it on `inputs` (f32, one slice per network input, NCHW),
/// and return every output.
pub fn run_f32(bytes: &[u8], inputs: &[&[f32]]) -> Result<Vec<HostOutput>, RuntimeError> {
    let size = crate::arena_size(bytes)? as usize;
    let mut arena = vec![0u8; size];
    let mut m = load(bytes, &mut arena)?;
    let ins: Vec<IoTensor<'_>> = m.inputs().to_vec();
    if ins.len() != inputs.len() {
        return Err(RuntimeError::InputCount { expected: ins.len(), got: inputs.len() });
    }
    for (i, (t, v)) in ins.iter().zip(inputs).enumerate() {
        let enc = encode_input(t, v);
        let dst = m.input_mut(i)?;
        if dst.len() != enc.len() {
            return Err(RuntimeError::InputSize { index: i, expected: dst.len(), got: enc.len() });
        }
        dst.copy_from_slice(&enc);
    }
    m.invoke()?;
    let outs: Vec<IoTensor<'_>> = m.outputs().to_vec();
    let mut res = Vec::new();
    for (i, t) in outs.iter().enumerate() {
        let raw = m.output(i)?.to_vec();
        res.push(HostOutput {
            name: t.name.to_string(),
            dims: t.dims.iter().map(|&d| d as usize).collect(),
            dtype: t.storage.dtype,
            values: decode_output(t, &raw),
            raw,
        });
    }
    Ok(res)
}
