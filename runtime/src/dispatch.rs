//! Instruction -> kernel: picks the chip module from the instruction's arithmetic and hands it raw
//! slices of the arena (no allocation).

use crate::arena::views;
use crate::kernels::conv::{conv_float, ConvGeom, FloatConv, IntConv};
use crate::kernels::data::{self, PoolGeom};
use crate::kernels::float::{self, FSrc};
use crate::kernels::{bm1684x, cv18xx, Bcast};
use bmodel_format::{AddParams, CastMode, Chip, ConvRequant, DType, Instr, LeakyParams, MulParams, PoolMode};

/// A shared input that the verifier guarantees is not the output itself.
#[inline(always)]
fn src(v: Option<&[u8]>) -> &[u8] {
    v.unwrap_or(&[])
}

/// Execute one verified instruction. `act` is the activation region, `scratch` the kernels' area.
pub fn execute(instr: &Instr, chip: Chip, act: &mut [u8], coeff: &[u8], scratch: &mut [u8]) {
    let cv = chip.is_cv18xx();
    match instr {
        Instr::Conv2d { x, w, bias, y, win, group, requant, relu } => {
            let g = ConvGeom::new(x, y, win, *group);
            let bias_t = bias.unwrap_or(*w);
            let table_t = match requant {
                ConvRequant::MulShift { table, .. } | ConvRequant::Qdm { table } => *table,
                ConvRequant::Float => *w,
            };
            let ([xs, ws, bs, ts], ys) = views(act, coeff, [x, w, &bias_t, &table_t], y);
            let bs = bias.map(|_| src(bs));
            match requant {
                ConvRequant::Float => {
                    let a = FloatConv {
                        x: src(xs),
                        xt: x.dtype,
                        w: src(ws),
                        wt: w.dtype,
                        bias: bias.map(|b| (src(bs), b.dtype)),
                    };
                    conv_float(&a, ys, y.dtype, &g, scratch, *relu, cv);
                }
                ConvRequant::MulShift { zero_point, round, .. } => {
                    let a = int_conv(src(xs), x.dtype, src(ws), w.dtype, bs);
                    let q = bm1684x::BmRequant {
                        table: src(ts),
                        zero_point: *zero_point,
                        round: *round,
                        relu: *relu,
                        unsigned: y.dtype == DType::U8,
                    };
                    bm1684x::conv(&a, ys, &g, scratch, &q);
                }
                ConvRequant::Qdm { .. } => {
                    let a = int_conv(src(xs), x.dtype, src(ws), w.dtype, bs);
                    cv18xx::conv(&a, ys, &g, scratch, src(ts), *relu);
                }
            }
        }
        Instr::Deconv2d { x, w, bias, y, win, group, requant, relu } => {
            let g = ConvGeom::new(x, y, win, *group);
            let bias_t = bias.unwrap_or(*w);
            let table_t = match requant {
                ConvRequant::MulShift { table, .. } | ConvRequant::Qdm { table } => *table,
                ConvRequant::Float => *w,
            };
            let ([xs, ws, bs, ts], ys) = views(act, coeff, [x, w, &bias_t, &table_t], y);
            let bs = bias.map(|_| src(bs));
            match requant {
                ConvRequant::Float => float::deconv(
                    src(xs),
                    x.dtype,
                    src(ws),
                    w.dtype,
                    bias.map(|b| (src(bs), b.dtype)),
                    ys,
                    y.dtype,
                    &g,
                    *relu,
                    cv,
                ),
                // Deconv with MulShift is not emitted by the lowering; QDM covers the CV18xx rewrite.
                ConvRequant::MulShift { .. } | ConvRequant::Qdm { .. } => {
                    let a = int_conv(src(xs), x.dtype, src(ws), w.dtype, bs);
                    cv18xx::deconv(&a, ys, &g, src(ts), *relu);
                }
            }
        }
        Instr::Pool2d { x, y, win, mode } => {
            let g = PoolGeom::new(x, y, *win);
            let ([xs], ys) = views(act, coeff, [x], y);
            let xs = src(xs);
            match mode {
                PoolMode::Max if x.dtype.is_int8() => data::max_pool_int8(xs, ys, x.dtype == DType::U8, &g),
                PoolMode::Max => data::max_pool_float(xs, ys, x.dtype, &g),
                PoolMode::AvgInt { multiplier, rshift, round, .. } => bm1684x::avg_pool(
                    xs,
                    ys,
                    [x.dtype == DType::U8, y.dtype == DType::U8],
                    &g,
                    *multiplier,
                    *rshift,
                    *round,
                ),
                PoolMode::AvgFloat { count_include_pad } => {
                    float::avg_pool(xs, x.dtype, ys, y.dtype, &g, *count_include_pad, cv)
                }
            }
        }
        Instr::Upsample { x, y, scale } => {
            let ([xs], ys) = views(act, coeff, [x], y);
            data::upsample(src(xs), ys, x.shape, *scale, x.dtype.size());
        }
        Instr::LeakyRelu { x, y, params } => {
            let ([xs], ys) = views(act, coeff, [x], y);
            match params {
                LeakyParams::Bm { multiplier, rshift, round } => bm1684x::leaky_relu(
                    xs,
                    ys,
                    x.dtype == DType::U8,
                    y.dtype == DType::U8,
                    *multiplier,
                    *rshift,
                    *round,
                ),
                LeakyParams::Cv { m_pos, r_pos, m_neg, r_neg } => {
                    cv18xx::leaky_relu(xs, ys, *m_pos, *r_pos, *m_neg, *r_neg)
                }
                LeakyParams::Float { alpha } => {
                    let n = y.numel() as usize;
                    float::leaky_relu(FSrc { bytes: xs, dtype: x.dtype }, ys, y.dtype, n, *alpha, cv)
                }
            }
        }
        Instr::Relu { x, y } => {
            let ([xs], ys) = views(act, coeff, [x], y);
            if x.dtype.is_int8() {
                let unsigned = x.dtype == DType::U8;
                crate::kernels::map_bytes_via_table(xs, ys, |b| if !unsigned && (b as i8) < 0 { 0 } else { b });
            } else {
                let n = y.numel() as usize;
                float::relu(FSrc { bytes: xs, dtype: x.dtype }, ys, y.dtype, n, cv);
            }
        }
        Instr::MulShift { x, y, multiplier, rshift, round, zero_point } => {
            let ([xs], ys) = views(act, coeff, [x], y);
            bm1684x::mul_shift(
                xs,
                ys,
                x.dtype == DType::U8,
                y.dtype == DType::U8,
                *multiplier,
                *rshift,
                *round,
                *zero_point,
            );
        }
        Instr::ConcatPart { x, y, axis, start, requant } => {
            let ([xs], ys) = views(act, coeff, [x], y);
            let es = x.dtype.size();
            match requant {
                None => data::concat_part(src(xs), ys, x.shape, y.shape, *axis as usize, *start as usize, es, None),
                Some((m, r)) => {
                    let (m, r) = (*m, *r);
                    let f = move |b: u8| cv18xx::requant8(b, m, r);
                    data::concat_part(src(xs), ys, x.shape, y.shape, *axis as usize, *start as usize, es, Some(&f));
                }
            }
        }
        Instr::Add { a, b, y, params, relu } => {
            let ([as_, bs], ys) = views(act, coeff, [a, b], y);
            let shapes = Bcast { a: a.shape, b: b.shape, y: y.shape };
            match params {
                AddParams::Bm { multiplier, rshift } => {
                    let unsigned = [a.dtype == DType::U8, b.dtype == DType::U8, y.dtype == DType::U8];
                    bm1684x::add(as_, bs, ys, &shapes, unsigned, *multiplier, *rshift, *relu)
                }
                AddParams::Cv { multiplier, rshift } => cv18xx::add(as_, bs, ys, &shapes, *multiplier, *rshift, *relu),
                AddParams::Float => float::add(
                    FSrc { bytes: as_, dtype: a.dtype },
                    FSrc { bytes: bs, dtype: b.dtype },
                    ys,
                    y.dtype,
                    &shapes,
                    *relu,
                    cv,
                ),
            }
        }
        Instr::Mul { a, b, y, params, relu } => {
            let ([as_, bs], ys) = views(act, coeff, [a, b], y);
            let shapes = Bcast { a: a.shape, b: b.shape, y: y.shape };
            match params {
                MulParams::Int { multiplier, rshift } => {
                    let unsigned = [a.dtype == DType::U8, b.dtype == DType::U8, y.dtype == DType::U8];
                    bm1684x::mul(as_, bs, ys, &shapes, unsigned, *multiplier, *rshift, *relu)
                }
                MulParams::Float => float::mul(
                    FSrc { bytes: as_, dtype: a.dtype },
                    FSrc { bytes: bs, dtype: b.dtype },
                    ys,
                    y.dtype,
                    &shapes,
                    *relu,
                    cv,
                ),
            }
        }
        Instr::Copy { x, y, start, strides } => {
            let ([xs], ys) = views(act, coeff, [x], y);
            data::strided_copy(src(xs), ys, y.shape, *start as usize, *strides, x.dtype.size());
        }
        Instr::Pad { x, y, before, value } => {
            let ([xs], ys) = views(act, coeff, [x], y);
            data::pad(src(xs), ys, x.shape, y.shape, *before, *value, y.dtype.size());
        }
        Instr::Sigmoid { x, y } => {
            let ([xs], ys) = views(act, coeff, [x], y);
            float::sigmoid(FSrc { bytes: xs, dtype: x.dtype }, ys, y.dtype, y.numel() as usize, cv);
        }
        Instr::Softmax { x, y, axis } => {
            let ([xs], ys) = views(act, coeff, [x], y);
            float::softmax(src(xs), x.dtype, ys, y.dtype, y.shape, *axis as usize, cv);
        }
        Instr::Lut { x, y, table } => {
            let ([xs, ts], ys) = views(act, coeff, [x, table], y);
            data::lut(xs, ys, src(ts));
        }
        Instr::Cast { x, y, mode } => {
            let ([xs], ys) = views(act, coeff, [x], y);
            let xs = src(xs);
            match mode {
                CastMode::Quantize { inv_scale, zero_point, round } => {
                    bm1684x::quantize(xs, x.dtype, ys, y.dtype == DType::U8, *inv_scale, *zero_point, *round)
                }
                CastMode::QuantizeBf16 { inv_scale, round } => {
                    cv18xx::quantize_bf16(xs, x.dtype, ys, *inv_scale, *round)
                }
                CastMode::Dequantize { scale, zero_point } => {
                    bm1684x::dequantize(xs, x.dtype == DType::U8, ys, y.dtype, *scale, *zero_point)
                }
                CastMode::DequantizeBf16 { scale } => cv18xx::dequantize_bf16(xs, ys, y.dtype, *scale),
                CastMode::Float { cv_bf16 } => float::cast(xs, x.dtype, ys, y.dtype, y.numel() as usize, *cv_bf16),
            }
        }
    }
}

fn int_conv<'s>(x: &'s [u8], xt: DType, w: &'s [u8], wt: DType, bias: Option<&'s [u8]>) -> IntConv<'s> {
    IntConv { x, x_unsigned: xt == DType::U8, x_zp: 0, w, w_unsigned: wt == DType::U8, bias }
}
