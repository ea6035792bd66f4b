//! Convolution kernels: im2col + GEMM, integer (i32 accumulation) and f32; transposed conv.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

/// Geometry of a 2-D convolution.
#[derive(Debug, Clone, Copy)]
pub struct ConvGeom {
    pub n: usize,
    pub ic: usize,
    pub ih: usize,
    pub iw: usize,
    pub oc: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pt: usize,
    pub pl: usize,
    pub dh: usize,
    pub dw: usize,
    pub group: usize,
    pub oh: usize,
    pub ow: usize,
}

/// Numbers the GEMM works on.
pub trait Num: Copy + Send + Sync + Default + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> {}
impl Num for i32 {}
impl Num for f32 {}

/// `out[n][oc][p] = Σ_k w[oc][k] · col[k][p]` per group; padding contributes `T::default()` (0).
/// Returns NCHW output (no bias).
pub fn conv2d<T: Num>(x: &[T], w: &[T], g: &ConvGeom) -> Vec<T> {
    let icg = g.ic / g.group;
    let ocg = g.oc / g.group;
    let k = icg * g.kh * g.kw;
    let p = g.oh * g.ow;
    let mut out = vec![T::default(); g.n * g.oc * p];
    for n in 0..g.n {
        for grp in 0..g.group {
            // im2col
            let mut col = vec![T::default(); k * p];
            col.par_chunks_mut(p).enumerate().for_each(|(row, dst)| {
                let c = row / (g.kh * g.kw);
                let ky = (row / g.kw) % g.kh;
                let kx = row % g.kw;
                let base = (n * g.ic + grp * icg + c) * g.ih * g.iw;
                for oy in 0..g.oh {
                    let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                    if iy < 0 || iy >= g.ih as isize {
                        continue;
                    }
                    for ox in 0..g.ow {
                        let ix = (ox * g.sw + kx * g.dw) as isize - g.pl as isize;
                        if ix < 0 || ix >= g.iw as isize {
                            continue;
                        }
                        dst[oy * g.ow + ox] = x[base + iy as usize * g.iw + ix as usize];
                    }
                }
            });
            let obase = (n * g.oc + grp * ocg) * p;
            out[obase..obase + ocg * p].par_chunks_mut(p).enumerate().for_each(|(o, acc)| {
                let wrow = &w[(grp * ocg + o) * k..(grp * ocg + o + 1) * k];
                for (kk, &wv) in wrow.iter().enumerate() {
                    let crow = &col[kk * p..(kk + 1) * p];
                    for (a, &c) in acc.iter_mut().zip(crow) {
                        *a = *a + wv * c;
                    }
                }
            });
        }
    }
    out
}

/// Transposed convolution (ONNX ConvTranspose geometry, weights `[IC, OC/g, kh, kw]` flattened,
/// or depthwise `[C, 1, 1, kh, kw]` with group = C): `y[oc, i·s − p + u·d, …] += x · w`.
pub fn deconv2d<T: Num>(x: &[T], w: &[T], g: &ConvGeom) -> Vec<T> {
    let icg = g.ic / g.group;
    let ocg = g.oc / g.group;
    let mut out = vec![T::default(); g.n * g.oc * g.oh * g.ow];
    for n in 0..g.n {
        for ci in 0..g.ic {
            let grp = ci / icg;
            for o in 0..ocg {
                let oc = grp * ocg + o;
                let wbase = (ci * ocg + o) * g.kh * g.kw;
                for iy in 0..g.ih {
                    for ix in 0..g.iw {
                        let xv = x[((n * g.ic + ci) * g.ih + iy) * g.iw + ix];
                        for u in 0..g.kh {
                            let oy = (iy * g.sh + u * g.dh) as isize - g.pt as isize;
                            if oy < 0 || oy >= g.oh as isize {
                                continue;
                            }
                            for v in 0..g.kw {
                                let ox = (ix * g.sw + v * g.dw) as isize - g.pl as isize;
                                if ox < 0 || ox >= g.ow as isize {
                                    continue;
                                }
                                let idx = ((n * g.oc + oc) * g.oh + oy as usize) * g.ow + ox as usize;
                                out[idx] = out[idx] + xv * w[wbase + u * g.kw + v];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Shape `[n, oc, oh, ow]` as an ndarray from a flat buffer.
pub fn to_array<T: Clone>(v: Vec<T>, g: &ConvGeom) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(&[g.n, g.oc, g.oh, g.ow]), v).expect("conv output shape")
}
