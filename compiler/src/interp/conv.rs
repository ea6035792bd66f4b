//! Convolution (`top.Conv`), transposed convolution (`top.Deconv`) and matrix product
//! (`top.MatMul`).
//!
//! Dense convolutions are GEMMs: filter [OC, IC·kh·kw] (the ONNX layout is already that matrix)
//! times the im2col of the input. Wide outputs are cut into column blocks whose im2col fits in
//! L2, one block per rayon task; narrow outputs (deep layers) build one im2col and let `gemm`
//! split the product. 1x1 stride-1 convolutions read the input directly. Depthwise and small
//! grouped convolutions use a direct kernel parallel over output planes.

use super::direct3x3;
use super::elementwise::{unary, Unary};
use super::gemm_util::{matmul, matmul_raw, MatRef};
use super::sgemm::{self, Act, BSource, PackedA, SendPtr};
use super::Tensor;
use ndarray::IxDyn;
use rayon::prelude::*;
use std::borrow::Cow;

/// Bytes of im2col block a task aims to keep in cache.
const IM2COL_BLOCK_BYTES: usize = 256 * 1024;
/// Narrowest column block worth a separate GEMM call.
const MIN_BLOCK_COLS: usize = 48;

/// Geometry of a 2-D convolution (1-D convolutions use `h = kh = 1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ConvGeom {
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    /// pads top, left, bottom, right
    pub pads: [usize; 4],
    pub group: usize,
}

/// Borrow a tensor's elements as one row-major slice (copying only if it is not standard).
pub(super) fn contiguous(t: &Tensor) -> Cow<'_, [f32]> {
    match t.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(t.iter().copied().collect()),
    }
}

/// Output extent of a strided, dilated window over `len + pad` cells.
fn out_len(len: usize, pad: usize, k: usize, s: usize, d: usize) -> Result<usize, String> {
    let span = d * (k.max(1) - 1) + 1;
    if len + pad < span || s == 0 {
        return Err(format!("window {k} (dilation {d}) does not fit input {len} with pads {pad}"));
    }
    Ok((len + pad - span) / s + 1)
}

/// The range `[lo, hi)` of output positions `t < n` whose input index `(o0 + t)·s + off` lies in
/// `[0, len)`.
fn valid_range(o0: usize, n: usize, s: usize, off: isize, len: usize) -> (usize, usize) {
    let base = (o0 * s) as isize + off;
    let s = s as isize;
    let lo = if base >= 0 { 0 } else { ((-base + s - 1) / s) as usize };
    let last = len as isize - 1 - base;
    let hi = if last < 0 { 0 } else { (last / s + 1) as usize };
    let hi = hi.min(n);
    (lo.min(hi), hi)
}

/// Convolution of `x` [N, C, H, W] (or [N, C, L]) with `w` [OC, C/g, kh, kw] plus `bias`.
///
/// `packed` is the filter already packed for [`sgemm`] (dense convolutions only); `act` is an
/// activation fused into the output (the op that follows, when nobody observes the conv).
pub(super) fn conv(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    g: &ConvGeom,
    packed: Option<&PackedA>,
    act: Option<Act>,
) -> Result<Tensor, String> {
    conv_with(x, w, bias, g, packed, act, true)
}

/// [`conv`] through the packed GEMM even where the direct 3x3 kernel applies (tests compare the
/// two bit for bit).
#[cfg(test)]
pub(super) fn conv_via_gemm(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    g: &ConvGeom,
    act: Option<Act>,
) -> Result<Tensor, String> {
    conv_with(x, w, bias, g, None, act, false)
}

