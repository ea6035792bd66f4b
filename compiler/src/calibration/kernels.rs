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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sq_dist_avx2(a: &[f32], b: &[f32]) -> f64 {
    sq_dist_generic(a, b)
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
#[inline(always)]
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
#[inline(always)]
fn quant_sq_dist_generic(reference: &[f32], s: f32) -> f64 {
    sq_dist_mapped_generic(reference, reference, |v| quant_one(v, s))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quant_sq_dist_avx2(reference: &[f32], s: f32) -> f64 {
    quant_sq_dist_generic(reference, s)
}

/// Σ (r − q(r))² in f64 for the ops whose output is the quantized reference (see
/// [`quant_sq_dist_generic`]); equal bit for bit to quantizing `r` and calling
/// [`squared_distance`].
pub(crate) fn quantized_reference_distance(reference: &[f32], s: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { quant_sq_dist_avx2(reference, s) };
        }
    }
    quant_sq_dist_generic(reference, s)
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

#[inline(always)]
fn leaky_sq_dist_generic(reference: &[f32], x: &[f32], s: f32, alpha: f32) -> f64 {
    sq_dist_mapped_generic(reference, x, |v| leaky(quant_one(v, s), alpha))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn leaky_sq_dist_avx2(reference: &[f32], x: &[f32], s: f32, alpha: f32) -> f64 {
    leaky_sq_dist_generic(reference, x, s, alpha)
}

/// Σ (r − leaky(q(x)))² in f64: a LeakyRelu candidate evaluated and compared in one pass,
/// equal bit for bit to quantizing `x`, applying the interpreter's LeakyRelu and calling
/// [`squared_distance`].
pub(crate) fn leaky_distance(reference: &[f32], x: &[f32], s: f32, alpha: f32) -> f64 {
    debug_assert_eq!(reference.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { leaky_sq_dist_avx2(reference, x, s, alpha) };
        }
    }
    leaky_sq_dist_generic(reference, x, s, alpha)
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
        assert_eq!(quantized_reference_distance(&r, s).to_bits(), squared_distance(&r, &q).to_bits());
        quantize_slice(&x, &mut q, s);
        let out: Vec<f32> = q.iter().map(|&v| if v >= 0.0 { v } else { v * 0.1 }).collect();
        assert_eq!(leaky_distance(&r, &x, s, 0.1).to_bits(), squared_distance(&r, &out).to_bits());
        assert!(leaky_distance(&r, &x, s, 0.1) > 0.0);
    }

    #[test]
    fn distance_sums_squares() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..37).map(|i| i as f32 - 2.0).collect();
        assert_eq!(squared_distance(&a, &b), 37.0 * 4.0);
        assert_eq!(abs_sum(&[-1.5, 2.0, -0.5]), 4.0);
    }
}
