//! `top.MaxPool` and `top.AvgPool` over the last two axes (or the last axis of a 3-D tensor),
//! parallel over planes.

use super::conv::contiguous;
use super::Tensor;
use ndarray::IxDyn;
use rayon::prelude::*;

/// Window geometry of a pooling op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PoolGeom {
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    /// pads top, left, bottom, right (ceil_mode already folded into the end pads)
    pub pads: [usize; 4],
    pub count_include_pad: bool,
}

/// Which reduction a pooling window applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PoolKind {
    Max,
    Avg,
}

/// For each output position along one axis, the input range `[lo, hi)` its window covers.
fn windows(out: usize, len: usize, k: usize, s: usize, pad_begin: usize) -> Vec<(usize, usize)> {
    (0..out)
        .map(|o| {
            let start = (o * s) as isize - pad_begin as isize;
            let end = start + k as isize;
            (start.clamp(0, len as isize) as usize, end.clamp(0, len as isize) as usize)
        })
        .collect()
}

/// Pool `x` [N, C, H, W] (or [N, C, L]).
pub(super) fn pool(x: &Tensor, g: &PoolGeom, kind: PoolKind) -> Result<Tensor, String> {
    let one_d = x.ndim() == 3;
    if !(x.ndim() == 4 || one_d) {
        return Err(format!("input {:?}: expected a 4-D (or 3-D) tensor", x.shape()));
    }
    let (n, c, h, w) = if one_d {
        (x.shape()[0], x.shape()[1], 1, x.shape()[2])
    } else {
        (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3])
    };
    if g.sh == 0 || g.sw == 0 || g.kh == 0 || g.kw == 0 {
        return Err("kernel and strides must be positive".into());
    }
    let (ph, pw) = (h + g.pads[0] + g.pads[2], w + g.pads[1] + g.pads[3]);
    if ph < g.kh || pw < g.kw {
        return Err(format!("kernel [{}, {}] larger than the padded input [{ph}, {pw}]", g.kh, g.kw));
    }
    let oh = (ph - g.kh) / g.sh + 1;
    let ow = (pw - g.kw) / g.sw + 1;
    let rows = windows(oh, h, g.kh, g.sh, g.pads[0]);
    let cols = windows(ow, w, g.kw, g.sw, g.pads[1]);
    let xs = contiguous(x);
    let (hw, ohw) = (h * w, oh * ow);
    let full = (g.kh * g.kw) as f32;
    let mut out = vec![0f32; n * c * ohw];
    out.par_chunks_mut(ohw).enumerate().for_each_init(Vec::new, |acc: &mut Vec<f32>, (p, plane)| {
        let inp = &xs[p * hw..(p + 1) * hw];
        acc.resize(w, 0.0);
        for (oy, &(y0, y1)) in rows.iter().enumerate() {
            let orow = &mut plane[oy * ow..(oy + 1) * ow];
            if y0 >= y1 {
                orow.fill(0.0);
                continue;
            }
            // vertical pass over the window rows (contiguous, vectorised), then horizontal
            acc.copy_from_slice(&inp[y0 * w..(y0 + 1) * w]);
            for y in y0 + 1..y1 {
                let r = &inp[y * w..(y + 1) * w];
                match kind {
                    PoolKind::Max => acc.iter_mut().zip(r).for_each(|(a, &v)| *a = if v > *a { v } else { *a }),
                    PoolKind::Avg => acc.iter_mut().zip(r).for_each(|(a, &v)| *a += v),
                }
            }
            for (ov, &(x0, x1)) in orow.iter_mut().zip(&cols) {
                let win = &acc[x0..x1];
                *ov = match kind {
                    _ if win.is_empty() => 0.0,
                    PoolKind::Max => win.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m }),
                    PoolKind::Avg => {
                        let s: f32 = win.iter().sum();
                        let cnt = if g.count_include_pad { full } else { ((y1 - y0) * (x1 - x0)) as f32 };
                        s / cnt
                    }
                };
            }
        }
    });
    let shape = if one_d { vec![n, c, ow] } else { vec![n, c, oh, ow] };
    Tensor::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}
