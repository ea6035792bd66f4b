//! tpu-mlir's threshold tuning pass (`SimpleTuner`, flow reference 2.5): for every op, try
//! thresholds between the KL value and the abs-max of its inputs, evaluating only that op with
//! fake-quantized weights on fake-quantized F32 reference inputs.

use super::collect::CalibTensor;
use super::early_exit;
use super::kernels::{abs_sum, leaky_sums, quantize_slice, quantized_reference_sums, squared_distance, LaneSums};
use super::run::PhaseTimes;
use super::CalibError;
use crate::interp::{Interpreter, Tensor};
use crate::ir::weights::{TensorData, Weights};
use crate::ir::{Module, ValueId};
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::HashSet;
use std::time::Instant;

/// Tuning parameters (`--tune_num`, `--debug_cmd tune_steps=N;min_tuned_diff=X;fake_quant_weight`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TuneOptions {
    /// Number of candidate steps between the KL threshold and the abs-max (21).
    pub steps: usize,
    /// Ranges narrower than this are not tuned (0.01).
    pub min_tuned_diff: f64,
    /// Evaluate ops with fake-quantized weights. Off by default because tpu-mlir's
    /// `ModuleInterpreter::fake_quant_weight` rounds a *copy* of each weight buffer, so its tuner
    /// in effect runs the float weights; on reproduces what that function was meant to do.
    pub quantize_weights: bool,
    /// Run the F32 interpreter of the whole calibration, statistics as well as tuning, with the
    /// Winograd convolution ([`Interpreter::set_fast_conv`]). On by default: 3x3 convolutions a
    /// few times faster, and the table moves from the direct convolution's by about 2e-6
    /// relative at most on tiny-yolov3 (far inside tpu-mlir's own spread). Off runs every
    /// convolution directly (`run_calibration --exact_conv`).
    pub fast_conv: bool,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions { steps: 21, min_tuned_diff: 0.01, quantize_weights: false, fast_conv: true }
    }
}

/// `import_quant_bias`: symmetric int8 fake quantization with threshold `th`, in float32 with
/// numpy's round-half-to-even.
pub fn fake_quant(x: &Tensor, th: f64) -> Tensor {
    let s = (127.0 / th) as f32;
    x.mapv(|v| (v * s).round_ties_even().clamp(-128.0, 127.0) / s)
}

/// The weights as tpu-mlir's `fake_quant_weight` means to round them: every weight except the
/// biases of Conv / MatMul, per tensor, `round(w * 127 / max|w|) * max|w| / 127` in f32 with
/// rounding half away from zero.
pub fn fake_quant_weights(module: &Module, weights: &Weights) -> Weights {
    let f = &module.func;
    let mut biases: HashSet<&str> = HashSet::new();
    for op in &f.ops {
        if matches!(op.kind.as_str(), "top.Conv" | "top.MatMul") {
            if let Some(&b) = op.operands.get(2) {
                biases.insert(f.values[b].name.as_str());
            }
        }
    }
    let mut out = weights.clone();
    for (name, data) in out.map.iter_mut() {
        if biases.contains(name.as_str()) {
            continue;
        }
        let TensorData::F32(a) = data else { continue };
        let max = a.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let min = a.iter().fold(f32::INFINITY, |m, &v| m.min(v));
        let m = max.abs().max(min.abs());
        if m > 0.0 && m.is_finite() {
            a.mapv_inplace(|w| (w * 127.0 / m).round() * m / 127.0);
        }
    }
    out
}

/// ||a - b||_2 / ||a||_1 (the tuner's distance of one sample; reference implementation).
#[cfg(test)]
fn distance(reference: &Tensor, out: &Tensor) -> f64 {
    let mut d2 = 0f64;
    let mut n1 = 0f64;
    for (&r, &o) in reference.iter().zip(out.iter()) {
        let d = r as f64 - o as f64;
        d2 += d * d;
        n1 += (r as f64).abs();
    }
    d2.sqrt() / n1
}

/// The operands of `op` for one tune sample: function arguments from the sample's inputs, other
/// values from its live reference activations.
fn sample_operands<'a>(
    op: &crate::ir::Op,
    arg_index: &[Option<usize>],
    inputs: &'a [Tensor],
    env: &'a [Option<Tensor>],
) -> Vec<Option<&'a Tensor>> {
    op.operands
        .iter()
        .map(|&v| match arg_index[v] {
            Some(a) => inputs.get(a),
            None => env[v].as_ref(),
        })
        .collect()
}

/// Tuning state over the tune samples: live F32 reference activations by value id.
struct RefStore {
    env: Vec<Vec<Option<Tensor>>>,
}

/// Run the tuning pass. `initial[slot]` are the KL thresholds as read back from the `.1`
/// table, `abs_max[slot]` the abs-max values; returns the tuned thresholds (never below the
/// initial ones). `progress(done, total)` is called after each op.
#[allow(clippy::too_many_arguments)]
pub fn tune_thresholds(
    module: &Module,
    weights: &Weights,
    tune_inputs: &[Vec<Tensor>],
    tensors: &[CalibTensor],
    initial: &[f64],
    abs_max: &[f64],
    opts: TuneOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>, CalibError> {
    let args = TuneArgs { inputs: tune_inputs, tensors, initial, abs_max };
    tune_thresholds_timed(module, weights, &args, (Vec::new(), None), opts, progress, &mut PhaseTimes::default())
}

/// The data a tuning pass works on (see [`tune_thresholds`]).
pub(crate) struct TuneArgs<'a> {
    /// The tune samples' model inputs.
    pub inputs: &'a [Vec<Tensor>],
    /// The calibrated tensors in table order.
    pub tensors: &'a [CalibTensor],
    /// KL thresholds as read back from the `.1` table, by slot.
    pub initial: &'a [f64],
    /// Abs-max values, by slot.
    pub abs_max: &'a [f64],
}

