//! Data-movement ops: Reshape, Permute, Slice, Split, Concat, Gather, Pad.

use super::conv::contiguous;
use super::Tensor;
use ndarray::{Axis, IxDyn, Slice};
use rayon::prelude::*;

/// Normalise a possibly negative axis against `rank`.
pub(super) fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank.max(1) {
        return Err(format!("axis {axis} out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// Reshape to `shape` (`-1` infers one dimension, `0` copies the input dimension).
pub(super) fn reshape(x: Tensor, shape: &[i64]) -> Result<Tensor, String> {
    let mut dims = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &d) in shape.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                dims.push(1);
            }
            0 if i < x.ndim() => dims.push(x.shape()[i]),
            d if d > 0 => dims.push(d as usize),
            _ => return Err(format!("bad target shape {shape:?}")),
        }
    }
    let known: usize = dims.iter().product();
    if let Some(i) = infer {
        if known == 0 || !x.len().is_multiple_of(known) {
            return Err(format!("cannot reshape {:?} to {shape:?}", x.shape()));
        }
        dims[i] = x.len() / known;
    }
    if dims.iter().product::<usize>() != x.len() {
        return Err(format!("cannot reshape {:?} ({} elements) to {dims:?}", x.shape(), x.len()));
    }
    let x = if x.is_standard_layout() { x } else { x.as_standard_layout().into_owned() };
    x.into_shape_with_order(IxDyn(&dims)).map_err(|e| e.to_string())
}

/// Transpose axes by `order`.
pub(super) fn permute(x: &Tensor, order: &[i64]) -> Result<Tensor, String> {
    let r = x.ndim();
    let mut seen = vec![false; r];
    let mut axes = Vec::with_capacity(r);
    for &o in order {
        let a = norm_axis(o, r)?;
        if seen[a] {
            return Err(format!("order {order:?} is not a permutation of {r} axes"));
        }
        seen[a] = true;
        axes.push(a);
    }
    if axes.len() != r {
        return Err(format!("order {order:?} is not a permutation of {r} axes"));
    }
    Ok(x.view().permuted_axes(IxDyn(&axes)).as_standard_layout().into_owned())
}

/// Strided slice; `offset`, `ends` and `steps` are full rank (missing trailing axes are whole).
pub(super) fn slice(x: &Tensor, offset: &[i64], ends: &[i64], steps: &[i64]) -> Result<Tensor, String> {
    let mut v = x.view();
    for ax in 0..x.ndim() {
        let d = x.shape()[ax] as i64;
        let step = steps.get(ax).copied().unwrap_or(1);
        if step == 0 {
            return Err(format!("step 0 on axis {ax}"));
        }
        let fix = |i: i64| if i < 0 { i + d } else { i };
        if step > 0 {
            let start = fix(offset.get(ax).copied().unwrap_or(0)).clamp(0, d);
            let end = fix(ends.get(ax).copied().unwrap_or(d)).clamp(0, d).max(start);
            v.slice_axis_inplace(Axis(ax), Slice::new(start as isize, Some(end as isize), step as isize));
        } else {
            // start, start+step, ... while > end (end may be -1: through index 0)
            let start = fix(offset.get(ax).copied().unwrap_or(d - 1)).clamp(-1, d - 1);
            let end = ends.get(ax).copied().unwrap_or(-1).clamp(-1, d - 1);
            let (lo, hi) = (end + 1, (start + 1).max(end + 1));
            if hi <= lo {
                v.slice_axis_inplace(Axis(ax), Slice::new(0, Some(0), 1));
            } else {
                // ndarray reverses a negative-step range starting from its last element
                let n = (hi - 1 - lo) / (-step) + 1;
                let first = hi - 1 - (n - 1) * (-step);
                v.slice_axis_inplace(Axis(ax), Slice::new(first as isize, Some(hi as isize), step as isize));
            }
        }
    }
    Ok(v.as_standard_layout().into_owned())
}

/// Split along `axis` into parts of the given sizes.
pub(super) fn split(x: &Tensor, axis: i64, sizes: &[i64]) -> Result<Vec<Tensor>, String> {
    let ax = norm_axis(axis, x.ndim())?;
    let total: i64 = sizes.iter().sum();
    if sizes.iter().any(|&s| s < 0) || total != x.shape()[ax] as i64 {
        return Err(format!("split sizes {sizes:?} do not sum to dimension {} of {:?}", ax, x.shape()));
    }
    let mut start = 0usize;
    let mut parts = Vec::with_capacity(sizes.len());
    for &s in sizes {
        let s = s as usize;
        let part = x.slice_axis(Axis(ax), Slice::from(start..start + s));
        parts.push(part.as_standard_layout().into_owned());
        start += s;
    }
    Ok(parts)
}

