//! The float model's output of one layer for a group of samples (a batch: image `k` is the
//! `k`-th slice along the batch axis), kept as the layer cos needs it: the values after
//! [`sanitize`] and each image's squared norm, summed once (by the first cos that needs it).
//! [`RefLayer::cos`] gives exactly `cos_sim(t.dequantize(), reference)` of one image, bit for
//! bit: the same f64 terms summed by the same [`lane_sums`], without the dequantized copy, and for
//! int8 values through a 256-entry table. [`cos_of_images`] gives the figures of several images of
//! one layer.
//!
//! A LeakyRelu layer whose input is another kept layer keeps no values of its own
//! ([`RefLayer::leaky_of`]): it shares that layer's values and applies the LeakyRelu as the cos
//! reads them, the same rule as the interpreter's (`v >= 0 ? v : v·alpha`), checked bit for bit
//! against the interpreter's output when it is made.

use crate::compare::{cos_sim, cos_sim_of_sums, lane_sums, sanitize};
use crate::interp::Tensor;
use crate::ir::Quant;
use crate::sim::{SimData, SimTensor};
use ndarray::{ArrayD, Axis};
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

/// The LeakyRelu of one value, as the F32 interpreter computes it (NaN takes the product).
#[inline(always)]
fn leaky(v: f32, alpha: f32) -> f32 {
    if v >= 0.0 {
        v
    } else {
        v * alpha
    }
}

/// One layer's float output for a group of images.
pub(super) struct RefLayer {
    /// The values in logical order after [`sanitize`], image after image (empty when the tensor
    /// was not in standard layout: `cos_sim` then saw an empty slice too); with `leaky`, the
    /// values of the layer this one is the LeakyRelu of (shared with it).
    values: Arc<Vec<f32>>,
    /// The slope when the reference is the LeakyRelu of `values`.
    leaky: Option<f32>,
    /// Number of images.
    images: usize,
    /// Per image, `Σ y²` over its values as `cos_sim` sums it ([`lane_sums`]); set by the first
    /// cos.
    norm2: Vec<OnceLock<f64>>,
}

impl RefLayer {
    /// Keep a float output of `images` images (stacked along the first axis). When it is in
    /// standard layout and every value is finite (sanitizing changes nothing) its buffer becomes
    /// the values, with no copy, and the squared norms are summed now, while the values are in
    /// cache: such a sum is finite exactly when every value of its image is.
    pub(super) fn new(t: Tensor, images: usize) -> RefLayer {
        let n = t.len();
        let images = images.max(1);
        let unset = || (0..images).map(|_| OnceLock::new()).collect::<Vec<_>>();
        let Some(s) = t.as_slice().filter(|_| n.is_multiple_of(images)) else {
            return RefLayer { values: Arc::default(), leaky: None, images, norm2: unset() };
        };
        let norms: Vec<f64> = s.chunks(n / images).map(raw_norm2).collect();
        if norms.iter().any(|v| !v.is_finite()) {
            let values = Arc::new(s.iter().map(|&v| sanitize(v) as f32).collect());
            return RefLayer { values, leaky: None, images, norm2: unset() };
        }
        let values = match t.into_raw_vec_and_offset() {
            (v, Some(0)) if v.len() == n => v,
            // A view into a larger buffer: its own elements only.
            (v, Some(off)) if off + n <= v.len() => v[off..off + n].to_vec(),
            _ => Vec::new(),
        };
        RefLayer {
            values: Arc::new(values),
            leaky: None,
            images,
            norm2: norms.into_iter().map(OnceLock::from).collect(),
        }
    }

    /// The reference of a LeakyRelu layer of slope `alpha` whose input is `source` (same
    /// images): `t`, the interpreter's output, when it is not exactly the LeakyRelu of the
    /// source's values, or when some value is not finite; otherwise it shares the source's
    /// values, and `t` is dropped.
    pub(super) fn leaky_of(source: &RefLayer, alpha: f32, t: Tensor) -> RefLayer {
        let images = source.images;
        let derived = source.leaky.is_none()
            && source.norm2.iter().all(|n| n.get().is_some())
            && t.as_slice().is_some_and(|s| {
                s.len() == source.values.len() && !s.is_empty() && is_leaky_of(s, &source.values, alpha)
            });
        let Some(s) = t.as_slice().filter(|_| derived) else {
            return RefLayer::new(t, images);
        };
        let norms: Vec<f64> = s.chunks(s.len() / images).map(raw_norm2).collect();
        if norms.iter().any(|v| !v.is_finite()) {
            return RefLayer::new(t, images);
        }
        RefLayer {
            values: source.values.clone(),
            leaky: Some(alpha),
            images,
            norm2: norms.into_iter().map(OnceLock::from).collect(),
        }
    }

