//! Float (F32 / F16 / BF16) kernels: every input decoded to f32, the op computed in f32, the result
//! rounded to the output type (RNE; `cv` selects the CV18xx bf16 rule).

use super::conv::{deconv_gather, ConvGeom};
use super::data::PoolGeom;
use super::math::{expf, sigmoid as logistic};
use super::num::{load_float, store_float};
use super::Bcast;
use bmodel_format::DType;

/// A float tensor view: bytes and element type; `None` bytes means "read the output in place".
#[derive(Clone, Copy)]
pub struct FSrc<'s> {
    /// bytes, or `None` for in place
    pub bytes: Option<&'s [u8]>,
    /// element type
    pub dtype: DType,
}

/// Element-wise map `f` from the source to `y`.
fn map(x: FSrc<'_>, y: &mut [u8], yt: DType, n: usize, cv: bool, f: impl Fn(f32) -> f32) {
    for i in 0..n {
        let v = match x.bytes {
            Some(b) => load_float(b, x.dtype, i),
            None => load_float(y, x.dtype, i),
        };
        store_float(y, yt, i, f(v), cv);
    }
}

/// Leaky ReLU `x >= 0 ? x : alpha·x`.
pub fn leaky_relu(x: FSrc<'_>, y: &mut [u8], yt: DType, n: usize, alpha: f32, cv: bool) {
    map(x, y, yt, n, cv, |v| if v >= 0.0 { v } else { alpha * v });
}

/// ReLU `max(x, 0)`.
pub fn relu(x: FSrc<'_>, y: &mut [u8], yt: DType, n: usize, cv: bool) {
    map(x, y, yt, n, cv, |v| if v < 0.0 { 0.0 } else { v });
}

/// Format conversion between float types.
pub fn cast(x: &[u8], xt: DType, y: &mut [u8], yt: DType, n: usize, cv: bool) {
    map(FSrc { bytes: Some(x), dtype: xt }, y, yt, n, cv, |v| v);
}

/// `f(a, b)` in f32 with broadcasting, clamped at 0 when `relu`; an operand without bytes is
/// the output itself (the op runs in place).
#[allow(clippy::too_many_arguments)]
fn binary(
    a: FSrc<'_>,
    b: FSrc<'_>,
    y: &mut [u8],
    yt: DType,
    shapes: &Bcast,
    relu: bool,
    cv: bool,
    f: impl Fn(f32, f32) -> f32,
) {
    shapes.for_each(|i, ia, ib| {
        let va = match a.bytes {
            Some(s) => load_float(s, a.dtype, ia),
            None => load_float(y, a.dtype, i),
        };
        let vb = match b.bytes {
            Some(s) => load_float(s, b.dtype, ib),
            None => load_float(y, b.dtype, i),
        };
        let v = f(va, vb);
        store_float(y, yt, i, if relu && v < 0.0 { 0.0 } else { v }, cv);
    });
}

/// `(0 + a) + b` in f32 with broadcasting (the sum starts from +0, so `-0 + -0` gives `+0`),
/// clamped at 0 when `relu`.
pub fn add(a: FSrc<'_>, b: FSrc<'_>, y: &mut [u8], yt: DType, shapes: &Bcast, relu: bool, cv: bool) {
    binary(a, b, y, yt, shapes, relu, cv, |va, vb| (0.0 + va) + vb);
}

/// `a · b` in f32 with broadcasting, clamped at 0 when `relu`.
pub fn mul(a: FSrc<'_>, b: FSrc<'_>, y: &mut [u8], yt: DType, shapes: &Bcast, relu: bool, cv: bool) {
    binary(a, b, y, yt, shapes, relu, cv, |va, vb| va * vb);
}

/// Logistic function `1 / (1 + e^-x)`.
pub fn sigmoid(x: FSrc<'_>, y: &mut [u8], yt: DType, n: usize, cv: bool) {
    map(x, y, yt, n, cv, logistic);
}

/// Sum of `n` values in the order of an eight-way unrolled fold: lanes `i mod 8` accumulate the
/// full blocks of 8, then `(p0+p4), (p1+p5), (p2+p6), (p3+p7)` and the tail are added in turn.
fn unrolled_sum(n: usize, v: impl Fn(usize) -> f32) -> f32 {
    let mut p = [0f32; 8];
    let mut i = 0;
    while n - i >= 8 {
        for (k, pk) in p.iter_mut().enumerate() {
            *pk += v(i + k);
        }
        i += 8;
    }
    let mut acc = 0f32;
    for k in 0..4 {
        acc += p[k] + p[k + 4];
    }
    while i < n {
        acc += v(i);
        i += 1;
    }
    acc
}

/// Softmax along `axis` of an NCHW tensor: `m = max`, `e_j = exp(x_j − m)`, `y_j = e_j / Σ e`.
/// The sum runs in the unrolled order over a contiguous lane (innermost axis) and left to right
/// over a strided one.
pub fn softmax(x: &[u8], xt: DType, y: &mut [u8], yt: DType, shape: [u32; 4], axis: usize, cv: bool) {
    let outer: usize = shape[..axis].iter().map(|&d| d as usize).product();
    let len = shape[axis] as usize;
    let inner: usize = shape[axis + 1..].iter().map(|&d| d as usize).product();
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let m = (0..len).fold(f32::NEG_INFINITY, |m, j| m.max(load_float(x, xt, at(j))));
            let e = |j: usize| expf(load_float(x, xt, at(j)) - m);
            let s = if inner == 1 || len <= 1 { unrolled_sum(len, e) } else { (0..len).fold(0f32, |s, j| s + e(j)) };
            for j in 0..len {
                store_float(y, yt, at(j), e(j) / s, cv);
            }
        }
    }
}

/// Average pooling: window sum in row-major order divided by the full or valid cell count.
pub fn avg_pool(x: &[u8], xt: DType, y: &mut [u8], yt: DType, g: &PoolGeom, count_include_pad: bool, cv: bool) {
    let full = g.win.kernel[0] as usize * g.win.kernel[1] as usize;
    g.for_each(|out, cells| {
        let mut s = 0f32;
        let mut n = 0usize;
        for i in cells {
            s += load_float(x, xt, i);
            n += 1;
        }
        let d = if count_include_pad { full } else { n.max(1) };
        store_float(y, yt, out, s / d as f32, cv);
    });
}

/// Float transposed conv (gather form), bias added after the accumulation.
#[allow(clippy::too_many_arguments)]
pub fn deconv(
    x: &[u8],
    xt: DType,
    w: &[u8],
    wt: DType,
    bias: Option<(&[u8], DType)>,
    y: &mut [u8],
    yt: DType,
    g: &ConvGeom,
    relu: bool,
    cv: bool,
) {
    deconv_gather(
        g,
        0f32,
        |acc, xi, wi| acc + load_float(x, xt, xi) * load_float(w, wt, wi),
        |oc, out, acc| {
            let mut v = match bias {
                Some((b, bt)) => acc + load_float(b, bt, oc),
                None => acc,
            };
            if relu && v < 0.0 {
                v = 0.0;
            }
            store_float(y, yt, out, v, cv);
        },
    );
}
