//! Transcendental functions without std: `expf` with the exact results of the host's C library
//! (glibc >= 2.28 on x86-64 with FMA), so that float Sigmoid / Softmax reproduce a host computation
//! that calls `f32::exp` bit for bit.
//!
//! The algorithm is the published one of glibc's `expf` (Szabolcs Nagy, Arm): `x / ln2 · 32`
//! split into an integer `k` and a remainder `r`, `2^(k/32)` from a 32-entry table, a cubic in `r`,
//! all in f64, one final rounding to f32. The argument reduction is evaluated as glibc's FMA build
//! evaluates it (`k = round(x·c)`, `r = x·c − k` each with a single rounding), here with exact
//! double-double arithmetic instead of an FMA instruction. Checked against the C library's `expf`
//! on every f32 in `[-110, 95]` (2,241,462,274 inputs) and on ±inf / NaN: no difference.

/// `2^(i/32)` as f64 bits, minus `i << 47` (so that adding `k << 47` scales by `2^(k/32)`).
const EXP2_TABLE: [u64; 32] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];

/// `32 / ln 2` as f64.
const INV_LN2_32: u64 = 0x40471547652b82fe;
/// Cubic coefficients of `2^(r/32)` (`r^3`, `r^2`, `r` terms), divided by powers of 32.
const POLY: [u64; 3] = [0x3fac6af84b912394, 0x3fcebfce50fac4f3, 0x3fe62e42ff0c52d6];
/// `1.5 · 2^52`: adding it rounds an f64 of magnitude < 2^51 to an integer (ties to even).
const ROUND_SHIFT: f64 = 6755399441055744.0;

/// Exact sum `a + b = s + e` (Knuth's two-sum).
#[inline(always)]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// `(k, r)` with `k = round_half_even(c·x)` and `r = fl(c·x − k)` for an f32 `x` (|c·x| < 2^12),
/// each rounded once from the exact product, as an FMA computes them.
#[inline(always)]
fn reduce(c: f64, x: f64) -> (i64, f64) {
    // c = c_hi + c_lo with 26 and 27 significant bits: each part times a 24-bit x is exact.
    let c_hi = f64::from_bits(c.to_bits() & 0xFFFF_FFFF_F800_0000);
    let c_lo = c - c_hi;
    let (a, b) = (c_hi * x, c_lo * x); // c·x = a + b exactly, |b| << |a|
    let k0 = (a + b + ROUND_SHIFT) - ROUND_SHIFT; // integer near c·x
    let u = a - k0; // exact (k0 is within 1 of a and a has an ulp <= 2^-41 here)
    let (t, e) = two_sum(u, b); // c·x − k0 = t + e exactly
    let up = t > 0.5 || (t == 0.5 && e > 0.0);
    let down = t < -0.5 || (t == -0.5 && e < 0.0);
    let tie = (t == 0.5 || t == -0.5) && e == 0.0;
    let k0i = k0 as i64;
    let k = if up {
        k0i + 1
    } else if down {
        k0i - 1
    } else if tie && k0i & 1 != 0 {
        if t > 0.0 {
            k0i + 1
        } else {
            k0i - 1
        }
    } else {
        k0i
    };
    let r = if k == k0i { t } else { (u - (k - k0i) as f64) + b };
    (k, r)
}

/// `e^x` in f32, bit-identical to glibc's `expf` (see the module doc).
pub fn expf(x: f32) -> f32 {
    let bits = x.to_bits();
    let abstop = (bits >> 20) & 0x7ff;
    if abstop >= 0x42b {
        // |x| >= 88, or x is inf / NaN
        if bits == 0xff80_0000 {
            return 0.0;
        }
        if abstop >= 0x7f8 {
            return x + x;
        }
        if x > f32::from_bits(0x42b1_7217) {
            return f32::INFINITY;
        }
        if x < f32::from_bits(0xc2cf_f1b4) {
            return 0.0;
        }
    }
    let (k, r) = reduce(f64::from_bits(INV_LN2_32), x as f64);
    let t = EXP2_TABLE[(k & 31) as usize].wrapping_add((k as u64) << 47);
    let s = f64::from_bits(t);
    let c = [f64::from_bits(POLY[0]) / 32768.0, f64::from_bits(POLY[1]) / 1024.0, f64::from_bits(POLY[2]) / 32.0];
    let z = c[0] * r + c[1];
    let r2 = r * r;
    let y = c[2] * r + 1.0;
    let y = z * r2 + y;
    (y * s) as f32
}

/// Logistic function `1 / (1 + e^-x)` in f32.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + expf(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expf_special_values() {
        assert_eq!(expf(0.0), 1.0);
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(f32::INFINITY), f32::INFINITY);
        assert!(expf(f32::NAN).is_nan());
        assert_eq!(expf(89.0), f32::INFINITY);
        assert_eq!(expf(-104.0), 0.0);
        assert_eq!(expf(1.0).to_bits(), 0x402d_f854); // e rounded to f32
    }

    #[test]
    fn expf_hard_cases_of_the_fma_reduction() {
        // the two inputs where an un-fused reduction differs from the C library
        assert_eq!(expf(3.256_463_2e1).to_bits(), 1_459_396_380);
        assert_eq!(expf(-6.309_946e1).to_bits(), 301_607_315);
    }
}
