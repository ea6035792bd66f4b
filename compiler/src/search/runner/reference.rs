//! The float model's output of one layer for one sample, kept as the layer cos needs it: the
//! values after [`sanitize`] and their squared norm, summed once (by the first cos that needs it).
//! [`RefLayer::cos`] gives exactly `cos_sim(t.dequantize(), reference)`, bit for bit: the same f64
//! terms in the same order, without the dequantized copy, and for int8 values through a
//! 256-entry table. [`cos_of_samples`] gives the same figures for several samples of one layer in
//! one pass: the samples' sums are independent chains of additions, interleaved so that the
//! processor overlaps them (each chain is still summed in order, so the result is unchanged).

use crate::compare::{cos_sim, sanitize};
use crate::interp::Tensor;
use crate::ir::Quant;
use crate::sim::{SimData, SimTensor};
use std::sync::OnceLock;

/// One layer's float output (one sample).
pub(super) struct RefLayer {
    /// The values in logical order after [`sanitize`] (empty when the tensor was not in
    /// standard layout: `cos_sim` then saw an empty slice too).
    values: Vec<f32>,
    /// `Σ y²` over `values` in order, as `cosine_similarity` sums it; set by the first cos.
    norm2: OnceLock<f64>,
}

/// Samples whose sums run interleaved in one pass.
const LANES: usize = 4;

impl RefLayer {
    /// Keep a float output. Its buffer becomes the values when sanitizing changes nothing (every
    /// value finite) and it is in standard layout, so the common case copies nothing.
    pub(super) fn new(t: Tensor) -> RefLayer {
        let n = t.len();
        let values = match t.as_slice() {
            None => Vec::new(),
            Some(s) if s.iter().all(|v| v.is_finite()) => match t.into_raw_vec_and_offset() {
                (v, Some(0)) if v.len() == n => v,
                // A view into a larger buffer: its own elements only.
                (v, Some(off)) if off + n <= v.len() => v[off..off + n].to_vec(),
                _ => Vec::new(),
            },
            Some(s) => s.iter().map(|&v| sanitize(v) as f32).collect(),
        };
        RefLayer { values, norm2: OnceLock::new() }
    }

    /// A freed reference: the walk will not judge its layer again.
    pub(super) fn released() -> RefLayer {
        RefLayer { values: Vec::new(), norm2: OnceLock::new() }
    }

    /// The kept values (sanitized; `cos_sim` sanitizes them again to the same numbers).
    pub(super) fn values(&self) -> &[f32] {
        &self.values
    }

    /// `cos_sim(t.dequantize(), values)`, bit for bit.
    #[cfg(test)]
    pub(super) fn cos(&self, t: &SimTensor) -> f64 {
        cos_of_samples(&[self], &[t])[0]
    }

    /// The definition: dequantize, then `cos_sim`.
    fn plain(&self, t: &SimTensor) -> f64 {
        let deq = t.dequantize();
        cos_sim(deq.as_slice().unwrap_or(&[]), &self.values)
    }

    /// `cos_sim`'s mapping of `cosine_similarity`'s sums.
    fn finish(&self, dot: f64, na: f64) -> f64 {
        let nb = self.norm2.get().copied().unwrap_or(0.0);
        let c = if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) };
        0.5 + 0.5 * if c.is_nan() { 0.0 } else { c }
    }
}

/// How the stored elements of one kind of tensor become the f64 terms `cosine_similarity` sums:
/// `sanitize(dequantized value)`.
#[derive(Clone, Copy)]
enum Terms<'a> {
    /// Int8 / uint8 codes through a table indexed by the stored byte.
    Bytes(&'a [f64; 256]),
    /// Float values, sanitized.
    Floats,
}

/// The stored elements of a tensor the fast path reads: bytes (int8 as their bit pattern) or f32.
#[derive(Clone, Copy)]
enum Stored<'a> {
    Bytes(&'a [u8]),
    Floats(&'a [f32]),
}

/// The elements of `t` as the fast path reads them, when it is in standard layout and has
/// `n` elements; with its quantization (scale, zero point) as the dequantization sees it.
fn stored(t: &SimTensor, n: usize) -> Option<(Stored<'_>, bool, (f32, f32))> {
    let q = match t.ty.quant() {
        Some(Quant::Uniform { scale, zero_point, .. }) => (scale as f32, zero_point as f32),
        _ => (1.0, 0.0),
    };
    match &t.data {
        SimData::I8(a) if a.len() == n => {
            let s = a.as_slice()?;
            // SAFETY: i8 and u8 have the same size and alignment, every bit pattern is valid.
            let b = unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u8, s.len()) };
            Some((Stored::Bytes(b), true, q))
        }
        SimData::U8(a) if a.len() == n => Some((Stored::Bytes(a.as_slice()?), false, q)),
        SimData::F32(a) if a.len() == n => Some((Stored::Floats(a.as_slice()?), false, q)),
        _ => None,
    }
}