/// [`tune_thresholds`], adding the wall time of its parts into `times`. `given.0[s]`, when
/// given, holds tune sample `s`'s F32 op results by value id as the same interpreter computed
/// them (the statistics pass): those are taken instead of evaluating the op again. `given.1`
/// is that interpreter, when it was prepared for `module` itself with the same convolution
/// setting: it is used instead of preparing (packing and transforming every filter) again.
pub(crate) fn tune_thresholds_timed<'m>(
    module: &'m Module,
    weights: &'m Weights,
    args: &TuneArgs<'_>,
    given: (Vec<Vec<Option<Tensor>>>, Option<Interpreter<'m>>),
    opts: TuneOptions,
    progress: &mut dyn FnMut(usize, usize),
    times: &mut PhaseTimes,
) -> Result<Vec<f64>, CalibError> {
    let TuneArgs { inputs: tune_inputs, tensors, initial, abs_max } = *args;
    let (references, prepared) = given;
    let f = &module.func;
    let model_err = |e: crate::interp::InterpError| CalibError::Model(e.to_string());
    let reference = match prepared {
        Some(interp) if interp.fast_conv() == opts.fast_conv => interp,
        _ => {
            let mut interp = Interpreter::new(module, weights).map_err(model_err)?;
            interp.set_fast_conv(opts.fast_conv);
            interp
        }
    };
    let dq_weights = if opts.quantize_weights { Some(fake_quant_weights(module, weights)) } else { None };
    let dq_owned = match &dq_weights {
        Some(w) => {
            let mut dq = Interpreter::new(module, w).map_err(model_err)?;
            dq.set_fast_conv(opts.fast_conv);
            Some(dq)
        }
        None => None,
    };
    let dq = dq_owned.as_ref().unwrap_or(&reference);

    let mut slot_of = vec![None; f.values.len()];
    for (s, t) in tensors.iter().enumerate() {
        slot_of[t.value] = Some(s);
    }
    let mut arg_index = vec![None; f.values.len()];
    for (i, &a) in f.args.iter().enumerate() {
        arg_index[a] = Some(i);
    }
    let mut last_use = vec![None; f.values.len()];
    for (i, op) in f.ops.iter().enumerate() {
        for &v in &op.operands {
            last_use[v] = Some(i);
        }
    }
    let mut th: Vec<f64> = initial.to_vec();
    let mut tuned: HashSet<usize> = HashSet::new();
    let mut store = RefStore { env: vec![vec![None; f.values.len()]; tune_inputs.len()] };
    for (env, given) in store.env.iter_mut().zip(references) {
        if given.len() == env.len() {
            *env = given;
        }
    }
    let total = f.ops.len();

    for (i, op) in f.ops.iter().enumerate() {
        if op.is_weight() || op.is_none() {
            progress(i + 1, total);
            continue;
        }
        // F32 reference output of this op for every tune sample
        let reference_started = Instant::now();
        for (s, inputs) in tune_inputs.iter().enumerate() {
            if op.results.iter().all(|&r| store.env[s][r].is_some()) {
                continue; // computed by the statistics pass
            }
            let operands = sample_operands(op, &arg_index, inputs, &store.env[s]);
            let outs = reference.eval_op(i, &operands).map_err(model_err)?;
            for (&r, t) in op.results.iter().zip(outs) {
                store.env[s][r] = Some(t);
            }
        }
        times.tune_reference += reference_started.elapsed();
        if op.kind != "top.Input" {
            let mut pre: Vec<usize> = Vec::new();
            for &v in &op.operands {
                if let Some(slot) = slot_of[v] {
                    if !pre.contains(&slot) {
                        pre.push(slot);
                    }
                }
            }
            if !pre.is_empty() {
                let targets: Vec<usize> = if pre.iter().all(|p| tuned.contains(p)) {
                    vec![pre[0]]
                } else {
                    pre.iter().copied().filter(|p| !tuned.contains(p)).collect()
                };
                for t in targets {
                    let best = find_better_threshold(
                        dq,
                        i,
                        op,
                        &store,
                        &arg_index,
                        tune_inputs,
                        initial[t],
                        abs_max[t],
                        opts,
                        times,
                    )?;
                    if best > th[t] {
                        th[t] = best;
                    }
                    tuned.insert(t);
                }
            }
        }
        for &v in &op.operands {
            if last_use[v] == Some(i) {
                for env in store.env.iter_mut() {
                    env[v] = None;
                }
            }
        }
        progress(i + 1, total);
    }
    Ok(th)
}

/// One tune sample as the candidates of one target see it: the op's F32 operands (`None` for
/// weights), its F32 reference result as one slice, and that result's L1 norm.
pub(super) struct SampleView<'s> {
    /// The op's operands (`None` for weights).
    pub operands: Vec<Option<&'s Tensor>>,
    /// The F32 reference result's elements.
    pub reference: Cow<'s, [f32]>,
    /// Its shape.
    pub reference_shape: Vec<usize>,
    /// Σ |reference|.
    pub l1: f64,
}

impl<'s> SampleView<'s> {
    /// Tune sample `inputs` of `op` with its live reference results `env` (by value id).
    fn new(
        op: &crate::ir::Op,
        arg_index: &[Option<usize>],
        inputs: &'s [Tensor],
        env: &'s [Option<Tensor>],
    ) -> Result<Self, CalibError> {
        let result_v: ValueId = op.results[0];
        let reference = env[result_v]
            .as_ref()
            .ok_or_else(|| CalibError::Model(format!("tuning: reference of value %{result_v} missing")))?;
        let reference_shape = reference.shape().to_vec();
        let reference = elements(reference);
        let l1 = abs_sum(&reference);
        Ok(SampleView { operands: sample_operands(op, arg_index, inputs, env), reference, reference_shape, l1 })
    }
}

/// A tensor's elements as one slice (copied only when it is not in standard layout).
pub(super) fn elements(t: &Tensor) -> Cow<'_, [f32]> {
    match t.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(t.iter().copied().collect()),
    }
}

