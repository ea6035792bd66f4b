//! Static shape arithmetic shared by constant folding and op conversion (ONNX semantics).
//! Errors are plain messages; callers attach the node.

/// numpy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

/// Normalise a possibly negative axis for a tensor of `rank` dims.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// Output shape of Reshape: `0` copies the input dim (unless `allowzero`), `-1` is inferred.
pub fn reshape_target(input: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &s) in spec.iter().enumerate() {
        match s {
            -1 => {
                if infer.is_some() {
                    return Err(format!("reshape target {spec:?} has more than one -1"));
                }
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => {
                let d = *input.get(i).ok_or_else(|| format!("reshape target {spec:?}: 0 at {i} beyond input rank"))?;
                out.push(d);
            }
            s if s < 0 => return Err(format!("reshape target {spec:?} has a negative dim")),
            s => out.push(s as usize),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {input:?} to {spec:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!("cannot reshape {input:?} ({total} elements) to {spec:?}"));
    }
    Ok(out)
}

/// A normalised full-rank strided slice.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceSpec {
    /// start per dim
    pub offset: Vec<usize>,
    /// step per dim (positive)
    pub steps: Vec<usize>,
    /// exclusive end per dim
    pub ends: Vec<usize>,
    /// result shape
    pub shape: Vec<usize>,
}

/// Normalise ONNX Slice parameters (negative indices, clamping, default axes/steps).
pub fn slice_spec(
    input: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<SliceSpec, String> {
    let rank = input.len();
    let mut spec =
        SliceSpec { offset: vec![0; rank], steps: vec![1; rank], ends: input.to_vec(), shape: input.to_vec() };
    if starts.len() != ends.len() {
        return Err(format!("starts {starts:?} and ends {ends:?} differ in length"));
    }
    for i in 0..starts.len() {
        let axis = match axes {
            Some(a) => norm_axis(*a.get(i).ok_or("axes shorter than starts")?, rank)?,
            None => i,
        };
        if axis >= rank {
            return Err(format!("slice axis {axis} out of range for rank {rank}"));
        }
        let step = match steps {
            Some(s) => *s.get(i).ok_or("steps shorter than starts")?,
            None => 1,
        };
        if step <= 0 {
            return Err(format!("slice step {step} is not supported (only positive steps)"));
        }
        let d = input[axis] as i64;
        let clamp = |v: i64| -> i64 {
            let v = if v < 0 { v.saturating_add(d) } else { v };
            v.clamp(0, d)
        };
        let s = clamp(starts[i]);
        let e = clamp(ends[i]).max(s);
        spec.offset[axis] = s as usize;
        spec.ends[axis] = e as usize;
        spec.steps[axis] = step as usize;
        spec.shape[axis] = ((e - s + step - 1) / step) as usize;
    }
    Ok(spec)
}

/// Shape after Squeeze (`axes` empty = every size-1 dim).
pub fn squeeze_shape(input: &[usize], axes: &[i64]) -> Result<Vec<usize>, String> {
    if axes.is_empty() {
        return Ok(input.iter().copied().filter(|&d| d != 1).collect());
    }
    let mut drop = vec![false; input.len()];
    for &a in axes {
        let a = norm_axis(a, input.len())?;
        if input[a] != 1 {
            return Err(format!("cannot squeeze axis {a} of size {} in {input:?}", input[a]));
        }
        drop[a] = true;
    }
    Ok(input.iter().zip(drop).filter(|(_, d)| !d).map(|(&x, _)| x).collect())
}

/// Shape after Unsqueeze.
pub fn unsqueeze_shape(input: &[usize], axes: &[i64]) -> Result<Vec<usize>, String> {
    let rank = input.len() + axes.len();
    let mut ins = vec![false; rank];
    for &a in axes {
        let a = norm_axis(a, rank)?;
        if ins[a] {
            return Err(format!("unsqueeze axes {axes:?} repeat an axis"));
        }
        ins[a] = true;
    }
    let mut it = input.iter();
    Ok(ins.iter().map(|&i| if i { 1 } else { *it.next().unwrap_or(&1) }).collect())
}

/// Output shape of Gather.
pub fn gather_shape(data: &[usize], indices: &[usize], axis: usize) -> Vec<usize> {
    let mut s = data[..axis].to_vec();
    s.extend_from_slice(indices);
    s.extend_from_slice(&data[axis + 1..]);
    s
}

/// Output size of a convolution / pooling window along one dim (floor mode).
pub fn window_out(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
) -> Result<usize, String> {
    let eff = dilation * (kernel.max(1) - 1) + 1;
    let padded = input + pad_begin + pad_end;
    if padded < eff || stride == 0 {
        return Err(format!(
            "window {kernel} (dilation {dilation}) does not fit input {input} with pads {pad_begin},{pad_end}"
        ));
    }
    Ok((padded - eff) / stride + 1)
}

/// `auto_pad` SAME_UPPER / SAME_LOWER begin and end pads along one dim.
pub fn same_pads(input: usize, kernel: usize, stride: usize, dilation: usize, upper: bool) -> (usize, usize) {
    let out = input.div_ceil(stride.max(1));
    let eff = dilation * (kernel.max(1) - 1) + 1;
    let total = ((out - 1) * stride + eff).saturating_sub(input);
    let small = total / 2;
    if upper {
        (small, total - small)
    } else {
        (total - small, small)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(broadcast(&[1, 3, 4], &[4]).unwrap(), vec![1, 3, 4]);
        assert!(broadcast(&[2, 3], &[4]).is_err());
        assert_eq!(reshape_target(&[1, 116, 22, 22], &[0, 2, 58, -1], false).unwrap(), vec![1, 2, 58, 484]);
        let s = slice_spec(&[1, 3, 416, 416], &[0], &[i64::MAX], Some(&[2]), Some(&[2])).unwrap();
        assert_eq!(s.shape, vec![1, 3, 208, 416]);
        let s = slice_spec(&[10], &[-3], &[-1], None, None).unwrap();
        assert_eq!((s.offset[0], s.ends[0], s.shape[0]), (7, 9, 2));
        assert_eq!(squeeze_shape(&[1, 3, 1], &[]).unwrap(), vec![3]);
        assert_eq!(unsqueeze_shape(&[3], &[0, -1]).unwrap(), vec![1, 3, 1]);
        assert_eq!(window_out(13, 2, 1, 1, 0, 1).unwrap(), 13);
        assert_eq!(same_pads(13, 2, 1, 1, true), (0, 1));
    }
}
