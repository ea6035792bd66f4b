//! Data movement ops (Slice, Permute, constant-index Gather) as one strided gather-copy: the
//! destination is dense and element `i` of it reads `start + Σ i_k · strides[k]` of the source
//! (`bmodel_format::Instr::Copy`). Views are built in the IR's own rank, then folded to 4 axes.

/// A strided view of a dense source: destination dims, source element strides, first element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// destination dims (row-major)
    pub dims: Vec<usize>,
    /// source element step per destination axis
    pub strides: Vec<usize>,
    /// first source element
    pub start: usize,
}

/// Row-major element strides of a dense tensor.
pub fn dense_strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * dims[k + 1];
    }
    s
}

/// Slice of `x_dims` with tpu-mlir's `offset` / `steps` / `ends` (per axis, clamped to the axis as
/// the simulator does); `out_dims` is the result type's shape and must match.
pub fn slice(x_dims: &[usize], offs: &[i64], steps: &[i64], ends: &[i64], out_dims: &[usize]) -> Result<View, String> {
    let xs = dense_strides(x_dims);
    if out_dims.len() != x_dims.len() {
        return Err(format!("result rank {} differs from input rank {}", out_dims.len(), x_dims.len()));
    }
    let mut v = View { dims: out_dims.to_vec(), strides: xs.clone(), start: 0 };
    for k in 0..x_dims.len() {
        let len = x_dims[k] as i64;
        let step = steps.get(k).copied().unwrap_or(1);
        if step < 1 {
            return Err(format!("step {step} on axis {k} (only positive steps are supported)"));
        }
        let st = offs.get(k).copied().unwrap_or(0).clamp(0, len);
        let en = ends.get(k).copied().unwrap_or(len).clamp(st, len);
        let count = (en - st + step - 1) / step;
        if count as usize != out_dims[k] {
            return Err(format!("axis {k}: slice selects {count} elements, the result type has {}", out_dims[k]));
        }
        v.start += st as usize * xs[k];
        v.strides[k] = xs[k] * step as usize;
    }
    Ok(v)
}

/// Permutation of axes: destination axis `k` is source axis `order[k]`.
pub fn permute(x_dims: &[usize], order: &[i64]) -> Result<View, String> {
    let xs = dense_strides(x_dims);
    let r = x_dims.len();
    let mut seen = vec![false; r];
    let mut v = View { dims: Vec::with_capacity(r), strides: Vec::with_capacity(r), start: 0 };
    if order.len() != r {
        return Err(format!("order {order:?} does not match rank {r}"));
    }
    for &o in order {
        let o = usize::try_from(o).ok().filter(|&o| o < r && !seen[o]).ok_or(format!("bad order {order:?}"))?;
        seen[o] = true;
        v.dims.push(x_dims[o]);
        v.strides.push(xs[o]);
    }
    Ok(v)
}

/// Gather along `axis` with constant indices forming an arithmetic progression `i0 + j·d`
/// (`d >= 0`); `indices_dims` empty (a scalar index) drops the axis.
pub fn gather(x_dims: &[usize], axis: i64, indices: &[i64], indices_dims: &[usize]) -> Result<View, String> {
    let r = x_dims.len() as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(format!("axis {axis} of rank {r}"));
    }
    let a = a as usize;
    let len = x_dims[a] as i64;
    let norm: Vec<i64> = indices.iter().map(|&i| if i < 0 { i + len } else { i }).collect();
    if let Some(bad) = norm.iter().find(|&&i| i < 0 || i >= len) {
        return Err(format!("index {bad} out of range 0..{len}"));
    }
    let first = *norm.first().ok_or("no indices")?;
    let d = if norm.len() > 1 { norm[1] - first } else { 0 };
    if d < 0 || norm.iter().enumerate().any(|(j, &i)| i != first + j as i64 * d) {
        return Err(format!("indices {indices:?} are not an increasing arithmetic progression"));
    }
    if indices_dims.len() > 1 {
        return Err(format!("indices of rank {} are not supported", indices_dims.len()));
    }
    let xs = dense_strides(x_dims);
    let mut v = View { dims: Vec::new(), strides: Vec::new(), start: first as usize * xs[a] };
    for k in 0..x_dims.len() {
        if k == a {
            if indices_dims.len() == 1 {
                v.dims.push(norm.len());
                v.strides.push(d as usize * xs[a]);
            }
        } else {
            v.dims.push(x_dims[k]);
            v.strides.push(xs[k]);
        }
    }
    Ok(v)
}

/// Fold a view to exactly 4 axes: drop size-1 axes, merge neighbours whose strides chain, pad with
/// leading `(1, 0)` axes. `None` when more than 4 axes remain.
pub fn fold4(v: &View) -> Option<([u32; 4], [u32; 4])> {
    let mut dims: Vec<usize> = Vec::new();
    let mut strides: Vec<usize> = Vec::new();
    for (&d, &s) in v.dims.iter().zip(&v.strides) {
        if d == 1 {
            continue;
        }
        match (dims.last_mut(), strides.last_mut()) {
            (Some(pd), Some(ps)) if *ps == s * d => {
                *pd *= d;
                *ps = s;
            }
            _ => {
                dims.push(d);
                strides.push(s);
            }
        }
    }
    if dims.len() > 4 {
        return None;
    }
    let mut od = [1u32; 4];
    let mut os = [0u32; 4];
    let off = 4 - dims.len();
    for k in 0..dims.len() {
        od[off + k] = u32::try_from(dims[k]).ok()?;
        os[off + k] = u32::try_from(strides[k]).ok()?;
    }
    Some((od, os))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn focus_slice_every_second_column() {
        let v = slice(&[1, 3, 208, 416], &[0, 0, 0, 1], &[1, 1, 1, 2], &[1, 3, 208, 416], &[1, 3, 208, 208]).unwrap();
        assert_eq!(v.start, 1);
        assert_eq!(v.strides, vec![3 * 208 * 416, 208 * 416, 416, 2]);
        assert_eq!(fold4(&v), Some(([1, 1, 1, 3 * 208 * 208], [0, 0, 0, 2]))); // one stride-2 run
        let bad = slice(&[4, 4], &[0, 0], &[1, 2], &[4, 4], &[4, 3]).unwrap_err();
        assert_eq!(bad, "axis 1: slice selects 2 elements, the result type has 3");
    }

    #[test]
    fn channel_shuffle_permute_and_gather() {
        let p = permute(&[24, 2, 1936], &[1, 0, 2]).unwrap();
        assert_eq!((p.dims.clone(), p.strides.clone()), (vec![2, 24, 1936], vec![1936, 3872, 1]));
        assert_eq!(fold4(&p), Some(([1, 2, 24, 1936], [0, 1936, 3872, 1])));
        let g = gather(&[2, 1, 24, 44, 44], 0, &[1], &[]).unwrap();
        assert_eq!(g.start, 24 * 44 * 44);
        assert_eq!(fold4(&g), Some(([1, 1, 1, 24 * 44 * 44], [0, 0, 0, 1])));
        assert!(gather(&[3, 2], 0, &[2, 0], &[2]).unwrap_err().contains("arithmetic progression"));
        assert!(permute(&[2, 3], &[0, 0]).is_err());
    }
}
