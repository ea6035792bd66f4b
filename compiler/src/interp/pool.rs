//! `top.MaxPool` and `top.AvgPool` over the last two axes (or the last axis of a 3-D tensor),
//! parallel over planes.

use super::conv::contiguous;
use super::Tensor;
use ndarray::IxDyn;
use rayon::prelude::*;

/// Window geometry of a pooling op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PoolGeom {
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    /// pads top, left, bottom, right (ceil_mode already folded into the end pads)
    pub pads: [usize; 4],
    pub count_include_pad: bool,
}

/// Which reduction a pooling window applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PoolKind {
    Max,
    Avg,
}

/// For each output position along one axis, the input range `[lo, hi)` its window covers.
fn windows(out: usize, len: usize, k: usize, s: usize, pad_begin: usize) -> Vec<(usize, usize)> {
    (0..out)
        .map(|o| {
            let start = (o * s) as isize - pad_begin as isize;
            let end = start + k as isize;
            (start.clamp(0, len as isize) as usize, end.clamp(0, len as isize) as usize)
        })
        .collect()
}

/// The max-pool fold of one window, `m = v > m ? v : m` from `-inf`, for the window `[a, b]`
/// (a NaN `a` never wins against `-inf`; `b` only wins when greater).
#[inline(always)]
fn max_pair(a: f32, b: f32) -> f32 {
    let m = if a > f32::NEG_INFINITY { a } else { f32::NEG_INFINITY };
    if b > m {
        b
    } else {
        m
    }
}

/// `out[j] = max_pair(acc[2j], acc[2j + 1])` (`acc` at least `2 · out.len()` long), in AVX
/// vectors when the CPU has them (the same comparisons and selections per element).
fn max_of_pairs(acc: &[f32], out: &mut [f32]) {
    assert!(acc.len() >= 2 * out.len(), "max_of_pairs: accumulator too short");
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above); lengths checked above.
            return unsafe { max_of_pairs_avx2(acc, out) };
        }
    }
    for (j, o) in out.iter_mut().enumerate() {
        *o = max_pair(acc[2 * j], acc[2 * j + 1]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_of_pairs_avx2(acc: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let whole = out.len() / 8 * 8;
    let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
    let (src, dst) = (acc.as_ptr(), out.as_mut_ptr());
    for j in (0..whole).step_by(8) {
        let lo = _mm256_loadu_ps(src.add(2 * j));
        let hi = _mm256_loadu_ps(src.add(2 * j + 8));
        // per 128-bit lane: [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6], then the 64-bit pairs reordered
        let even = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(_mm256_shuffle_ps::<
            0b10_00_10_00,
        >(lo, hi))));
        let odd = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(_mm256_shuffle_ps::<
            0b11_01_11_01,
        >(lo, hi))));
        let m = _mm256_blendv_ps(neg_inf, even, _mm256_cmp_ps::<_CMP_GT_OQ>(even, neg_inf));
        let r = _mm256_blendv_ps(m, odd, _mm256_cmp_ps::<_CMP_GT_OQ>(odd, m));
        _mm256_storeu_ps(dst.add(j), r);
    }
    for j in whole..out.len() {
        *dst.add(j) = max_pair(acc[2 * j], acc[2 * j + 1]);
    }
}

/// Pool `x` [N, C, H, W] (or [N, C, L]).
pub(super) fn pool(x: &Tensor, g: &PoolGeom, kind: PoolKind) -> Result<Tensor, String> {
    let one_d = x.ndim() == 3;
    if !(x.ndim() == 4 || one_d) {
        return Err(format!("input {:?}: expected a 4-D (or 3-D) tensor", x.shape()));
    }
    let (n, c, h, w) = if one_d {
        (x.shape()[0], x.shape()[1], 1, x.shape()[2])
    } else {
        (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3])
    };
    if g.sh == 0 || g.sw == 0 || g.kh == 0 || g.kw == 0 {
        return Err("kernel and strides must be positive".into());
    }
    let (ph, pw) = (h + g.pads[0] + g.pads[2], w + g.pads[1] + g.pads[3]);
    if ph < g.kh || pw < g.kw {
        return Err(format!("kernel [{}, {}] larger than the padded input [{ph}, {pw}]", g.kh, g.kw));
    }
    let oh = (ph - g.kh) / g.sh + 1;
    let ow = (pw - g.kw) / g.sw + 1;
    let rows = windows(oh, h, g.kh, g.sh, g.pads[0]);
    let cols = windows(ow, w, g.kw, g.sw, g.pads[1]);
    // every window of a row is the pair (2j, 2j + 1): the common 2x2 stride-2 pooling
    let pairs = cols.iter().enumerate().all(|(j, &c)| c == (2 * j, 2 * j + 2));
    let xs = contiguous(x);
    let (hw, ohw) = (h * w, oh * ow);
    let full = (g.kh * g.kw) as f32;
    let mut out = vec![0f32; n * c * ohw];
    out.par_chunks_mut(ohw).enumerate().for_each_init(Vec::new, |acc: &mut Vec<f32>, (p, plane)| {
        let inp = &xs[p * hw..(p + 1) * hw];
        acc.resize(w, 0.0);
        for (oy, &(y0, y1)) in rows.iter().enumerate() {
            let orow = &mut plane[oy * ow..(oy + 1) * ow];
            if y0 >= y1 {
                orow.fill(0.0);
                continue;
            }
            // vertical pass over the window rows (contiguous, vectorised), then horizontal
            acc.copy_from_slice(&inp[y0 * w..(y0 + 1) * w]);
            for y in y0 + 1..y1 {
                let r = &inp[y * w..(y + 1) * w];
                match kind {
                    PoolKind::Max => acc.iter_mut().zip(r).for_each(|(a, &v)| *a = if v > *a { v } else { *a }),
                    PoolKind::Avg => acc.iter_mut().zip(r).for_each(|(a, &v)| *a += v),
                }
            }
            if kind == PoolKind::Max && pairs {
                max_of_pairs(acc, orow);
                continue;
            }
            for (ov, &(x0, x1)) in orow.iter_mut().zip(&cols) {
                let win = &acc[x0..x1];
                *ov = match kind {
                    _ if win.is_empty() => 0.0,
                    PoolKind::Max => win.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m }),
                    PoolKind::Avg => {
                        let s: f32 = win.iter().sum();
                        let cnt = if g.count_include_pad { full } else { ((y1 - y0) * (x1 - x0)) as f32 };
                        s / cnt
                    }
                };
            }
        }
    });
    let shape = if one_d { vec![n, c, ow] } else { vec![n, c, oh, ow] };
    Tensor::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paired maxima equal the window fold bit for bit (NaN on either side, infinities,
    /// signed zeros, lengths around the vector width).
    #[test]
    fn max_of_pairs_equals_the_window_fold() {
        let special = [-0.0f32, 0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 2.5, -3.0];
        for n in [0usize, 1, 7, 8, 9, 17, 40] {
            let acc: Vec<f32> = (0..2 * n + 1)
                .map(|i| if i % 3 == 0 { special[(i / 3) % 7] } else { (i as f32 * 0.71).cos() })
                .collect();
            let mut out = vec![0f32; n];
            max_of_pairs(&acc, &mut out);
            for (j, &o) in out.iter().enumerate() {
                let want = acc[2 * j..2 * j + 2].iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
                assert_eq!(o.to_bits(), want.to_bits(), "pair {j}: {:?}", &acc[2 * j..2 * j + 2]);
            }
        }
    }
}
