//! The tuner's inner loops on plain slices: int8 fake quantization into a reused buffer and the
//! squared L2 distance, vectorised (AVX2 when the CPU has it, same IEEE results either way).

/// 1.5 · 2^23: adding and subtracting it rounds an f32 of magnitude < 2^22 to an integer,
/// half to even (the default rounding mode), without a libm call.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `clip(round_half_even(v·s), −128, 127) / s`, bit for bit what
/// `(v * s).round_ties_even().clamp(-128.0, 127.0) / s` gives: clipping to integer bounds
/// commutes with rounding, and the sign of zero is taken from the product.
#[inline(always)]
fn quant_one(v: f32, s: f32) -> f32 {
    let y = (v * s).clamp(-128.0, 127.0);
    let r = (y + ROUND_MAGIC) - ROUND_MAGIC;
    r.copysign(y) / s
}

#[inline(always)]
fn quantize_generic(src: &[f32], dst: &mut [f32], s: f32) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = quant_one(v, s);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(src: &[f32], dst: &mut [f32], s: f32) {
    quantize_generic(src, dst, s)
}

/// Fake-quantize `src` into `dst` (same length) with scale `s = 127 / th` (as f32).
pub(crate) fn quantize_slice(src: &[f32], dst: &mut [f32], s: f32) {
    debug_assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { quantize_avx2(src, dst, s) };
        }
    }
    quantize_generic(src, dst, s)
}

/// Lanes of the distance accumulators (independent sums, added at the end).
const LANES: usize = 8;

#[inline(always)]
fn sq_dist_generic(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f64; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..LANES {
            let d = x[k] as f64 - y[k] as f64;
            acc[k] += d * d;
        }
    }
    let mut tail = 0f64;
    for (&x, &y) in ra.iter().zip(rb) {
        let d = x as f64 - y as f64;
        tail += d * d;
    }
    let pairs = [acc[0] + acc[4], acc[1] + acc[5], acc[2] + acc[6], acc[3] + acc[7]];
    ((pairs[0] + pairs[2]) + (pairs[1] + pairs[3])) + tail
}

/// The eight f64 accumulators of [`sq_dist_generic`] as two AVX vectors (lanes 0-3, 4-7).
#[cfg(target_arch = "x86_64")]
type Lanes = [std::arch::x86_64::__m256d; 2];

/// Add `(a[i] - b[i])²` (in f64, multiply then add, unfused) into lane `i % 8`, for the
/// whole groups of eight of `a` (`b` at least as long).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn accumulate_lanes(acc: &mut Lanes, a: &[f32], b: &[f32]) {
    use std::arch::x86_64::*;
    let groups = a.len() / LANES;
    assert!(b.len() >= groups * LANES);
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    for g in 0..groups {
        let x = _mm256_loadu_ps(pa.add(g * LANES));
        let y = _mm256_loadu_ps(pb.add(g * LANES));
        let dl = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), _mm256_cvtps_pd(_mm256_castps256_ps128(y)));
        let dh = _mm256_sub_pd(
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x)),
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(y)),
        );
        acc[0] = _mm256_add_pd(acc[0], _mm256_mul_pd(dl, dl));
        acc[1] = _mm256_add_pd(acc[1], _mm256_mul_pd(dh, dh));
    }
}

/// The final sum of [`sq_dist_generic`]: lanes paired (k, k + 4), then `(p0 + p2) + (p1 + p3)`,
/// then the tail.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn finish_lanes(acc: &Lanes, tail: f64) -> f64 {
    use std::arch::x86_64::*;
    let mut p = [0f64; 4];
    _mm256_storeu_pd(p.as_mut_ptr(), _mm256_add_pd(acc[0], acc[1]));
    ((p[0] + p[2]) + (p[1] + p[3])) + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sq_dist_avx2(a: &[f32], b: &[f32]) -> f64 {
    let mut acc: Lanes = [std::arch::x86_64::_mm256_setzero_pd(); 2];
    accumulate_lanes(&mut acc, a, b);
    let whole = a.len() / LANES * LANES;
    let mut tail = 0f64;
    for (&x, &y) in a[whole..].iter().zip(&b[whole..]) {
        let d = x as f64 - y as f64;
        tail += d * d;
    }
    finish_lanes(&acc, tail)
}

/// Σ (a − b)² in f64 (eight interleaved partial sums; the order is fixed, so the result is
/// deterministic).
pub(crate) fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { sq_dist_avx2(a, b) };
        }
    }
    sq_dist_generic(a, b)
}

