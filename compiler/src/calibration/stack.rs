//! Several samples through the F32 model in one run: the module retyped to carry a batch of `n`
//! samples ([`rebatch`]) and their inputs stacked along the batch axis ([`stack_inputs`]). Every op
//! kind allowed here computes each image from that image alone, so each image's slice of a
//! stacked result equals its result alone, bit for bit (tested in `run.rs`).

use crate::interp::Tensor;
use crate::ir::Module;

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
