//! Rounding and saturation primitives (tpu-mlir `MathUtils`: `to_int`, `RightShiftRound`).

/// Rounding modes of tpu-mlir (`#tpu<round_mode ...>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundMode {
    /// `std::round`: ties away from zero.
    HalfAwayFromZero,
    /// `floor(v + 0.5)`: ties towards +inf.
    HalfUp,
    /// `ceil(v - 0.5)`: ties towards -inf.
    HalfDown,
    /// Banker's rounding: ties to the even neighbour.
    HalfToEven,
    /// `floor`.
    Down,
    /// `ceil`.
    Up,
    /// `trunc`.
    TowardsZero,
}

impl RoundMode {
    /// Parse the MLIR enum value (`HalfAwayFromZero`, `HalfUp`, ...).
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "HalfAwayFromZero" => RoundMode::HalfAwayFromZero,
            "HalfUp" => RoundMode::HalfUp,
            "HalfDown" => RoundMode::HalfDown,
            "HalfToEven" => RoundMode::HalfToEven,
            "Down" => RoundMode::Down,
            "Up" => RoundMode::Up,
            "TowardsZero" => RoundMode::TowardsZero,
            _ => return None,
        })
    }
}

/// `to_int(v, mode)` on a float: the integer-valued rounding of `v` (still a float).
pub fn round_f64(v: f64, mode: RoundMode) -> f64 {
    match mode {
        RoundMode::HalfAwayFromZero => v.round(),
        RoundMode::HalfUp => (v + 0.5).floor(),
        RoundMode::HalfDown => (v - 0.5).ceil(),
        RoundMode::HalfToEven => v.round_ties_even(),
        RoundMode::Down => v.floor(),
        RoundMode::Up => v.ceil(),
        RoundMode::TowardsZero => v.trunc(),
    }
}

/// `to_int` on an f32, computed in f32 (same results as in f64 for every f32 input).
pub fn round_f32(v: f32, mode: RoundMode) -> f32 {
    round_f64(v as f64, mode) as f32
}

/// `RightShiftRound(x, s, mode)`: `x / 2^s` rounded per `mode`, on i64.
/// `s <= 0` is a left shift by `-s`; `s > 63` is treated as 63.
/// With `val = x >> s`, `mant = x & (2^s-1)`, `half = 2^(s-1)`: HalfUp adds 1 if `mant >= half`
/// (= floor(x/2^s + 1/2)); HalfAwayFromZero adds 1 if `x>=0 && mant>=half || x<0 && mant>half`;
/// HalfToEven adds 1 if `mant > half` or (`mant == half` and `val` odd); HalfDown if `mant > half`;
/// Up if `mant != 0`; TowardsZero if `x < 0 && mant != 0`; Down never.
pub fn right_shift_round(x: i64, s: i64, mode: RoundMode) -> i64 {
    if s <= 0 {
        return x.wrapping_shl((-s).min(63) as u32);
    }
    let s = s.min(63) as u32;
    let val = x >> s;
    let mant = x & ((1i64 << s) - 1);
    let half = 1i64 << (s - 1);
    let inc = match mode {
        RoundMode::HalfUp => mant >= half,
        RoundMode::HalfAwayFromZero => (x >= 0 && mant >= half) || (x < 0 && mant > half),
        RoundMode::HalfToEven => mant > half || (mant == half && (val & 1) == 1),
        RoundMode::HalfDown => mant > half,
        RoundMode::Down => false,
        RoundMode::Up => mant != 0,
        RoundMode::TowardsZero => x < 0 && mant != 0,
    };
    val + inc as i64
}

/// Clamp to the range of a signed or unsigned integer of `bits` bits.
pub fn saturate(v: i64, signed: bool, bits: u8) -> i64 {
    let (lo, hi) = int_range(signed, bits);
    v.clamp(lo, hi)
}

/// Clamp a float (already rounded) to the range of the integer type; NaN gives 0.
pub fn saturate_f64(v: f64, signed: bool, bits: u8) -> i64 {
    if v.is_nan() {
        return 0;
    }
    let (lo, hi) = int_range(signed, bits);
    v.clamp(lo as f64, hi as f64) as i64
}

/// `(min, max)` of an integer type.
pub fn int_range(signed: bool, bits: u8) -> (i64, i64) {
    let bits = bits.clamp(1, 63) as u32;
    if signed {
        (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
    } else {
        (0, (1i64 << bits) - 1)
    }
}

/// `to_int8(v, HalfAwayFromZero)` with saturation.
pub fn to_i8(v: f64) -> i8 {
    saturate_f64(v.round(), true, 8) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_modes_on_ties() {
        assert_eq!(round_f64(2.5, RoundMode::HalfAwayFromZero), 3.0);
        assert_eq!(round_f64(-2.5, RoundMode::HalfAwayFromZero), -3.0);
        assert_eq!(round_f64(-2.5, RoundMode::HalfUp), -2.0);
        assert_eq!(round_f64(2.5, RoundMode::HalfDown), 2.0);
        assert_eq!(round_f64(2.5, RoundMode::HalfToEven), 2.0);
        assert_eq!(round_f64(3.5, RoundMode::HalfToEven), 4.0);
    }

    #[test]
    fn right_shift_round_modes() {
        // -5 / 2 = -2.5
        assert_eq!(right_shift_round(-5, 1, RoundMode::HalfUp), -2);
        assert_eq!(right_shift_round(-5, 1, RoundMode::HalfAwayFromZero), -3);
        assert_eq!(right_shift_round(-5, 1, RoundMode::HalfToEven), -2);
        assert_eq!(right_shift_round(-7, 1, RoundMode::HalfToEven), -4);
        assert_eq!(right_shift_round(5, 1, RoundMode::HalfUp), 3);
        assert_eq!(right_shift_round(5, 1, RoundMode::Down), 2);
        assert_eq!(right_shift_round(-5, 1, RoundMode::TowardsZero), -2);
        assert_eq!(right_shift_round(3, -2, RoundMode::HalfUp), 12);
        assert_eq!(right_shift_round(3, 0, RoundMode::HalfUp), 3);
    }

    #[test]
    fn saturation() {
        assert_eq!(saturate(300, true, 8), 127);
        assert_eq!(saturate(-300, false, 8), 0);
        assert_eq!(to_i8(-127.5), -128);
        assert_eq!(to_i8(126.5), 127);
    }
}
