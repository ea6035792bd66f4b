//! `cv2.resize(..., interpolation=INTER_LINEAR)` for 8-bit images, bit-exact with OpenCV's
//! fixed-point path (checked against opencv-python 5.0 on random images and on
//! tpu-mlir's preprocessed tiny-yolov3 input).
//!
//! Coefficients: source coordinate `f = (float)((d + 0.5) * scale - 0.5)` with
//! `scale = 1 / (dst / src)` in double, `s = floor(f)`, weights `(1 - frac, frac)` in float
//! rounded half-to-even to 11-bit fixed point (`saturate_cast<short>(w * 2048)`). Columns are
//! clamped (`s < 0` or `s >= src - 1` -> weight (2048, 0) on the edge pixel); rows are not
//! clamped: the weights stay and the row indices are clipped into the image.
//! Horizontal pass: exact `i32` sums `p0 * a0 + p1 * a1`. Vertical pass as OpenCV's SIMD
//! kernel (`VResizeLinearVec_32s8u`), which is what runs for every column:
//! `((h0 >> 4) * b0 >> 16) + ((h1 >> 4) * b1 >> 16)`, then `(v + 2) >> 2` saturated to u8
//! (the scalar `(h0*b0 + h1*b1 + 2^21) >> 22` differs by one in places).

use super::image_u8::ImageU8;

/// Fixed-point bits of the interpolation weights (`INTER_RESIZE_COEF_BITS`).
const COEF_BITS: u32 = 11;

/// One output coordinate: first source index and the two 11-bit weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tap {
    src: i64,
    w0: i32,
    w1: i32,
}

/// `saturate_cast<short>(v)` of a float: round half to even, clamp to i16.
fn to_short(v: f32) -> i32 {
    (v.round_ties_even() as i64).clamp(i16::MIN as i64, i16::MAX as i64) as i32
}

/// Taps of one axis; `clamp` as OpenCV does for columns (rows keep their raw coordinate).
fn taps(src_len: usize, dst_len: usize, clamp: bool) -> Vec<Tap> {
    let scale = 1.0 / (dst_len as f64 / src_len as f64);
    (0..dst_len)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut frac = f - s as f32;
            if clamp && s < 0 {
                s = 0;
                frac = 0.0;
            }
            if clamp && s >= src_len as i64 - 1 {
                s = src_len as i64 - 1;
                frac = 0.0;
            }
            let one = (1u32 << COEF_BITS) as f32;
            Tap { src: s, w0: to_short((1.0 - frac) * one), w1: to_short(frac * one) }
        })
        .collect()
}

/// Resize an 8-bit image to `dst_w x dst_h` with OpenCV's bilinear interpolation.
/// An exact 2x reduction in both axes takes OpenCV's INTER_AREA shortcut, whose result is the
/// same rounded 2x2 mean that the formula above gives.
pub fn resize_linear(src: &ImageU8, dst_w: usize, dst_h: usize) -> ImageU8 {
    let c = src.channels;
    if src.width == dst_w && src.height == dst_h {
        return src.clone();
    }
    if src.width == 0 || src.height == 0 || dst_w == 0 || dst_h == 0 {
        return ImageU8::filled(dst_h, dst_w, c, 0);
    }
    let xt: Vec<PixelTap> = taps(src.width, dst_w, true)
        .iter()
        .map(|t| {
            let s0 = t.src as usize;
            PixelTap { s0: s0 * c, s1: (s0 + 1).min(src.width - 1) * c, w0: t.w0, w1: t.w1 }
        })
        .collect();
    let yt = taps(src.height, dst_h, false);
    let last_row = src.height as i64 - 1;
    let row_len = src.width * c;
    let hrow = |y: i64, out: &mut [i32]| horizontal_row(&src.data[y as usize * row_len..][..row_len], &xt, c, out);
    let mut data = vec![0u8; dst_w * dst_h * c];
    let (mut h0, mut h1) = (vec![0i32; dst_w * c], vec![0i32; dst_w * c]);
    // source rows held by h0 and h1 (-1: none); a row still needed is kept, not recomputed
    let (mut k0, mut k1) = (-1i64, -1i64);
    for (t, out) in yt.iter().zip(data.chunks_exact_mut(dst_w * c)) {
        let r0 = t.src.clamp(0, last_row);
        let r1 = (t.src + 1).clamp(0, last_row);
        if (k0, k1) != (r0, r1) {
            if k0 != r0 {
                if k1 == r0 {
                    std::mem::swap(&mut h0, &mut h1);
                } else {
                    hrow(r0, &mut h0);
                }
                k0 = r0;
            }
            if r1 == r0 {
                h1.copy_from_slice(&h0);
            } else {
                hrow(r1, &mut h1);
            }
            k1 = r1;
        }
        vertical_row(&h0, &h1, (t.w0, t.w1), out);
    }
    ImageU8 { height: dst_h, width: dst_w, channels: c, data }
}

