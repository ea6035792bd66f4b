//! f16 / bf16 conversions (IEEE round-to-nearest-even) and CV18xx's bf16 arithmetic rules.

/// f32 → f16 bits, round-to-nearest-even; NaN → 0x7FFF (tpu-mlir's convention).
pub fn f32_to_f16_bits(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7FFF;
    }
    half::f16::from_f32(x).to_bits()
}

/// f16 bits → f32 (exact).
pub fn f16_bits_to_f32(b: u16) -> f32 {
    half::f16::from_bits(b).to_f32()
}

/// f32 → bf16 bits, round-to-nearest-even at bit level (`u + 0x7FFF + lsb`); NaN → 0x7FFF,
/// ±inf kept (BM1684X rule).
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7FFF;
    }
    let u = x.to_bits();
    if (u & 0x7F80_0000) == 0x7F80_0000 {
        return (u >> 16) as u16;
    }
    let lsb = (u >> 16) & 1;
    (u.wrapping_add(0x7FFF + lsb) >> 16) as u16
}

/// CV18xx `cvi_f32_to_bf16(x, is_tpu = true)`: RNE, then an all-ones exponent (inf or NaN, either
/// sign) becomes 0x7F7F (max finite positive).
pub fn cv_f32_to_bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    let lsb = (u >> 16) & 1;
    let b = (u.wrapping_add(0x7FFF + lsb) >> 16) as u16;
    if (b & 0x7F80) == 0x7F80 {
        0x7F7F
    } else {
        b
    }
}

/// CV18xx `is_tpu = false` conversion: truncation of the low 16 bits.
pub fn bf16_trunc_bits(x: f32) -> u16 {
    (x.to_bits() >> 16) as u16
}

/// bf16 bits → f32 (exact).
pub fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Round an f32 through bf16 with the CV18xx rule and back.
pub fn cv_bf16_round(x: f32) -> f32 {
    bf16_bits_to_f32(cv_f32_to_bf16_bits(x))
}

/// Round an f32 through bf16 (BM RNE) and back.
pub fn bf16_round(x: f32) -> f32 {
    bf16_bits_to_f32(f32_to_bf16_bits(x))
}

/// Round an f32 through f16 and back.
pub fn f16_round(x: f32) -> f32 {
    f16_bits_to_f32(f32_to_f16_bits(x))
}

fn flush_denormal(x: f32) -> f32 {
    if x != 0.0 && x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

/// CV18xx `bf16_mul(a, b)`: denormal inputs and products flushed to 0, f32 multiply, overflow →
/// ±f32::MAX, then bf16 (CV RNE rule). Returns the bf16 value as f32.
pub fn cv_bf16_mul(a: f32, b: f32) -> f32 {
    let a = flush_denormal(a);
    let b = flush_denormal(b);
    let mut p = flush_denormal(a * b);
    if p.is_infinite() {
        p = f32::MAX.copysign(p);
    }
    cv_bf16_round(p)
}

/// CV18xx `bf16_add(a, b)`, analogous to [`cv_bf16_mul`].
pub fn cv_bf16_add(a: f32, b: f32) -> f32 {
    let a = flush_denormal(a);
    let b = flush_denormal(b);
    let mut p = flush_denormal(a + b);
    if p.is_infinite() {
        p = f32::MAX.copysign(p);
    }
    cv_bf16_round(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding() {
        assert_eq!(f32_to_bf16_bits(1.0), 0x3F80);
        // 1 + 2^-8 is exactly half between two bf16 values: ties to even (down)
        assert_eq!(f32_to_bf16_bits(1.0 + 1.0 / 256.0), 0x3F80);
        // 1 + 3*2^-8: tie, up to even
        assert_eq!(f32_to_bf16_bits(1.0 + 3.0 / 256.0), 0x3F82);
        assert_eq!(f32_to_bf16_bits(f32::NAN), 0x7FFF);
        assert_eq!(f32_to_bf16_bits(f32::INFINITY), 0x7F80);
        assert_eq!(cv_f32_to_bf16_bits(f32::INFINITY), 0x7F7F);
        assert_eq!(cv_f32_to_bf16_bits(f32::MAX), 0x7F7F);
        assert_eq!(bf16_trunc_bits(1.0 + 3.0 / 256.0), 0x3F81);
    }

    #[test]
    fn f16_rounding() {
        assert_eq!(f32_to_f16_bits(1.0), 0x3C00);
        assert_eq!(f32_to_f16_bits(1.0 + 1.0 / 2048.0), 0x3C00);
        assert_eq!(f32_to_f16_bits(f32::NAN), 0x7FFF);
        assert_eq!(f16_round(65520.0), f32::INFINITY);
    }

    #[test]
    fn bf16_mul_saturates() {
        assert_eq!(cv_bf16_mul(f32::MAX, 2.0), bf16_bits_to_f32(0x7F7F));
        assert_eq!(cv_bf16_mul(3.0, 0.5), 1.5);
    }
}
