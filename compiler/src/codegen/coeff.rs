//! The coefficient blob: weights, biases, requant tables and LUTs, each 16-byte aligned, in order
//! of first use (deduplicated by name).

use super::CodegenError;
use crate::ir::weights::TensorData;
use bmodel_format::{DType, Region, TensorRef};
use std::collections::BTreeMap;

/// Alignment of every coefficient inside the blob.
pub const COEFF_ALIGN: usize = 16;

/// Builder of the coefficient region.
#[derive(Debug, Default)]
pub struct CoeffBlob {
    /// the bytes
    pub bytes: Vec<u8>,
    by_name: BTreeMap<String, TensorRef>,
}

impl CoeffBlob {
    fn push(&mut self, data: &[u8], shape: [u32; 4], dtype: DType) -> Result<TensorRef, CodegenError> {
        let pad = self.bytes.len().div_ceil(COEFF_ALIGN) * COEFF_ALIGN - self.bytes.len();
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        let offset = u32::try_from(self.bytes.len()).map_err(|_| CodegenError::TooLarge("coefficient region"))?;
        self.bytes.extend_from_slice(data);
        Ok(TensorRef { region: Region::Coeff, offset, shape, dtype })
    }

    /// Add a named weight (stored once) in element type `dtype` with the given 4-D shape.
    pub fn weight(
        &mut self,
        name: &str,
        data: &TensorData,
        shape: [u32; 4],
        dtype: DType,
    ) -> Result<TensorRef, CodegenError> {
        if let Some(t) = self.by_name.get(name) {
            return Ok(*t);
        }
        let bad = |why: String| CodegenError::Weight { name: name.to_string(), why };
        let numel: u64 = shape.iter().map(|&d| d as u64).product();
        if data.shape().iter().product::<usize>() as u64 != numel {
            return Err(bad(format!("has {:?} elements, the op needs {numel}", data.shape())));
        }
        let bytes: Vec<u8> = match (data, dtype) {
            (TensorData::I8(a), DType::I8) => a.iter().map(|&v| v as u8).collect(),
            (TensorData::U8(a), DType::U8) => a.iter().copied().collect(),
            (TensorData::I8(a), DType::U8) => a.iter().map(|&v| v as u8).collect(),
            (TensorData::U8(a), DType::I8) => a.iter().copied().collect(),
            (TensorData::I32(a), DType::I32) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            (TensorData::F32(a), DType::F32) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            (TensorData::U16(a), DType::F16 | DType::BF16) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            (TensorData::F32(a), DType::I32) if a.iter().all(|v| v.fract() == 0.0) => {
                a.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect()
            }
            (d, t) => return Err(bad(format!("stored as {} cannot be used as {}", stored_name(d), t.name()))),
        };
        let t = self.push(&bytes, shape, dtype)?;
        self.by_name.insert(name.to_string(), t);
        Ok(t)
    }

    /// Add an int8 conv filter (`[oc, ic/group, kh, kw]` codes) in the runtime's packed strip
    /// layout (`bmodel_format::scratch::packed_filter_index`).
    pub fn packed_filter(
        &mut self,
        name: &str,
        data: &TensorData,
        oc: usize,
        group: usize,
        k_len: usize,
        dtype: DType,
    ) -> Result<TensorRef, CodegenError> {
        let key = format!("{name}#packed");
        if let Some(t) = self.by_name.get(&key) {
            return Ok(*t);
        }
        let bad = |why: String| CodegenError::Weight { name: name.to_string(), why };
        let codes: Vec<u8> = match data {
            TensorData::I8(a) => a.iter().map(|&v| v as u8).collect(),
            TensorData::U8(a) => a.iter().copied().collect(),
            d => return Err(bad(format!("stored as {} cannot be an int8 filter", stored_name(d)))),
        };
        if codes.len() != oc * k_len {
            return Err(bad(format!("has {} elements, the conv needs {}", codes.len(), oc * k_len)));
        }
        let ocg = oc / group.max(1);
        let len = bmodel_format::scratch::packed_filter_len(oc, group, k_len);
        let mut packed = vec![0u8; len];
        for o in 0..oc {
            for k in 0..k_len {
                packed[bmodel_format::scratch::packed_filter_index(o, k, ocg, k_len)] = codes[o * k_len + k];
            }
        }
        let t = self.push(&packed, [1, 1, 1, len as u32], dtype)?;
        self.by_name.insert(key, t);
        Ok(t)
    }

    /// Add an i32 table of `(multiplier, rshift)` pairs, one per output channel.
    pub fn requant_table(
        &mut self,
        multipliers: &[i64],
        rshifts: &[i64],
        channels: usize,
        op: &str,
    ) -> Result<TensorRef, CodegenError> {
        let pick = |v: &[i64], c: usize, what: &str| -> Result<i32, CodegenError> {
            let x = match v.len() {
                1 => v[0],
                n if n == channels => v[c],
                n => {
                    return Err(CodegenError::Op {
                        op: op.to_string(),
                        why: format!("{what} has {n} entries for {channels} channels"),
                    })
                }
            };
            i32::try_from(x).map_err(|_| CodegenError::Op { op: op.to_string(), why: format!("{what} {x} out of i32") })
        };
        let mut bytes = Vec::with_capacity(channels * 8);
        for c in 0..channels {
            bytes.extend_from_slice(&pick(multipliers, c, "multiplier")?.to_le_bytes());
            bytes.extend_from_slice(&pick(rshifts, c, "rshift")?.to_le_bytes());
        }
        self.push(&bytes, [1, 1, channels as u32, 2], DType::I32)
    }
}

fn stored_name(d: &TensorData) -> &'static str {
    match d {
        TensorData::F32(_) => "f32",
        TensorData::I8(_) => "i8",
        TensorData::U8(_) => "u8",
        TensorData::I32(_) => "i32",
        TensorData::U16(_) => "u16",
        TensorData::I64(_) => "i64",
    }
}
