//! BM168x requantization: multiplier/shift search and `applyMultiplierAndRShift`.

use super::round::{right_shift_round, RoundMode};

/// `get_scale_and_shift(scale_f, bitwidth)`: for `n = -32 ..= 30`, `m = round_half_away(scale_f·2^n)`
/// and `err = (f32)|m/2^n − scale_f|`; the first `n` with strictly smaller error and `|m| < limit`
/// (`i32::MAX` for 32 bits, 127 for 8 bits) wins. Returns `(m, n)` (`n` is the right shift).
pub fn get_scale_and_shift(scale_f: f32, bitwidth: u32) -> (i64, i64) {
    search(scale_f, bitwidth, -32)
}

/// `get_scale_and_shift_positive`: as [`get_scale_and_shift`] with `n = 0 ..= 30` only.
pub fn get_scale_and_shift_positive(scale_f: f32, bitwidth: u32) -> (i64, i64) {
    search(scale_f, bitwidth, 0)
}

fn search(scale_f: f32, bitwidth: u32, n_start: i32) -> (i64, i64) {
    let limit: f64 = if bitwidth == 32 { i32::MAX as f64 } else { i8::MAX as f64 };
    let mut min_err = f32::MAX;
    let mut shift = 0i32;
    for n in n_start..31 {
        let p = 2f64.powi(n);
        let m = (scale_f as f64 * p).round();
        let err = ((m / p) - scale_f as f64).abs() as f32;
        if err < min_err && m.abs() < limit {
            min_err = err;
            shift = n;
        }
    }
    let m = (scale_f as f64 * 2f64.powi(shift)).round();
    (m as i64, shift as i64)
}

/// `applyMultiplierAndRShift(v, m, r)` in MultiplierShift mode: `RightShiftRound(v·m, r, mode)`.
pub fn apply_multiplier_and_rshift(v: i64, m: i64, r: i64, mode: RoundMode) -> i64 {
    right_shift_round(v.wrapping_mul(m), r, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaky_relu_alpha_gives_51_9() {
        assert_eq!(get_scale_and_shift(0.1, 8), (51, 9));
        assert_eq!(get_scale_and_shift(0.1f64 as f32, 8), (51, 9));
    }

    #[test]
    fn concat_requant_6_to_4_5() {
        let s_in = (6.0f64 / 127.0) as f32;
        let s_out = (4.5f64 / 127.0) as f32;
        assert_eq!(get_scale_and_shift_positive(s_in / s_out, 8), (85, 6));
    }

    #[test]
    fn multiplier_shift_rounds_half_up() {
        // -3 * 51 = -153; -153 / 512 = -0.2988 -> 0
        assert_eq!(apply_multiplier_and_rshift(-3, 51, 9, RoundMode::HalfUp), 0);
        assert_eq!(apply_multiplier_and_rshift(-100, 51, 9, RoundMode::HalfUp), -10);
        assert_eq!(apply_multiplier_and_rshift(1, 1, 1, RoundMode::HalfUp), 1);
        assert_eq!(apply_multiplier_and_rshift(-1, 1, 1, RoundMode::HalfUp), 0);
    }
}