/// Σ (a − f(x))² in f64 with the lanes and summation order of [`squared_distance`], so that
/// it equals `squared_distance(a, &x.map(f))` bit for bit without materialising `f(x)`.
#[cfg(test)]
fn sq_dist_mapped_generic(a: &[f32], x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f64; LANES];
    let ca = a.chunks_exact(LANES);
    let cx = x.chunks_exact(LANES);
    let (ra, rx) = (ca.remainder(), cx.remainder());
    for (p, q) in ca.zip(cx) {
        for k in 0..LANES {
            let d = p[k] as f64 - f(q[k]) as f64;
            acc[k] += d * d;
        }
    }
    let mut tail = 0f64;
    for (&p, &q) in ra.iter().zip(rx) {
        let d = p as f64 - f(q) as f64;
        tail += d * d;
    }
    let pairs = [acc[0] + acc[4], acc[1] + acc[5], acc[2] + acc[6], acc[3] + acc[7]];
    ((pairs[0] + pairs[2]) + (pairs[1] + pairs[3])) + tail
}

/// The tuner distance of an op whose output on fake-quantized inputs is the fake-quantized
/// reference (max pooling, nearest upsampling, concatenation, ReLU: they commute with the
/// monotone quantizer): Σ (r − q(r))² with `q` of scale `s`.
#[cfg(test)]
fn quant_sq_dist_generic(reference: &[f32], s: f32) -> f64 {
    sq_dist_mapped_generic(reference, reference, |v| quant_one(v, s))
}

/// The interpreter's LeakyRelu on one value.
#[inline(always)]
fn leaky(v: f32, alpha: f32) -> f32 {
    if v >= 0.0 {
        v
    } else {
        v * alpha
    }
}

#[cfg(test)]
fn leaky_sq_dist_generic(reference: &[f32], x: &[f32], s: f32, alpha: f32) -> f64 {
    sq_dist_mapped_generic(reference, x, |v| leaky(quant_one(v, s), alpha))
}

/// Elements per block of the many-candidate distances (a multiple of [`LANES`]; the block of
/// the reference and input stays in cache while every candidate reads it).
const MULTI_BLOCK: usize = 2048;

/// One candidate's Σ (a − f(x))² part way through the elements: the eight lane accumulators
/// and the tail sum of [`sq_dist_generic`], kept between calls so that the elements can be
/// taken range by range (in order) and still give the one-pass sum bit for bit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct LaneSums {
    lanes: [f64; LANES],
    tail: f64,
}

impl LaneSums {
    /// Sums that are NaN (an evaluation that could not be made).
    #[cfg(test)]
    pub(crate) fn nan() -> Self {
        LaneSums { lanes: [f64::NAN; LANES], tail: f64::NAN }
    }

    /// The sum over the elements taken so far, combined as [`sq_dist_generic`] combines it: the
    /// final sum once every element is taken, a lower bound of it before (every term is ≥ 0,
    /// and rounding a sum of non-negative terms never makes it smaller than a partial sum).
    pub(crate) fn value(&self) -> f64 {
        let a = &self.lanes;
        let pairs = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
        ((pairs[0] + pairs[2]) + (pairs[1] + pairs[3])) + self.tail
    }
}

/// Where elements `range` of `n` fall: the part in whole groups of [`LANES`] and whether the
/// range reaches `n` from before it (then the tail past the last whole group is taken too,
/// once). `range.start` is a
/// multiple of [`LANES`] (or `n`).
fn lane_range(n: usize, range: std::ops::Range<usize>) -> (std::ops::Range<usize>, bool) {
    let whole = n / LANES * LANES;
    debug_assert!(range.start.is_multiple_of(LANES) || range.start == n);
    (range.start.min(whole)..range.end.min(whole), range.end >= n && range.start < n)
}