/// The table of the f64 terms of every stored byte: `sanitize(scale · (code − zp))` in f32, as
/// `dequantize` computes it.
fn byte_table(signed: bool, (scale, zp): (f32, f32)) -> [f64; 256] {
    let mut lut = [0f64; 256];
    for (b, d) in lut.iter_mut().enumerate() {
        let code = if signed { b as u8 as i8 as f32 } else { b as f32 };
        *d = sanitize(scale * (code - zp));
    }
    lut
}

/// `cos_sim(ts[k].dequantize(), refs[k].values)` for every `k`, bit for bit; `refs` and `ts` are
/// one layer's references and outputs of several samples (the same type in every sample).
/// Also sets the references' squared norms where they were not known yet.
pub(super) fn cos_of_samples(refs: &[&RefLayer], ts: &[&SimTensor]) -> Vec<f64> {
    let mut out = vec![0.0; refs.len().min(ts.len())];
    let mut k = 0;
    while k < out.len() {
        let take = (out.len() - k).min(LANES);
        let (r, t) = (&refs[k..k + take], &ts[k..k + take]);
        match take {
            4 => cos_lanes::<4>(r, t, &mut out[k..k + take]),
            3 => cos_lanes::<3>(r, t, &mut out[k..k + take]),
            2 => cos_lanes::<2>(r, t, &mut out[k..k + take]),
            _ => cos_lanes::<1>(r, t, &mut out[k..k + take]),
        }
        k += take;
    }
    out
}

/// [`cos_of_samples`] of exactly `N` samples: interleaved when every tensor takes the same fast
/// path with the same terms, one by one otherwise.
fn cos_lanes<const N: usize>(refs: &[&RefLayer], ts: &[&SimTensor], out: &mut [f64]) {
    let one_by_one = |out: &mut [f64]| {
        for k in 0..N {
            out[k] = cos_lanes_fast::<1>(&[refs[k]], &[ts[k]]).map_or_else(|| refs[k].plain(ts[k]), |c| c[0]);
        }
    };
    match cos_lanes_fast::<N>(refs, ts) {
        Some(c) => out.copy_from_slice(&c),
        None => one_by_one(out),
    }
}

/// The interleaved sums of `N` samples, or `None` when they do not all take the same fast path.
fn cos_lanes_fast<const N: usize>(refs: &[&RefLayer], ts: &[&SimTensor]) -> Option<[f64; N]> {
    let n = refs[0].values.len();
    let mut data: [Stored; N] = [Stored::Floats(&[]); N];
    let mut ys: [&[f32]; N] = [&[]; N];
    let mut kind = None;
    for k in 0..N {
        if refs[k].values.len() != n {
            return None;
        }
        let (d, signed, q) = stored(ts[k], n)?;
        let this = (matches!(d, Stored::Bytes(_)), signed, q.0.to_bits(), q.1.to_bits());
        if *kind.get_or_insert(this) != this {
            return None;
        }
        data[k] = d;
        ys[k] = &refs[k].values;
    }
    let (is_bytes, signed, scale, zp) = kind?;
    let lut;
    let terms = if is_bytes {
        lut = byte_table(signed, (f32::from_bits(scale), f32::from_bits(zp)));
        Terms::Bytes(&lut)
    } else {
        Terms::Floats
    };
    let with_norm = refs.iter().any(|r| r.norm2.get().is_none());
    let (dot, na, nb) = match (terms, with_norm) {
        (Terms::Bytes(lut), false) => sums::<N, false, u8>(&bytes_of(&data), &ys, |b| lut[b as usize]),
        (Terms::Bytes(lut), true) => sums::<N, true, u8>(&bytes_of(&data), &ys, |b| lut[b as usize]),
        (Terms::Floats, false) => sums::<N, false, f32>(&floats_of(&data), &ys, sanitize),
        (Terms::Floats, true) => sums::<N, true, f32>(&floats_of(&data), &ys, sanitize),
    };
    let mut c = [0.0; N];
    for k in 0..N {
        if with_norm {
            // Every thread that sums it gets the same number; the first one keeps it.
            let _ = refs[k].norm2.set(nb[k]);
        }
        c[k] = refs[k].finish(dot[k], na[k]);
    }
    Some(c)
}