/// Concatenate along `axis`.
pub(super) fn concat(xs: &[&Tensor], axis: i64) -> Result<Tensor, String> {
    let first = xs.first().ok_or("no inputs")?;
    let ax = norm_axis(axis, first.ndim())?;
    let mut shape = first.shape().to_vec();
    shape[ax] = 0;
    for x in xs {
        let ok = x.ndim() == first.ndim()
            && x.shape().iter().zip(first.shape()).enumerate().all(|(i, (a, b))| i == ax || a == b);
        if !ok {
            return Err(format!("cannot concatenate {:?} with {:?} on axis {ax}", x.shape(), first.shape()));
        }
        shape[ax] += x.shape()[ax];
    }
    let outer: usize = shape[..ax].iter().product();
    let inner: usize = shape[ax + 1..].iter().product();
    let row = shape[ax] * inner;
    let parts: Vec<_> = xs.iter().map(|x| contiguous(x)).collect();
    let mut out = vec![0f32; outer * row];
    if row > 0 {
        out.par_chunks_mut(row).enumerate().for_each(|(o, dst)| {
            let mut at = 0;
            for (x, data) in xs.iter().zip(&parts) {
                let n = x.shape()[ax] * inner;
                dst[at..at + n].copy_from_slice(&data[o * n..(o + 1) * n]);
                at += n;
            }
        });
    }
    Tensor::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}

/// numpy `take(x, indices, axis)`; indices hold integers as floats (negative count from the end).
pub(super) fn gather(x: &Tensor, indices: &Tensor, axis: i64) -> Result<Tensor, String> {
    let ax = norm_axis(axis, x.ndim())?;
    let d = x.shape()[ax];
    let idx: Vec<usize> = indices
        .iter()
        .map(|&f| {
            let i = f.round() as i64;
            let j = if i < 0 { i + d as i64 } else { i };
            if j < 0 || j >= d as i64 {
                Err(format!("index {i} out of range for dimension {d}"))
            } else {
                Ok(j as usize)
            }
        })
        .collect::<Result<_, _>>()?;
    let outer: usize = x.shape()[..ax].iter().product();
    let inner: usize = x.shape()[ax + 1..].iter().product();
    let xs = contiguous(x);
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in &idx {
            let at = (o * d + i) * inner;
            out.extend_from_slice(&xs[at..at + inner]);
        }
    }
    let mut shape = x.shape()[..ax].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&x.shape()[ax + 1..]);
    Tensor::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}

/// Padding mode of `top.Pad`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum PadMode {
    Constant(f32),
    Reflect,
    Edge,
}

/// Source index along one axis for output index `o` (None = the constant value).
fn pad_source(o: usize, begin: i64, len: usize, mode: PadMode) -> Option<usize> {
    let i = o as i64 - begin;
    let n = len as i64;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match mode {
        PadMode::Constant(_) => None,
        PadMode::Edge => Some(i.clamp(0, n - 1) as usize),
        PadMode::Reflect => {
            if n == 1 {
                return Some(0);
            }
            let period = 2 * (n - 1);
            let mut r = i.rem_euclid(period);
            if r >= n {
                r = period - r;
            }
            Some(r as usize)
        }
    }
}

/// ONNX Pad: `pads` = [begin per axis..., end per axis...] (negative values crop).
pub(super) fn pad(x: &Tensor, pads: &[i64], mode: PadMode) -> Result<Tensor, String> {
    let r = x.ndim();
    if pads.len() != 2 * r {
        return Err(format!("paddings {pads:?} do not have 2x{r} entries"));
    }
    if r == 0 {
        return Ok(x.clone());
    }
    let mut shape = Vec::with_capacity(r);
    for a in 0..r {
        let d = x.shape()[a] as i64 + pads[a] + pads[a + r];
        if d < 0 {
            return Err(format!("paddings {pads:?} remove more than axis {a} of {:?}", x.shape()));
        }
        if x.shape()[a] == 0 && d > 0 && !matches!(mode, PadMode::Constant(_)) {
            return Err(format!("cannot {mode:?}-pad an empty axis {a}"));
        }
        shape.push(d as usize);
    }
    let maps: Vec<Vec<Option<usize>>> =
        (0..r).map(|a| (0..shape[a]).map(|o| pad_source(o, pads[a], x.shape()[a], mode)).collect()).collect();
    let fill = if let PadMode::Constant(v) = mode { v } else { 0.0 };
    let xs = contiguous(x);
    let last = shape[r - 1];
    let in_last = x.shape()[r - 1];
    let mut out = vec![fill; shape.iter().product()];
    if last > 0 {
        out.par_chunks_mut(last).enumerate().for_each(|(row, dst)| {
            // decompose the row index into the leading output coordinates
            let mut rem = row;
            let mut src_row = 0usize;
            let mut stride = 1usize;
            let mut inside = true;
            for a in (0..r - 1).rev() {
                let o = rem % shape[a];
                rem /= shape[a];
                match maps[a][o] {
                    Some(i) => src_row += i * stride,
                    None => inside = false,
                }
                stride *= x.shape()[a];
            }
            if !inside {
                return;
            }
            let src = &xs[src_row * in_last..(src_row + 1) * in_last];
            for (v, m) in dst.iter_mut().zip(&maps[r - 1]) {
                if let Some(i) = m {
                    *v = src[*i];
                }
            }
        });
    }
    Tensor::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}