/// For every scale `s` of `scales`, continue `sums` (one per scale) over elements `range` of
/// Σ (a − f(s, x))²: each equal bit for bit to the one-candidate distance once every range is
/// taken in order (same lanes, order and tail), but `a` and `x` are read once, block by block,
/// for all candidates (the one-candidate passes are memory bound).
#[inline(always)]
fn sq_dist_multi_generic(
    a: &[f32],
    x: &[f32],
    scales: &[f32],
    sums: &mut [LaneSums],
    range: std::ops::Range<usize>,
    f: impl Fn(f32, f32) -> f32,
) {
    let n = a.len().min(x.len());
    let (body, last) = lane_range(n, range);
    for start in body.clone().step_by(MULTI_BLOCK) {
        let end = (start + MULTI_BLOCK).min(body.end);
        let (ab, xb) = (&a[start..end], &x[start..end]);
        for (acc, &s) in sums.iter_mut().zip(scales) {
            for (p, q) in ab.chunks_exact(LANES).zip(xb.chunks_exact(LANES)) {
                for k in 0..LANES {
                    let d = p[k] as f64 - f(s, q[k]) as f64;
                    acc.lanes[k] += d * d;
                }
            }
        }
    }
    if last {
        multi_tail(a, x, scales, sums, n, f);
    }
}

/// The elements past the last whole group of [`LANES`], summed in order into each tail.
#[inline(always)]
fn multi_tail(a: &[f32], x: &[f32], scales: &[f32], sums: &mut [LaneSums], n: usize, f: impl Fn(f32, f32) -> f32) {
    let whole = n / LANES * LANES;
    for (acc, &s) in sums.iter_mut().zip(scales) {
        for (&p, &q) in a[whole..n].iter().zip(&x[whole..n]) {
            let d = p as f64 - f(s, q) as f64;
            acc.tail += d * d;
        }
    }
}

