//! Reductions: `top.Softmax` along one axis and `top.Reduce` (mean / max / min / sum / prod).

use super::conv::contiguous;
use super::shape::norm_axis;
use super::Tensor;
use ndarray::IxDyn;
use rayon::prelude::*;

/// Softmax of `x` along `axis` (max-subtracted for stability).
pub(super) fn softmax(x: &Tensor, axis: i64) -> Result<Tensor, String> {
    let ax = norm_axis(axis, x.ndim())?;
    let d = x.shape()[ax];
    let inner: usize = x.shape()[ax + 1..].iter().product();
    let xs = contiguous(x);
    let mut out = xs.to_vec();
    if d * inner > 0 {
        out.par_chunks_mut(d * inner).for_each(|blk| {
            for i in 0..inner {
                let mut m = f32::NEG_INFINITY;
                for j in 0..d {
                    m = m.max(blk[j * inner + i]);
                }
                let mut s = 0f32;
                for j in 0..d {
                    let e = (blk[j * inner + i] - m).exp();
                    blk[j * inner + i] = e;
                    s += e;
                }
                for j in 0..d {
                    blk[j * inner + i] /= s;
                }
            }
        });
    }
    Tensor::from_shape_vec(IxDyn(x.shape()), out).map_err(|e| e.to_string())
}

/// Reduction kind of `top.Reduce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReduceKind {
    Mean,
    Max,
    Min,
    Sum,
    Prod,
}

impl ReduceKind {
    /// Parse the `mode` attribute (`ReduceMean`, ...).
    pub(super) fn parse(mode: &str) -> Option<Self> {
        Some(match mode {
            "ReduceMean" => ReduceKind::Mean,
            "ReduceMax" => ReduceKind::Max,
            "ReduceMin" => ReduceKind::Min,
            "ReduceSum" => ReduceKind::Sum,
            "ReduceProd" => ReduceKind::Prod,
            _ => return None,
        })
    }
}

/// Reduce `x` over `axes` (all axes when empty), keeping them as size 1 when `keepdims`.
pub(super) fn reduce(x: &Tensor, axes: &[i64], kind: ReduceKind, keepdims: bool) -> Result<Tensor, String> {
    let r = x.ndim();
    let mut reduced = vec![false; r];
    if axes.is_empty() {
        reduced.iter_mut().for_each(|v| *v = true);
    }
    for &a in axes {
        reduced[norm_axis(a, r)?] = true;
    }
    let out_full: Vec<usize> = (0..r).map(|a| if reduced[a] { 1 } else { x.shape()[a] }).collect();
    let count: usize = (0..r).filter(|&a| reduced[a]).map(|a| x.shape()[a]).product();
    let init = match kind {
        ReduceKind::Max => f32::NEG_INFINITY,
        ReduceKind::Min => f32::INFINITY,
        ReduceKind::Prod => 1.0,
        ReduceKind::Mean | ReduceKind::Sum => 0.0,
    };
    let mut acc = Tensor::from_elem(IxDyn(&out_full), init);
    {
        let bx = acc.view_mut();
        // iterate the input once, folding every element into its output cell
        let mut bx = bx;
        let out_strides: Vec<usize> = {
            let mut s = vec![0; r];
            let mut m = 1;
            for a in (0..r).rev() {
                s[a] = if reduced[a] { 0 } else { m };
                m *= out_full[a];
            }
            s
        };
        let data = bx.as_slice_mut().ok_or("internal: accumulator not contiguous")?;
        let xs = contiguous(x);
        let mut idx = vec![0usize; r];
        for &v in xs.iter() {
            let at: usize = idx.iter().zip(&out_strides).map(|(i, s)| i * s).sum();
            let c = &mut data[at];
            *c = match kind {
                ReduceKind::Max => c.max(v),
                ReduceKind::Min => c.min(v),
                ReduceKind::Prod => *c * v,
                ReduceKind::Mean | ReduceKind::Sum => *c + v,
            };
            for a in (0..r).rev() {
                idx[a] += 1;
                if idx[a] < x.shape()[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
    }
    if kind == ReduceKind::Mean && count > 0 {
        acc.mapv_inplace(|v| v / count as f32);
    }
    if keepdims {
        return Ok(acc);
    }
    let shape: Vec<usize> = (0..r).filter(|&a| !reduced[a]).map(|a| x.shape()[a]).collect();
    acc.into_shape_with_order(IxDyn(&shape)).map_err(|e| e.to_string())
}
