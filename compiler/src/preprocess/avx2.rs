//! AVX2 kernels of the JPEG decoder, each giving the same integers as its scalar original in
//! [`super::jpeg`] (tests there compare them on random inputs):
//!
//! - [`idct_narrow_avx2`], the 32-bit accurate integer IDCT (`idct_narrow`): the column pass
//!   runs on eight columns at once (one 32-bit lane each), the row pass on eight rows after a
//!   transpose. It computes every butterfly (no zero-column shortcuts), which gives the same
//!   integers: the shortcuts of the scalar code are exact, and the narrow range of the
//!   coefficients keeps every intermediate below 2^31, so wrapping lanes never wrap.
//! - [`ycc_interleave16`], libjpeg's YCbCr -> RGB conversion (`ycc_to_rgb`) of 16 pixels,
//!   interleaved into RGB or BGR bytes.
//! - [`split3x16`], 16 interleaved 3-sample pixels split into their channels (pshufb), for the
//!   planar tensor layout.
//! - [`horizontal_row3`], the horizontal pass of the bilinear resize (`cv_resize`) for 3
//!   samples per pixel: both pixels' samples paired as 16-bit values, one multiply-add.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether the kernels of this module may run on this CPU (it has AVX2).
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One 1-D pass of the islow butterflies on eight vectors (`s[k]` holds input `k` of eight
/// independent 1-D transforms), before descaling; the same sums as `islow_pass32`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn pass(s: [__m256i; 8]) -> [__m256i; 8] {
    use _mm256_add_epi32 as add;
    use _mm256_sub_epi32 as sub;
    // even part
    let (z2, z3) = (s[2], s[6]);
    let z1 = mul(add(z2, z3), 4433);
    let tmp2 = sub(z1, mul(z3, 15137));
    let tmp3 = add(z1, mul(z2, 6270));
    let tmp0 = _mm256_slli_epi32::<13>(add(s[0], s[4]));
    let tmp1 = _mm256_slli_epi32::<13>(sub(s[0], s[4]));
    let (t10, t13, t11, t12) = (add(tmp0, tmp3), sub(tmp0, tmp3), add(tmp1, tmp2), sub(tmp1, tmp2));
    // odd part
    let (o0, o1, o2, o3) = (s[7], s[5], s[3], s[1]);
    let z5 = mul(add(add(o0, o1), add(o2, o3)), 9633);
    let z1 = mul(add(o0, o3), -7373);
    let z2 = mul(add(o1, o2), -20995);
    let z3 = add(mul(add(o0, o2), -16069), z5);
    let z4 = add(mul(add(o1, o3), -3196), z5);
    let a0 = add(mul(o0, 2446), add(z1, z3));
    let a1 = add(mul(o1, 16819), add(z2, z4));
    let a2 = add(mul(o2, 25172), add(z2, z3));
    let a3 = add(mul(o3, 12299), add(z1, z4));
    [add(t10, a3), add(t11, a2), add(t12, a1), add(t13, a0), sub(t13, a0), sub(t12, a1), sub(t11, a2), sub(t10, a3)]
}

/// `a * c` in every lane (wrapping; exact in the narrow range).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn mul(a: __m256i, c: i32) -> __m256i {
    _mm256_mullo_epi32(a, _mm256_set1_epi32(c))
}

