//! Several samples through the F32 model at once. The statistics pass runs the deep ops of the
//! model (small maps, large filters: filter-bound one sample at a time) on a group of samples
//! stacked along the batch axis ([`Split`]); the benchmarks can also run the whole model retyped
//! to carry `n` samples ([`rebatch`], [`stack_inputs`]). Every op kind allowed here computes each
//! image from that image alone, so each image's slice of a stacked result equals its result
//! alone, bit for bit (tested in `statistics.rs` and the calibration tests).

use crate::interp::Tensor;
use crate::ir::{Module, TensorType, ValueId};

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

/// `module` retyped to carry `n` samples ([`crate::batch::rebatch`] with [`STACKABLE`]): what
/// `--stack_samples n` runs (public for the benchmarks).
pub fn rebatch(module: &Module, n: usize) -> Result<Module, String> {
    crate::batch::rebatch(module, n, STACKABLE)
}

/// Input `k` of every sample stacked along the batch axis ([`crate::batch::stack_inputs`]).
pub fn stack_inputs(samples: &[&[Tensor]]) -> Option<Vec<Tensor>> {
    crate::batch::stack_inputs(samples)
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

/// Most elements one sample of an op result may have for the op to run stacked: tiny-yolov3's
/// 26x26 and 13x13 layers (up to 26·26·384), whose filters outweigh their maps.
pub(crate) const MAX_STACKED_ELEMENTS: usize = 1 << 18;

/// How the statistics pass runs the function: the ops before `cut` one sample at a time, the
/// ops from `cut` on (the "tail") on up to `group` samples stacked, reading the values in
/// `crossing` from the samples' own runs of the first part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Split {
    /// First op of the stacked tail (the op count when there is none).
    pub cut: usize,
    /// Samples stacked in one run of the tail (1 when there is no tail).
    pub group: usize,
    /// Values computed before `cut` that tail ops read, in value order.
    pub crossing: Vec<ValueId>,
}

/// The split of `module` for groups of `group` samples: the tail is the longest run of ops at
/// the end of the function whose kinds are [`STACKABLE`], whose results have a batch of 1 and at
/// most [`MAX_STACKED_ELEMENTS`] elements, and which read no function argument. No tail (every
/// op one sample at a time) when `group` < 2 or no op qualifies.
pub(crate) fn split(module: &Module, group: usize) -> Split {
    let f = &module.func;
    let whole = Split { cut: f.ops.len(), group: 1, crossing: Vec::new() };
    if group < 2 {
        return whole;
    }
    let qualifies = |op: &crate::ir::Op| {
        if op.is_weight() || op.is_none() {
            return true;
        }
        STACKABLE.contains(&op.kind.as_str())
            && op.operands.iter().all(|v| !f.args.contains(v))
            && op.results.iter().all(|&r| match &f.values[r].ty {
                TensorType::Tensor { shape, .. } => {
                    shape.first() == Some(&1) && shape.iter().product::<usize>() <= MAX_STACKED_ELEMENTS
                }
                TensorType::None => true,
            })
    };
    let cut = f.ops.iter().rposition(|op| !qualifies(op)).map_or(0, |i| i + 1);
    // leading weight ops of the tail belong to neither part (weights are resolved up front)
    let Some(first) = f.ops[cut..].iter().position(|op| !op.is_weight() && !op.is_none()).map(|i| cut + i) else {
        return whole;
    };
    let mut produced_before = vec![false; f.values.len()];
    for op in f.ops[..first].iter().filter(|op| !op.is_weight() && !op.is_none()) {
        for &r in &op.results {
            produced_before[r] = true;
        }
    }
    let mut crossing: Vec<ValueId> =
        f.ops[first..].iter().flat_map(|op| op.operands.iter().copied()).filter(|&v| produced_before[v]).collect();
    crossing.sort_unstable();
    crossing.dedup();
    Split { cut: first, group, crossing }
}
