//! Float (F32 / F16 / BF16) kernels: every input decoded to f32, the op computed in f32, the result
//! rounded to the output type (RNE; `cv` selects the CV18xx bf16 rule).

use super::conv::{deconv_gather, ConvGeom};
use super::data::PoolGeom;
use super::num::{load_float, store_float};
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

/// `a + b` in f32.
pub fn add(a: FSrc<'_>, b: FSrc<'_>, y: &mut [u8], yt: DType, n: usize, cv: bool) {
    for i in 0..n {
        let va = load_float(a.bytes.unwrap_or(y), a.dtype, i);
        let vb = load_float(b.bytes.unwrap_or(y), b.dtype, i);
        store_float(y, yt, i, va + vb, cv);
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