/// Transpose an 8x8 matrix of 32-bit values held as eight row vectors.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn transpose(r: [__m256i; 8]) -> [__m256i; 8] {
    let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
    let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
    let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
    let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
    let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    // rows 0-3 (u0..u3) and 4-7 (u4..u7) of columns (0|4), (1|5), (2|6), (3|7)
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// `idct_narrow` of one block, writing 8x8 samples to `out` with row stride `stride`, if every
/// `|coef * q|` is within `NARROW_LIMIT` (each product must fit in 32 bits: `is_narrow`'s
/// precondition); returns whether it was (and writes nothing when not).
///
/// # Safety
/// The CPU must support AVX2 ([`available`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn idct_narrow_avx2(coef: &[i32; 64], q: &[u16; 64], out: &mut [u8], stride: usize) -> bool {
    let mut s = [_mm256_setzero_si256(); 8];
    let mut largest = _mm256_setzero_si256();
    for (r, v) in s.iter_mut().enumerate() {
        // SAFETY: row `r` of `coef` (8 i32) and of `q` (8 u16) lie inside the 64-entry arrays.
        let (c, qv) = unsafe {
            (
                _mm256_loadu_si256(coef.as_ptr().add(r * 8) as *const __m256i),
                _mm_loadu_si128(q.as_ptr().add(r * 8) as *const __m128i),
            )
        };
        *v = _mm256_mullo_epi32(c, _mm256_cvtepu16_epi32(qv));
        largest = _mm256_max_epi32(largest, _mm256_abs_epi32(*v));
    }
    let over = _mm256_cmpgt_epi32(largest, _mm256_set1_epi32(super::jpeg::NARROW_LIMIT as i32));
    if _mm256_testz_si256(over, over) == 0 {
        return false;
    }
    // column pass (lanes are columns), descaled by 11 bits: rows of the workspace
    let mut ws = pass(s);
    for x in ws.iter_mut() {
        *x = _mm256_srai_epi32::<11>(_mm256_add_epi32(*x, _mm256_set1_epi32(1 << 10)));
    }
    // row pass on the transposed workspace (lanes are rows); descale by 18 bits, then the
    // range limit: the low 10 bits as a signed value, plus 128, saturated to 0..=255
    let mut cols = pass(transpose(ws));
    for x in cols.iter_mut() {
        let d = _mm256_srai_epi32::<18>(_mm256_add_epi32(*x, _mm256_set1_epi32(1 << 17)));
        *x = _mm256_add_epi32(_mm256_srai_epi32::<22>(_mm256_slli_epi32::<22>(d)), _mm256_set1_epi32(128));
    }
    let rows = transpose(cols);
    // pack to bytes: per 128-bit half, rows (0,1,2,3) then (4,5,6,7) in 4-byte groups
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let lo = _mm256_packus_epi16(_mm256_packs_epi32(rows[0], rows[1]), _mm256_packs_epi32(rows[2], rows[3]));
    let hi = _mm256_packus_epi16(_mm256_packs_epi32(rows[4], rows[5]), _mm256_packs_epi32(rows[6], rows[7]));
    let mut bytes = [0u8; 64];
    // SAFETY: `bytes` holds 64 bytes, two unaligned 32-byte stores.
    unsafe {
        _mm256_storeu_si256(bytes.as_mut_ptr() as *mut __m256i, _mm256_permutevar8x32_epi32(lo, order));
        _mm256_storeu_si256(bytes.as_mut_ptr().add(32) as *mut __m256i, _mm256_permutevar8x32_epi32(hi, order));
    }
    for (r, src) in bytes.chunks_exact(8).enumerate() {
        out[r * stride..r * stride + 8].copy_from_slice(src);
    }
    true
}

/// `ycc_to_rgb` of 8 pixels (32-bit lanes): the R, G and B values before clamping.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn ycc8(y: __m256i, cb: __m256i, cr: __m256i) -> [__m256i; 3] {
    let half = _mm256_set1_epi32(1 << 15);
    let cb = _mm256_sub_epi32(cb, _mm256_set1_epi32(128));
    let cr = _mm256_sub_epi32(cr, _mm256_set1_epi32(128));
    let r = _mm256_add_epi32(mul(cr, 91881), half);
    let g = _mm256_sub_epi32(_mm256_add_epi32(mul(cb, -22554), half), mul(cr, 46802));
    let b = _mm256_add_epi32(mul(cb, 116130), half);
    [
        _mm256_add_epi32(y, _mm256_srai_epi32::<16>(r)),
        _mm256_add_epi32(y, _mm256_srai_epi32::<16>(g)),
        _mm256_add_epi32(y, _mm256_srai_epi32::<16>(b)),
    ]
}

/// Two vectors of 8 values (|v| < 2^15) as 16 bytes in order, clamped to 0..=255.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn to_bytes16(lo: __m256i, hi: __m256i) -> __m128i {
    // packs works per 128-bit half: (lo 0-3, hi 0-3 | lo 4-7, hi 4-7); reorder the 64-bit parts
    let words = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi32(lo, hi));
    let bytes = _mm256_packus_epi16(words, words);
    _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0xD8>(bytes))
}

/// Shuffle masks that place channel `ch` of 16 pixels (one byte each) into the three 16-byte
/// parts of their interleaved 3-channel bytes (0x80: leave zero).
const fn interleave_masks(ch: usize) -> [[u8; 16]; 3] {
    let mut m = [[0x80u8; 16]; 3];
    let mut j = 0;
    while j < 48 {
        if j % 3 == ch {
            m[j / 16][j % 16] = (j / 3) as u8;
        }
        j += 1;
    }
    m
}