/// One output pixel of the horizontal pass: offsets of its two source pixels in a row (the
/// second clamped to the last column) and their 11-bit weights.
#[derive(Debug, Clone, Copy)]
pub(super) struct PixelTap {
    /// offset of the first source pixel's samples
    pub(super) s0: usize,
    /// offset of the second source pixel's samples
    pub(super) s1: usize,
    /// weight of the first pixel (0..=2048)
    pub(super) w0: i32,
    /// weight of the second pixel (0..=2048)
    pub(super) w1: i32,
}

/// The horizontal pass of one source row (`row`, `c` samples per pixel): exact `i32` sums
/// `p0 * w0 + p1 * w1`, one per output sample.
fn horizontal_row(row: &[u8], xt: &[PixelTap], c: usize, out: &mut [i32]) {
    match c {
        1 => horizontal_row_c::<1>(row, xt, out),
        3 => {
            let done = horizontal_row3_fast(row, xt, out);
            horizontal_row_c::<3>(row, &xt[done..], &mut out[3 * done..]);
        }
        _ => {
            for (t, o) in xt.iter().zip(out.chunks_exact_mut(c)) {
                for (k, o) in o.iter_mut().enumerate() {
                    *o = row[t.s0 + k] as i32 * t.w0 + row[t.s1 + k] as i32 * t.w1;
                }
            }
        }
    }
}

/// The first pixels of [`horizontal_row_c::<3>`] by the AVX2 kernel when the CPU has it;
/// returns how many pixels it wrote (the caller does the rest).
fn horizontal_row3_fast(row: &[u8], xt: &[PixelTap], out: &mut [i32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if super::avx2::available() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { super::avx2::horizontal_row3(row, xt, out) };
    }
    let _ = (row, xt, out);
    0
}

/// [`horizontal_row`] for `C` samples per pixel (a constant, so that the pixel's samples are
/// read with one bounds check).
#[inline(always)]
fn horizontal_row_c<const C: usize>(row: &[u8], xt: &[PixelTap], out: &mut [i32]) {
    for (t, o) in xt.iter().zip(out.chunks_exact_mut(C)) {
        let (a, b) = (&row[t.s0..t.s0 + C], &row[t.s1..t.s1 + C]);
        for k in 0..C {
            o[k] = a[k] as i32 * t.w0 + b[k] as i32 * t.w1;
        }
    }
}

/// One output row of the vertical pass from the two horizontal rows (AVX2 when the CPU has
/// it: eight 32-bit products at once, which the baseline x86-64 instruction set lacks).
fn vertical_row(h0: &[i32], h1: &[i32], w: (i32, i32), out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { vertical_row_avx2(h0, h1, w, out) };
        }
    }
    vertical_row_body(h0, h1, w, out)
}

/// [`vertical_row_body`] compiled for AVX2 (same integer results).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn vertical_row_avx2(h0: &[i32], h1: &[i32], w: (i32, i32), out: &mut [u8]) {
    vertical_row_body(h0, h1, w, out)
}