/// [`conv`], taking the direct 3x3 kernel for thin dense layers when `allow_direct`.
fn conv_with(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    g: &ConvGeom,
    packed: Option<&PackedA>,
    act: Option<Act>,
    allow_direct: bool,
) -> Result<Tensor, String> {
    let one_d = x.ndim() == 3;
    if !(x.ndim() == 4 || one_d) || w.ndim() != x.ndim() {
        return Err(format!("input {:?} / filter {:?}: expected 4-D (or 3-D) tensors", x.shape(), w.shape()));
    }
    let (n, c, h, wd) = if one_d {
        (x.shape()[0], x.shape()[1], 1, x.shape()[2])
    } else {
        (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3])
    };
    let oc = w.shape()[0];
    let group = g.group.max(1);
    if !c.is_multiple_of(group) || !oc.is_multiple_of(group) {
        return Err(format!("channels {c} -> {oc} not divisible by group {group}"));
    }
    let (icg, ocg) = (c / group, oc / group);
    let (kh, kw) = if one_d { (1, w.shape()[2]) } else { (w.shape()[2], w.shape()[3]) };
    if w.shape()[1] != icg || kh != g.kh || kw != g.kw {
        return Err(format!(
            "filter {:?} does not match input channels {c}/group {group} and kernel [{}, {}]",
            w.shape(),
            g.kh,
            g.kw
        ));
    }
    let bias = bias.map(contiguous);
    if let Some(b) = &bias {
        if b.len() != oc {
            return Err(format!("bias has {} elements, expected {oc}", b.len()));
        }
    }
    let oh = out_len(h, g.pads[0] + g.pads[2], kh, g.sh, g.dh)?;
    let ow = out_len(wd, g.pads[1] + g.pads[3], kw, g.sw, g.dw)?;
    let xs = contiguous(x);
    let ws = contiguous(w);
    let (hw, ohw, k) = (h * wd, oh * ow, icg * kh * kw);
    let dense_enough = icg * kh * kw >= 32 && ocg >= 8;
    let pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pads == [0; 4];
    let direct = allow_direct && !one_d && direct3x3::applies([g.kh, g.kw], [g.sh, g.sw], [g.dh, g.dw], group, c);
    let out = if direct {
        let dims = direct3x3::Dims { n, c, h, w: wd, oc, pads: g.pads };
        direct3x3::conv(&xs, &ws, bias.as_deref(), dims, act)
    } else if group == 1 && sgemm::available() {
        let own;
        let pa = match packed {
            Some(pa) if pa.m == oc && pa.k == k => pa,
            _ => {
                own = PackedA::new(&ws, oc, k);
                &own
            }
        };
        let p = PlaneGeom { h, w: wd, oh, ow, icg };
        let mut out: Vec<f32> = Vec::with_capacity(n * oc * ohw);
        let spare = &mut out.spare_capacity_mut()[..n * oc * ohw];
        for (b, dst) in spare.chunks_mut(oc * ohw).enumerate() {
            let src = Im2col { x: &xs[b * c * hw..(b + 1) * c * hw], g: *g, p, pointwise };
            sgemm::gemm_packed(pa, &src, ohw, bias.as_deref(), act, dst);
        }
        // SAFETY: gemm_packed wrote every element of the n·oc·ohw destination.
        unsafe { out.set_len(n * oc * ohw) };
        out
    } else {
        let mut out = vec![0f32; n * oc * ohw];
        if group > 1 && !dense_enough {
            direct_conv(&mut out, &xs, &ws, bias.as_deref(), g, [n, c, h, wd, oc, oh, ow]);
        } else {
            let geom = PlaneGeom { h, w: wd, oh, ow, icg };
            for b in 0..n {
                for gi in 0..group {
                    let x_planes = &xs[(b * c + gi * icg) * hw..(b * c + (gi + 1) * icg) * hw];
                    let wmat = MatRef { data: &ws, offset: gi * ocg * k, rows: ocg, cols: k, rs: k, cs: 1 };
                    let dst = &mut out[(b * oc + gi * ocg) * ohw..(b * oc + (gi + 1) * ocg) * ohw];
                    let bias_g = bias.as_deref().map(|bb| &bb[gi * ocg..(gi + 1) * ocg]);
                    gemm_conv(dst, x_planes, wmat, bias_g, g, &geom);
                }
            }
        }
        if let Some(act) = act {
            let u = match act {
                Act::Leaky(a) => Unary::LeakyRelu(a),
                Act::Relu(l) => Unary::Relu(l),
            };
            let t = Tensor::from_shape_vec(IxDyn(&[out.len()]), out).map_err(|e| e.to_string())?;
            out = unary(t, u).into_raw_vec_and_offset().0;
        }
        out
    };
    let shape = if one_d { vec![n, oc, ow] } else { vec![n, oc, oh, ow] };
    Tensor::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}