/// `ycc_to_rgb` of the 16 pixels `y`, `cb`, `cr`, written as 48 interleaved bytes: R, G, B per
/// pixel, or B, G, R when `BGR`.
///
/// # Safety
/// The CPU must support AVX2 ([`available`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn ycc_interleave16<const BGR: bool>(y: &[u8; 16], cb: &[u8; 16], cr: &[u8; 16], out: &mut [u8; 48]) {
    // SAFETY: 16-byte unaligned loads from 16-byte arrays.
    let (y, cb, cr) = unsafe {
        (
            _mm_loadu_si128(y.as_ptr() as *const __m128i),
            _mm_loadu_si128(cb.as_ptr() as *const __m128i),
            _mm_loadu_si128(cr.as_ptr() as *const __m128i),
        )
    };
    let wide = |v: __m128i| (_mm256_cvtepu8_epi32(v), _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(v)));
    let ((y0, y1), (cb0, cb1), (cr0, cr1)) = (wide(y), wide(cb), wide(cr));
    let [r0, g0, b0] = ycc8(y0, cb0, cr0);
    let [r1, g1, b1] = ycc8(y1, cb1, cr1);
    let (r, g, b) = (to_bytes16(r0, r1), to_bytes16(g0, g1), to_bytes16(b0, b1));
    let (first, last) = if BGR { (b, r) } else { (r, b) };
    const MASKS: [[[u8; 16]; 3]; 3] = [interleave_masks(0), interleave_masks(1), interleave_masks(2)];
    for (part, dst) in out.chunks_exact_mut(16).enumerate() {
        let mut v = _mm_setzero_si128();
        for (ch, src) in [first, g, last].into_iter().enumerate() {
            // SAFETY: a 16-byte unaligned load from a 16-byte array.
            let m = unsafe { _mm_loadu_si128(MASKS[ch][part].as_ptr() as *const __m128i) };
            v = _mm_or_si128(v, _mm_shuffle_epi8(src, m));
        }
        // SAFETY: `dst` is a 16-byte chunk of `out`.
        unsafe { _mm_storeu_si128(dst.as_mut_ptr() as *mut __m128i, v) };
    }
}

/// `cv_resize::horizontal_row_c::<3>` for the leading pixels of `xt` whose source pixels can be
/// read as 4 bytes each and whose 3 sums can be stored as 4 (the spare lane is overwritten by the
/// next pixel, or left past the pixels written): `out[3i + k] = row[s0 + k] * w0 + row[s1 + k] *
/// w1`, exact (bytes times weights of at most 2048 in 16-bit multiply-adds). Returns the number
/// of pixels written.
///
/// # Safety
/// The CPU must support AVX2 ([`available`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn horizontal_row3(row: &[u8], xt: &[super::cv_resize::PixelTap], out: &mut [i32]) -> usize {
    let mut done = 0;
    for t in xt {
        let (Some(a), Some(b), Some(dst)) =
            (row.get(t.s0..t.s0 + 4), row.get(t.s1..t.s1 + 4), out.get_mut(3 * done..3 * done + 4))
        else {
            break;
        };
        let word = |v: &[u8]| _mm_cvtsi32_si128(i32::from_le_bytes([v[0], v[1], v[2], v[3]]));
        // a0 b0 a1 b1 a2 b2 a3 b3 as 16-bit values, against (w0, w1) pairs
        let pairs = _mm_cvtepu8_epi16(_mm_unpacklo_epi8(word(a), word(b)));
        let weights = _mm_set1_epi32((t.w1 << 16) | (t.w0 & 0xFFFF));
        let sums = _mm_madd_epi16(pairs, weights);
        // SAFETY: `dst` holds 4 i32 (16 bytes), one unaligned store.
        unsafe { _mm_storeu_si128(dst.as_mut_ptr() as *mut __m128i, sums) };
        done += 1;
    }
    done
}

/// Shuffle masks that gather channel `ch` of 16 interleaved 3-sample pixels from each of the
/// three 16-byte parts of their 48 bytes (0x80: leave zero).
const fn split_masks(ch: usize) -> [[u8; 16]; 3] {
    let mut m = [[0x80u8; 16]; 3];
    let mut j = 0;
    while j < 16 {
        let at = 3 * j + ch;
        m[at / 16][j] = (at % 16) as u8;
        j += 1;
    }
    m
}

/// Split the 48 bytes of 16 interleaved 3-sample pixels into three 16-byte channels.
///
/// # Safety
/// The CPU must support AVX2 ([`available`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn split3x16(src: &[u8; 48], out: [&mut [u8; 16]; 3]) {
    const MASKS: [[[u8; 16]; 3]; 3] = [split_masks(0), split_masks(1), split_masks(2)];
    // SAFETY: three 16-byte unaligned loads inside the 48-byte array.
    let parts = unsafe {
        [
            _mm_loadu_si128(src.as_ptr() as *const __m128i),
            _mm_loadu_si128(src.as_ptr().add(16) as *const __m128i),
            _mm_loadu_si128(src.as_ptr().add(32) as *const __m128i),
        ]
    };
    for (ch, dst) in out.into_iter().enumerate() {
        let mut v = _mm_setzero_si128();
        for (part, m) in parts.iter().zip(&MASKS[ch]) {
            // SAFETY: a 16-byte unaligned load from a 16-byte array.
            let m = unsafe { _mm_loadu_si128(m.as_ptr() as *const __m128i) };
            v = _mm_or_si128(v, _mm_shuffle_epi8(*part, m));
        }
        // SAFETY: `dst` is a 16-byte array.
        unsafe { _mm_storeu_si128(dst.as_mut_ptr() as *mut __m128i, v) };
    }
}
