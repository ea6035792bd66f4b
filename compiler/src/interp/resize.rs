//! Resizing: `top.Upsample` (nearest, integer factors) and `top.Interp` (nearest / bilinear with
//! ONNX coordinate transformation modes), over the last two axes, parallel over planes.

use super::conv::contiguous;
use super::Tensor;
use ndarray::IxDyn;
use rayon::prelude::*;

/// Split a 3-D/4-D shape into (planes, h, w).
fn planes(shape: &[usize]) -> Result<(usize, usize, usize), String> {
    match shape.len() {
        4 => Ok((shape[0] * shape[1], shape[2], shape[3])),
        3 => Ok((shape[0] * shape[1], 1, shape[2])),
        _ => Err(format!("input {shape:?}: expected a 4-D (or 3-D) tensor")),
    }
}

/// Nearest-neighbour upsampling by integer factors.
pub(super) fn upsample(x: &Tensor, fh: usize, fw: usize) -> Result<Tensor, String> {
    if fh == 0 || fw == 0 {
        return Err("scale factors must be positive".into());
    }
    let (p, h, w) = planes(x.shape())?;
    let (oh, ow) = (h * fh, w * fw);
    let xs = contiguous(x);
    let mut out = vec![0f32; p * oh * ow];
    if oh * ow > 0 {
        out.par_chunks_mut(oh * ow).enumerate().for_each(|(pi, plane)| {
            let inp = &xs[pi * h * w..(pi + 1) * h * w];
            for (oy, orow) in plane.chunks_mut(ow).enumerate() {
                let irow = &inp[(oy / fh) * w..(oy / fh + 1) * w];
                for (ox, v) in orow.iter_mut().enumerate() {
                    *v = irow[ox / fw];
                }
            }
        });
    }
    let mut shape = x.shape().to_vec();
    let r = shape.len();
    if r == 4 {
        shape[2] = oh;
    }
    shape[r - 1] = ow;
    Tensor::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}

/// Interpolation method of `top.Interp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InterpMode {
    Nearest,
    Linear,
}

/// ONNX `coordinate_transformation_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CoordMode {
    Asymmetric,
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
}

/// Input coordinate of output index `o` along an axis.
fn source_coord(o: usize, in_len: usize, out_len: usize, scale: f64, mode: CoordMode) -> f64 {
    let o = o as f64;
    match mode {
        CoordMode::Asymmetric => o / scale,
        CoordMode::HalfPixel => (o + 0.5) / scale - 0.5,
        CoordMode::PytorchHalfPixel => {
            if out_len > 1 {
                (o + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordMode::AlignCorners => {
            if out_len > 1 {
                o * (in_len as f64 - 1.0) / (out_len as f64 - 1.0)
            } else {
                0.0
            }
        }
    }
}

/// Per output index: (low index, high index, weight of high) for linear; nearest uses low only.
fn axis_taps(
    in_len: usize,
    out_len: usize,
    scale: f64,
    mode: InterpMode,
    coord: CoordMode,
) -> Vec<(usize, usize, f32)> {
    let scale = if scale > 0.0 { scale } else { out_len as f64 / in_len as f64 };
    let last = in_len as f64 - 1.0;
    (0..out_len)
        .map(|o| {
            let c = source_coord(o, in_len, out_len, scale, coord);
            match mode {
                InterpMode::Nearest => {
                    // asymmetric pairs with floor (PyTorch nearest); the others round half down
                    let i = match coord {
                        CoordMode::Asymmetric => c.floor(),
                        _ => (c - 0.5).ceil(),
                    };
                    let i = i.clamp(0.0, last) as usize;
                    (i, i, 0.0)
                }
                InterpMode::Linear => {
                    let c = c.clamp(0.0, last);
                    let lo = c.floor();
                    let lo_i = lo as usize;
                    let hi_i = (lo_i + 1).min(in_len - 1);
                    (lo_i, hi_i, (c - lo) as f32)
                }
            }
        })
        .collect()
}

/// Resize the last two axes of `x` to `[oh, ow]`.
pub(super) fn interp(
    x: &Tensor,
    out_hw: (usize, usize),
    scales: (f64, f64),
    mode: InterpMode,
    coord: CoordMode,
) -> Result<Tensor, String> {
    let (p, h, w) = planes(x.shape())?;
    let (oh, ow) = out_hw;
    if h == 0 || w == 0 {
        return Err(format!("cannot resize an empty input {:?}", x.shape()));
    }
    let ys = axis_taps(h, oh, scales.0, mode, coord);
    let xs_t = axis_taps(w, ow, scales.1, mode, coord);
    let xs = contiguous(x);
    let mut out = vec![0f32; p * oh * ow];
    if oh * ow > 0 {
        out.par_chunks_mut(oh * ow).enumerate().for_each(|(pi, plane)| {
            let inp = &xs[pi * h * w..(pi + 1) * h * w];
            for (orow, &(y0, y1, fy)) in plane.chunks_mut(ow).zip(&ys) {
                let r0 = &inp[y0 * w..(y0 + 1) * w];
                let r1 = &inp[y1 * w..(y1 + 1) * w];
                for (v, &(x0, x1, fx)) in orow.iter_mut().zip(&xs_t) {
                    *v = match mode {
                        InterpMode::Nearest => r0[x0],
                        InterpMode::Linear => {
                            let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                            let bot = r1[x0] + (r1[x1] - r1[x0]) * fx;
                            top + (bot - top) * fy
                        }
                    };
                }
            }
        });
    }
    let mut shape = x.shape().to_vec();
    let r = shape.len();
    if r == 4 {
        shape[2] = oh;
    }
    shape[r - 1] = ow;
    Tensor::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}
