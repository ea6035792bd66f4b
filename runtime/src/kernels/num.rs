//! Scalar arithmetic shared by the kernels: integer rounding shifts, float-to-int rounding,
//! saturation, and the f32 <-> f16 / bf16 conversions (all without std's float functions).

use bmodel_format::{DType, RoundMode};

/// Right shift of `x` by `s` bits with rounding `mode` (`s < 0` shifts left, `s > 63` acts as 63).
#[inline(always)]
pub fn rshift_round(x: i64, s: i32, mode: RoundMode) -> i64 {
    if s <= 0 {
        return x.wrapping_shl(s.unsigned_abs().min(63));
    }
    let s = s.min(63) as u32;
    let val = x >> s;
    let mant = x & (((1u64 << s) - 1) as i64);
    let half = 1i64 << (s - 1);
    val + match mode {
        RoundMode::HalfUp => (mant >= half) as i64,
        RoundMode::HalfAwayFromZero => ((x >= 0 && mant >= half) || (x < 0 && mant > half)) as i64,
        RoundMode::HalfToEven => (mant > half || (mant == half && val & 1 == 1)) as i64,
        RoundMode::HalfDown => (mant > half) as i64,
        RoundMode::Down => 0,
        RoundMode::Up => (mant != 0) as i64,
        RoundMode::TowardsZero => (x < 0 && mant != 0) as i64,
    }
}

/// `rshift_round(x, s, HalfUp)` without the mode dispatch (the hot requant path).
#[inline(always)]
pub fn rshift_half_up(x: i64, s: i32) -> i64 {
    if s <= 0 {
        x.wrapping_shl(s.unsigned_abs().min(63))
    } else {
        let s = s.min(63) as u32;
        (x >> s) + ((x >> (s - 1)) & 1)
    }
}

/// Absolute value of an f32 (bit operation; core has no float math without std).
#[inline(always)]
pub fn fabs(x: f32) -> f32 {
    f32::from_bits(x.to_bits() & 0x7FFF_FFFF)
}

/// Round an f32 to an integer with `mode` (NaN -> 0, huge values saturate to the i64 range).
#[inline(always)]
pub fn round_f32(x: f32, mode: RoundMode) -> i64 {
    if x.is_nan() {
        return 0;
    }
    if fabs(x) >= 8_388_608.0 {
        return x as i64; // already an integer (or saturated)
    }
    let t = x as i64; // towards zero
    let f = x - t as f32; // exact fractional part, sign of x
    match mode {
        RoundMode::HalfAwayFromZero => {
            if f >= 0.5 {
                t + 1
            } else if f <= -0.5 {
                t - 1
            } else {
                t
            }
        }
        RoundMode::HalfUp => {
            if f >= 0.5 {
                t + 1
            } else if f < -0.5 {
                t - 1
            } else {
                t
            }
        }
        RoundMode::HalfDown => {
            if f > 0.5 {
                t + 1
            } else if f <= -0.5 {
                t - 1
            } else {
                t
            }
        }
        RoundMode::HalfToEven => {
            if f > 0.5 || (f == 0.5 && t & 1 == 1) {
                t + 1
            } else if f < -0.5 || (f == -0.5 && t & 1 == 1) {
                t - 1
            } else {
                t
            }
        }
        RoundMode::Down => t - (f < 0.0) as i64,
        RoundMode::Up => t + (f > 0.0) as i64,
        RoundMode::TowardsZero => t,
    }
}

/// Saturate to the range of an 8-bit type and return the stored byte.
#[inline(always)]
pub fn sat8(v: i64, unsigned: bool) -> u8 {
    if unsigned {
        v.clamp(0, 255) as u8
    } else {
        v.clamp(-128, 127) as i8 as u8
    }
}

/// Decode a stored 8-bit code.
#[inline(always)]
pub fn code8(b: u8, unsigned: bool) -> i32 {
    if unsigned {
        b as i32
    } else {
        b as i8 as i32
    }
}