/// [`fake_quant`] written into a recycled buffer (same values bit for bit).
fn fake_quant_reusing(x: &Tensor, th: f64, mut buf: Vec<f32>) -> Tensor {
    let Some(src) = x.as_slice() else { return fake_quant(x, th) };
    let s = (127.0 / th) as f32;
    if buf.len() != src.len() {
        buf.clear();
        buf.resize(src.len(), 0.0);
    }
    quantize_slice(src, &mut buf, s);
    Tensor::from_shape_vec(x.raw_dim(), buf).unwrap_or_else(|_| fake_quant(x, th))
}

/// Give a tensor's allocation back to the pool (standard-layout tensors only).
fn recycle(t: Tensor, pool: &mut Vec<Vec<f32>>) {
    if t.is_standard_layout() {
        let (v, offset) = t.into_raw_vec_and_offset();
        if offset.unwrap_or(0) == 0 {
            pool.push(v);
        }
    }
}

/// Mean tuner distance of one candidate threshold over the samples: every operand of the op
/// fake-quantized with `th`, the op evaluated once per sample; buffers come from `pool`.
fn candidate_distance(
    dq: &Interpreter<'_>,
    op_index: usize,
    samples: &[SampleView<'_>],
    th: f64,
    pool: &mut Vec<Vec<f32>>,
) -> Result<f64, CalibError> {
    let model_err = |e: crate::interp::InterpError| CalibError::Model(e.to_string());
    let mut total = 0f64;
    for sample in samples {
        let mut quantized: Vec<Option<Tensor>> = sample
            .operands
            .iter()
            .map(|t| t.map(|t| fake_quant_reusing(t, th, pool.pop().unwrap_or_default())))
            .collect();
        let outs = match quantized.first_mut().and_then(Option::take) {
            Some(first) => {
                let refs: Vec<Option<&Tensor>> = quantized.iter().map(Option::as_ref).collect();
                dq.eval_op_owned(op_index, first, &refs).map_err(model_err)?
            }
            None => {
                let refs: Vec<Option<&Tensor>> = quantized.iter().map(Option::as_ref).collect();
                dq.eval_op(op_index, &refs).map_err(model_err)?
            }
        };
        let mut outs = outs.into_iter();
        let o = outs.next().ok_or_else(|| CalibError::Model("tuning: op produced no result".into()))?;
        if o.len() != sample.reference.len() {
            return Err(CalibError::Model(format!(
                "tuning: op #{op_index} gave {} elements, its reference has {}",
                o.len(),
                sample.reference.len()
            )));
        }
        total += squared_distance(&sample.reference, &elements(&o)).sqrt() / sample.l1;
        recycle(o, pool);
        for t in quantized.into_iter().flatten().chain(outs) {
            recycle(t, pool);
        }
    }
    Ok(total / samples.len().max(1) as f64)
}

/// Bytes of stacked fake-quantized inputs [`stacked_conv_distances`] builds at once (the
/// candidates are cut into groups of about this size).
const STACK_BYTES: usize = 16 << 20;

/// Mean tuner distance of each candidate threshold of `ths` for a Winograd convolution: per
/// sample, the candidates' fake-quantized inputs stacked along the batch axis and convolved in
/// one call, so the transformed filter is streamed once per tile block for all of them instead
/// of once per candidate. Per candidate the same values and sums, in the same order, as
/// [`candidate_distance`].
fn stacked_conv_distances(
    dq: &Interpreter<'_>,
    op_index: usize,
    samples: &[SampleView<'_>],
    ths: &[f64],
    stack_bytes: usize,
) -> Result<Vec<f64>, CalibError> {
    let model_err = |e: crate::interp::InterpError| CalibError::Model(e.to_string());
    let mut total = vec![0f64; ths.len()];
    let mut buf: Vec<f32> = Vec::new();
    for sample in samples {
        let x = sample
            .operands
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| CalibError::Model(format!("tuning: op #{op_index} has no activation input")))?;
        let src = elements(x);
        let per = (stack_bytes / (4 * src.len().max(1))).clamp(1, ths.len().max(1));
        let groups = ths.len().div_ceil(per);
        let per = ths.len().div_ceil(groups.max(1)).max(1);
        for (g, group) in ths.chunks(per).enumerate() {
            // every element is written by `quantize_slice`: only grown, never cleared
            buf.truncate(group.len() * src.len());
            buf.resize(group.len() * src.len(), 0.0);
            buf.par_chunks_mut(src.len().max(1))
                .zip(group.par_iter())
                .for_each(|(dst, &th)| quantize_slice(&src, dst, (127.0 / th) as f32));
            let mut shape = x.shape().to_vec();
            shape[0] *= group.len();
            let stacked = Tensor::from_shape_vec(ndarray::IxDyn(&shape), std::mem::take(&mut buf))
                .map_err(|e| CalibError::Model(format!("tuning: op #{op_index}: {e}")))?;
            let out = dq.eval_conv_stacked(op_index, &stacked).map_err(model_err)?;
            buf = stacked.into_raw_vec_and_offset().0;
            let out = elements(&out);
            let n = sample.reference.len();
            if out.len() != group.len() * n {
                return Err(CalibError::Model(format!(
                    "tuning: op #{op_index} gave {} elements for {} candidates, its reference has {n}",
                    out.len(),
                    group.len()
                )));
            }
            let d: Vec<f64> =
                out.par_chunks(n.max(1)).map(|o| squared_distance(&sample.reference, o).sqrt() / sample.l1).collect();
            for (t, d) in total[g * per..].iter_mut().zip(d) {
                *t += d;
            }
        }
    }
    Ok(total.iter().map(|t| t / samples.len().max(1) as f64).collect())
}

/// A candidate evaluation that needs no run of the op: its distance follows in one pass from
/// the sample's reference output (and input), bit for bit what running the op gives.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shortcut {
    /// Max pooling, nearest upsampling, concatenation and ReLU select or copy their inputs and
    /// commute with the monotone fake quantizer: the output on quantized inputs is the
    /// quantized reference (up to the sign of zeros, which the distance does not see).
    QuantizedReference,
    /// LeakyRelu with this slope, applied to the quantized input.
    Leaky(f32),
}

