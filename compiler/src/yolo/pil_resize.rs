//! Pillow's `Image.resize(size, Image.BICUBIC)` for 8-bit images, bit-exact with
//! libImaging/Resample.c: separable convolution (horizontal pass first, into an 8-bit
//! intermediate, then vertical), cubic kernel with `a = -0.5` and support 2 scaled by the
//! reduction factor, weights normalised to sum 1 and stored as 22-bit fixed point
//! (`PRECISION_BITS = 32 - 8 - 2`, rounded half away from zero), accumulators starting at
//! `1 << 21` and clipped to 0..255 after `>> 22`.

use crate::preprocess::ImageU8;

/// Fraction bits of the fixed-point weights.
const PRECISION_BITS: u32 = 22;

/// Support (half-width) of the bicubic kernel at scale 1.
const BICUBIC_SUPPORT: f64 = 2.0;

/// Pillow's cubic convolution kernel with `a = -0.5`.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Source window and fixed-point weights of one output sample.
#[derive(Debug, Clone, PartialEq)]
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// Per-output-sample taps for resizing `in_size` samples to `out_size` (precompute_coeffs +
/// normalize_coeffs_8bpc).
fn coefficients(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f32 as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let raw: Vec<f64> = (xmin..xmax).map(|x| bicubic((x as f64 - center + 0.5) * ss)).collect();
            let total: f64 = raw.iter().sum();
            let one = (1u32 << PRECISION_BITS) as f64;
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    if w < 0.0 {
                        (-0.5 + w * one) as i32
                    } else {
                        (0.5 + w * one) as i32
                    }
                })
                .collect();
            Taps { first: xmin as usize, weights }
        })
        .collect()
}

/// `clip8`: the accumulator shifted down and clamped to a byte.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Convolve along rows (`horizontal`) or columns with the given taps.
fn pass(src: &ImageU8, taps: &[Taps], horizontal: bool) -> ImageU8 {
    let c = src.channels;
    let (out_w, out_h) = if horizontal { (taps.len(), src.height) } else { (src.width, taps.len()) };
    let mut data = Vec::with_capacity(out_w * out_h * c);
    for y in 0..out_h {
        for x in 0..out_w {
            let t = if horizontal { &taps[x] } else { &taps[y] };
            for ch in 0..c {
                let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                for (i, &w) in t.weights.iter().enumerate() {
                    let (sy, sx) = if horizontal { (y, t.first + i) } else { (t.first + i, x) };
                    acc = acc.wrapping_add(src.at(sy, sx, ch) as i32 * w);
                }
                data.push(clip8(acc));
            }
        }
    }
    ImageU8 { height: out_h, width: out_w, channels: c, data }
}

/// Resize to `out_w x out_h` exactly as Pillow's BICUBIC resampling does. An axis whose size
/// does not change is not filtered (as in Pillow).
pub fn resize_bicubic(src: &ImageU8, out_w: usize, out_h: usize) -> ImageU8 {
    if out_w == 0 || out_h == 0 || src.width == 0 || src.height == 0 {
        return ImageU8::filled(out_h, out_w, src.channels, 0);
    }
    let mut img = src.clone();
    if out_w != src.width {
        img = pass(&img, &coefficients(src.width, out_w), true);
    }
    if out_h != src.height {
        img = pass(&img, &coefficients(src.height, out_h), false);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_values() {
        assert_eq!(bicubic(0.0), 1.0);
        assert_eq!(bicubic(0.5), 0.5625);
        assert_eq!(bicubic(-1.5), -0.0625);
        assert_eq!(bicubic(2.0), 0.0);
    }

    // Expected values: Pillow 13 `Image.fromarray(a).resize((w, h), Image.BICUBIC)`.
    const GRAY_3X4: [u8; 12] = [0, 50, 100, 255, 10, 20, 30, 40, 255, 0, 255, 0];

    fn gray(data: &[u8], h: usize, w: usize) -> ImageU8 {
        ImageU8 { height: h, width: w, channels: 1, data: data.to_vec() }
    }

    #[test]
    fn downscale_matches_pillow() {
        assert_eq!(resize_bicubic(&gray(&GRAY_3X4, 3, 4), 3, 2).data, vec![3, 51, 155, 119, 90, 57]);
    }

    #[test]
    fn width_only_matches_pillow() {
        assert_eq!(resize_bicubic(&gray(&GRAY_3X4, 3, 4), 2, 3).data, vec![25, 169, 16, 34, 148, 107]);
    }

    #[test]
    fn upscale_with_overshoot_clipping_matches_pillow() {
        #[rustfmt::skip]
        let expected = vec![
            0, 13, 48, 71, 115, 223, 255,
            0, 6, 37, 48, 72, 147, 182,
            9, 13, 19, 25, 31, 37, 41,
            169, 114, 8, 90, 170, 62, 5,
            255, 180, 3, 136, 255, 91, 0,
        ];
        assert_eq!(resize_bicubic(&gray(&GRAY_3X4, 3, 4), 7, 5).data, expected);
    }

    #[test]
    fn color_upscale_matches_pillow() {
        let src =
            ImageU8 { height: 2, width: 2, channels: 3, data: vec![0, 128, 255, 13, 77, 200, 250, 1, 90, 60, 60, 60] };
        #[rustfmt::skip]
        let expected = vec![
            0, 140, 255, 0, 108, 238, 12, 75, 205,
            128, 66, 174, 81, 67, 152, 31, 69, 127,
            255, 0, 81, 165, 26, 65, 50, 63, 49,
        ];
        assert_eq!(resize_bicubic(&src, 3, 3).data, expected);
    }
}
