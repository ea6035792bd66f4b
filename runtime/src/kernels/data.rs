//! Chip-neutral data movement and integer pooling shells: max pooling, nearest upsampling,
//! concat placement, table lookup.

use super::num::{code8, load_float};
use super::Src;
use bmodel_format::{DType, TensorRef, Window};

/// Pool geometry decoded from verified operands.
#[derive(Debug, Clone, Copy)]
pub struct PoolGeom {
    /// batch x channels
    pub planes: usize,
    /// input height, width
    pub ih: usize,
    /// input width
    pub iw: usize,
    /// output height, width
    pub oh: usize,
    /// output width
    pub ow: usize,
    /// window
    pub win: Window,
}

impl PoolGeom {
    /// Geometry from operands.
    pub fn new(x: &TensorRef, y: &TensorRef, win: Window) -> PoolGeom {
        PoolGeom {
            planes: x.shape[0] as usize * x.shape[1] as usize,
            ih: x.shape[2] as usize,
            iw: x.shape[3] as usize,
            oh: y.shape[2] as usize,
            ow: y.shape[3] as usize,
            win,
        }
    }

    /// Visit every output cell with the input indices of its valid window cells:
    /// `f(out_index, cells)` where `cells` iterates the valid input indices in row-major order.
    #[inline(always)]
    pub fn for_each<F: FnMut(usize, &mut dyn Iterator<Item = usize>)>(&self, mut f: F) {
        let w = &self.win;
        let (kh, kw) = (w.kernel[0] as usize, w.kernel[1] as usize);
        let (sh, sw) = (w.stride[0] as usize, w.stride[1] as usize);
        let (dh, dw) = (w.dilation[0] as usize, w.dilation[1] as usize);
        let (pt, pl) = (w.pad[0] as isize, w.pad[1] as isize);
        for pl_i in 0..self.planes {
            let base = pl_i * self.ih * self.iw;
            for oy in 0..self.oh {
                for ox in 0..self.ow {
                    let out = (pl_i * self.oh + oy) * self.ow + ox;
                    let (ih, iw) = (self.ih as isize, self.iw as isize);
                    let mut it =
                        (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (ky, kx))).filter_map(move |(ky, kx)| {
                            let iy = (oy * sh + ky * dh) as isize - pt;
                            let ix = (ox * sw + kx * dw) as isize - pl;
                            (iy >= 0 && ix >= 0 && iy < ih && ix < iw)
                                .then(|| base + iy as usize * self.iw + ix as usize)
                        });
                    f(out, &mut it);
                }
            }
        }
    }
}

/// Max pooling of 8-bit codes (padded cells never win).
pub fn max_pool_int8(x: &[u8], y: &mut [u8], unsigned: bool, g: &PoolGeom) {
    // Fast path: 2x2 stride 2 without padding (the common downsampling pool).
    let w = &g.win;
    if w.kernel == [2, 2] && w.stride == [2, 2] && w.pad == [0; 4] && w.dilation == [1, 1] {
        for p in 0..g.planes {
            for oy in 0..g.oh {
                let r0 = (p * g.ih + 2 * oy) * g.iw;
                let r1 = r0 + g.iw;
                let o = (p * g.oh + oy) * g.ow;
                for ox in 0..g.ow {
                    let v = [x[r0 + 2 * ox], x[r0 + 2 * ox + 1], x[r1 + 2 * ox], x[r1 + 2 * ox + 1]];
                    let m = v.iter().map(|&b| code8(b, unsigned)).max().unwrap_or(0);
                    y[o + ox] = m as u8;
                }
            }
        }
        return;
    }
    g.for_each(|out, cells| {
        let m = cells.map(|i| code8(x[i], unsigned)).max().unwrap_or(0);
        y[out] = m as u8;
    });
}

/// Max pooling of float values: the stored bits of the largest element are copied.
pub fn max_pool_float(x: &[u8], y: &mut [u8], dt: DType, g: &PoolGeom) {
    let es = dt.size();
    g.for_each(|out, cells| {
        let mut best: Option<(f32, usize)> = None;
        for i in cells {
            let v = load_float(x, dt, i);
            if best.is_none_or(|(b, _)| v > b) {
                best = Some((v, i));
            }
        }
        if let Some((_, i)) = best {
            y[out * es..(out + 1) * es].copy_from_slice(&x[i * es..(i + 1) * es]);
        }
    });
}