    /// A freed reference: the walk will not judge its layer again.
    pub(super) fn released(images: usize) -> RefLayer {
        RefLayer { values: Arc::default(), leaky: None, images, norm2: (0..images).map(|_| OnceLock::new()).collect() }
    }

    /// Elements per image.
    fn image_len(&self) -> usize {
        self.values.len() / self.images.max(1)
    }

    /// The stored values of image `k` (with `leaky`, the source layer's); empty when there are
    /// none.
    fn stored_image(&self, k: usize) -> &[f32] {
        let n = self.image_len();
        self.values.get(k * n..(k + 1) * n).unwrap_or(&[])
    }

    /// The reference values of image `k` (sanitized; `cos_sim` sanitizes them again to the
    /// same numbers); empty when there are none.
    pub(super) fn image(&self, k: usize) -> Cow<'_, [f32]> {
        let y = self.stored_image(k);
        match self.leaky {
            Some(a) => Cow::Owned(y.iter().map(|&v| leaky(v, a)).collect()),
            None => Cow::Borrowed(y),
        }
    }

    /// `cos_sim(t.dequantize(), values)` of a reference of one image, bit for bit.
    #[cfg(test)]
    pub(super) fn cos(&self, t: &SimTensor) -> f64 {
        cos_of_images(self, t, 0..1)[0]
    }

    /// `cos_sim` of the sums of an output's terms with the kept norm of image `k`.
    fn finish(&self, k: usize, dot: f64, na: f64) -> f64 {
        cos_sim_of_sums(dot, na, self.norm2[k].get().copied().unwrap_or(0.0))
    }
}

/// True when `out` is, bit for bit, the LeakyRelu of slope `alpha` of `x` (same length): in
/// blocks without an early exit inside, which the compiler turns into vector code.
fn is_leaky_of(out: &[f32], x: &[f32], alpha: f32) -> bool {
    out.chunks(4096)
        .zip(x.chunks(4096))
        .all(|(o, x)| o.iter().zip(x).fold(true, |same, (o, &v)| same & (o.to_bits() == leaky(v, alpha).to_bits())))
}

/// Image `k` of a dequantized batch of `images`, as the definition sees it: its slice along the
/// first axis in standard layout (the whole tensor when it holds one image).
fn image_of(deq: &ArrayD<f32>, k: usize, images: usize) -> Option<Cow<'_, ArrayD<f32>>> {
    if images == 1 {
        return Some(Cow::Borrowed(deq));
    }
    (deq.ndim() > 0 && deq.shape()[0] == images)
        .then(|| Cow::Owned(deq.index_axis(Axis(0), k).insert_axis(Axis(0)).as_standard_layout().into_owned()))
}