fn bytes_of<'a, const N: usize>(d: &[Stored<'a>; N]) -> [&'a [u8]; N] {
    d.map(|s| match s {
        Stored::Bytes(b) => b,
        Stored::Floats(_) => &[],
    })
}

fn floats_of<'a, const N: usize>(d: &[Stored<'a>; N]) -> [&'a [f32]; N] {
    d.map(|s| match s {
        Stored::Floats(f) => f,
        Stored::Bytes(_) => &[],
    })
}

/// Per sample `k`: `Σ x·y`, `Σ x·x` and (when `NORM`) `Σ y·y` in element order, with
/// `x = term(xs[k][j])` and `y = ys[k][j]`; the `N` samples' chains advance together.
#[inline(always)]
fn sums<const N: usize, const NORM: bool, T: Copy>(
    xs: &[&[T]; N],
    ys: &[&[f32]; N],
    term: impl Fn(T) -> f64,
) -> ([f64; N], [f64; N], [f64; N]) {
    let (mut dot, mut na, mut nb) = ([0.0f64; N], [0.0f64; N], [0.0f64; N]);
    let n = ys.iter().map(|y| y.len()).chain(xs.iter().map(|x| x.len())).min().unwrap_or(0);
    for j in 0..n {
        for k in 0..N {
            // SAFETY: `j < n`, and every slice of `xs` and `ys` has at least `n` elements.
            let (x, y) = unsafe { (term(*xs[k].get_unchecked(j)), *ys[k].get_unchecked(j) as f64) };
            dot[k] += x * y;
            na[k] += x * x;
            if NORM {
                nb[k] += y * y;
            }
        }
    }
    (dot, na, nb)
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
        let r = RefLayer::new(reference.clone());
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

    #[test]
    fn samples_summed_together_equal_each_alone() {
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            seed >> 8
        };
        let shape = IxDyn(&[1, 2, 3, 7]);
        let q = Some(Quant::Uniform { signed: true, bits: 8, scale: 0.07, zero_point: 2 });
        let mut refs = Vec::new();
        let mut int8 = Vec::new();
        let mut float = Vec::new();
        for _ in 0..7 {
            let r: Vec<f32> = (0..42).map(|_| (next() % 3000) as f32 / 53.0 - 28.0).collect();
            refs.push(ArrayD::from_shape_vec(shape.clone(), r).unwrap());
            let codes: Vec<i8> = (0..42).map(|_| next() as u8 as i8).collect();
            int8.push(SimTensor {
                data: SimData::I8(ArrayD::from_shape_vec(shape.clone(), codes).unwrap()),
                ty: TensorType::Tensor { shape: vec![1, 2, 3, 7], elem: ElemType::I8, quant: q },
            });
            let v: Vec<f32> = (0..42).map(|_| (next() % 3000) as f32 / 41.0 - 30.0).collect();
            float.push(SimTensor {
                data: SimData::F32(ArrayD::from_shape_vec(shape.clone(), v).unwrap()),
                ty: TensorType::Tensor { shape: vec![1, 2, 3, 7], elem: ElemType::F32, quant: None },
            });
        }
        // A sample whose output is not in standard layout takes the definition's path.
        let mut odd = float[3].clone();
        if let SimData::F32(a) = &mut odd.data {
            a.swap_axes(2, 3);
            *a = a.as_standard_layout().to_owned();
            a.swap_axes(2, 3);
        }
        let mixed: Vec<SimTensor> = (0..7).map(|k| if k == 3 { odd.clone() } else { float[k].clone() }).collect();
        for outs in [&int8, &float, &mixed] {
            let layer: Vec<RefLayer> = refs.iter().cloned().map(RefLayer::new).collect();
            let got = cos_of_samples(&layer.iter().collect::<Vec<_>>(), &outs.iter().collect::<Vec<_>>());
            for k in 0..7 {
                let want = cos_sim(outs[k].dequantize().as_slice().unwrap_or(&[]), refs[k].as_slice().unwrap());
                assert_eq!(got[k].to_bits(), want.to_bits(), "sample {k}");
                // Again with the norm known.
                assert_eq!(layer[k].cos(&outs[k]).to_bits(), want.to_bits(), "sample {k}");
            }
        }
    }
}
