//! The statistics pass: every sample through the F32 model in dataset order, each op result
//! folded into its tensor's statistics right after the op computed it (while it is still in the
//! caches), the deep ops of the model run on a group of samples at once ([`Split`]: their filters
//! are streamed once per group instead of once per sample), and the next sample decoded while
//! the current one runs.

use super::collect::Collector;
use super::dataset::SampleKind;
use super::inputs::InputLoader;
use super::run::{CalibEvent, PhaseTimes};
use super::stack::{image_tensor, stack_inputs, Split};
use super::CalibError;
use crate::interp::{Interpreter, SpanMode, Tensor};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Every op result of one sample, by value id (the tuner's references).
pub(crate) type Results = Vec<Option<Tensor>>;

/// What the statistics pass hands on besides the statistics themselves.
#[derive(Debug, Default)]
pub(crate) struct Gathered {
    /// Samples folded in.
    pub used: usize,
    /// Samples skipped (`--skip_bad`) with their error.
    pub skipped: Vec<(PathBuf, String)>,
    /// The inputs of the first `tune_num` samples.
    pub tune_inputs: Vec<Vec<Tensor>>,
    /// Their op results, by value id.
    pub tune_references: Vec<Results>,
}

/// A sample whose first part ran: the values the tail reads, and its slot among the tune
/// samples, if it is one.
struct Pending {
    crossing: Vec<Tensor>,
    tune_slot: Option<usize>,
}

/// The samples the statistics pass reads: one model input each (`groups[i]` holds the files of
/// sample `i`: one per image of the batch, or the npz / npy files).
pub(crate) struct Samples<'a> {
    /// How to turn files into input tensors.
    pub loader: &'a InputLoader,
    /// What kind of files the dataset holds.
    pub kind: SampleKind,
    /// The files of each sample, in dataset order.
    pub groups: &'a [Vec<&'a [PathBuf]>],
}