/// The stored elements of a tensor the fast path reads: bytes (int8 as their bit pattern) or f32.
#[derive(Clone, Copy)]
enum Stored<'a> {
    Bytes(&'a [u8]),
    Floats(&'a [f32]),
}

/// The elements of image `k` of `t` (a batch of `images` of `n` elements each) as the fast
/// path reads them, when `t` is in standard layout with `n · images` elements; with its
/// quantization (scale, zero point) as the dequantization sees it.
fn stored(t: &SimTensor, k: usize, n: usize, images: usize) -> Option<(Stored<'_>, bool, (f32, f32))> {
    let q = match t.ty.quant() {
        Some(Quant::Uniform { scale, zero_point, .. }) => (scale as f32, zero_point as f32),
        _ => (1.0, 0.0),
    };
    let part = k * n..(k + 1) * n;
    match &t.data {
        SimData::I8(a) if a.len() == n * images => {
            let s = a.as_slice()?.get(part)?;
            // SAFETY: i8 and u8 have the same size and alignment, every bit pattern is valid.
            let b = unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u8, s.len()) };
            Some((Stored::Bytes(b), true, q))
        }
        SimData::U8(a) if a.len() == n * images => Some((Stored::Bytes(a.as_slice()?.get(part)?), false, q)),
        SimData::F32(a) if a.len() == n * images => Some((Stored::Floats(a.as_slice()?.get(part)?), false, q)),
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

/// `cos_sim(image k of t.dequantize(), r.image(k))` for every `k` of `images`, bit for bit; `t`
/// is the layer's output for the same group of images as `r`. Also sets the images' squared
/// norms where they were not known yet.
#[cfg(test)]
pub(super) fn cos_of_images(r: &RefLayer, t: &SimTensor, images: std::ops::Range<usize>) -> Vec<f64> {
    let mut deq = None;
    images.map(|k| cos_in_batch(r, k, t, k, r.images, &mut deq)).collect()
}

/// `cos_sim(image tk of t.dequantize(), r.image(rk))`, bit for bit, where `t` holds `batch`
/// images; sets image `rk`'s squared norm when it was not known yet. `deq` keeps the
/// definition's dequantized copy of `t` for the next image of the same `t` (made only when `t`
/// takes no fast path).
pub(super) fn cos_in_batch(
    r: &RefLayer,
    rk: usize,
    t: &SimTensor,
    tk: usize,
    batch: usize,
    deq: &mut Option<ArrayD<f32>>,
) -> f64 {
    fast_cos(r, rk, t, tk, batch).unwrap_or_else(|| {
        let all = deq.get_or_insert_with(|| t.dequantize());
        let x = image_of(all, tk, batch);
        cos_sim(x.as_ref().and_then(|x| x.as_slice()).unwrap_or(&[]), &r.image(rk))
    })
}

/// The cos of image `rk` of `r` and image `tk` of `t` (a batch of `batch`) through the stored
/// elements, or `None` when `t` does not take a fast path (not in standard layout, another
/// element count or type).
fn fast_cos(r: &RefLayer, rk: usize, t: &SimTensor, tk: usize, batch: usize) -> Option<f64> {
    let y = r.stored_image(rk);
    let (data, signed, (scale, zp)) = stored(t, tk, y.len(), batch)?;
    let with_norm = r.norm2.get(rk)?.get().is_none();
    let slope = r.leaky;
    let (dot, na, nb) = match data {
        Stored::Bytes(b) if with_norm => sums_bytes::<true>(b, y, slope, signed, (scale, zp)),
        Stored::Bytes(b) => sums_bytes::<false>(b, y, slope, signed, (scale, zp)),
        Stored::Floats(f) if with_norm => sums_floats::<true>(f, y, slope),
        Stored::Floats(f) => sums_floats::<false>(f, y, slope),
    };
    if with_norm {
        // Every thread that sums it gets the same number; the first one keeps it.
        let _ = r.norm2[rk].set(nb);
    }
    Some(r.finish(rk, dot, na))
}

/// True when the processor has AVX2.
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `Σ v²` of `v` as unsanitized f64 terms, in the partial sums of [`lane_sums`]: when every value
/// is finite it is the `Σ y²` of `cos_sim`, bit for bit, and finite; otherwise NaN or infinite.
fn raw_norm2(v: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the processor has AVX2.
        return unsafe { avx2::sums_floats::<true, false>(v, v, 0.0).2 };
    }
    lane_sums::<f32, f32, true>(v, v, |x| x as f64, |y| y as f64).2
}

/// True when every value is finite (neither NaN nor infinite).
fn all_finite(v: &[f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the processor has AVX2.
        return unsafe { avx2::all_finite(v) };
    }
    // Blocks without an early exit inside, which the compiler turns into vector code.
    v.chunks(1024).all(|c| c.iter().fold(true, |ok, x| ok & x.is_finite()))
}

/// [`lane_sums`] of int8 / uint8 codes (through their table of terms) against reference values
/// (with `slope`, the LeakyRelu of them).
fn sums_bytes<const NORM: bool>(
    x: &[u8],
    y: &[f32],
    slope: Option<f32>,
    signed: bool,
    q: (f32, f32),
) -> (f64, f64, f64) {
    let lut = byte_table(signed, q);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && codes_are_finite(signed, q) {
        // SAFETY: the processor has AVX2; every code's term is `scale · (code − zp)` unsanitized.
        return unsafe {
            match slope {
                Some(a) => avx2::sums_codes::<NORM, true>(x, y, a, signed, q, &lut),
                None => avx2::sums_codes::<NORM, false>(x, y, 0.0, signed, q, &lut),
            }
        };
    }
    match slope {
        Some(a) => lane_sums::<u8, f32, NORM>(x, y, |b| lut[b as usize], |v| leaky(v, a) as f64),
        None => lane_sums::<u8, f32, NORM>(x, y, |b| lut[b as usize], |v| v as f64),
    }
}

