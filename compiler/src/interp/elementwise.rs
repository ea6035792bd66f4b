//! Elementwise ops: activations and constant arithmetic (in place on an owned tensor) and
//! binary arithmetic with numpy broadcasting. All parallel over chunks with rayon.

use super::Tensor;
use ndarray::{IxDyn, Zip};
use rayon::prelude::*;

/// Elements per rayon task of elementwise loops.
const CHUNK: usize = 1 << 14;

/// A one-input elementwise function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Unary {
    /// max(x, 0), then min with the limit when given
    Relu(Option<f32>),
    LeakyRelu(f32),
    Clip(f32, f32),
    Sigmoid,
    HardSigmoid(f32, f32),
    HardSwish,
    Tanh,
    Exp,
    AddConst(f32),
    MulConst(f32),
    /// `c - x` when reversed, else `x - c`
    SubConst(f32, bool),
}

/// Apply `f` to every element of a contiguous slice, in parallel.
fn map_in_place<F: Fn(f32) -> f32 + Sync>(s: &mut [f32], f: F) {
    s.par_chunks_mut(CHUNK).for_each(|ch| ch.iter_mut().for_each(|v| *v = f(*v)));
}

/// The LeakyRelu of one value: `v >= 0 ? v : v·alpha` (NaN takes the product).
#[inline(always)]
fn leaky_one(v: f32, alpha: f32) -> f32 {
    if v >= 0.0 {
        v
    } else {
        v * alpha
    }
}

/// [`leaky_one`] over a slice in place, branch-free in AVX vectors when the CPU has them
/// (compare, multiply, blend: the same value for every element, NaN included).
pub(super) fn leaky_slice(s: &mut [f32], alpha: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { leaky_slice_avx2(s, alpha) };
        }
    }
    s.iter_mut().for_each(|v| *v = leaky_one(*v, alpha));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn leaky_slice_avx2(s: &mut [f32], alpha: f32) {
    use std::arch::x86_64::*;
    let (zero, al) = (_mm256_setzero_ps(), _mm256_set1_ps(alpha));
    let mut chunks = s.chunks_exact_mut(8);
    for c in &mut chunks {
        let p = c.as_mut_ptr();
        let v = _mm256_loadu_ps(p);
        // ordered >=: false for NaN, which then takes the product as the scalar rule does
        let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(v, zero);
        _mm256_storeu_ps(p, _mm256_blendv_ps(_mm256_mul_ps(v, al), v, keep));
    }
    chunks.into_remainder().iter_mut().for_each(|v| *v = leaky_one(*v, alpha));
}

/// Make a tensor standard-layout so its elements form one slice.
fn standard(x: Tensor) -> Tensor {
    if x.is_standard_layout() {
        x
    } else {
        x.as_standard_layout().into_owned()
    }
}

/// LeakyRelu of an input that must stay (a result kept for observation): read `x` once and
/// write a new tensor, instead of copying it and updating the copy (bit for bit the same values
/// as [`unary`]).
pub(super) fn leaky_copy(x: &Tensor, alpha: f32) -> Tensor {
    let Some(src) = x.as_slice() else { return unary(x.clone(), Unary::LeakyRelu(alpha)) };
    let mut out: Vec<f32> = Vec::with_capacity(src.len());
    out.spare_capacity_mut()[..src.len()]
        .par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(dst, from)| leaky_into(from, dst, alpha));
    // SAFETY: every one of the src.len() elements was written just above.
    unsafe { out.set_len(src.len()) };
    Tensor::from_shape_vec(x.raw_dim(), out).unwrap_or_else(|_| unary(x.clone(), Unary::LeakyRelu(alpha)))
}

/// `dst[i] = leaky(src[i])` (same length).
fn leaky_into(src: &[f32], dst: &mut [std::mem::MaybeUninit<f32>], alpha: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { leaky_into_avx2(src, dst, alpha) };
        }
    }
    for (d, &v) in dst.iter_mut().zip(src) {
        d.write(leaky_one(v, alpha));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn leaky_into_avx2(src: &[f32], dst: &mut [std::mem::MaybeUninit<f32>], alpha: f32) {
    use std::arch::x86_64::*;
    let n = src.len().min(dst.len());
    let (zero, al) = (_mm256_setzero_ps(), _mm256_set1_ps(alpha));
    let whole = n / 8 * 8;
    for k in (0..whole).step_by(8) {
        // SAFETY: k + 8 <= n for both slices.
        let v = _mm256_loadu_ps(src.as_ptr().add(k));
        let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(v, zero);
        _mm256_storeu_ps(dst.as_mut_ptr().add(k) as *mut f32, _mm256_blendv_ps(_mm256_mul_ps(v, al), v, keep));
    }
    for k in whole..n {
        dst[k].write(leaky_one(src[k], alpha));
    }
}

/// Apply a unary function to `x` in place and return it.
pub(super) fn unary(x: Tensor, u: Unary) -> Tensor {
    let mut x = standard(x);
    let Some(s) = x.as_slice_mut() else { return x };
    match u {
        Unary::Relu(None) => map_in_place(s, |v| v.max(0.0)),
        Unary::Relu(Some(l)) => map_in_place(s, |v| v.max(0.0).min(l)),
        Unary::LeakyRelu(a) => s.par_chunks_mut(CHUNK).for_each(|ch| leaky_slice(ch, a)),
        Unary::Clip(lo, hi) => map_in_place(s, |v| v.max(lo).min(hi)),
        Unary::Sigmoid => map_in_place(s, |v| 1.0 / (1.0 + (-v).exp())),
        Unary::HardSigmoid(a, b) => map_in_place(s, |v| (a * v + b).clamp(0.0, 1.0)),
        Unary::HardSwish => map_in_place(s, |v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0)),
        Unary::Tanh => map_in_place(s, f32::tanh),
        Unary::Exp => map_in_place(s, f32::exp),
        Unary::AddConst(c) => map_in_place(s, |v| v + c),
        Unary::MulConst(c) => map_in_place(s, |v| v * c),
        Unary::SubConst(c, true) => map_in_place(s, |v| c - v),
        Unary::SubConst(c, false) => map_in_place(s, |v| v - c),
    }
    x
}