/// OpenCV's vertical step per value: `((h0 >> 4) * b0 >> 16) + ((h1 >> 4) * b1 >> 16)`, then
/// `(v + 2) >> 2` saturated to u8.
#[inline(always)]
fn vertical_row_body(h0: &[i32], h1: &[i32], (w0, w1): (i32, i32), out: &mut [u8]) {
    for ((o, &a), &b) in out.iter_mut().zip(h0).zip(h1) {
        let v = (((a >> 4) * w0) >> 16) + (((b >> 4) * w1) >> 16);
        *o = ((v + 2) >> 2).clamp(0, 255) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(h: usize, w: usize, c: usize, data: &[u8]) -> ImageU8 {
        ImageU8 { height: h, width: w, channels: c, data: data.to_vec() }
    }

    #[test]
    fn taps_match_opencv_coefficients() {
        // 640 -> 416: scale 1.5384615..., d = 0: f = 0.2692308 -> (1497, 551); d = 1: f = 1.8076923
        let t = taps(640, 416, true);
        assert_eq!(t[0], Tap { src: 0, w0: 1497, w1: 551 });
        assert_eq!(t[1], Tap { src: 1, w0: 394, w1: 1654 });
        // upscale: the first column is clamped, rows are not
        assert_eq!(taps(3, 7, true)[0], Tap { src: 0, w0: 2048, w1: 0 });
        assert_eq!(taps(3, 7, false)[0], Tap { src: -1, w0: 585, w1: 1463 });
    }

    // Expected values: opencv-python 5.0 `cv2.resize(a, (w, h))` (INTER_LINEAR).
    const GRAY_3X4: [u8; 12] = [0, 50, 100, 255, 10, 20, 30, 40, 255, 0, 255, 0];

    #[test]
    fn downscale_gray_matches_opencv() {
        let out = resize_linear(&img(3, 4, 1, &GRAY_3X4), 3, 2);
        assert_eq!(out.data, vec![9, 63, 181, 162, 102, 41]);
    }

    #[test]
    fn upscale_gray_matches_opencv() {
        let out = resize_linear(&img(3, 4, 1, &GRAY_3X4), 7, 5);
        #[rustfmt::skip]
        let expected = vec![
            0, 18, 46, 75, 111, 199, 255,
            4, 16, 35, 55, 79, 134, 169,
            10, 14, 19, 25, 31, 36, 40,
            157, 104, 18, 86, 154, 69, 16,
            255, 164, 18, 127, 237, 91, 0,
        ];
        assert_eq!(out.data, expected);
    }

    #[test]
    fn upscale_color_matches_opencv() {
        let src = img(2, 2, 3, &[0, 128, 255, 13, 77, 200, 250, 1, 90, 60, 60, 60]);
        let out = resize_linear(&src, 3, 3);
        #[rustfmt::skip]
        let expected = vec![
            0, 128, 255, 6, 102, 227, 13, 77, 200,
            125, 65, 173, 81, 67, 151, 37, 69, 130,
            250, 1, 90, 155, 30, 75, 60, 60, 60,
        ];
        assert_eq!(out.data, expected);
    }
    /// `resize_linear` as it was before the row reuse and the per-pixel taps (the reference
    /// of the test below).
    fn resize_reference(src: &ImageU8, dst_w: usize, dst_h: usize) -> ImageU8 {
        let c = src.channels;
        if src.width == dst_w && src.height == dst_h {
            return src.clone();
        }
        if src.width == 0 || src.height == 0 || dst_w == 0 || dst_h == 0 {
            return ImageU8::filled(dst_h, dst_w, c, 0);
        }
        let xt = taps(src.width, dst_w, true);
        let yt = taps(src.height, dst_h, false);
        let last_row = src.height as i64 - 1;
        let last_col = src.width - 1;
        // horizontal pass of one source row
        let hrow = |y: usize, out: &mut Vec<i32>| {
            out.clear();
            let row = &src.data[y * src.width * c..(y + 1) * src.width * c];
            for t in &xt {
                let s0 = t.src as usize;
                let s1 = (s0 + 1).min(last_col);
                for k in 0..c {
                    out.push(row[s0 * c + k] as i32 * t.w0 + row[s1 * c + k] as i32 * t.w1);
                }
            }
        };
        let mut data = vec![0u8; dst_w * dst_h * c];
        let (mut h0, mut h1) = (Vec::new(), Vec::new());
        let mut cached: (i64, i64) = (-1, -1);
        for (t, out) in yt.iter().zip(data.chunks_exact_mut(dst_w * c)) {
            let r0 = t.src.clamp(0, last_row);
            let r1 = (t.src + 1).clamp(0, last_row);
            if cached != (r0, r1) {
                hrow(r0 as usize, &mut h0);
                hrow(r1 as usize, &mut h1);
                cached = (r0, r1);
            }
            vertical_row(&h0, &h1, (t.w0, t.w1), out);
        }
        ImageU8 { height: dst_h, width: dst_w, channels: c, data }
    }

    /// The 3-channel horizontal pass (AVX2 where available, then scalar) against the scalar one
    /// on random rows and taps, value for value.
    #[test]
    fn horizontal_row3_equals_scalar() {
        let mut state = 77u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for round in 0..3000 {
            let w = 1 + next() % 80;
            let row: Vec<u8> = (0..3 * w).map(|_| next() as u8).collect();
            let n = next() % 100;
            let xt: Vec<PixelTap> = (0..n)
                .map(|_| {
                    let s0 = next() % w;
                    let w0 = (next() % 2049) as i32;
                    PixelTap { s0: 3 * s0, s1: 3 * (s0 + 1).min(w - 1), w0, w1: 2048 - w0 }
                })
                .collect();
            let (mut a, mut b) = (vec![-1i32; 3 * n], vec![-2i32; 3 * n]);
            horizontal_row(&row, &xt, 3, &mut a);
            horizontal_row_c::<3>(&row, &xt, &mut b);
            assert_eq!(a, b, "round {round}");
        }
    }

    /// The resize against the previous code on random images: sizes up and down, 1 to 4
    /// channels, sample for sample.
    #[test]
    fn resize_equals_reference() {
        let mut state = 31u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for round in 0..2000 {
            let (h, w, c) = (1 + next() % 60, 1 + next() % 60, 1 + next() % 4);
            let data: Vec<u8> = (0..h * w * c).map(|_| next() as u8).collect();
            let src = img(h, w, c, &data);
            let (dw, dh) = (1 + next() % 90, 1 + next() % 90);
            assert_eq!(resize_linear(&src, dw, dh), resize_reference(&src, dw, dh), "round {round}");
        }
    }
}