/// Spatial sizes of one convolution group.
#[derive(Clone, Copy)]
struct PlaneGeom {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    icg: usize,
}

/// One (batch, group) of a dense convolution: `dst` [ocg, oh·ow] = `wmat` · im2col(`x`) + bias.
fn gemm_conv(dst: &mut [f32], x: &[f32], wmat: MatRef<'_>, bias: Option<&[f32]>, g: &ConvGeom, p: &PlaneGeom) {
    let (ohw, k, ocg) = (p.oh * p.ow, wmat.cols, wmat.rows);
    let pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pads == [0; 4];
    let threads = rayon::current_num_threads().max(1);
    let want_cols = if pointwise { 512 } else { (IM2COL_BLOCK_BYTES / (4 * k.max(1))).clamp(MIN_BLOCK_COLS, 4096) };
    let mut blocks = ohw.div_ceil(want_cols).max(1);
    blocks = blocks.div_ceil(threads) * threads;
    let cols = ohw.div_ceil(blocks);
    if cols >= MIN_BLOCK_COLS && blocks > 1 {
        let dst_ptr = SendPtr(dst.as_mut_ptr());
        let nblocks = ohw.div_ceil(cols);
        (0..nblocks).into_par_iter().for_each_init(Vec::new, |buf: &mut Vec<f32>, bi| {
            let c0 = bi * cols;
            let c1 = (c0 + cols).min(ohw);
            let nc = c1 - c0;
            let rhs = if pointwise {
                MatRef { data: x, offset: c0, rows: k, cols: nc, rs: ohw, cs: 1 }
            } else {
                buf.resize(k * nc, 0.0);
                im2col(buf, nc, x, g, p, c0, c1);
                MatRef { data: buf, offset: 0, rows: k, cols: nc, rs: nc, cs: 1 }
            };
            let d = dst_ptr;
            // SAFETY: block `bi` writes only columns [c0, c1) of the [ocg, ohw] destination,
            // disjoint from every other block; `dst` outlives the parallel loop.
            unsafe {
                matmul_raw(d.0.add(c0), ohw, wmat, rhs, false, false);
                if let Some(bias) = bias {
                    for (o, &bv) in bias.iter().enumerate().take(ocg) {
                        let row = std::slice::from_raw_parts_mut(d.0.add(o * ohw + c0), nc);
                        row.iter_mut().for_each(|v| *v += bv);
                    }
                }
            }
        });
        return;
    }
    let owned;
    let rhs = if pointwise {
        MatRef { data: x, offset: 0, rows: k, cols: ohw, rs: ohw, cs: 1 }
    } else {
        let mut buf = vec![0f32; k * ohw];
        let row_len = ohw;
        buf.par_chunks_mut(row_len * g.kh * g.kw).enumerate().for_each(|(ci, rows)| {
            let plane = &x[ci * p.h * p.w..(ci + 1) * p.h * p.w];
            im2col_channel(rows, ohw, plane, g, p, 0, ohw);
        });
        owned = buf;
        MatRef { data: &owned, offset: 0, rows: k, cols: ohw, rs: ohw, cs: 1 }
    };
    matmul(dst, ohw, wmat, rhs, false, true);
    if let Some(bias) = bias {
        dst.par_chunks_mut(ohw).zip(bias.par_iter()).for_each(|(row, &bv)| row.iter_mut().for_each(|v| *v += bv));
    }
}