/// Run every sample, folding the results into `collector`; keeps the first `tune_num` samples'
/// inputs and results for the tuner. An unreadable sample fails the pass unless `skip_bad`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gather(
    interp: &Interpreter<'_>,
    split: &Split,
    collector: &mut Collector,
    samples: &Samples<'_>,
    tune_num: usize,
    skip_bad: bool,
    on_event: &mut dyn FnMut(CalibEvent<'_>),
    times: &mut PhaseTimes,
) -> Result<Gathered, CalibError> {
    let total = samples.groups.len();
    let n_ops = interp.op_count();
    let load = |i: usize| samples.loader.load_batched(samples.kind, &samples.groups[i]);
    let mut out = Gathered::default();
    let mut pending: Vec<Pending> = Vec::with_capacity(split.group);
    // a complete group whose tail runs alongside the next sample's first part (the two share
    // the cores; the tail's results are folded right after)
    let mut ready: Vec<Pending> = Vec::new();
    let mut next = (total > 0).then(|| load(0));
    for i in 0..total {
        let loaded = next.take().unwrap_or_else(|| load(i));
        let inputs = match loaded {
            Ok(inputs) => Some(inputs),
            Err(e @ CalibError::Sample { .. }) if skip_bad => {
                let path = samples.groups[i].first().and_then(|g| g.first()).cloned().unwrap_or_default();
                on_event(CalibEvent::Skipped { path: &path, error: &e });
                out.skipped.push((path, e.to_string()));
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(inputs) = inputs {
            let keep = out.tune_inputs.len() < tune_num;
            let joined = Instant::now();
            let (ran, (prefetched, tail)) = rayon::join(
                || run_first_part(interp, split, &inputs, collector, keep),
                || {
                    rayon::join(
                        || (i + 1 < total).then(|| load(i + 1)),
                        || {
                            let started = Instant::now();
                            (!ready.is_empty()).then(|| (run_tail(interp, split, &ready), started.elapsed()))
                        },
                    )
                },
            );
            next = prefetched;
            let mut tail_for = Duration::ZERO;
            if let Some((results, took)) = tail {
                tail_for = took;
                times.observe += fold_tail(collector, results?, &ready, &mut out.tune_references)?;
                ready.clear();
            }
            let (crossing, references, folding, ran_for) = ran?;
            times.observe += folding;
            times.load_wait += joined.elapsed().saturating_sub(ran_for.max(tail_for));
            let tune_slot = references.map(|r| {
                out.tune_inputs.push(inputs);
                out.tune_references.push(r);
                out.tune_references.len() - 1
            });
            out.used += 1;
            if split.cut < n_ops {
                pending.push(Pending { crossing, tune_slot });
            }
        }
        if pending.len() == split.group || i + 1 == total {
            // a group still waiting (only when the samples since were skipped) goes first
            if !ready.is_empty() {
                times.observe += run_and_fold_tail(interp, split, &ready, collector, &mut out.tune_references)?;
                ready.clear();
            }
            if i + 1 < total {
                ready = std::mem::take(&mut pending);
            } else if !pending.is_empty() {
                times.observe += run_and_fold_tail(interp, split, &pending, collector, &mut out.tune_references)?;
                pending.clear();
            }
        }
        on_event(CalibEvent::Sample { done: i + 1, total });
    }
    Ok(out)
}

/// One sample through the ops before the split, each result folded as it comes (and copied
/// for the tuner when `keep`): the values the tail reads, the references, the time spent
/// folding and the whole run's time.
fn run_first_part(
    interp: &Interpreter<'_>,
    split: &Split,
    inputs: &[Tensor],
    collector: &mut Collector,
    keep: bool,
) -> Result<(Vec<Tensor>, Option<Results>, Duration, Duration), CalibError> {
    let started = Instant::now();
    let mut env = Vec::new();
    let mut references: Option<Results> = keep.then(|| vec![None; interp.value_count()]);
    let mut folding = Duration::ZERO;
    let mut observe = |v: usize, t: &Tensor| {
        let at = Instant::now();
        collector.observe(v, t);
        folding += at.elapsed();
        if let Some(r) = references.as_mut().and_then(|r| r.get_mut(v)) {
            *r = Some(t.clone());
        }
    };
    interp
        .run_span(0..split.cut, 1, inputs, &mut env, SpanMode::Observe(&mut observe))
        .map_err(|e| CalibError::Model(e.to_string()))?;
    let crossing = split
        .crossing
        .iter()
        .map(|&v| {
            env.get_mut(v).and_then(Option::take).ok_or_else(|| {
                CalibError::Model(format!("value %{v} read after the stacked split was not computed before it"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((crossing, references, folding, started.elapsed()))
}

/// The tail of the function on the samples of `group` stacked: every result of the tail, by
/// value id (the crossing values removed: they were folded with the first part).
fn run_tail(interp: &Interpreter<'_>, split: &Split, group: &[Pending]) -> Result<Results, CalibError> {
    let n = group.len();
    let mut env: Results = vec![None; interp.value_count()];
    let per_sample: Vec<&[Tensor]> = group.iter().map(|p| p.crossing.as_slice()).collect();
    let stacked = stack_inputs(&per_sample)
        .filter(|s| s.len() == split.crossing.len())
        .ok_or_else(|| CalibError::Model("the samples' values read by the stacked ops do not stack".into()))?;
    for (&v, t) in split.crossing.iter().zip(stacked) {
        env[v] = Some(t);
    }
    interp
        .run_span(split.cut..interp.op_count(), n, &[], &mut env, SpanMode::KeepAll)
        .map_err(|e| CalibError::Model(e.to_string()))?;
    for &v in &split.crossing {
        env[v] = None;
    }
    Ok(env)
}

/// [`run_tail`] then [`fold_tail`], one after the other (a group with no next sample to run
/// alongside). Returns the folding time.
fn run_and_fold_tail(
    interp: &Interpreter<'_>,
    split: &Split,
    group: &[Pending],
    collector: &mut Collector,
    tune_references: &mut [Results],
) -> Result<Duration, CalibError> {
    let results = run_tail(interp, split, group)?;
    fold_tail(collector, results, group, tune_references)
}

/// Fold the tail results of `group` sample by sample (tensors in parallel) and slice them into
/// the tune samples' references. Returns the folding time.
fn fold_tail(
    collector: &mut Collector,
    results: Results,
    group: &[Pending],
    tune_references: &mut [Results],
) -> Result<Duration, CalibError> {
    let n = group.len();
    let started = Instant::now();
    collector.observe_stacked(&results, n, n)?;
    let folding = started.elapsed();
    for (j, p) in group.iter().enumerate() {
        let Some(refs) = p.tune_slot.and_then(|s| tune_references.get_mut(s)) else { continue };
        for (v, t) in results.iter().enumerate() {
            if let Some(t) = t {
                refs[v] = image_tensor(t, n, j);
            }
        }
    }
    Ok(folding)
}

#[cfg(test)]
mod tests {
    use super::super::stack::{split, MAX_STACKED_ELEMENTS};
    use crate::onnx::{import, ImportOptions};

    const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/models/tiny-yolov3-11.onnx");

    #[test]
    fn tiny_yolov3_stacks_from_the_first_26x26_op_on() {
        let opts = ImportOptions {
            model_name: "yolov3_tiny".into(),
            output_names: vec!["convolution_output1".into(), "convolution_output".into()],
            ..Default::default()
        };
        let (module, _) = import(std::path::Path::new(MODEL), &opts).unwrap();
        let f = &module.func;
        let s = split(&module, 4);
        assert_eq!(s.group, 4);
        assert_eq!(f.op_name(&f.ops[s.cut]), "max_pooling2d_7_MaxPool");
        let crossing: Vec<&str> = s.crossing.iter().map(|&v| f.values[v].name.as_str()).collect();
        assert_eq!(crossing, ["leaky_re_lu_4_LeakyRelu"]);
        // every op of the tail has small results; the op before it does not
        let before = f.ops[..s.cut].iter().rev().find(|op| !op.is_weight() && !op.is_none()).unwrap();
        assert!(f.values[before.results[0]].ty.numel() > MAX_STACKED_ELEMENTS);
        for op in f.ops[s.cut..].iter().filter(|op| !op.is_weight()) {
            assert!(op.results.iter().all(|&r| f.values[r].ty.numel() <= MAX_STACKED_ELEMENTS), "{}", f.op_name(op));
        }
        // one sample per group: no tail
        let one = split(&module, 1);
        assert_eq!((one.cut, one.group, one.crossing.len()), (f.ops.len(), 1, 0));
    }
}
