//! The float model's output of one layer for one sample, kept as the layer cos needs it: the
//! values after [`sanitize`] and their squared norm, summed once. [`RefLayer::cos`] gives
//! exactly `cos_sim(t.dequantize(), reference)`, bit for bit: the same f64 terms in the same
//! order, without the dequantized copy, and for int8 values through a 256-entry table.

use crate::compare::{cos_sim, sanitize};
use crate::interp::Tensor;
use crate::ir::Quant;
use crate::sim::{SimData, SimTensor};

/// One layer's float output (one sample).
pub(super) struct RefLayer {
    /// The values in logical order after [`sanitize`] (empty when the tensor was not in
    /// standard layout: `cos_sim` then saw an empty slice too).
    values: Vec<f32>,
    /// `Σ y²` over `values` in order, as `cosine_similarity` sums it.
    norm2: f64,
}

impl RefLayer {
    /// Keep a float output.
    pub(super) fn new(t: &Tensor) -> RefLayer {
        let values: Vec<f32> =
            t.as_slice().map(|s| s.iter().map(|&v| sanitize(v) as f32).collect()).unwrap_or_default();
        let mut norm2 = 0.0f64;
        for &y in &values {
            let y = y as f64;
            norm2 += y * y;
        }
        RefLayer { values, norm2 }
    }

    /// A freed reference: the walk will not judge its layer again.
    pub(super) fn released() -> RefLayer {
        RefLayer { values: Vec::new(), norm2: 0.0 }
    }

    /// The kept values (sanitized; `cos_sim` sanitizes them again to the same numbers).
    pub(super) fn values(&self) -> &[f32] {
        &self.values
    }

    /// `cos_sim(t.dequantize(), values)`, bit for bit.
    pub(super) fn cos(&self, t: &SimTensor) -> f64 {
        let (scale, zp) = match t.ty.quant() {
            Some(Quant::Uniform { scale, zero_point, .. }) => (scale as f32, zero_point as f32),
            _ => (1.0, 0.0),
        };
        let n = self.values.len();
        // `dequantize` keeps the layout; `cos_sim` reads it only in standard layout.
        match &t.data {
            SimData::I8(a) if a.len() == n => match a.as_slice() {
                Some(s) => {
                    let lut: Vec<f64> = (0..256).map(|c| sanitize(scale * (c as u8 as i8 as f32 - zp))).collect();
                    self.finish(s.iter().map(|&v| lut[v as u8 as usize]))
                }
                None => self.plain(t),
            },
            SimData::U8(a) if a.len() == n => match a.as_slice() {
                Some(s) => {
                    let lut: Vec<f64> = (0..256).map(|c| sanitize(scale * (c as f32 - zp))).collect();
                    self.finish(s.iter().map(|&v| lut[v as usize]))
                }
                None => self.plain(t),
            },
            SimData::F32(a) if a.len() == n => match a.as_slice() {
                Some(s) => self.finish(s.iter().map(|&v| sanitize(v))),
                None => self.plain(t),
            },
            _ => self.plain(t),
        }
    }

    /// The definition: dequantize, then `cos_sim`.
    fn plain(&self, t: &SimTensor) -> f64 {
        let deq = t.dequantize();
        cos_sim(deq.as_slice().unwrap_or(&[]), &self.values)
    }

    /// `cosine_similarity`'s sums over `xs` (already sanitized, as many as `values`) and the kept
    /// norm, then `cos_sim`'s mapping.
    fn finish(&self, xs: impl Iterator<Item = f64>) -> f64 {
        let (mut dot, mut na) = (0.0f64, 0.0f64);
        for (x, &y) in xs.zip(&self.values) {
            let y = y as f64;
            dot += x * y;
            na += x * x;
        }
        let c = if na == 0.0 || self.norm2 == 0.0 { 0.0 } else { dot / (na.sqrt() * self.norm2.sqrt()) };
        0.5 + 0.5 * if c.is_nan() { 0.0 } else { c }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{ElemType, TensorType};
    use ndarray::{ArrayD, IxDyn};

    fn ty(elem: ElemType, quant: Option<Quant>) -> TensorType {
        TensorType::Tensor { shape: vec![2, 3, 5], elem, quant }
    }

    #[test]
    fn cos_equals_dequantize_then_cos_sim_bit_for_bit() {
        let mut seed = 99u32;
        let mut next = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            seed >> 8
        };
        let shape = IxDyn(&[2, 3, 5]);
        let mut refs: Vec<f32> = (0..30).map(|_| (next() % 2000) as f32 / 37.0 - 27.0).collect();
        refs[3] = f32::NAN;
        refs[4] = f32::INFINITY;
        refs[5] = -0.0;
        let reference = ArrayD::from_shape_vec(shape.clone(), refs).unwrap();
        let r = RefLayer::new(&reference);
        let q = Some(Quant::Uniform { signed: true, bits: 8, scale: 0.173, zero_point: -3 });
        let uq = Some(Quant::Uniform { signed: false, bits: 8, scale: 0.0311, zero_point: 128 });
        let i8s: Vec<i8> = (0..30).map(|_| next() as u8 as i8).collect();
        let mut f32s: Vec<f32> = (0..30).map(|_| (next() % 5000) as f32 / 91.0 - 20.0).collect();
        f32s[7] = f32::NEG_INFINITY;
        f32s[8] = f32::NAN;
        let tensors = [
            SimTensor {
                data: SimData::I8(ArrayD::from_shape_vec(shape.clone(), i8s.clone()).unwrap()),
                ty: ty(ElemType::I8, q),
            },
            SimTensor {
                data: SimData::U8(
                    ArrayD::from_shape_vec(shape.clone(), i8s.iter().map(|&v| v as u8).collect()).unwrap(),
                ),
                ty: ty(ElemType::UI8, uq),
            },
            SimTensor {
                data: SimData::F32(ArrayD::from_shape_vec(shape.clone(), f32s).unwrap()),
                ty: ty(ElemType::F32, None),
            },
            SimTensor {
                data: SimData::F16(
                    ArrayD::from_shape_vec(shape.clone(), (0..30).map(|i| 0x3c00 + i * 97).collect()).unwrap(),
                ),
                ty: ty(ElemType::F16, None),
            },
            SimTensor { data: SimData::I8(ArrayD::from_elem(shape.clone(), -3)), ty: ty(ElemType::I8, q) },
        ];
        for t in &tensors {
            let want = cos_sim(t.dequantize().as_slice().unwrap(), reference.as_slice().unwrap());
            assert_eq!(r.cos(t).to_bits(), want.to_bits(), "{:?}", t.ty);
        }
        // Codes all at the zero point are a zero vector: 0.5, as cos_sim says (checked above too).
        assert_eq!(r.cos(&tensors[4]), 0.5);
    }
}