/// True when `scale · (code − zp)` is finite for every code (sanitizing changes none of them).
fn codes_are_finite(signed: bool, (scale, zp): (f32, f32)) -> bool {
    (0..=255u8).all(|b| {
        let code = if signed { b as i8 as f32 } else { b as f32 };
        (scale * (code - zp)).is_finite()
    })
}

/// [`lane_sums`] of float outputs (sanitized) against reference values (with `slope`, the
/// LeakyRelu of them).
fn sums_floats<const NORM: bool>(x: &[f32], y: &[f32], slope: Option<f32>) -> (f64, f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && all_finite(x) {
        // SAFETY: the processor has AVX2; sanitizing changes no value of `x`.
        return unsafe {
            match slope {
                Some(a) => avx2::sums_floats::<NORM, true>(x, y, a),
                None => avx2::sums_floats::<NORM, false>(x, y, 0.0),
            }
        };
    }
    match slope {
        Some(a) => lane_sums::<f32, f32, NORM>(x, y, sanitize, |v| leaky(v, a) as f64),
        None => lane_sums::<f32, f32, NORM>(x, y, sanitize, |v| v as f64),
    }
}

/// [`lane_sums`] in AVX2 registers: partial sums 0-3 and 4-7 of each sum are two vectors of four
/// f64, fed a chunk of eight elements at a time with the same multiplies and adds per partial sum
/// (no fused multiply-add), so the results are those of `lane_sums`.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::leaky;
    use crate::compare::{lane_sums_finish, COS_LANES};
    use std::arch::x86_64::*;

    /// The LeakyRelu of eight values when `LEAKY` (compare, multiply, blend: [`leaky`] for
    /// every value, NaN included), else the values.
    #[inline(always)]
    unsafe fn slope<const LEAKY: bool>(y: __m256, alpha: __m256) -> __m256 {
        if !LEAKY {
            return y;
        }
        let keep = _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GE_OQ);
        _mm256_blendv_ps(_mm256_mul_ps(y, alpha), y, keep)
    }

    /// The six vector partial sums: dot, Σx², Σy², each as lanes 0-3 and 4-7.
    struct Acc([__m256d; 6]);

    impl Acc {
        #[inline(always)]
        unsafe fn new() -> Acc {
            Acc([_mm256_setzero_pd(); 6])
        }

        /// Add the terms of eight elements: `x` and `y` as f32 vectors (exactly representable
        /// in f64, widened here).
        #[inline(always)]
        unsafe fn add<const NORM: bool>(&mut self, x: __m256, y: __m256) {
            let (x0, x1) = (_mm256_cvtps_pd(_mm256_castps256_ps128(x)), _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
            let (y0, y1) = (_mm256_cvtps_pd(_mm256_castps256_ps128(y)), _mm256_cvtps_pd(_mm256_extractf128_ps(y, 1)));
            let a = &mut self.0;
            a[0] = _mm256_add_pd(a[0], _mm256_mul_pd(x0, y0));
            a[1] = _mm256_add_pd(a[1], _mm256_mul_pd(x1, y1));
            a[2] = _mm256_add_pd(a[2], _mm256_mul_pd(x0, x0));
            a[3] = _mm256_add_pd(a[3], _mm256_mul_pd(x1, x1));
            if NORM {
                a[4] = _mm256_add_pd(a[4], _mm256_mul_pd(y0, y0));
                a[5] = _mm256_add_pd(a[5], _mm256_mul_pd(y1, y1));
            }
        }

        /// The partial sums as `lane_sums` keeps them.
        #[inline(always)]
        unsafe fn lanes(&self) -> ([f64; COS_LANES], [f64; COS_LANES], [f64; COS_LANES]) {
            let mut out = [[0f64; COS_LANES]; 3];
            for (k, o) in out.iter_mut().enumerate() {
                _mm256_storeu_pd(o.as_mut_ptr(), self.0[2 * k]);
                _mm256_storeu_pd(o.as_mut_ptr().add(4), self.0[2 * k + 1]);
            }
            (out[0], out[1], out[2])
        }
    }

    /// Sums of codes whose terms `scale · (code − zp)` (computed in f32, as `dequantize` does)
    /// are all finite; `lut` holds the same terms for the last elements.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sums_codes<const NORM: bool, const LEAKY: bool>(
        x: &[u8],
        y: &[f32],
        alpha: f32,
        signed: bool,
        (scale, zp): (f32, f32),
        lut: &[f64; 256],
    ) -> (f64, f64, f64) {
        let n = x.len().min(y.len());
        let whole = n / COS_LANES * COS_LANES;
        let (vs, vz, va) = (_mm256_set1_ps(scale), _mm256_set1_ps(zp), _mm256_set1_ps(alpha));
        let mut acc = Acc::new();
        let mut j = 0;
        while j < whole {
            // SAFETY (reads): `j + 8 <= whole <= n` for both slices.
            let b = _mm_loadl_epi64(x.as_ptr().add(j) as *const __m128i);
            let codes = if signed { _mm256_cvtepi8_epi32(b) } else { _mm256_cvtepu8_epi32(b) };
            let xv = _mm256_mul_ps(vs, _mm256_sub_ps(_mm256_cvtepi32_ps(codes), vz));
            acc.add::<NORM>(xv, slope::<LEAKY>(_mm256_loadu_ps(y.as_ptr().add(j)), va));
            j += COS_LANES;
        }
        let fy = |v: f32| if LEAKY { leaky(v, alpha) as f64 } else { v as f64 };
        lane_sums_finish::<u8, f32, NORM>(acc.lanes(), &x[whole..n], &y[whole..n], |b| lut[b as usize], fy)
    }

    /// Sums of float outputs, unsanitized (the caller knows them finite, or checks the sums);
    /// with `LEAKY` against the LeakyRelu of `y`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sums_floats<const NORM: bool, const LEAKY: bool>(
        x: &[f32],
        y: &[f32],
        alpha: f32,
    ) -> (f64, f64, f64) {
        let n = x.len().min(y.len());
        let whole = n / COS_LANES * COS_LANES;
        let va = _mm256_set1_ps(alpha);
        let mut acc = Acc::new();
        let mut j = 0;
        while j < whole {
            // SAFETY (reads): `j + 8 <= whole <= n` for both slices.
            let yv = slope::<LEAKY>(_mm256_loadu_ps(y.as_ptr().add(j)), va);
            acc.add::<NORM>(_mm256_loadu_ps(x.as_ptr().add(j)), yv);
            j += COS_LANES;
        }
        let fy = |v: f32| if LEAKY { leaky(v, alpha) as f64 } else { v as f64 };
        lane_sums_finish::<f32, f32, NORM>(acc.lanes(), &x[whole..n], &y[whole..n], |v| v as f64, fy)
    }

    /// True when no value is NaN or infinite (exponent bits not all ones).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn all_finite(v: &[f32]) -> bool {
        let exp = _mm256_set1_epi32(0x7f80_0000);
        let whole = v.len() / 8 * 8;
        let mut bad = _mm256_setzero_si256();
        let mut j = 0;
        while j < whole {
            // SAFETY (read): `j + 8 <= whole <= v.len()`.
            let bits = _mm256_loadu_si256(v.as_ptr().add(j) as *const __m256i);
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(_mm256_and_si256(bits, exp), exp));
            j += 8;
            if j % 4096 == 0 && _mm256_testz_si256(bad, bad) == 0 {
                return false;
            }
        }
        _mm256_testz_si256(bad, bad) != 0 && v[whole..].iter().all(|x| x.is_finite())
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
        let r = RefLayer::new(reference.clone(), 1);
        // With a NaN and an infinity the values are a sanitized copy, the norm summed later.
        assert!(r.norm2[0].get().is_none());
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
    fn every_sample_of_a_layer_equals_cos_sim() {
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
            let layer: Vec<RefLayer> = refs.iter().cloned().map(|r| RefLayer::new(r, 1)).collect();
            // Finite references have their norm from the start.
            assert!(layer.iter().all(|r| r.norm2[0].get().is_some()));
            for k in 0..7 {
                let got = cos_of_images(&layer[k], &outs[k], 0..1)[0];
                let want = cos_sim(outs[k].dequantize().as_slice().unwrap_or(&[]), refs[k].as_slice().unwrap());
                assert_eq!(got.to_bits(), want.to_bits(), "sample {k}");
                // Again with the norm known.
                assert_eq!(layer[k].cos(&outs[k]).to_bits(), want.to_bits(), "sample {k}");
            }
        }
        // The seven samples as one batch: every image's cos is its cos alone, with the norms
        // summed at construction or by the first cos (a NaN in image 2's reference).
        let mut refs_nan = refs.clone();
        refs_nan[2][[0, 1, 2, 3]] = f32::NAN;
        for refs in [&refs, &refs_nan] {
            let views: Vec<_> = refs.iter().map(|r| r.view()).collect();
            let batch = RefLayer::new(ndarray::concatenate(ndarray::Axis(0), &views).unwrap(), 7);
            for outs in [&int8, &float] {
                let data = match &outs[0].data {
                    SimData::I8(_) => SimData::I8(
                        ndarray::concatenate(
                            ndarray::Axis(0),
                            &outs
                                .iter()
                                .map(|t| if let SimData::I8(a) = &t.data { a.view() } else { unreachable!() })
                                .collect::<Vec<_>>(),
                        )
                        .unwrap(),
                    ),
                    _ => SimData::F32(
                        ndarray::concatenate(
                            ndarray::Axis(0),
                            &outs
                                .iter()
                                .map(|t| if let SimData::F32(a) = &t.data { a.view() } else { unreachable!() })
                                .collect::<Vec<_>>(),
                        )
                        .unwrap(),
                    ),
                };
                let mut ty = outs[0].ty.clone();
                if let TensorType::Tensor { shape, .. } = &mut ty {
                    shape[0] = 7;
                }
                let stacked = SimTensor { data, ty };
                let got = cos_of_images(&batch, &stacked, 2..7);
                for k in 2..7 {
                    let want = cos_sim(outs[k].dequantize().as_slice().unwrap(), refs[k].as_slice().unwrap());
                    assert_eq!(got[k - 2].to_bits(), want.to_bits(), "image {k}");
                }
                let got = cos_of_images(&batch, &stacked, 0..2);
                for k in 0..2 {
                    let want = cos_sim(outs[k].dequantize().as_slice().unwrap(), refs[k].as_slice().unwrap());
                    assert_eq!(got[k].to_bits(), want.to_bits(), "image {k}");
                }
            }
        }
    }

    #[test]
    fn a_leaky_layer_sharing_its_input_gives_the_cos_of_its_own_values() {
        let mut seed = 5u32;
        let mut next = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            seed >> 8
        };
        // Three images of 2x3x7 (43 values each is not a multiple of the 8 lanes: 42 is not either).
        let shape = IxDyn(&[3, 2, 3, 7]);
        let conv: Vec<f32> = (0..126).map(|_| (next() % 3000) as f32 / 53.0 - 28.0).collect();
        let alpha = 0.1f32;
        let act: Vec<f32> = conv.iter().map(|&v| if v >= 0.0 { v } else { v * alpha }).collect();
        let source = RefLayer::new(ArrayD::from_shape_vec(shape.clone(), conv.clone()).unwrap(), 3);
        let derived = RefLayer::leaky_of(&source, alpha, ArrayD::from_shape_vec(shape.clone(), act.clone()).unwrap());
        assert_eq!(derived.leaky, Some(alpha));
        assert!(Arc::ptr_eq(&derived.values, &source.values));
        let own = RefLayer::new(ArrayD::from_shape_vec(shape.clone(), act.clone()).unwrap(), 3);
        let q = Some(Quant::Uniform { signed: true, bits: 8, scale: 0.21, zero_point: 1 });
        let codes: Vec<i8> = (0..126).map(|_| next() as u8 as i8).collect();
        let floats: Vec<f32> = (0..126).map(|_| (next() % 3000) as f32 / 41.0 - 30.0).collect();
        let ty = |elem, quant| TensorType::Tensor { shape: vec![3, 2, 3, 7], elem, quant };
        let outs = [
            SimTensor {
                data: SimData::I8(ArrayD::from_shape_vec(shape.clone(), codes).unwrap()),
                ty: ty(ElemType::I8, q),
            },
            SimTensor {
                data: SimData::F32(ArrayD::from_shape_vec(shape.clone(), floats).unwrap()),
                ty: ty(ElemType::F32, None),
            },
        ];
        for t in &outs {
            let got = cos_of_images(&derived, t, 0..3);
            let want = cos_of_images(&own, t, 0..3);
            for k in 0..3 {
                assert_eq!(got[k].to_bits(), want[k].to_bits(), "image {k} of {:?}", t.ty);
                assert_eq!(derived.image(k), own.image(k));
            }
        }
        // Another slope, or a value off by one bit: the layer keeps its own values.
        let other = RefLayer::leaky_of(&source, 0.2, ArrayD::from_shape_vec(shape.clone(), act.clone()).unwrap());
        assert_eq!(other.leaky, None);
        let mut off = act.clone();
        off[100] = f32::from_bits(off[100].to_bits() + 1);
        let other = RefLayer::leaky_of(&source, alpha, ArrayD::from_shape_vec(shape, off.clone()).unwrap());
        assert_eq!(other.leaky, None);
        assert_eq!(&other.image(2)[..], &off[84..]);
    }
}
