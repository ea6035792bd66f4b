//! Several samples through the F32 model in one run: the module retyped to carry a batch of `n`
//! samples ([`rebatch`]) and their inputs stacked along the batch axis ([`stack_inputs`]). Every op
//! kind allowed here computes each image from that image alone, so each image's slice of a
//! stacked result equals its result alone, bit for bit (tested in `run.rs`).

use crate::interp::Tensor;
use crate::ir::{Module, TensorType};
use ndarray::Axis;

/// Op kinds whose every output image depends on the same image of the inputs only and whose
/// attributes hold no batch size.
const STACKABLE: &[&str] = &[
    "top.Input",
    "top.Weight",
    "top.None",
    "top.Conv",
    "top.LeakyRelu",
    "top.Relu",
    "top.Sigmoid",
    "top.MaxPool",
    "top.AvgPool",
    "top.Upsample",
    "top.Concat",
];

/// `module` with every activation (argument or non-weight op result) of batch 1 retyped to
/// batch `n`; otherwise why not (an op kind outside [`STACKABLE`], a concatenation along the
/// batch axis, an activation whose batch is not 1).
pub(crate) fn rebatch(module: &Module, n: usize) -> Result<Module, String> {
    let f = &module.func;
    let mut out = module.clone();
    let mut activation = vec![false; f.values.len()];
    for &a in &f.args {
        activation[a] = true;
    }
    for op in &f.ops {
        if !STACKABLE.contains(&op.kind.as_str()) {
            return Err(format!("op '{}' ({}) is not known to stack samples", f.op_name(op), op.kind));
        }
        if op.kind == "top.Concat" {
            let axis = op.attr_i64_or("axis", 1).map_err(|e| e.to_string())?;
            let rank = op.results.first().map_or(0, |&r| f.values[r].ty.shape().len()) as i64;
            if axis.rem_euclid(rank.max(1)) == 0 {
                return Err(format!("op '{}' concatenates along the batch axis", f.op_name(op)));
            }
        }
        if !op.is_weight() && !op.is_none() {
            for &r in &op.results {
                activation[r] = true;
            }
        }
    }
    for (v, value) in out.func.values.iter_mut().enumerate() {
        if !activation[v] {
            continue;
        }
        match &mut value.ty {
            TensorType::Tensor { shape, .. } if shape.first() == Some(&1) => shape[0] = n,
            TensorType::None => {}
            t => return Err(format!("value '{}' of type {t:?} has no batch of 1", value.name)),
        }
    }
    Ok(out)
}

/// Input `k` of every sample stacked along the batch axis, for each input `k`; `None` when the
/// samples' inputs do not stack (another count or shape).
pub(crate) fn stack_inputs(samples: &[&[Tensor]]) -> Option<Vec<Tensor>> {
    let first = samples.first()?;
    (0..first.len())
        .map(|k| {
            let views: Vec<_> = samples.iter().map(|s| s.get(k).map(|t| t.view())).collect::<Option<_>>()?;
            ndarray::concatenate(Axis(0), &views).ok()
        })
        .collect()
}

/// Image `k` of a stacked result of `n` images: its slice of the elements (the batch axis is the
/// outermost of a standard-layout tensor), or `None` when the tensor does not split so.
pub(crate) fn image_slice(t: &Tensor, n: usize, k: usize) -> Option<&[f32]> {
    let all = t.as_slice()?;
    if n == 0 || t.shape().first() != Some(&n) || k >= n {
        return None;
    }
    let per = all.len() / n;
    all.get(k * per..(k + 1) * per)
}

/// Image `k` of a stacked result of `n` images as a tensor of batch 1 (a copy).
pub(crate) fn image_tensor(t: &Tensor, n: usize, k: usize) -> Option<Tensor> {
    if n == 1 {
        return Some(t.clone());
    }
    let data = image_slice(t, n, k)?.to_vec();
    let mut shape = t.shape().to_vec();
    shape[0] = 1;
    Tensor::from_shape_vec(ndarray::IxDyn(&shape), data).ok()
}