/// f32 -> IEEE half, round to nearest even; overflow -> inf, NaN -> 0x7FFF.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xFF) as i32;
    let man = b & 0x007F_FFFF;
    if exp == 0xFF {
        return if man != 0 { 0x7FFF } else { sign | 0x7C00 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1F {
        return sign | 0x7C00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let mut r = m >> shift;
        let rem = m & ((1u32 << shift) - 1);
        if rem > half || (rem == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1FFF;
    if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}

/// IEEE half -> f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1F) as u32;
    let man = (h & 0x3FF) as u32;
    let bits = if exp == 0 {
        if man == 0 {
            sign
        } else {
            // subnormal: normalise
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3FF) << 13)
        }
    } else if exp == 0x1F {
        sign | 0x7F80_0000 | (man << 13)
    } else {
        sign | ((exp + 127 - 15) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

/// f32 -> bf16, round to nearest even. `cv` selects CV18xx's rule (any all-ones exponent result
/// becomes 0x7F7F); otherwise NaN -> 0x7FFF and infinities are kept.
#[inline(always)]
pub fn f32_to_bf16(x: f32, cv: bool) -> u16 {
    let b = x.to_bits();
    if !cv && x.is_nan() {
        return 0x7FFF;
    }
    let r = (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16;
    if cv && r & 0x7F80 == 0x7F80 {
        return 0x7F7F;
    }
    r
}

/// bf16 -> f32 (exact).
#[inline(always)]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Read element `i` of a float tensor stored as `dtype` (unaligned little-endian bytes).
#[inline(always)]
pub fn load_float(bytes: &[u8], dtype: DType, i: usize) -> f32 {
    match dtype {
        DType::F32 => {
            let o = i * 4;
            f32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]])
        }
        DType::F16 => f16_to_f32(u16::from_le_bytes([bytes[i * 2], bytes[i * 2 + 1]])),
        DType::BF16 => bf16_to_f32(u16::from_le_bytes([bytes[i * 2], bytes[i * 2 + 1]])),
        DType::I8 => bytes[i] as i8 as f32,
        DType::U8 => bytes[i] as f32,
        DType::I16 => i16::from_le_bytes([bytes[i * 2], bytes[i * 2 + 1]]) as f32,
        DType::I32 => {
            let o = i * 4;
            i32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as f32
        }
    }
}

/// Write `v` as element `i` of a float tensor of `dtype` (RNE; `cv` selects the CV18xx bf16 rule).
#[inline(always)]
pub fn store_float(bytes: &mut [u8], dtype: DType, i: usize, v: f32, cv: bool) {
    match dtype {
        DType::F16 => bytes[i * 2..i * 2 + 2].copy_from_slice(&f32_to_f16(v).to_le_bytes()),
        DType::BF16 => bytes[i * 2..i * 2 + 2].copy_from_slice(&f32_to_bf16(v, cv).to_le_bytes()),
        _ => bytes[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes()),
    }
}

/// Read element `i` of an i32 tensor.
#[inline(always)]
pub fn load_i32(bytes: &[u8], i: usize) -> i32 {
    let o = i * 4;
    i32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rshift_round_modes() {
        assert_eq!(rshift_round(5, 1, RoundMode::HalfUp), 3);
        assert_eq!(rshift_round(-5, 1, RoundMode::HalfUp), -2);
        assert_eq!(rshift_round(-5, 1, RoundMode::HalfAwayFromZero), -3);
        assert_eq!(rshift_round(5, 1, RoundMode::HalfToEven), 2);
        assert_eq!(rshift_round(7, 1, RoundMode::HalfToEven), 4);
        assert_eq!(rshift_round(3, -2, RoundMode::HalfUp), 12);
    }

    #[test]
    fn float_rounding() {
        assert_eq!(round_f32(2.5, RoundMode::HalfAwayFromZero), 3);
        assert_eq!(round_f32(-2.5, RoundMode::HalfAwayFromZero), -3);
        assert_eq!(round_f32(-2.5, RoundMode::HalfUp), -2);
        assert_eq!(round_f32(2.5, RoundMode::HalfToEven), 2);
        assert_eq!(round_f32(-3.5, RoundMode::HalfToEven), -4);
        assert_eq!(round_f32(-0.2, RoundMode::Down), -1);
    }

    #[test]
    fn half_conversions() {
        assert_eq!(f32_to_f16(1.0), 0x3C00);
        assert_eq!(f32_to_f16(65504.0), 0x7BFF);
        assert_eq!(f32_to_f16(65520.0), 0x7C00); // rounds to inf
        assert_eq!(f32_to_f16(5.960_464_5e-8), 0x0001); // smallest subnormal
        assert_eq!(f32_to_f16(2.980_232_2e-8), 0x0000); // tie -> even (0)
        assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3C00); // tie -> even
        assert_eq!(f32_to_f16(1.0 + 3.0 / 2048.0), 0x3C02);
        for h in [0x0001u16, 0x03FF, 0x0400, 0x3C00, 0xC000, 0x7BFF] {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h);
        }
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0, false), 0x3F80);
        assert_eq!(f32_to_bf16(f32::INFINITY, true), 0x7F7F);
        assert_eq!(f32_to_bf16(f32::INFINITY, false), 0x7F80);
        assert_eq!(f32_to_bf16(f32::NAN, false), 0x7FFF);
    }
}
