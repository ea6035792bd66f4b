//! CV18xx requantization: TFLite-style `QuantizeMultiplier`, `getRShiftAndMultiplierFromQScale`
//! and the QDM / MultiplierShift application.

use super::round::{right_shift_round, round_f64, RoundMode};

/// `QuantizeMultiplier(d)`: `(q, e) = frexp(d)`, `M = round_half_away(q·2^31)` (if `M == 2^31`:
/// `M /= 2`, `e += 1`); `e < −31` → `(0, 0)`; `e > 30` → `(2^31−1, 30)`. Returns `(M, e)`
/// (`e` is a left shift).
pub fn quantize_multiplier(d: f64) -> (i64, i64) {
    if d == 0.0 || !d.is_finite() {
        return (0, 0);
    }
    let (q, mut e) = frexp(d);
    let mut m = (q * (1u64 << 31) as f64).round() as i64;
    if m == 1i64 << 31 {
        m /= 2;
        e += 1;
    }
    if e < -31 {
        return (0, 0);
    }
    if e > 30 {
        return ((1i64 << 31) - 1, 30);
    }
    (m, e as i64)
}

/// `frexp`: `d = q · 2^e` with `0.5 <= |q| < 1`.
fn frexp(d: f64) -> (f64, i32) {
    if d == 0.0 || !d.is_finite() {
        return (d, 0);
    }
    let mut e = d.abs().log2().floor() as i32 + 1;
    let mut q = d / 2f64.powi(e);
    // fix possible off-by-one of log2 near powers of two
    while q.abs() >= 1.0 {
        q /= 2.0;
        e += 1;
    }
    while q.abs() < 0.5 {
        q *= 2.0;
        e -= 1;
    }
    (q, e)
}

/// `getRShiftAndMultiplierFromQScale(qscale, qdm, max_multiplier)`. Returns `(multiplier, rshift)`.
/// * `qdm = true`: `qscale >= 1` is replaced by 0.999999; `(M, e) = QuantizeMultiplier(qscale)`,
///   rshift = `−e` (31-bit M).
/// * `qdm = false`: `qscale > max` → `(max, 0)`; else the smallest `r` in `0..63` with
///   `qscale·2^(r+1) >= max` gives `m = trunc(qscale·2^r)`; none → `(0, 0)`.
pub fn get_rshift_and_multiplier_from_qscale(qscale: f64, qdm: bool, max_multiplier: i64) -> (i64, i64) {
    if qdm {
        let q = if qscale >= 1.0 { 0.999999 } else { qscale };
        let (m, e) = quantize_multiplier(q);
        return (m, -e);
    }
    if qscale > max_multiplier as f64 {
        return (max_multiplier, 0);
    }
    for r in 0..63 {
        if qscale * 2f64.powi(r + 1) >= max_multiplier as f64 {
            return ((qscale * 2f64.powi(r)).trunc() as i64, r as i64);
        }
    }
    (0, 0)
}

/// CV18xx `applyMultiplierAndRShift` in MultiplierShift mode: `to_int((float)v·m / 2^r, mode)`.
pub fn apply_multiplier_and_rshift(v: i64, m: i64, r: i64, mode: RoundMode) -> i64 {
    let x = (v as f32 * m as f32) as f64 / 2f64.powi(r as i32);
    round_f64(x, mode) as i64
}

/// QDM requant: `t = clamp_i32(RightShiftRound(v·M, 31, HalfUp))`, then
/// `RightShiftRound(t, r, mode)` (the CV18xx conv uses `mode = HalfAwayFromZero`).
pub fn apply_qdm(v: i64, m: i64, r: i64, mode: RoundMode) -> i64 {
    let t = right_shift_round(v.wrapping_mul(m), 31, RoundMode::HalfUp).clamp(i32::MIN as i64, i32::MAX as i64);
    right_shift_round(t, r, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaky_relu_negative_branch_102_10() {
        assert_eq!(get_rshift_and_multiplier_from_qscale(0.1, false, 127), (102, 10));
        assert_eq!(get_rshift_and_multiplier_from_qscale(0.10000000149011612, false, 127), (102, 10));
    }

    #[test]
    fn quantize_multiplier_examples() {
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
        let (m, e) = quantize_multiplier(0.75);
        assert_eq!((m, e), (1610612736, 0));
        // qdm: 1.0 becomes 0.999999
        let (m, r) = get_rshift_and_multiplier_from_qscale(1.0, true, 127);
        assert_eq!(r, 0);
        assert_eq!(m, (0.999999f64 * 2147483648.0).round() as i64);
    }

    #[test]
    fn qdm_application() {
        // 1000 * 2^30 / 2^31 = 500, then /2^2 = 125
        assert_eq!(apply_qdm(1000, 1 << 30, 2, RoundMode::HalfAwayFromZero), 125);
        assert_eq!(apply_qdm(-1002, 1 << 30, 2, RoundMode::HalfAwayFromZero), -125);
        assert_eq!(apply_qdm(-1004, 1 << 30, 3, RoundMode::HalfAwayFromZero), -63);
    }
}
