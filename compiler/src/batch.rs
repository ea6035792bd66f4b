//! Several samples through a model in one run: the module retyped to carry a batch of `n` images
//! ([`rebatch`]) and the samples' inputs stacked along the batch axis ([`stack_inputs`]). Used by
//! the calibration's statistics pass (F32 interpreter) and the search's lockstep groups (chip
//! simulator); each passes the op kinds it knows to compute every image from that image alone.

use crate::interp::Tensor;
use crate::ir::{Module, TensorType};
use ndarray::Axis;

/// `module` with every activation (argument or non-weight op result) of batch 1 retyped to batch
/// `n`; otherwise why not: an op kind outside `kinds`, a concatenation along the batch axis, or an
/// activation whose batch is not 1. `kinds` must hold only ops whose every output image depends on
/// the same image of the inputs and whose attributes hold no batch size.
pub(crate) fn rebatch(module: &Module, n: usize, kinds: &[&str]) -> Result<Module, String> {
    let f = &module.func;
    let mut out = module.clone();
    let mut activation = vec![false; f.values.len()];
    for &a in &f.args {
        activation[a] = true;
    }
    for op in &f.ops {
        if !kinds.contains(&op.kind.as_str()) {
            return Err(format!("op '{}' ({}) is not known to run a batch image by image", f.op_name(op), op.kind));
        }
        if op.kind.ends_with(".Concat") {
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

/// Input `k` of every sample stacked along the batch axis (standard layout), for each input `k`;
/// `None` when the samples' inputs do not stack (another count or shape).
pub(crate) fn stack_inputs(samples: &[&[Tensor]]) -> Option<Vec<Tensor>> {
    let first = samples.first()?;
    (0..first.len())
        .map(|k| {
            let views: Vec<_> = samples.iter().map(|s| s.get(k).map(|t| t.view())).collect::<Option<_>>()?;
            ndarray::concatenate(Axis(0), &views).ok()
        })
        .collect()
}