/// A two-input elementwise function (numpy broadcasting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    /// `a >= 0 ? a : b·a` (PRelu with slope `b`)
    PRelu,
}

/// The numpy broadcast of two shapes.
pub(super) fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(format!("shapes {a:?} and {b:?} do not broadcast"));
        };
    }
    Ok(out)
}

/// `a op b` with broadcasting; `a` is updated in place when it already has the output shape.
pub(super) fn binary(a: Tensor, b: &Tensor, op: Binary) -> Result<Tensor, String> {
    match op {
        Binary::Add => zip_with(a, b, |x, y| x + y),
        Binary::Sub => zip_with(a, b, |x, y| x - y),
        Binary::Mul => zip_with(a, b, |x, y| x * y),
        Binary::Div => zip_with(a, b, |x, y| x / y),
        Binary::PRelu => zip_with(a, b, |x, s| if x >= 0.0 { x } else { s * x }),
    }
}

fn zip_with<F: Fn(f32, f32) -> f32 + Sync + Send>(a: Tensor, b: &Tensor, f: F) -> Result<Tensor, String> {
    let shape = broadcast_shape(a.shape(), b.shape())?;
    if a.shape() == shape.as_slice() {
        let mut a = standard(a);
        if b.len() == 1 {
            let y = b.iter().next().copied().unwrap_or(0.0);
            if let Some(s) = a.as_slice_mut() {
                map_in_place(s, |x| f(x, y));
                return Ok(a);
            }
        }
        if b.shape() == a.shape() {
            if let (Some(s), Some(t)) = (a.as_slice_mut(), b.as_slice()) {
                s.par_chunks_mut(CHUNK)
                    .zip(t.par_chunks(CHUNK))
                    .for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(x, &y)| *x = f(*x, y)));
                return Ok(a);
            }
        }
        let bv = b.broadcast(IxDyn(&shape)).ok_or_else(|| format!("cannot broadcast {:?} to {shape:?}", b.shape()))?;
        Zip::from(&mut a).and(&bv).par_for_each(|x, &y| *x = f(*x, y));
        return Ok(a);
    }
    let av = a.broadcast(IxDyn(&shape)).ok_or_else(|| format!("cannot broadcast {:?} to {shape:?}", a.shape()))?;
    let bv = b.broadcast(IxDyn(&shape)).ok_or_else(|| format!("cannot broadcast {:?} to {shape:?}", b.shape()))?;
    let mut out = Tensor::zeros(IxDyn(&shape));
    Zip::from(&mut out).and(&av).and(&bv).par_for_each(|o, &x, &y| *o = f(x, y));
    Ok(out)
}

/// `y = x·s[c] + b[c]` over channel axis 1, in place.
pub(super) fn scale(x: Tensor, s: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    if x.ndim() < 2 {
        return Err(format!("input {:?}: expected a channel axis", x.shape()));
    }
    let c = x.shape()[1];
    if s.len() != c || b.len() != c {
        return Err(format!("scale {:?} / bias {:?} do not have {c} channels", s.shape(), b.shape()));
    }
    let sv: Vec<f32> = s.iter().copied().collect();
    let bv: Vec<f32> = b.iter().copied().collect();
    let inner: usize = x.shape()[2..].iter().product();
    let mut x = standard(x);
    if inner > 0 {
        if let Some(data) = x.as_slice_mut() {
            data.par_chunks_mut(inner).enumerate().for_each(|(p, plane)| {
                let ch = p % c;
                let (m, a) = (sv[ch], bv[ch]);
                plane.iter_mut().for_each(|v| *v = *v * m + a);
            });
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector LeakyRelu equals the scalar rule bit for bit (signed zeros, infinities, NaN,
    /// lengths around the vector width).
    #[test]
    fn leaky_copy_equals_the_in_place_update_bit_for_bit() {
        let special = [-0.0f32, 0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN, 1e-40, -1e-40];
        for n in [0usize, 1, 7, 8, 9, 31, 100, 40_001] {
            let x: Vec<f32> =
                (0..n).map(|i| if i % 5 == 0 { special[i % 8] } else { (i as f32 * 0.37).sin() * 3.0 }).collect();
            let t = Tensor::from_shape_vec(IxDyn(&[n]), x).unwrap();
            let got = leaky_copy(&t, 0.1);
            let want = unary(t.clone(), Unary::LeakyRelu(0.1));
            let bits = |t: &Tensor| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{n} values");
            assert_eq!(got.shape(), t.shape());
        }
    }

    #[test]
    fn leaky_slice_equals_the_scalar_rule_bit_for_bit() {
        let special = [-0.0f32, 0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN, 1e-40, -1e-40];
        for n in [0usize, 1, 7, 8, 9, 31, 100] {
            let x: Vec<f32> =
                (0..n).map(|i| if i % 5 == 0 { special[i % 8] } else { (i as f32 * 0.37).sin() * 3.0 }).collect();
            let mut got = x.clone();
            leaky_slice(&mut got, 0.1);
            for (&v, &g) in x.iter().zip(&got) {
                assert_eq!(g.to_bits(), leaky_one(v, 0.1).to_bits(), "x = {v:e}");
            }
        }
    }
}