/// im2col of output columns `[c0, c1)`: `dst` [icg·kh·kw, c1-c0] row-major.
fn im2col(dst: &mut [f32], ncols: usize, x: &[f32], g: &ConvGeom, p: &PlaneGeom, c0: usize, c1: usize) {
    let taps = g.kh * g.kw;
    for ci in 0..p.icg {
        let plane = &x[ci * p.h * p.w..(ci + 1) * p.h * p.w];
        im2col_channel(&mut dst[ci * taps * ncols..(ci + 1) * taps * ncols], ncols, plane, g, p, c0, c1);
    }
}

/// The kh·kw im2col rows of one input channel for output columns `[c0, c1)`.
fn im2col_channel(dst: &mut [f32], ncols: usize, plane: &[f32], g: &ConvGeom, p: &PlaneGeom, c0: usize, c1: usize) {
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let row = &mut dst[(ky * g.kw + kx) * ncols..(ky * g.kw + kx + 1) * ncols];
            im2col_row(&mut row[..c1 - c0], plane, g, p, (ky, kx), c0);
        }
    }
}

/// One im2col row (input plane `plane`, tap `(ky, kx)`) for output columns `c0 ..`.
fn im2col_row(row: &mut [f32], plane: &[f32], g: &ConvGeom, p: &PlaneGeom, tap: (usize, usize), c0: usize) {
    let (ky, kx) = tap;
    let c1 = c0 + row.len();
    let xoff = (kx * g.dw) as isize - g.pads[1] as isize;
    let mut pos = c0;
    let mut j = 0;
    while pos < c1 {
        let oy = pos / p.ow;
        let ox0 = pos % p.ow;
        let seg = (p.ow - ox0).min(c1 - pos);
        let out = &mut row[j..j + seg];
        let iy = (oy * g.sh + ky * g.dh) as isize - g.pads[0] as isize;
        if iy < 0 || iy >= p.h as isize {
            out.fill(0.0);
        } else {
            let src = &plane[iy as usize * p.w..(iy as usize + 1) * p.w];
            let (lo, hi) = valid_range(ox0, seg, g.sw, xoff, p.w);
            out[..lo].fill(0.0);
            out[hi..].fill(0.0);
            let start = ((ox0 + lo) * g.sw) as isize + xoff;
            if g.sw == 1 {
                let s = start as usize;
                out[lo..hi].copy_from_slice(&src[s..s + (hi - lo)]);
            } else {
                for (t, v) in out[lo..hi].iter_mut().enumerate() {
                    *v = src[start as usize + t * g.sw];
                }
            }
        }
        pos += seg;
        j += seg;
    }
}

/// The im2col matrix of one (batch, group) as a B source for the packed GEMM.
struct Im2col<'x> {
    x: &'x [f32],
    g: ConvGeom,
    p: PlaneGeom,
    pointwise: bool,
}

impl BSource for Im2col<'_> {
    fn row(&self, kk: usize, c0: usize, row: &mut [f32]) {
        let hw = self.p.h * self.p.w;
        if self.pointwise {
            row.copy_from_slice(&self.x[kk * hw + c0..kk * hw + c0 + row.len()]);
            return;
        }
        let taps = self.g.kh * self.g.kw;
        let (ci, t) = (kk / taps, kk % taps);
        let plane = &self.x[ci * hw..(ci + 1) * hw];
        im2col_row(row, plane, &self.g, &self.p, (t / self.g.kw, t % self.g.kw), c0);
    }
}