/// Nearest-neighbour upsampling by integer factors (element size `es` bytes).
pub fn upsample(x: &[u8], y: &mut [u8], x_shape: [u32; 4], scale: [u16; 2], es: usize) {
    let planes = x_shape[0] as usize * x_shape[1] as usize;
    let (ih, iw) = (x_shape[2] as usize, x_shape[3] as usize);
    let (sh, sw) = (scale[0] as usize, scale[1] as usize);
    let (oh, ow) = (ih * sh, iw * sw);
    for p in 0..planes {
        for oy in 0..oh {
            let src = (p * ih + oy / sh) * iw;
            let dst = (p * oh + oy) * ow;
            for ox in 0..ow {
                let s = (src + ox / sw) * es;
                let d = (dst + ox) * es;
                y[d..d + es].copy_from_slice(&x[s..s + es]);
            }
        }
    }
}

/// Place `x` into `y` at `start` along `axis`, mapping each byte run through `f` (identity copy or
/// an 8-bit requant).
#[allow(clippy::too_many_arguments)]
pub fn concat_part(
    x: &[u8],
    y: &mut [u8],
    xs: [u32; 4],
    ys: [u32; 4],
    axis: usize,
    start: usize,
    es: usize,
    f: Option<&dyn Fn(u8) -> u8>,
) {
    let outer: usize = xs[..axis].iter().map(|&d| d as usize).product();
    let inner: usize = xs[axis + 1..].iter().map(|&d| d as usize).product::<usize>() * es;
    let xb = xs[axis] as usize * inner;
    let yb = ys[axis] as usize * inner;
    for o in 0..outer {
        let src = &x[o * xb..(o + 1) * xb];
        let dst = &mut y[o * yb + start * inner..o * yb + start * inner + xb];
        match f {
            None => dst.copy_from_slice(src),
            Some(f) => {
                let mut table = [0u8; 256];
                for (i, t) in table.iter_mut().enumerate() {
                    *t = f(i as u8);
                }
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = table[s as usize];
                }
            }
        }
    }
}

/// 256-entry table lookup on 8-bit codes.
pub fn lut(x: Src<'_>, y: &mut [u8], table: &[u8]) {
    super::map_bytes(x, y, |b| table[b as usize]);
}

/// Strided gather-copy of `es`-byte elements: `y` dense over `y_shape`,
/// `y[i0,i1,i2,i3] = x[start + Σ i_k·strides[k]]`.
pub fn strided_copy(x: &[u8], y: &mut [u8], y_shape: [u32; 4], start: usize, strides: [u32; 4], es: usize) {
    let [d0, d1, d2, d3] = y_shape.map(|d| d as usize);
    let st = strides.map(|s| s as usize);
    let mut o = 0usize;
    for n0 in 0..d0 {
        for n1 in 0..d1 {
            for n2 in 0..d2 {
                let base = start + n0 * st[0] + n1 * st[1] + n2 * st[2];
                if st[3] == 1 {
                    let len = d3 * es;
                    y[o..o + len].copy_from_slice(&x[base * es..base * es + len]);
                    o += len;
                } else {
                    for n3 in 0..d3 {
                        let s = (base + n3 * st[3]) * es;
                        y[o..o + es].copy_from_slice(&x[s..s + es]);
                        o += es;
                    }
                }
            }
        }
    }
}

/// Constant padding: fill `y` with the element `value` (`es` little-endian bytes), then place
/// `x` at offsets `before`.
pub fn pad(x: &[u8], y: &mut [u8], x_shape: [u32; 4], y_shape: [u32; 4], before: [u32; 4], value: u32, es: usize) {
    let v = value.to_le_bytes();
    for chunk in y.chunks_exact_mut(es) {
        chunk.copy_from_slice(&v[..es]);
    }
    let [x0, x1, x2, x3] = x_shape.map(|d| d as usize);
    let [_, y1, y2, y3] = y_shape.map(|d| d as usize);
    let b = before.map(|d| d as usize);
    let row = x3 * es;
    let mut src = 0usize;
    for n0 in 0..x0 {
        for n1 in 0..x1 {
            for n2 in 0..x2 {
                let dst = (((n0 + b[0]) * y1 + n1 + b[1]) * y2 + n2 + b[2]) * y3 + b[3];
                y[dst * es..dst * es + row].copy_from_slice(&x[src..src + row]);
                src += row;
            }
        }
    }
}
