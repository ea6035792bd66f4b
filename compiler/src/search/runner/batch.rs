//! Lockstep batches of samples: a module whose activations carry a batch of `n` images instead
//! of one ([`rebatch`]), the samples' inputs stacked along the batch axis ([`stack`]), and the
//! split of the samples into groups ([`group_ranges`]). Each op then runs once per group instead
//! of once per image; every op the search batches computes each image from that image alone, so
//! each image's slice of a batched result equals its result alone, bit for bit (tested).

use crate::interp::Tensor;
use crate::ir::Module;
use std::ops::Range;

/// Op kinds whose every output image depends on the same image of the inputs only, and whose
/// attributes hold no batch size: a module made of them runs a batch as it runs one image.
const BATCHABLE: &[&str] = &[
    "top.Input",
    "top.Weight",
    "top.None",
    "top.Conv",
    "top.LeakyRelu",
    "top.Relu",
    "top.MaxPool",
    "top.Upsample",
    "top.Concat",
    "tpu.Conv2D",
    "tpu.Deconv",
    "tpu.LeakyRelu",
    "tpu.Relu",
    "tpu.Pool2D",
    "tpu.Upsample",
    "tpu.Concat",
    "tpu.Cast",
    "tpu.MulShift",
    "tpu.GenericCpu",
    "tpu.Lut",
];

/// `module` with every activation retyped to batch `n` ([`crate::batch::rebatch`] with
/// [`BATCHABLE`]); otherwise why not.
pub(super) fn rebatch(module: &Module, n: usize) -> Result<Module, String> {
    crate::batch::rebatch(module, n, BATCHABLE)
}

/// The inputs of several samples stacked along the batch axis: input `k` of the result stacks
/// input `k` of every sample, in order. `None` when the samples' inputs do not stack (another
/// count or shape).
pub(super) fn stack(samples: &[Vec<Tensor>]) -> Option<Vec<Tensor>> {
    let refs: Vec<&[Tensor]> = samples.iter().map(|s| s.as_slice()).collect();
    crate::batch::stack_inputs(&refs)
}

/// `count` samples in consecutive groups of at most `size` (at least 1), as even as possible:
/// the first groups one larger than the last ones.
pub(super) fn group_ranges(count: usize, size: usize) -> Vec<Range<usize>> {
    let groups = count.div_ceil(size.max(1));
    let mut out = Vec::with_capacity(groups);
    let mut start = 0;
    for g in 0..groups {
        let len = count / groups + usize::from(g < count % groups);
        out.push(start..start + len);
        start += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::Interpreter;
    use crate::lower::{lower, Chip, LowerOptions, Mode, QTable};
    use crate::sim::{SimData, SimTensor};
    use ndarray::Axis;

    #[test]
    fn groups_are_consecutive_and_even() {
        assert_eq!(group_ranges(30, 15), vec![0..15, 15..30]);
        assert_eq!(group_ranges(7, 3), vec![0..3, 3..5, 5..7]);
        assert_eq!(group_ranges(2, 8), vec![0..2]);
        assert_eq!(group_ranges(3, 0), vec![0..1, 1..2, 2..3]);
        assert!(group_ranges(0, 4).is_empty());
    }

    /// Image `k` of a batched simulator tensor.
    fn image(t: &SimTensor, k: usize) -> SimData {
        match &t.data {
            SimData::I8(a) => SimData::I8(a.index_axis(Axis(0), k).insert_axis(Axis(0)).to_owned()),
            SimData::U8(a) => SimData::U8(a.index_axis(Axis(0), k).insert_axis(Axis(0)).to_owned()),
            SimData::F32(a) => SimData::F32(a.index_axis(Axis(0), k).insert_axis(Axis(0)).to_owned()),
            SimData::F16(a) => SimData::F16(a.index_axis(Axis(0), k).insert_axis(Axis(0)).to_owned()),
            SimData::BF16(a) => SimData::BF16(a.index_axis(Axis(0), k).insert_axis(Axis(0)).to_owned()),
            other => panic!("unexpected storage {other:?}"),
        }
    }

    fn same_bits(a: &SimData, b: &SimData) -> bool {
        match (a, b) {
            (SimData::F32(x), SimData::F32(y)) => {
                x.shape() == y.shape() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
            }
            _ => a == b,
        }
    }

    #[test]
    fn a_batch_gives_each_image_its_own_results_bit_for_bit() {
        let (top, w, table) = crate::lower::cache::tests::tiny_yolov3_with_table();
        let x = crate::npz::read_f32_map(&crate::lower::cache::tests::asset(
            "reference/tiny-yolov3/yolov3_tiny_in_f32.npz",
        ))
        .unwrap()[0]
            .1
            .clone();
        let mut y = x.clone();
        y.invert_axis(Axis(3));
        let y = y.as_standard_layout().to_owned();
        let samples = vec![vec![x], vec![y]];
        let stacked = stack(&samples).unwrap();
        assert_eq!(stacked[0].shape(), &[2, 3, 416, 416]);
        // The float reference: the top model in the F32 interpreter with Winograd convolutions.
        let top2 = rebatch(&top, 2).unwrap();
        let mut one = Interpreter::new(&top, &w).unwrap();
        one.set_fast_conv(true);
        let mut two = Interpreter::new(&top2, &w).unwrap();
        two.set_fast_conv(true);
        let batched = two.run_all(&stacked).unwrap();
        for (k, s) in samples.iter().enumerate() {
            let alone = one.run_all(s).unwrap();
            for (v, (a, b)) in alone.iter().zip(&batched).enumerate() {
                let (Some(a), Some(b)) = (a, b) else { continue };
                let bk = b.index_axis(Axis(0), k).insert_axis(Axis(0));
                let same = a.shape() == bk.shape() && a.iter().zip(bk.iter()).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(same, "interp value {} image {k}", top.func.values[v].name);
            }
        }
        // The simulator, all-INT8 with two float layers, for both chip families.
        let qtable: QTable =
            ["conv2d_2_Conv", "leaky_re_lu_2_LeakyRelu"].iter().map(|n| (n.to_string(), Mode::F32)).collect();
        for (chip, float) in [(Chip::Bm1684x, Mode::F32), (Chip::Cv183x, Mode::BF16)] {
            let qtable: QTable = qtable.iter().map(|(n, _)| (n.clone(), float)).collect();
            let opts =
                LowerOptions { chip, mode: Mode::Int8, asymmetric: false, table: Some(&table), qtable: Some(&qtable) };
            let (m, lw) = lower(&top, &w, &opts).unwrap();
            let m2 = rebatch(&m, 2).unwrap();
            let batched = crate::sim::run(&m2, &lw, &stacked).unwrap();
            for (k, s) in samples.iter().enumerate() {
                let alone = crate::sim::run(&m, &lw, s).unwrap();
                assert_eq!(alone.len(), batched.len());
                for ((name, a), (_, b)) in alone.iter().zip(&batched) {
                    assert!(same_bits(&a.data, &image(b, k)), "{chip:?} sim value {name} image {k}");
                }
            }
        }
    }
}