/// [`sq_dist_multi_generic`] with AVX2 (the mapped block in a stack buffer, f64 lanes in
/// vectors); same results bit for bit.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sq_dist_multi_avx2(
    a: &[f32],
    x: &[f32],
    scales: &[f32],
    sums: &mut [LaneSums],
    range: std::ops::Range<usize>,
    f: impl Fn(f32, f32) -> f32,
) {
    use std::arch::x86_64::*;
    let n = a.len().min(x.len());
    let (body, last) = lane_range(n, range);
    let mut acc: Vec<Lanes> =
        sums.iter().map(|s| [_mm256_loadu_pd(s.lanes.as_ptr()), _mm256_loadu_pd(s.lanes.as_ptr().add(4))]).collect();
    let mut buf = [0f32; MULTI_BLOCK];
    for start in body.clone().step_by(MULTI_BLOCK) {
        let end = (start + MULTI_BLOCK).min(body.end);
        let (ab, xb) = (&a[start..end], &x[start..end]);
        for (lanes, &s) in acc.iter_mut().zip(scales) {
            for (o, &v) in buf.iter_mut().zip(xb) {
                *o = f(s, v);
            }
            accumulate_lanes(lanes, ab, &buf[..ab.len()]);
        }
    }
    for (s, lanes) in sums.iter_mut().zip(&acc) {
        _mm256_storeu_pd(s.lanes.as_mut_ptr(), lanes[0]);
        _mm256_storeu_pd(s.lanes.as_mut_ptr().add(4), lanes[1]);
    }
    if last {
        multi_tail(a, x, scales, sums, n, f);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quant_multi_avx2(reference: &[f32], scales: &[f32], sums: &mut [LaneSums], range: std::ops::Range<usize>) {
    sq_dist_multi_avx2(reference, reference, scales, sums, range, |s, v| quant_one(v, s))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn leaky_multi_avx2(
    reference: &[f32],
    x: &[f32],
    scales: &[f32],
    alpha: f32,
    sums: &mut [LaneSums],
    range: std::ops::Range<usize>,
) {
    sq_dist_multi_avx2(reference, x, scales, sums, range, |s, v| leaky(quant_one(v, s), alpha))
}

/// Continue `sums` (one per scale of `scales`) over elements `range` of the reference (in
/// order; `range.start` a multiple of 8 or the length): the tuner distance of an op whose
/// output on quantized inputs is the quantized reference (see [`quant_sq_dist_generic`]),
/// Σ (r − q(r))². Over all elements, equal bit for bit to quantizing `r` and calling
/// [`squared_distance`]; the reference is read once for all scales.
pub(crate) fn quantized_reference_sums(
    reference: &[f32],
    scales: &[f32],
    sums: &mut [LaneSums],
    range: std::ops::Range<usize>,
) {
    debug_assert_eq!(scales.len(), sums.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { quant_multi_avx2(reference, scales, sums, range) };
        }
    }
    sq_dist_multi_generic(reference, reference, scales, sums, range, |s, v| quant_one(v, s))
}

/// Continue `sums` (one per scale of `scales`) over elements `range` (as in
/// [`quantized_reference_sums`]) of Σ (r − leaky(q(x)))²: a LeakyRelu candidate evaluated and
/// compared in one pass, over all elements equal bit for bit to quantizing `x`, applying the
/// interpreter's LeakyRelu and calling [`squared_distance`]; `r` and `x` are read once.
pub(crate) fn leaky_sums(
    reference: &[f32],
    x: &[f32],
    scales: &[f32],
    alpha: f32,
    sums: &mut [LaneSums],
    range: std::ops::Range<usize>,
) {
    debug_assert_eq!(reference.len(), x.len());
    debug_assert_eq!(scales.len(), sums.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { leaky_multi_avx2(reference, x, scales, alpha, sums, range) };
        }
    }
    sq_dist_multi_generic(reference, x, scales, sums, range, |s, v| leaky(quant_one(v, s), alpha))
}

/// For every scale of `scales`: [`quantized_reference_sums`] over all of `reference`.
#[cfg(test)]
pub(crate) fn quantized_reference_distances(reference: &[f32], scales: &[f32]) -> Vec<f64> {
    let mut sums = vec![LaneSums::default(); scales.len()];
    quantized_reference_sums(reference, scales, &mut sums, 0..reference.len());
    sums.iter().map(LaneSums::value).collect()
}

/// For every scale of `scales`: [`leaky_sums`] over all elements.
#[cfg(test)]
pub(crate) fn leaky_distances(reference: &[f32], x: &[f32], scales: &[f32], alpha: f32) -> Vec<f64> {
    let mut sums = vec![LaneSums::default(); scales.len()];
    leaky_sums(reference, x, scales, alpha, &mut sums, 0..reference.len());
    sums.iter().map(LaneSums::value).collect()
}

/// Σ |a| in f64, summed in element order (the tuner's per-sample normaliser).
pub(crate) fn abs_sum(a: &[f32]) -> f64 {
    a.iter().fold(0f64, |n, &r| n + (r as f64).abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_matches_round_ties_even_bit_for_bit() {
        let th = 3.7f64;
        let s = (127.0 / th) as f32;
        let mut src: Vec<f32> = (-40_000..40_000).map(|i| i as f32 * 1.3e-4).collect();
        // exact ties, signed zeros, clipping on both ends, NaN
        src.extend([0.5 / s, 1.5 / s, 2.5 / s, -0.5 / s, -2.5 / s, -0.0, 0.0, 1e-9, -1e-9, 99.0, -99.0, f32::NAN]);
        let mut dst = vec![0f32; src.len()];
        quantize_slice(&src, &mut dst, s);
        for (&v, &q) in src.iter().zip(&dst) {
            let want = (v * s).round_ties_even().clamp(-128.0, 127.0) / s;
            if want.is_nan() {
                assert!(q.is_nan());
            } else {
                assert_eq!(q.to_bits(), want.to_bits(), "x = {v:e}");
            }
        }
    }

    #[test]
    fn fused_distances_equal_the_materialised_ones_bit_for_bit() {
        let x: Vec<f32> = (0..1003).map(|i| ((i * 7919) % 2001) as f32 * 3.1e-3 - 3.0).collect();
        let r: Vec<f32> = x.iter().map(|&v| if v >= 0.0 { v } else { v * 0.1 }).collect();
        let s = (127.0 / 2.37f64) as f32;
        let mut q = vec![0f32; x.len()];
        quantize_slice(&r, &mut q, s);
        assert_eq!(quantized_reference_distances(&r, &[s])[0].to_bits(), squared_distance(&r, &q).to_bits());
        quantize_slice(&x, &mut q, s);
        let out: Vec<f32> = q.iter().map(|&v| if v >= 0.0 { v } else { v * 0.1 }).collect();
        assert_eq!(leaky_distances(&r, &x, &[s], 0.1)[0].to_bits(), squared_distance(&r, &out).to_bits());
        assert!(leaky_distances(&r, &x, &[s], 0.1)[0] > 0.0);
    }

    /// The AVX2 paths (used when the CPU has it) against the portable loops, bit for bit, on
    /// lengths around the lane and block sizes.
    #[test]
    fn vector_paths_equal_the_portable_loops_bit_for_bit() {
        let s = (127.0 / 1.93f64) as f32;
        for n in [0, 1, 7, 8, 9, 1023, 1024, 1031, 3000] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 2003) as f32 * 2.9e-3 - 2.9).collect();
            let r: Vec<f32> = x.iter().map(|&v| if v >= 0.0 { v } else { v * 0.1 } + 1e-3).collect();
            assert_eq!(squared_distance(&r, &x).to_bits(), sq_dist_generic(&r, &x).to_bits(), "n {n}");
            assert_eq!(
                quantized_reference_distances(&r, &[s])[0].to_bits(),
                quant_sq_dist_generic(&r, s).to_bits(),
                "n {n}"
            );
            assert_eq!(
                leaky_distances(&r, &x, &[s], 0.1)[0].to_bits(),
                leaky_sq_dist_generic(&r, &x, s, 0.1).to_bits(),
                "n {n}"
            );
        }
    }

    /// The many-candidate distances equal the one-candidate ones, bit for bit, on both paths.
    #[test]
    fn many_candidates_at_once_equal_one_at_a_time() {
        let scales: Vec<f32> = (0..5).map(|k| (127.0 / (1.3 + 0.4 * k as f64)) as f32).collect();
        for n in [0, 5, 8, 2047, 2048, 2056, 5000] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 2003) as f32 * 2.9e-3 - 2.9).collect();
            let r: Vec<f32> = x.iter().map(|&v| if v >= 0.0 { v } else { v * 0.1 } + 1e-3).collect();
            let q = quantized_reference_distances(&r, &scales);
            let l = leaky_distances(&r, &x, &scales, 0.1);
            let generic = |x: &[f32], f: &dyn Fn(f32, f32) -> f32| {
                let mut sums = vec![LaneSums::default(); scales.len()];
                sq_dist_multi_generic(&r, x, &scales, &mut sums, 0..n, f);
                sums.iter().map(LaneSums::value).collect::<Vec<_>>()
            };
            let qg = generic(&r, &|s, v| quant_one(v, s));
            let lg = generic(&x, &|s, v| leaky(quant_one(v, s), 0.1));
            for (k, &s) in scales.iter().enumerate() {
                let one_q = quant_sq_dist_generic(&r, s).to_bits();
                let one_l = leaky_sq_dist_generic(&r, &x, s, 0.1).to_bits();
                assert_eq!((q[k].to_bits(), qg[k].to_bits()), (one_q, one_q), "n {n} candidate {k}");
                assert_eq!((l[k].to_bits(), lg[k].to_bits()), (one_l, one_l), "n {n} candidate {k}");
            }
        }
    }

    /// Taking the elements range by range (uneven ranges, across the blocks, a tail) gives the
    /// one-pass sums bit for bit, and the sums so far never decrease (they bound the final one).
    #[test]
    fn sums_taken_in_ranges_equal_one_pass_and_only_grow() {
        let scales: Vec<f32> = (0..3).map(|k| (127.0 / (1.1 + 0.7 * k as f64)) as f32).collect();
        let n = 3 * MULTI_BLOCK + 13;
        let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 2003) as f32 * 2.9e-3 - 2.9).collect();
        let r: Vec<f32> = x.iter().map(|&v| if v >= 0.0 { v } else { v * 0.1 } + 1e-3).collect();
        let whole_q = quantized_reference_distances(&r, &scales);
        let whole_l = leaky_distances(&r, &x, &scales, 0.1);
        for cuts in [vec![0, n], vec![0, 8, 2056, 2056, 6000, n], vec![0, 4096, n - 13, n, n]] {
            let mut q = vec![LaneSums::default(); scales.len()];
            let mut l = vec![LaneSums::default(); scales.len()];
            let mut last = vec![0f64; scales.len()];
            for w in cuts.windows(2) {
                quantized_reference_sums(&r, &scales, &mut q, w[0]..w[1]);
                leaky_sums(&r, &x, &scales, 0.1, &mut l, w[0]..w[1]);
                for (k, s) in l.iter().enumerate() {
                    assert!(s.value() >= last[k], "{cuts:?}");
                    last[k] = s.value();
                }
            }
            for k in 0..scales.len() {
                assert_eq!(q[k].value().to_bits(), whole_q[k].to_bits(), "{cuts:?} candidate {k}");
                assert_eq!(l[k].value().to_bits(), whole_l[k].to_bits(), "{cuts:?} candidate {k}");
            }
        }
    }

    #[test]
    fn distance_sums_squares() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..37).map(|i| i as f32 - 2.0).collect();
        assert_eq!(squared_distance(&a, &b), 37.0 * 4.0);
        assert_eq!(abs_sum(&[-1.5, 2.0, -0.5]), 4.0);
    }
}