/// The shortcut that applies to `op` on these samples, if any: every operand is an activation
/// (no weight), there is one result, and the input has as many elements as the reference.
fn shortcut(op: &crate::ir::Op, samples: &[SampleView<'_>]) -> Option<Shortcut> {
    if op.results.len() != 1 || samples.iter().any(|s| s.operands.iter().any(Option::is_none)) {
        return None;
    }
    match op.kind.as_str() {
        "top.MaxPool" | "top.Upsample" | "top.Concat" => Some(Shortcut::QuantizedReference),
        "top.Relu" if op.attr_f64_or("relu_limit", -1.0).ok()? < 0.0 => Some(Shortcut::QuantizedReference),
        "top.LeakyRelu" if op.operands.len() == 1 => {
            let same_size = samples.iter().all(|s| s.operands[0].is_some_and(|x| x.len() == s.reference.len()));
            same_size.then_some(Shortcut::Leaky(op.attr_f64("alpha").ok()? as f32))
        }
        _ => None,
    }
}

/// Mean tuner distance of each candidate threshold of `ths` through a [`Shortcut`] (per
/// candidate the same sums, in the same order, as evaluating it alone), every candidate whole:
/// the tests' reference for [`shortcut_early_exit`].
#[cfg(test)]
fn shortcut_distances(how: Shortcut, samples: &[SampleView<'_>], ths: &[f64]) -> Vec<f64> {
    let scales: Vec<f32> = ths.iter().map(|&th| (127.0 / th) as f32).collect();
    let mut total = vec![0f64; ths.len()];
    for sample in samples {
        let mut sums = vec![LaneSums::default(); ths.len()];
        let n = sample.reference.len();
        match how {
            Shortcut::QuantizedReference => quantized_reference_sums(&sample.reference, &scales, &mut sums, 0..n),
            Shortcut::Leaky(alpha) => match sample.operands[0] {
                Some(x) => leaky_sums(&sample.reference, &elements(x), &scales, alpha, &mut sums, 0..n),
                None => sums.iter_mut().for_each(|s| *s = LaneSums::nan()),
            },
        }
        for (t, d) in total.iter_mut().zip(&sums) {
            *t += d.value().sqrt() / sample.l1;
        }
    }
    total.iter().map(|t| t / samples.len().max(1) as f64).collect()
}

/// Consecutive element ranges each sample is cut into by [`shortcut_early_exit`].
const SHORTCUT_RANGES: usize = 16;
/// Samples smaller than this (elements) are not cut: the rounds would cost more than they save.
const SHORTCUT_MIN_ELEMENTS: usize = 1 << 16;

/// The [`Shortcut`] distances with an early exit, as [`early_exit`] does for convolutions:
/// every sample's elements are taken in [`SHORTCUT_RANGES`] consecutive ranges (in order, so a
/// complete candidate's sums are bit for bit the one-pass ones); the first eighth for every
/// candidate, then the candidate with the smallest bound whole, then the others a range at a
/// time, each dropped (`None`) as soon as its distance over the elements taken so far (a lower
/// bound: [`LaneSums::value`]) exceeds a complete candidate's distance. A dropped candidate is
/// worse than a complete one, so the pick is the one of evaluating every candidate whole.
fn shortcut_early_exit(how: Shortcut, samples: &[SampleView<'_>], ths: &[f64]) -> Vec<Option<f64>> {
    let scales: Vec<f32> = ths.iter().map(|&th| (127.0 / th) as f32).collect();
    let inputs: Vec<Cow<'_, [f32]>> = samples
        .iter()
        .map(|s| match how {
            Shortcut::Leaky(_) => s.operands[0].map(elements).unwrap_or_default(),
            Shortcut::QuantizedReference => Cow::Borrowed(&[][..]),
        })
        .collect();
    if inputs.iter().zip(samples).any(|(x, s)| matches!(how, Shortcut::Leaky(_)) && x.len() != s.reference.len()) {
        return vec![Some(f64::NAN); ths.len()]; // as running the op without its input: no pick
    }
    // one range (every candidate whole) for small samples, and for a sample whose distances
    // are not finite (no bound is then sound)
    let whole = samples.iter().any(|s| s.reference.len() < SHORTCUT_MIN_ELEMENTS || !(s.l1.is_finite() && s.l1 > 0.0));
    let ranges = if whole { 1 } else { SHORTCUT_RANGES };
    // element `j`/ranges of a sample: a multiple of the lanes, the last one its length
    let cut = |n: usize, j: usize| if j >= ranges { n } else { n * j / ranges / 8 * 8 };
    let mut sums = vec![vec![LaneSums::default(); samples.len()]; ths.len()];
    let mut taken = vec![0usize; ths.len()];
    let advance = |cands: &[usize], to: usize, sums: &mut [Vec<LaneSums>], taken: &mut [usize]| {
        let per = cands.len().div_ceil(rayon::current_num_threads().max(1)).max(1);
        let tasks: Vec<(usize, &[usize])> =
            (0..samples.len()).flat_map(|s| cands.chunks(per).map(move |chunk| (s, chunk))).collect();
        let from = cands.first().map_or(to, |&c| taken[c]);
        if from >= to {
            return;
        }
        let done: Vec<Vec<LaneSums>> = tasks
            .par_iter()
            .map(|&(s, chunk)| {
                let sample = &samples[s];
                let n = sample.reference.len();
                let sc: Vec<f32> = chunk.iter().map(|&c| scales[c]).collect();
                let mut part: Vec<LaneSums> = chunk.iter().map(|&c| sums[c][s]).collect();
                let range = cut(n, from)..cut(n, to);
                match how {
                    Shortcut::QuantizedReference => quantized_reference_sums(&sample.reference, &sc, &mut part, range),
                    Shortcut::Leaky(alpha) => leaky_sums(&sample.reference, &inputs[s], &sc, alpha, &mut part, range),
                }
                part
            })
            .collect();
        for ((s, chunk), part) in tasks.iter().zip(done) {
            for (&c, v) in chunk.iter().zip(part) {
                sums[c][*s] = v;
            }
        }
        for &c in cands {
            taken[c] = to;
        }
    };
    let distance = |sums: &[LaneSums]| -> f64 {
        let total: f64 = sums.iter().zip(samples).map(|(d, s)| d.value().sqrt() / s.l1).sum();
        total / samples.len().max(1) as f64
    };
    let all: Vec<usize> = (0..ths.len()).collect();
    let first = ranges.div_ceil(8);
    advance(&all, first, &mut sums, &mut taken);
    let lead = (0..ths.len()).min_by(|&a, &b| distance(&sums[a]).total_cmp(&distance(&sums[b]))).unwrap_or(0);
    advance(&[lead], ranges, &mut sums, &mut taken);
    let mut best = distance(&sums[lead]);
    let mut dropped = vec![false; ths.len()];
    for to in first + 1..=ranges {
        let alive: Vec<usize> = (0..ths.len()).filter(|&c| !dropped[c] && taken[c] < ranges).collect();
        for &c in &alive {
            dropped[c] = distance(&sums[c]) > best * (1.0 + SHORTCUT_SLACK);
        }
        let alive: Vec<usize> = alive.into_iter().filter(|&c| !dropped[c]).collect();
        if alive.is_empty() {
            break;
        }
        advance(&alive, to, &mut sums, &mut taken);
        if to == ranges {
            for &c in &alive {
                best = best.min(distance(&sums[c]));
            }
        }
    }
    (0..ths.len()).map(|c| (!dropped[c] && taken[c] == ranges).then(|| distance(&sums[c]))).collect()
}

/// Relative slack of the shortcut early exit's drop test (the bound is exact; kept as margin).
const SHORTCUT_SLACK: f64 = 1e-9;

/// Candidates `th0 + step*k`, k = 0..=steps; the first initialises, a later one wins only with a
/// strictly smaller mean distance.
#[allow(clippy::too_many_arguments)]
fn find_better_threshold(
    dq: &Interpreter<'_>,
    op_index: usize,
    op: &crate::ir::Op,
    store: &RefStore,
    arg_index: &[Option<usize>],
    tune_inputs: &[Vec<Tensor>],
    th0: f64,
    abs_max: f64,
    opts: TuneOptions,
    times: &mut PhaseTimes,
) -> Result<f64, CalibError> {
    let diff = (abs_max - th0).abs();
    let step = (abs_max - th0) / opts.steps as f64;
    if !(step > 0.0 && diff > opts.min_tuned_diff) {
        return Ok(th0);
    }
    let candidates: Vec<f64> = (0..=opts.steps).map(|k| th0 + step * k as f64).collect();
    // in parallel: the serial L1 sums would otherwise leave the other cores idle
    let samples = tune_inputs
        .par_iter()
        .zip(&store.env)
        .map(|(inputs, env)| SampleView::new(op, arg_index, inputs, env))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let how = shortcut(op, &samples);
    // per candidate its distance, or `None` when the early exit dropped it (worse than another)
    let dists: Vec<Result<Option<f64>, CalibError>> = match how {
        Some(how) => shortcut_early_exit(how, &samples, &candidates).into_iter().map(Ok).collect(),
        None if op.kind == "top.Conv" => {
            match early_exit::candidate_distances(dq, op_index, &samples, &candidates, early_exit::MAX_STACK_BYTES) {
                Ok(Some(found)) => {
                    times.early_exit_bands += found.bands_done;
                    times.early_exit_bands_whole += found.bands_whole;
                    found.distances.into_iter().map(Ok).collect()
                }
                Ok(None) if dq.runs_winograd(op_index) => {
                    match stacked_conv_distances(dq, op_index, &samples, &candidates, STACK_BYTES) {
                        Ok(d) => d.into_iter().map(|d| Ok(Some(d))).collect(),
                        Err(e) => vec![Err(e)],
                    }
                }
                Ok(None) => candidates
                    .par_iter()
                    .map_init(Vec::new, |pool, &th| candidate_distance(dq, op_index, &samples, th, pool).map(Some))
                    .collect(),
                Err(e) => vec![Err(e)],
            }
        }
        None => candidates
            .par_iter()
            .map_init(Vec::new, |pool, &th| candidate_distance(dq, op_index, &samples, th, pool).map(Some))
            .collect(),
    };
    *(if how.is_some() { &mut times.tune_shortcut } else { &mut times.tune_run }) += started.elapsed();
    pick_candidate(&candidates, dists)
}

/// tpu-mlir's pick: the first candidate initialises, a later one wins only with a strictly
/// smaller mean distance (dropped candidates, `None`, are worse than a kept one and skipped).
fn pick_candidate(candidates: &[f64], dists: Vec<Result<Option<f64>, CalibError>>) -> Result<f64, CalibError> {
    let mut best = candidates.first().copied().unwrap_or(0.0);
    let mut prev: Option<f64> = None;
    for (th, d) in candidates.iter().zip(dists) {
        let Some(d) = d? else { continue };
        match prev {
            None => {
                prev = Some(d);
                best = *th;
            }
            Some(p) if d < p => {
                prev = Some(d);
                best = *th;
            }
            _ => {}
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::TensorType;
    use ndarray::{arr1, IxDyn};

    #[test]
    fn fake_quant_rounds_half_to_even_and_clips() {
        // th 127 -> scale 1: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 200 -> 127, -300 -> -128
        let x = arr1(&[0.5f32, 1.5, 2.5, 200.0, -300.0]).into_shape_with_order(IxDyn(&[5])).unwrap();
        let q = fake_quant(&x, 127.0);
        assert_eq!(q.as_slice().unwrap(), &[0.0, 2.0, 2.0, 127.0, -128.0]);
    }

    /// in [1,2,6,6] -> LeakyRelu -> MaxPool 2x2/2 -> Upsample x2 -> Concat(leaky, up) -> Relu.
    fn shortcut_module() -> Module {
        use crate::ir::{attr, Attr, Attrs, Func};
        let mut f = Func::default();
        let x = f.add_value("", TensorType::f32(vec![1, 2, 6, 6]));
        f.args.push(x);
        let attrs = |kv: &[(&str, Attr)]| -> Attrs { kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() };
        let inp = f.push_op("top.Input", vec![x], Attrs::new(), "in", TensorType::f32(vec![1, 2, 6, 6]));
        let l = f.push_op(
            "top.LeakyRelu",
            vec![inp],
            attrs(&[("alpha", attr::f64(0.1))]),
            "leaky",
            TensorType::f32(vec![1, 2, 6, 6]),
        );
        let pool_attrs = attrs(&[("kernel_shape", attr::ints(&[2, 2])), ("strides", attr::ints(&[2, 2]))]);
        let p = f.push_op("top.MaxPool", vec![l], pool_attrs, "pool", TensorType::f32(vec![1, 2, 3, 3]));
        let up_attrs = attrs(&[("scale_h", attr::i64(2)), ("scale_w", attr::i64(2))]);
        let u = f.push_op("top.Upsample", vec![p], up_attrs, "up", TensorType::f32(vec![1, 2, 6, 6]));
        let c = f.push_op(
            "top.Concat",
            vec![l, u],
            attrs(&[("axis", attr::i64(1))]),
            "cat",
            TensorType::f32(vec![1, 4, 6, 6]),
        );
        let r = f.push_op("top.Relu", vec![c], Attrs::new(), "relu", TensorType::f32(vec![1, 4, 6, 6]));
        f.returns.push(r);
        Module { name: "m".into(), attrs: Attrs::new(), func: f }
    }

    #[test]
    fn shortcuts_give_the_distances_of_running_the_op() {
        let m = shortcut_module();
        let ws = Weights::default();
        let interp = Interpreter::new(&m, &ws).unwrap();
        let inputs: Vec<Vec<Tensor>> = (0..3)
            .map(|k| {
                let data = (0..72).map(|i| ((i * 37 + k * 11) % 29) as f32 * 0.173 - 2.4).collect();
                vec![Tensor::from_shape_vec(IxDyn(&[1, 2, 6, 6]), data).unwrap()]
            })
            .collect();
        let envs: Vec<Vec<Option<Tensor>>> = inputs.iter().map(|i| interp.run_all(i).unwrap()).collect();
        let f = &m.func;
        let kinds: Vec<&str> = f.ops.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(kinds, ["top.Input", "top.LeakyRelu", "top.MaxPool", "top.Upsample", "top.Concat", "top.Relu"]);
        let want = [
            None,
            Some(Shortcut::Leaky(0.1)),
            Some(Shortcut::QuantizedReference),
            Some(Shortcut::QuantizedReference),
            Some(Shortcut::QuantizedReference),
            Some(Shortcut::QuantizedReference),
        ];
        for (i, op) in f.ops.iter().enumerate().skip(1) {
            let samples = op_samples(&m, i, &inputs, &envs);
            let how = shortcut(op, &samples);
            assert_eq!(how, want[i], "{}", op.kind);
            let ths = [0.3, 1.1, 2.05, 7.0];
            let fast_all = shortcut_distances(how.unwrap(), &samples, &ths);
            for (&th, &fast) in ths.iter().zip(&fast_all) {
                let run = candidate_distance(&interp, i, &samples, th, &mut Vec::new()).unwrap();
                assert!(run > 0.0, "{} th {th}", op.kind);
                assert_eq!(fast.to_bits(), run.to_bits(), "{} th {th}: {fast} vs {run}", op.kind);
            }
        }
    }

    /// The shortcut early exit keeps the pick of evaluating every candidate whole: complete
    /// candidates get the one-pass distances bit for bit, dropped ones are worse than the best,
    /// and some are dropped (LeakyRelu and MaxPool on maps large enough to be cut in ranges).
    #[test]
    fn shortcut_early_exit_picks_what_the_whole_evaluation_picks() {
        use crate::ir::{attr, Attrs, Func};
        let shape = vec![1, 4, 123, 135];
        let mut f = Func::default();
        let x = f.add_value("", TensorType::f32(shape.clone()));
        f.args.push(x);
        let inp = f.push_op("top.Input", vec![x], Attrs::new(), "in", TensorType::f32(shape.clone()));
        let alpha: Attrs = [("alpha".to_string(), attr::f64(0.1))].into_iter().collect();
        let l = f.push_op("top.LeakyRelu", vec![inp], alpha, "leaky", TensorType::f32(shape.clone()));
        let r = f.push_op("top.Relu", vec![l], Attrs::new(), "relu", TensorType::f32(shape.clone()));
        f.returns.push(r);
        let m = Module { name: "m".into(), attrs: Attrs::new(), func: f };
        let ws = Weights::default();
        let interp = Interpreter::new(&m, &ws).unwrap();
        let len: usize = shape.iter().product();
        let inputs: Vec<Vec<Tensor>> = (0..3)
            .map(|k| {
                let data = (0..len)
                    .map(|i| {
                        let bright = if (i / 135) % 37 < 4 { 6.0 } else { 0.0 };
                        ((i * 37 + k * 11) % 29) as f32 * 0.173 - 2.4 + bright
                    })
                    .collect();
                vec![Tensor::from_shape_vec(IxDyn(&shape), data).unwrap()]
            })
            .collect();
        let envs: Vec<Vec<Option<Tensor>>> = inputs.iter().map(|i| interp.run_all(i).unwrap()).collect();
        for op in [1, 2] {
            let samples = op_samples(&m, op, &inputs, &envs);
            let how = shortcut(&m.func.ops[op], &samples).unwrap();
            let ths: Vec<f64> = (0..=21).map(|k| 1.0 + 0.4 * k as f64).collect();
            let whole = shortcut_distances(how, &samples, &ths);
            let early = shortcut_early_exit(how, &samples, &ths);
            let min = whole.iter().copied().fold(f64::INFINITY, f64::min);
            for (k, (w, e)) in whole.iter().zip(&early).enumerate() {
                match e {
                    Some(e) => assert_eq!(e.to_bits(), w.to_bits(), "op {op} candidate {k}"),
                    None => assert!(*w > min, "op {op}: candidate {k} ({w}) dropped but the best is {min}"),
                }
            }
            assert!(early.iter().any(Option::is_none), "op {op}: nothing dropped: {whole:?}");
            let pick = |d: Vec<Option<f64>>| pick_candidate(&ths, d.into_iter().map(Ok).collect()).unwrap();
            assert_eq!(pick(early), pick(whole.into_iter().map(Some).collect()), "op {op}");
        }
    }

    /// in [1,8,9,11] -> Conv 3x3 pad 1 (8 -> 10 channels, with bias): a Winograd convolution
    /// when fast convolution is on.
    fn conv_module() -> (Module, Weights) {
        conv_module_shaped([1, 8, 9, 11], [1, 1, 1, 1])
    }

    /// in `shape` -> Conv 3x3 with `pads` (8 -> 10 channels, with bias).
    fn conv_module_shaped(shape: [usize; 4], pads: [i64; 4]) -> (Module, Weights) {
        use crate::ir::{attr, Attrs, Func};
        let [n, c, h, w] = shape;
        let (oh, ow) = (h + pads[0] as usize + pads[2] as usize - 2, w + pads[1] as usize + pads[3] as usize - 2);
        let mut f = Func::default();
        let x = f.add_value("", TensorType::f32(shape.to_vec()));
        f.args.push(x);
        let inp = f.push_op("top.Input", vec![x], Attrs::new(), "in", TensorType::f32(shape.to_vec()));
        let wt = f.push_op("top.Weight", vec![], Attrs::new(), "w", TensorType::f32(vec![10, c, 3, 3]));
        let b = f.push_op("top.Weight", vec![], Attrs::new(), "b", TensorType::f32(vec![10]));
        let attrs: Attrs =
            [("kernel_shape", attr::ints(&[3, 3])), ("strides", attr::ints(&[1, 1])), ("pads", attr::ints(&pads))]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        let conv = f.push_op("top.Conv", vec![inp, wt, b], attrs, "conv", TensorType::f32(vec![n, 10, oh, ow]));
        f.returns.push(conv);
        let mut ws = Weights::default();
        let wd: Vec<f32> = (0..10 * c * 9).map(|i| ((i * 7919) % 211) as f32 * 0.01 - 1.05).collect();
        ws.insert("w", TensorData::F32(Tensor::from_shape_vec(IxDyn(&[10, c, 3, 3]), wd).unwrap()));
        let bd: Vec<f32> = (0..10).map(|i| i as f32 * 0.3 - 1.2).collect();
        ws.insert("b", TensorData::F32(Tensor::from_shape_vec(IxDyn(&[10]), bd).unwrap()));
        (Module { name: "m".into(), attrs: Attrs::new(), func: f }, ws)
    }

    /// The tune samples of op number `op` of `m` (one argument) for these inputs, with their
    /// reference runs.
    fn op_samples<'s>(
        m: &Module,
        op: usize,
        inputs: &'s [Vec<Tensor>],
        envs: &'s [Vec<Option<Tensor>>],
    ) -> Vec<SampleView<'s>> {
        let f = &m.func;
        let mut arg_index = vec![None; f.values.len()];
        arg_index[f.args[0]] = Some(0);
        inputs.iter().zip(envs).map(|(inp, env)| SampleView::new(&f.ops[op], &arg_index, inp, env).unwrap()).collect()
    }

    /// The early exit keeps the pick of evaluating every candidate whole: the candidates it
    /// completes have the same distances (up to the order of the sums), the ones it drops are
    /// worse than the best, and some are dropped. Odd sizes, both paddings, two images, strips of
    /// one and of two tile rows, Winograd and direct convolutions.
    #[test]
    fn early_exit_picks_what_the_whole_evaluation_picks() {
        let cases = [
            ([1, 8, 29, 23], [1, 1, 1, 1], true),
            ([2, 8, 33, 17], [0, 1, 0, 2], true),
            ([1, 8, 26, 26], [1, 1, 1, 1], true),
            ([1, 8, 131, 9], [1, 1, 1, 1], true),
            ([1, 3, 131, 9], [1, 1, 1, 1], false),
            ([1, 8, 29, 23], [1, 1, 1, 1], false),
        ];
        for (shape, pads, fast) in cases {
            let (m, ws) = conv_module_shaped(shape, pads);
            let mut interp = Interpreter::new(&m, &ws).unwrap();
            interp.set_fast_conv(fast);
            let conv = m.func.ops.iter().position(|o| o.kind == "top.Conv").unwrap();
            let len: usize = shape.iter().product();
            let inputs: Vec<Vec<Tensor>> = (0..3)
                .map(|k| {
                    // smooth content with a bright band, so the rows differ
                    let data = (0..len)
                        .map(|i| {
                            let y = (i / shape[3]) % shape[2];
                            let band = if y % 11 < 3 { 4.0 } else { 0.0 };
                            ((i * 37 + k * 11) % 29) as f32 * 0.173 - 2.4 + band
                        })
                        .collect();
                    vec![Tensor::from_shape_vec(IxDyn(&shape), data).unwrap()]
                })
                .collect();
            let envs: Vec<Vec<Option<Tensor>>> = inputs.iter().map(|i| interp.run_all(i).unwrap()).collect();
            let samples = op_samples(&m, conv, &inputs, &envs);
            let ths: Vec<f64> = (0..=21).map(|k| 2.0 + 1.5 * k as f64).collect();
            let whole: Vec<f64> = ths
                .iter()
                .map(|&th| candidate_distance(&interp, conv, &samples, th, &mut Vec::new()).unwrap())
                .collect();
            let early =
                early_exit::candidate_distances(&interp, conv, &samples, &ths, 1 << 16).unwrap().unwrap().distances;
            let min = whole.iter().copied().fold(f64::INFINITY, f64::min);
            for (k, (w, e)) in whole.iter().zip(&early).enumerate() {
                match e {
                    Some(e) => assert!((e - w).abs() <= 1e-12 * w, "{shape:?} candidate {k}: {e} vs {w}"),
                    None => assert!(*w > min, "{shape:?}: candidate {k} ({w}) dropped but the best is {min}"),
                }
            }
            assert!(early.iter().any(Option::is_none), "{shape:?}: nothing dropped: {whole:?}");
            let pick = |d: Vec<Option<f64>>| pick_candidate(&ths, d.into_iter().map(Ok).collect()).unwrap();
            assert_eq!(pick(early), pick(whole.into_iter().map(Some).collect()), "{shape:?}");
        }
    }

    /// Too few tile rows: the caller evaluates the candidates whole.
    #[test]
    fn early_exit_declines_short_maps() {
        let (m, ws) = conv_module();
        let mut interp = Interpreter::new(&m, &ws).unwrap();
        interp.set_fast_conv(true);
        let conv = m.func.ops.iter().position(|o| o.kind == "top.Conv").unwrap();
        let inputs = vec![vec![Tensor::from_elem(IxDyn(&[1, 8, 9, 11]), 0.5f32)]];
        let envs: Vec<Vec<Option<Tensor>>> = inputs.iter().map(|i| interp.run_all(i).unwrap()).collect();
        let samples = op_samples(&m, conv, &inputs, &envs);
        assert!(early_exit::candidate_distances(&interp, conv, &samples, &[1.0, 2.0], STACK_BYTES).unwrap().is_none());
    }

    /// Stacking the candidates into one Winograd convolution gives every candidate's distance
    /// bit for bit as running it alone, also when the candidates are cut into groups.
    #[test]
    fn stacked_candidates_give_the_distances_of_running_each_alone() {
        let (m, ws) = conv_module();
        let mut interp = Interpreter::new(&m, &ws).unwrap();
        interp.set_fast_conv(true);
        let conv = m.func.ops.iter().position(|o| o.kind == "top.Conv").unwrap();
        assert!(interp.runs_winograd(conv));
        let inputs: Vec<Vec<Tensor>> = (0..3)
            .map(|k| {
                let data = (0..792).map(|i| ((i * 37 + k * 11) % 29) as f32 * 0.173 - 2.4).collect();
                vec![Tensor::from_shape_vec(IxDyn(&[1, 8, 9, 11]), data).unwrap()]
            })
            .collect();
        let envs: Vec<Vec<Option<Tensor>>> = inputs.iter().map(|i| interp.run_all(i).unwrap()).collect();
        let samples = op_samples(&m, conv, &inputs, &envs);
        let ths = [0.3, 1.1, 2.05, 2.5, 7.0];
        let alone: Vec<f64> =
            ths.iter().map(|&th| candidate_distance(&interp, conv, &samples, th, &mut Vec::new()).unwrap()).collect();
        assert!(alone.iter().all(|&d| d > 0.0));
        // all at once, then groups of two (the last one short)
        for stack_bytes in [STACK_BYTES, 2 * 792 * 4] {
            let stacked = stacked_conv_distances(&interp, conv, &samples, &ths, stack_bytes).unwrap();
            let bits = |v: &[f64]| v.iter().map(|d| d.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&stacked), bits(&alone), "stack of {stack_bytes} bytes");
        }
        let err = interp.eval_conv_stacked(conv, &Tensor::zeros(IxDyn(&[2, 8, 9, 10]))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "op 'conv' (top.Conv): stacked input [2, 8, 9, 10] is not a stack of the declared [1, 8, 9, 11]"
        );
    }

    #[test]
    fn distance_is_l2_over_l1() {
        let a = arr1(&[3.0f32, -4.0]).into_dyn();
        let b = arr1(&[0.0f32, 0.0]).into_dyn();
        assert_eq!(distance(&a, &b), 5.0 / 7.0);
    }

    #[test]
    fn weight_fake_quant_is_per_tensor_and_skips_conv_biases() {
        use crate::ir::{Attrs, Func};
        let mut f = Func::default();
        let x = f.add_value("", TensorType::f32(vec![1, 1, 1, 1]));
        f.args.push(x);
        let w = f.push_op("top.Weight", vec![], Attrs::new(), "w", TensorType::f32(vec![2, 1, 1, 1]));
        let b = f.push_op("top.Weight", vec![], Attrs::new(), "b", TensorType::f32(vec![2]));
        let c = f.push_op("top.Conv", vec![x, w, b], Attrs::new(), "c", TensorType::f32(vec![1, 2, 1, 1]));
        f.returns.push(c);
        let m = Module { name: "m".into(), attrs: Attrs::new(), func: f };
        let mut ws = Weights::default();
        ws.insert("w", TensorData::F32(arr1(&[2.54f32, -0.013]).into_shape_with_order(IxDyn(&[2, 1, 1, 1])).unwrap()));
        ws.insert("b", TensorData::F32(arr1(&[0.123f32, 7.0]).into_dyn()));
        let q = fake_quant_weights(&m, &ws);
        // max |w| = 2.54 for the whole tensor: -0.013 * 127 / 2.54 = -0.65 -> -1 -> -0.02
        let qw = q.get("w").unwrap().as_f32().unwrap();
        assert_eq!(qw.as_slice().unwrap(), &[2.54f32 * 127.0 / 2.54 * 2.54 / 127.0, -2.54 / 127.0]);
        assert_eq!(q.get("b"), ws.get("b"));
    }
}
