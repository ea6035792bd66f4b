//! BM1684X integer arithmetic: multiplier/shift requant with a rounding right shift, the
//! multiplier/shift leaky ReLU, MulShift, Add, average pooling, and the boundary casts.

use super::conv::{conv_int8, ConvGeom, IntConv, Requant};
use super::data::PoolGeom;
use super::num::{code8, load_float, load_i32, round_f32, rshift_half_up, rshift_round, sat8, store_float};
use super::{map_bytes_via_table, zip_bytes_bcast, Bcast, Src};
use bmodel_format::{DType, RoundMode};

/// Output side of an int8 conv on BM1684X.
pub struct BmRequant<'s> {
    /// i32 pairs (multiplier, rshift) per output channel
    pub table: &'s [u8],
    /// output zero point
    pub zero_point: i32,
    /// rounding of the shift
    pub round: RoundMode,
    /// clamp below at the zero point
    pub relu: bool,
    /// output is u8
    pub unsigned: bool,
}

impl Requant for BmRequant<'_> {
    type Ch = (i64, i32);

    #[inline(always)]
    fn channel(&self, oc: usize) -> (i64, i32) {
        (load_i32(self.table, 2 * oc) as i64, load_i32(self.table, 2 * oc + 1))
    }

    #[inline(always)]
    fn apply(&self, (m, r): (i64, i32), acc: i64) -> u8 {
        let t = if self.round == RoundMode::HalfUp {
            rshift_half_up(acc.wrapping_mul(m), r)
        } else {
            rshift_round(acc.wrapping_mul(m), r, self.round)
        };
        let mut v = t + self.zero_point as i64;
        if self.relu {
            v = v.max(self.zero_point as i64);
        }
        sat8(v, self.unsigned)
    }
}

/// `y = sat(RightShiftRound(acc·M_c, r_c, round) + zp)` per output channel `c`.
pub fn conv(a: &IntConv<'_>, y: &mut [u8], g: &ConvGeom, scratch: &mut [u8], q: &BmRequant<'_>) {
    conv_int8(a, y, g, scratch, q);
}

/// Leaky ReLU: `x >= 0 ? x : sat(RightShiftRound(x·m, r, round))`.
pub fn leaky_relu(x: Src<'_>, y: &mut [u8], x_unsigned: bool, y_unsigned: bool, m: i32, r: i32, round: RoundMode) {
    map_bytes_via_table(x, y, |b| {
        let v = code8(b, x_unsigned) as i64;
        let o = if v >= 0 { v } else { rshift_round(v * m as i64, r, round) };
        sat8(o, y_unsigned)
    });
}

/// MulShift requant: `sat(RightShiftRound(x·m, r, round) + zp)`.
#[allow(clippy::too_many_arguments)]
pub fn mul_shift(
    x: Src<'_>,
    y: &mut [u8],
    x_unsigned: bool,
    y_unsigned: bool,
    m: i32,
    r: i32,
    round: RoundMode,
    zp: i32,
) {
    map_bytes_via_table(x, y, |b| {
        let v = code8(b, x_unsigned) as i64;
        sat8(rshift_round(v * m as i64, r, round) + zp as i64, y_unsigned)
    });
}

/// Add with broadcasting: `sat(RightShiftRound(a·m0, r0, HalfUp) + RightShiftRound(b·m1, r1,
/// HalfUp))`, clamped at 0 first when `relu`. `unsigned` flags a, b, y.
#[allow(clippy::too_many_arguments)]
pub fn add(
    a: Src<'_>,
    b: Src<'_>,
    y: &mut [u8],
    shapes: &Bcast,
    unsigned: [bool; 3],
    m: [i32; 2],
    r: [i32; 2],
    relu: bool,
) {
    zip_bytes_bcast(a, b, y, shapes, |va, vb| {
        let ta = rshift_round(code8(va, unsigned[0]) as i64 * m[0] as i64, r[0], RoundMode::HalfUp);
        let tb = rshift_round(code8(vb, unsigned[1]) as i64 * m[1] as i64, r[1], RoundMode::HalfUp);
        let s = ta + tb;
        sat8(if relu { s.max(0) } else { s }, unsigned[2])
    });
}

/// int8 multiply with broadcasting (BM1684X and CV18xx alike):
/// `sat(RightShiftRound(a·b·m, r, HalfUp))`, clamped at 0 first when `relu`.
#[allow(clippy::too_many_arguments)]
pub fn mul(a: Src<'_>, b: Src<'_>, y: &mut [u8], shapes: &Bcast, unsigned: [bool; 3], m: i32, r: i32, relu: bool) {
    zip_bytes_bcast(a, b, y, shapes, |va, vb| {
        let p = code8(va, unsigned[0]) as i64 * code8(vb, unsigned[1]) as i64 * m as i64;
        let t = rshift_half_up(p, r);
        sat8(if relu { t.max(0) } else { t }, unsigned[2])
    });
}

/// Integer average pooling: `sat(RightShiftRound(Σ window · m, r, round))`, padded cells add 0.
pub fn avg_pool(x: &[u8], y: &mut [u8], unsigned: [bool; 2], g: &PoolGeom, m: i32, r: i32, round: RoundMode) {
    g.for_each(|out, cells| {
        let s: i64 = cells.map(|i| code8(x[i], unsigned[0]) as i64).sum();
        y[out] = sat8(rshift_round(s.wrapping_mul(m as i64), r, round), unsigned[1]);
    });
}

/// float -> int8: `sat(round(x · inv_scale) + zp)`, product in f32.
#[allow(clippy::too_many_arguments)]
pub fn quantize(x: &[u8], xt: DType, y: &mut [u8], unsigned: bool, inv_scale: f32, zp: i32, round: RoundMode) {
    for (i, o) in y.iter_mut().enumerate() {
        let v = load_float(x, xt, i) * inv_scale;
        *o = sat8(round_f32(v, round) + zp as i64, unsigned);
    }
}

/// int8 -> float: `scale · (q − zp)` in f32, rounded (RNE) to the output type.
pub fn dequantize(x: &[u8], unsigned: bool, y: &mut [u8], yt: DType, scale: f32, zp: i32) {
    for (i, &b) in x.iter().enumerate() {
        let v = scale * (code8(b, unsigned) - zp) as f32;
        store_float(y, yt, i, v, false);
    }
}
