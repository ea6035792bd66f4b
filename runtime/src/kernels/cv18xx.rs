//! CV18xx integer arithmetic: QDM requant (`(acc·M + 2^30) >> 31`, then a half-away rounding shift),
//! the two-branch leaky ReLU, Add with one shift, concat requant, and the bf16 boundary casts
//! (`cvi_f32_to_bf16` rules).

use super::conv::{conv_int8, deconv_gather, ConvGeom, IntConv, Requant};
use super::num::{bf16_to_f32, code8, f32_to_bf16, load_float, load_i32, round_f32, rshift_round, sat8, store_float};
use super::{map_bytes_via_table, zip_bytes_bcast, Bcast, Src};
use bmodel_format::{DType, RoundMode};

/// QDM requant of one accumulator: `t = clamp_i32((acc·M + 2^30) >> 31)`,
/// `RightShiftRound(t, r, HalfAwayFromZero)`.
#[inline(always)]
pub fn qdm(acc: i64, m: i32, r: i32) -> i64 {
    let t = acc.wrapping_mul(m as i64).wrapping_add(1i64 << 30) >> 31;
    let t = t.clamp(i32::MIN as i64, i32::MAX as i64);
    rshift_round(t, r, RoundMode::HalfAwayFromZero)
}

fn requant(table: &[u8], oc: usize, acc: i64, relu: bool) -> u8 {
    let m = load_i32(table, 2 * oc);
    let r = load_i32(table, 2 * oc + 1);
    let mut v = qdm(acc, m, r);
    if relu {
        v = v.max(0);
    }
    sat8(v, false)
}

/// QDM requant of a conv output channel.
struct QdmRequant<'s> {
    table: &'s [u8],
    relu: bool,
}

impl Requant for QdmRequant<'_> {
    type Ch = (i32, i32);

    #[inline(always)]
    fn channel(&self, oc: usize) -> (i32, i32) {
        (load_i32(self.table, 2 * oc), load_i32(self.table, 2 * oc + 1))
    }

    #[inline(always)]
    fn apply(&self, (m, r): (i32, i32), acc: i64) -> u8 {
        let mut v = qdm(acc, m, r);
        if self.relu {
            v = v.max(0);
        }
        sat8(v, false)
    }
}

/// Int8 conv with per-channel QDM requant.
pub fn conv(a: &IntConv<'_>, y: &mut [u8], g: &ConvGeom, scratch: &mut [u8], table: &[u8], relu: bool) {
    conv_int8(a, y, g, scratch, &QdmRequant { table, relu });
}

/// Int8 transposed conv (the upsample rewrite) with QDM requant.
pub fn deconv(a: &IntConv<'_>, y: &mut [u8], g: &ConvGeom, table: &[u8], relu: bool) {
    deconv_gather(
        g,
        0i64,
        |acc, xi, wi| acc + (code8(a.x[xi], a.x_unsigned) - a.x_zp) as i64 * code8(a.w[wi], a.w_unsigned) as i64,
        |oc, out, acc| {
            let b = a.bias.map(|b| load_i32(b, oc) as i64).unwrap_or(0);
            y[out] = requant(table, oc, acc + b, relu);
        },
    );
}

/// Leaky ReLU with separate positive / negative (multiplier, shift), HalfUp rounding.
pub fn leaky_relu(x: Src<'_>, y: &mut [u8], m_pos: i32, r_pos: i32, m_neg: i32, r_neg: i32) {
    map_bytes_via_table(x, y, |b| {
        let v = b as i8 as i64;
        let o = if v >= 0 {
            if (m_pos == 1 && r_pos == 0) || m_pos == 0 {
                v
            } else {
                rshift_round(v * m_pos as i64, r_pos, RoundMode::HalfUp)
            }
        } else {
            rshift_round(v * m_neg as i64, r_neg, RoundMode::HalfUp)
        };
        sat8(o, false)
    });
}

/// One 8-bit requant `sat_i8(RightShiftRound(x·m, r, HalfUp))` (concat inputs).
#[inline(always)]
pub fn requant8(b: u8, m: i32, r: i32) -> u8 {
    sat8(rshift_round(b as i8 as i64 * m as i64, r, RoundMode::HalfUp), false)
}

/// Add with broadcasting: `sat_i8(RightShiftRound(a·m0 + b·m1, r, HalfUp))`, clamped at 0 first
/// when `relu`.
pub fn add(a: Src<'_>, b: Src<'_>, y: &mut [u8], shapes: &Bcast, m: [i32; 2], r: i32, relu: bool) {
    zip_bytes_bcast(a, b, y, shapes, |va, vb| {
        let s = va as i8 as i64 * m[0] as i64 + vb as i8 as i64 * m[1] as i64;
        let t = rshift_round(s, r, RoundMode::HalfUp);
        sat8(if relu { t.max(0) } else { t }, false)
    });
}

/// bf16 multiply: denormal inputs and products flush to 0, overflow gives ±FLT_MAX, result RNE
/// to bf16 (CV rule), returned widened.
fn bf16_mul(a: f32, b: f32) -> f32 {
    let flush = |v: f32| if v.is_subnormal() { 0.0 } else { v };
    let p = flush(a) * flush(b);
    let p = if p.is_infinite() {
        if p > 0.0 {
            f32::MAX
        } else {
            -f32::MAX
        }
    } else {
        flush(p)
    };
    bf16_to_f32(f32_to_bf16(p, true))
}

/// float -> int8 inside the graph: `sat_i8(round(bf16_mul(bf16_trunc(x), bf16(inv_scale))))`.
pub fn quantize_bf16(x: &[u8], xt: DType, y: &mut [u8], inv_scale: f32, round: RoundMode) {
    let s = bf16_to_f32(f32_to_bf16(inv_scale, true));
    for (i, o) in y.iter_mut().enumerate() {
        let v = load_float(x, xt, i);
        let t = f32::from_bits(v.to_bits() & 0xFFFF_0000);
        let p = bf16_mul(t, s);
        *o = sat8(round_f32(p, round), false);
    }
}

/// int8 -> float: `bf16(bf16(q) · bf16(scale))`, stored as the output type.
pub fn dequantize_bf16(x: &[u8], y: &mut [u8], yt: DType, scale: f32) {
    let s = bf16_to_f32(f32_to_bf16(scale, true));
    for (i, &b) in x.iter().enumerate() {
        let q = b as i8 as f32;
        let v = bf16_to_f32(f32_to_bf16(q * s, true));
        store_float(y, yt, i, v, true);
    }
}