/// Direct convolution (depthwise and thin grouped convolutions), parallel over output planes.
/// `dims` = [n, c, h, w, oc, oh, ow].
fn direct_conv(out: &mut [f32], x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &ConvGeom, dims: [usize; 7]) {
    let [_, c, h, wd, oc, oh, ow] = dims;
    let group = g.group.max(1);
    let (icg, ocg) = (c / group, oc / group);
    let (hw, ohw) = (h * wd, oh * ow);
    out.par_chunks_mut(ohw).enumerate().for_each(|(idx, plane)| {
        let (b, o) = (idx / oc, idx % oc);
        let gi = o / ocg;
        plane.fill(bias.map_or(0.0, |bb| bb[o]));
        for ci in 0..icg {
            let inp = &x[(b * c + gi * icg + ci) * hw..][..hw];
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let wv = w[((o * icg + ci) * g.kh + ky) * g.kw + kx];
                    let xoff = (kx * g.dw) as isize - g.pads[1] as isize;
                    let (lo, hi) = valid_range(0, ow, g.sw, xoff, wd);
                    if lo >= hi {
                        continue;
                    }
                    for oy in 0..oh {
                        let iy = (oy * g.sh + ky * g.dh) as isize - g.pads[0] as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let irow = &inp[iy as usize * wd..(iy as usize + 1) * wd];
                        let orow = &mut plane[oy * ow + lo..oy * ow + hi];
                        let start = (lo * g.sw) as isize + xoff;
                        if g.sw == 1 {
                            let s = start as usize;
                            for (o, &i) in orow.iter_mut().zip(&irow[s..s + (hi - lo)]) {
                                *o += wv * i;
                            }
                        } else {
                            for (t, o) in orow.iter_mut().enumerate() {
                                *o += wv * irow[start as usize + t * g.sw];
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Transposed convolution of `x` [N, IC, H, W] with `w` [IC, OC/g, kh, kw] (ONNX layout).
pub(super) fn deconv(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    g: &ConvGeom,
    output_padding: [usize; 2],
) -> Result<Tensor, String> {
    let one_d = x.ndim() == 3;
    if !(x.ndim() == 4 || one_d) || w.ndim() != x.ndim() {
        return Err(format!("input {:?} / filter {:?}: expected 4-D (or 3-D) tensors", x.shape(), w.shape()));
    }
    let (n, c, h, wd) = if one_d {
        (x.shape()[0], x.shape()[1], 1, x.shape()[2])
    } else {
        (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3])
    };
    let group = g.group.max(1);
    let (kh, kw) = if one_d { (1, w.shape()[2]) } else { (w.shape()[2], w.shape()[3]) };
    if w.shape()[0] != c || c % group != 0 || kh != g.kh || kw != g.kw {
        return Err(format!(
            "filter {:?} does not match input channels {c}/group {group} and kernel [{}, {}]",
            w.shape(),
            g.kh,
            g.kw
        ));
    }
    let icg = c / group;
    let ocg = w.shape()[1];
    let oc = ocg * group;
    let bias = bias.map(contiguous);
    if let Some(b) = &bias {
        if b.len() != oc {
            return Err(format!("bias has {} elements, expected {oc}", b.len()));
        }
    }
    let full_h = (h - 1) * g.sh + g.dh * (kh - 1) + 1 + output_padding[0];
    let full_w = (wd - 1) * g.sw + g.dw * (kw - 1) + 1 + output_padding[1];
    if full_h < g.pads[0] + g.pads[2] + 1 || full_w < g.pads[1] + g.pads[3] + 1 {
        return Err("pads remove the whole output".into());
    }
    let oh = full_h - g.pads[0] - g.pads[2];
    let ow = full_w - g.pads[1] - g.pads[3];
    let xs = contiguous(x);
    let ws = contiguous(w);
    let (hw, ohw, taps) = (h * wd, oh * ow, kh * kw);
    let rows = ocg * taps;
    let mut out = vec![0f32; n * oc * ohw];
    let mut cols = vec![0f32; rows * hw];
    for b in 0..n {
        for gi in 0..group {
            let lhs = MatRef { data: &ws, offset: gi * icg * rows, rows, cols: icg, rs: 1, cs: rows };
            let rhs = MatRef { data: &xs, offset: (b * c + gi * icg) * hw, rows: icg, cols: hw, rs: hw, cs: 1 };
            matmul(&mut cols, hw, lhs, rhs, false, true);
            let dst = &mut out[(b * oc + gi * ocg) * ohw..(b * oc + (gi + 1) * ocg) * ohw];
            let cols = &cols;
            dst.par_chunks_mut(ohw).enumerate().for_each(|(ol, plane)| {
                plane.fill(bias.as_deref().map_or(0.0, |bb| bb[gi * ocg + ol]));
                for ky in 0..kh {
                    for kx in 0..kw {
                        let src = &cols[((ol * kh + ky) * kw + kx) * hw..][..hw];
                        for iy in 0..h {
                            let oy = (iy * g.sh + ky * g.dh) as isize - g.pads[0] as isize;
                            if oy < 0 || oy >= oh as isize {
                                continue;
                            }
                            let orow = &mut plane[oy as usize * ow..(oy as usize + 1) * ow];
                            for ix in 0..wd {
                                let ox = (ix * g.sw + kx * g.dw) as isize - g.pads[1] as isize;
                                if ox >= 0 && ox < ow as isize {
                                    orow[ox as usize] += src[iy * wd + ix];
                                }
                            }
                        }
                    }
                }
            });
        }
    }
    let shape = if one_d { vec![n, oc, ow] } else { vec![n, oc, oh, ow] };
    Tensor::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}

/// `a` [..., M, K] times `b` [K, N] (or [..., K, N] with matching batch dims) plus `bias` [N].
pub(super) fn matmul_op(a: &Tensor, b: &Tensor, bias: Option<&Tensor>) -> Result<Tensor, String> {
    if a.ndim() < 1 || b.ndim() < 1 {
        return Err("matmul operands must not be scalars".into());
    }
    let a_shape: Vec<usize> = if a.ndim() == 1 { vec![1, a.shape()[0]] } else { a.shape().to_vec() };
    let b_shape: Vec<usize> = if b.ndim() == 1 { vec![b.shape()[0], 1] } else { b.shape().to_vec() };
    let (m, k) = (a_shape[a_shape.len() - 2], a_shape[a_shape.len() - 1]);
    let (kb, nn) = (b_shape[b_shape.len() - 2], b_shape[b_shape.len() - 1]);
    if k != kb {
        return Err(format!("inner dimensions differ: {:?} x {:?}", a.shape(), b.shape()));
    }
    let a_batch = &a_shape[..a_shape.len() - 2];
    let b_batch = &b_shape[..b_shape.len() - 2];
    let bias = bias.map(contiguous);
    if let Some(bb) = &bias {
        if bb.len() != nn && bb.len() != 1 {
            return Err(format!("bias has {} elements, expected {nn}", bb.len()));
        }
    }
    let out_batch: Vec<usize> = if b_batch.iter().product::<usize>() == 1 || a_batch == b_batch {
        a_batch.to_vec()
    } else {
        return Err(format!("batch dimensions differ: {:?} x {:?}", a.shape(), b.shape()));
    };
    let batches: usize = out_batch.iter().product();
    let xs = contiguous(a);
    let ws = contiguous(b);
    let mut out = vec![0f32; batches * m * nn];
    if b_batch.iter().product::<usize>() == 1 {
        let lhs = MatRef { data: &xs, offset: 0, rows: batches * m, cols: k, rs: k, cs: 1 };
        let rhs = MatRef { data: &ws, offset: 0, rows: k, cols: nn, rs: nn, cs: 1 };
        matmul(&mut out, nn, lhs, rhs, false, true);
    } else {
        for bi in 0..batches {
            let lhs = MatRef { data: &xs, offset: bi * m * k, rows: m, cols: k, rs: k, cs: 1 };
            let rhs = MatRef { data: &ws, offset: bi * k * nn, rows: k, cols: nn, rs: nn, cs: 1 };
            matmul(&mut out[bi * m * nn..(bi + 1) * m * nn], nn, lhs, rhs, false, true);
        }
    }
    if let Some(bb) = &bias {
        for row in out.chunks_mut(nn) {
            for (j, v) in row.iter_mut().enumerate() {
                *v += if bb.len() == 1 { bb[0] } else { bb[j] };
            }
        }
    }
    let mut shape = out_batch;
    if a.ndim() > 1 {
        shape.push(m);
    }
    if b.ndim() > 1 {
        shape.push(nn);
    }
    Tensor::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}
