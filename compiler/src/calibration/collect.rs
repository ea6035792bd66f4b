//! Streaming collection of every calibrated tensor's statistics over the samples, and the
//! per-method thresholds computed from them at the end (flow reference 2.3, 2.4).

use super::histogram::TensorStats;
use super::kl::kl_threshold;
use super::CalibError;
use crate::interp::Tensor;
use crate::ir::{Module, TensorType, ValueId};
use rayon::prelude::*;

/// Threshold calculation method (`--cali_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaliMethod {
    /// KL divergence of the |x| histogram (default; tuned afterwards)
    Kl,
    /// max(|min|, |max|)
    Max,
    /// the 99.99..99.999999 % percentile of x (min and max become the percentile values)
    Percentile9999,
    /// tpu-mlir's iterative MSE-optimal clipping value
    Mse,
}

impl CaliMethod {
    /// Parse `kl`, `max`, `percentile9999`, `mse` (and tpu-mlir's `use_*` aliases).
    pub fn parse(s: &str) -> Result<Self, CalibError> {
        match s.trim().strip_prefix("use_").unwrap_or(s.trim()) {
            "kl" => Ok(CaliMethod::Kl),
            "max" => Ok(CaliMethod::Max),
            "percentile9999" => Ok(CaliMethod::Percentile9999),
            "mse" => Ok(CaliMethod::Mse),
            other => Err(CalibError::Config(format!(
                "unknown calibration method '{other}' (expected kl, max, percentile9999 or mse)"
            ))),
        }
    }

    /// tpu-mlir's spelling.
    pub fn name(self) -> &'static str {
        match self {
            CaliMethod::Kl => "kl",
            CaliMethod::Max => "max",
            CaliMethod::Percentile9999 => "percentile9999",
            CaliMethod::Mse => "mse",
        }
    }
}

/// One tensor that gets a table entry: an op result (including `top.Input`'s).
#[derive(Debug, Clone, PartialEq)]
pub struct CalibTensor {
    /// Value id in the function.
    pub value: ValueId,
    /// Index of the producing op.
    pub op: usize,
    /// Tensor name (the table key).
    pub name: String,
    /// Producing op kind (`top.Conv`, ...).
    pub kind: String,
}

/// Every op result except weights and `none`, in op order (tpu-mlir's `get_op_name_list`).
pub fn calib_tensors(module: &Module) -> Vec<CalibTensor> {
    let f = &module.func;
    let mut out = Vec::new();
    for (i, op) in f.ops.iter().enumerate() {
        if op.is_weight() || op.is_none() {
            continue;
        }
        for &r in &op.results {
            if matches!(f.values[r].ty, TensorType::None) {
                continue;
            }
            out.push(CalibTensor { value: r, op: i, name: f.values[r].name.clone(), kind: op.kind.clone() });
        }
    }
    out
}

/// The final numbers of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorResult {
    /// Tensor name.
    pub name: String,
    /// Threshold of the chosen method (before tuning).
    pub threshold: f64,
    /// Table `min` (observed min, or the percentile value).
    pub min: f64,
    /// Table `max`.
    pub max: f64,
    /// The abs-max the tuner searches up to (`thresholds_map_absmax`).
    pub abs_max: f64,
    /// Whether the tensor never had a non-zero sample.
    pub all_zero: bool,
}

/// The L extreme values kept for the percentile method (tpu-mlir's `sort_distr_per` lists,
/// merged as they arrive so memory does not grow with the number of samples).
#[derive(Debug, Clone, Default)]
struct Extremes {
    /// The L smallest of all values contributed so far, ascending.
    low: Vec<f32>,
    /// The L largest, ascending.
    high: Vec<f32>,
}

/// Method-specific running state of one tensor.
#[derive(Debug, Clone)]
struct Extra {
    /// percentile: number of extreme values kept per sample (`res_length`)
    res_length: usize,
    /// percentile: the op's percentile `99.99 + i * step`
    percent: f64,
    /// percentile (signed values) or MSE last-five tensors (|x|)
    extremes: Extremes,
    /// MSE: sum of the per-sample clipping values and their count
    mse_sum: f64,
    mse_n: usize,
    /// elements per sample
    size: usize,
}

/// Collects statistics sample by sample.
pub struct Collector {
    method: CaliMethod,
    tensors: Vec<CalibTensor>,
    slot_of: Vec<Option<usize>>,
    stats: Vec<TensorStats>,
    extra: Vec<Extra>,
    /// MSE: slots of the last five tensors (reversed order), whose |x| tails are kept
    last_five: Vec<usize>,
    total_samples: usize,
}

/// Keep the `l` smallest (`low`) or largest values of the multiset union, sorted ascending.
fn merge_keep(cur: &mut Vec<f32>, new: &[f32], l: usize, low: bool) {
    let mut all: Vec<f32> = Vec::with_capacity(cur.len() + new.len());
    all.extend_from_slice(cur);
    all.extend_from_slice(new);
    all.sort_by(|a, b| a.total_cmp(b));
    if all.len() > l {
        if low {
            all.truncate(l);
        } else {
            all.drain(..all.len() - l);
        }
    }
    *cur = all;
}

/// The `l` smallest and `l` largest values of `data`, each ascending.
fn sample_extremes(data: &[f32], l: usize) -> (Vec<f32>, Vec<f32>) {
    let mut v = data.to_vec();
    if l >= v.len() {
        v.sort_by(|a, b| a.total_cmp(b));
        return (v.clone(), v);
    }
    v.select_nth_unstable_by(l - 1, |a, b| a.total_cmp(b));
    let mut low = v[..l].to_vec();
    low.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    v.select_nth_unstable_by(n - l, |a, b| a.total_cmp(b));
    let mut high = v[n - l..].to_vec();
    high.sort_by(|a, b| a.total_cmp(b));
    (low, high)
}

/// tpu-mlir's MSE clipping value of one sample (8 bit).
fn mse_clip(data: &[f32]) -> f64 {
    let mn = data.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    let unsigned = if (mn as f64).abs() < 1e-6 { 4.0 } else { 1.0 };
    let abs: Vec<f64> = data.iter().map(|&x| (x as f64).abs()).collect();
    let nz = abs.iter().filter(|&&a| a > 0.0).count();
    if nz == 0 {
        return 0.0;
    }
    let mut s_n = abs.iter().sum::<f64>() / nz as f64;
    let coef = 1.0 / 4f64.powi(8) / 3.0 / unsigned;
    for _ in 0..20 {
        let (mut sum_hi, mut n_hi, mut n_lo) = (0.0, 0usize, 0usize);
        for &a in &abs {
            if a > s_n {
                sum_hi += a;
                n_hi += 1;
            } else {
                n_lo += 1;
            }
        }
        let next = sum_hi / (coef * n_lo as f64 + n_hi as f64);
        if (next - s_n).abs() < 1e-6 {
            break;
        }
        s_n = next;
    }
    s_n
}

/// Interpolated percentile from the kept tail, as tpu-mlir computes it.
fn tail_value(first: f64, second: Option<f64>, ratio: f64, l: usize) -> f64 {
    match second {
        Some(s) if l != 1 => first + ratio * (s - first),
        _ => first,
    }
}

/// Fold one sample of one tensor into its statistics and method state (`tail`: one of the
/// MSE method's last five tensors).
fn fold_sample(method: CaliMethod, tail: bool, stats: &mut TensorStats, ex: &mut Extra, data: &[f32]) {
    stats.update(data);
    ex.size = data.len();
    match method {
        CaliMethod::Percentile9999 => {
            let l = ex.res_length;
            let (low, high) = sample_extremes(data, l);
            // the sample's list is low ++ high; both halves can feed either end
            let mut contrib = low;
            contrib.extend_from_slice(&high);
            merge_keep(&mut ex.extremes.low, &contrib, l, true);
            merge_keep(&mut ex.extremes.high, &contrib, l, false);
        }
        CaliMethod::Mse => {
            ex.mse_sum += mse_clip(data);
            ex.mse_n += 1;
            if tail {
                let abs: Vec<f32> = data.iter().map(|x| x.abs()).collect();
                let (_, high) = sample_extremes(&abs, ex.res_length);
                merge_keep(&mut ex.extremes.high, &high, ex.res_length, false);
            }
        }
        CaliMethod::Kl | CaliMethod::Max => {}
    }
}

impl Collector {
    /// Statistics for every calibrated tensor of `module`; `total_samples` is the number of
    /// samples that will be fed (the percentile tail length depends on it).
    pub fn new(module: &Module, method: CaliMethod, bin_num: usize, total_samples: usize) -> Self {
        let tensors = calib_tensors(module);
        let mut slot_of = vec![None; module.func.values.len()];
        for (s, t) in tensors.iter().enumerate() {
            slot_of[t.value] = Some(s);
        }
        let n = tensors.len().max(1);
        let step = (99.999999 - 99.99) / n as f64;
        let extra = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let size = module.func.values[t.value].ty.numel();
                let percent = 99.99 + i as f64 * step;
                let res_length = (total_samples as f64 * size as f64 * (1.0 - percent / 100.0)) as usize + 1;
                Extra { res_length, percent, extremes: Extremes::default(), mse_sum: 0.0, mse_n: 0, size }
            })
            .collect();
        let last_five = (0..tensors.len()).rev().take(5).collect();
        Collector {
            method,
            stats: vec![TensorStats::new(bin_num); tensors.len()],
            tensors,
            slot_of,
            extra,
            last_five,
            total_samples,
        }
    }

    /// The calibrated tensors, in table order.
    pub fn tensors(&self) -> &[CalibTensor] {
        &self.tensors
    }

    /// Fold one op result of the current sample in (call in program order, samples in order).
    pub fn observe(&mut self, v: ValueId, t: &Tensor) {
        let Some(slot) = self.slot_of.get(v).copied().flatten() else { return };
        let owned;
        let data: &[f32] = match t.as_slice() {
            Some(s) => s,
            None => {
                owned = t.iter().copied().collect::<Vec<f32>>();
                &owned
            }
        };
        let tail = self.last_five.contains(&slot);
        fold_sample(self.method, tail, &mut self.stats[slot], &mut self.extra[slot], data);
    }

    /// Fold the op results of the first `images` of `stacked` consecutive samples in,
    /// `results[v]` holding value `v` of all of them stacked along the batch axis (as
    /// [`crate::interp::Interpreter::run_span`] on stacked samples gives them): the same
    /// statistics as observing the samples one after the other, the tensors folded in parallel. Values without a result
    /// are skipped; a result that does not split into `stacked` standard-layout slices is an
    /// error naming the tensor.
    pub fn observe_stacked(
        &mut self,
        results: &[Option<Tensor>],
        stacked: usize,
        images: usize,
    ) -> Result<(), CalibError> {
        let method = self.method;
        let last_five = &self.last_five;
        let slots: Vec<(usize, &Tensor)> = self
            .tensors
            .iter()
            .enumerate()
            .filter_map(|(slot, t)| results.get(t.value).and_then(Option::as_ref).map(|r| (slot, r)))
            .collect();
        for &(slot, r) in &slots {
            if stacked > 1 && super::stack::image_slice(r, stacked, 0).is_none() {
                return Err(CalibError::Model(format!(
                    "tensor '{}': result {:?} does not split into {stacked} samples",
                    self.tensors[slot].name,
                    r.shape()
                )));
            }
        }
        let mut work: Vec<(&mut TensorStats, &mut Extra, bool, &Tensor)> = Vec::with_capacity(slots.len());
        let mut slots = slots.into_iter().peekable();
        for (slot, (stats, extra)) in self.stats.iter_mut().zip(self.extra.iter_mut()).enumerate() {
            if let Some(&(s, r)) = slots.peek() {
                if s == slot {
                    work.push((stats, extra, last_five.contains(&slot), r));
                    slots.next();
                }
            }
        }
        // the largest tensors first, so that the small ones fill in at the end
        work.sort_by_key(|w| std::cmp::Reverse(w.3.len()));
        work.into_par_iter().for_each(|(stats, extra, tail, r)| {
            if stacked <= 1 {
                // one sample: the whole tensor, whatever its batch
                if images > 0 {
                    let whole: std::borrow::Cow<'_, [f32]> = match r.as_slice() {
                        Some(s) => s.into(),
                        None => r.iter().copied().collect::<Vec<f32>>().into(),
                    };
                    fold_sample(method, tail, stats, extra, &whole);
                }
                return;
            }
            for k in 0..images.min(stacked) {
                if let Some(data) = super::stack::image_slice(r, stacked, k) {
                    fold_sample(method, tail, stats, extra, data);
                }
            }
        });
        Ok(())
    }

    /// Statistics of one tensor (for tests and reports).
    pub fn stats(&self, slot: usize) -> &TensorStats {
        &self.stats[slot]
    }

    /// Compute every tensor's threshold, min and max for the method (before tuning).
    pub fn finish(&self) -> Vec<TensorResult> {
        let kl: Vec<Option<f32>> = if self.method == CaliMethod::Kl {
            self.stats.par_iter().map(|s| s.hist.as_ref().map(|h| kl_threshold(&h.counts, h.width()))).collect()
        } else {
            vec![None; self.stats.len()]
        };
        let mut results = Vec::with_capacity(self.tensors.len());
        let mut mse_tail: Vec<Option<f64>> = vec![None; self.tensors.len()];
        for (slot, t) in self.tensors.iter().enumerate() {
            let s = &self.stats[slot];
            let ex = &self.extra[slot];
            let mut min = s.min as f64;
            let mut max = s.max as f64;
            let mut abs = (s.min.abs().max(s.max.abs())) as f64;
            let inter = self.total_samples as f64 * ex.size as f64 - 1.0;
            let pos = ex.percent / 100.0 * inter;
            let ratio = pos - pos.trunc();
            match self.method {
                CaliMethod::Percentile9999 if !ex.extremes.high.is_empty() => {
                    let l = ex.res_length;
                    let hi = &ex.extremes.high; // ascending: hi[0] is the L-th largest
                    let lo = &ex.extremes.low; // ascending: reversed, lo[L-1] is the L-th smallest
                    let v_max = tail_value(hi[0] as f64, hi.get(1).map(|&x| x as f64), ratio, l);
                    let lr: Vec<f64> = lo.iter().rev().map(|&x| x as f64).collect();
                    let v_min = tail_value(lr[0], lr.get(1).copied(), ratio, l);
                    min = v_min;
                    max = v_max;
                    abs = v_max.abs().max(v_min.abs());
                }
                CaliMethod::Mse => {
                    if ex.mse_n > 0 {
                        abs = (ex.mse_sum / ex.mse_n as f64).min(abs);
                    }
                    if self.last_five.contains(&slot) && !ex.extremes.high.is_empty() {
                        let hi = &ex.extremes.high;
                        mse_tail[slot] =
                            Some(tail_value(hi[0] as f64, hi.get(1).map(|&x| x as f64), ratio, ex.res_length));
                    }
                }
                _ => {}
            }
            if abs <= 1e-5 {
                min = if min < 0.0 { -1e-5 } else { 0.0 };
                max = 1e-5;
                abs = 1e-5;
            }
            let threshold = match self.method {
                CaliMethod::Kl => match kl[slot] {
                    Some(k) => (k as f64).min(abs),
                    None => 1.0f64.min(abs),
                },
                _ => abs,
            };
            results.push(TensorResult {
                name: t.name.clone(),
                threshold,
                min,
                max,
                abs_max: abs,
                all_zero: s.hist.is_none(),
            });
        }
        if self.method == CaliMethod::Mse {
            // tail tensors whose percentile equals their abs max keep it (up to the first Conv/MatMul)
            for &slot in &self.last_five {
                let r = &results[slot];
                let full = r.min.abs().max(r.max.abs());
                match mse_tail[slot] {
                    Some(v) if v == full => results[slot].threshold = v,
                    _ => break,
                }
                if matches!(self.tensors[slot].kind.as_str(), "top.Conv" | "top.MatMul") {
                    break;
                }
            }
            for (slot, t) in self.tensors.iter().enumerate() {
                if t.kind == "top.Input" {
                    let r = &mut results[slot];
                    r.threshold = r.min.abs().max(r.max.abs());
                }
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_parse() {
        assert_eq!(CaliMethod::parse("kl").unwrap(), CaliMethod::Kl);
        assert_eq!(CaliMethod::parse("use_percentile9999").unwrap(), CaliMethod::Percentile9999);
        assert_eq!(
            CaliMethod::parse("aciq").unwrap_err().to_string(),
            "unknown calibration method 'aciq' (expected kl, max, percentile9999 or mse)"
        );
    }

    #[test]
    fn extremes_keep_duplicates_like_the_concatenated_lists() {
        let (lo, hi) = sample_extremes(&[5.0, 1.0, 4.0, 2.0, 3.0], 2);
        assert_eq!((lo, hi), (vec![1.0, 2.0], vec![4.0, 5.0]));
        let mut keep = vec![];
        merge_keep(&mut keep, &[1.0, 2.0, 4.0, 5.0], 3, false);
        merge_keep(&mut keep, &[0.0, 6.0], 3, false);
        assert_eq!(keep, vec![4.0, 5.0, 6.0]);
    }

    #[test]
    fn mse_clip_matches_numpy_iteration() {
        // numpy: abs_x=[1,2,3,100]; s=26.5; next = 100/(1/65536/3/1*3 + 1) ...
        let v = mse_clip(&[-1.0, 2.0, 3.0, 100.0]);
        let coef = 1.0 / 65536.0 / 3.0;
        let s1 = 100.0 / (coef * 3.0 + 1.0);
        assert!((v - s1).abs() < 1e-9, "{v} vs {s1}");
    }

    /// `arg -> top.Input -> top.Relu`, each [1, 1, 100, 100].
    fn input_relu_module() -> Module {
        use crate::ir::{Attrs, Func};
        let mut f = Func::default();
        let arg = f.add_value("", TensorType::f32(vec![1, 1, 100, 100]));
        f.args.push(arg);
        let x = f.push_op("top.Input", vec![arg], Attrs::new(), "in", TensorType::f32(vec![1, 1, 100, 100]));
        let r = f.push_op("top.Relu", vec![x], Attrs::new(), "relu", TensorType::f32(vec![1, 1, 100, 100]));
        f.returns.push(r);
        Module { name: "m".into(), attrs: Attrs::new(), func: f }
    }

    fn sample(s: usize) -> Vec<f32> {
        (0..10000).map(|j| ((j * 7919 + s * 104_729) % 100_003) as f32 / 1000.0 - 50.0).collect()
    }

    fn collect(method: CaliMethod) -> Vec<TensorResult> {
        let m = input_relu_module();
        let mut c = Collector::new(&m, method, 2048, 3);
        for s in 0..3 {
            let x = Tensor::from_shape_vec(vec![1, 1, 100, 100], sample(s)).unwrap();
            let r = x.mapv(|v| v.max(0.0));
            c.observe(1, &x);
            c.observe(2, &r);
        }
        c.finish()
    }

    /// Folding two samples stacked along the batch axis (in parallel over the tensors) gives
    /// the statistics of observing them one after the other, for every method.
    #[test]
    fn stacked_samples_fold_like_samples_one_by_one() {
        let m = input_relu_module();
        for method in [CaliMethod::Kl, CaliMethod::Max, CaliMethod::Percentile9999, CaliMethod::Mse] {
            let mut one = Collector::new(&m, method, 2048, 3);
            let mut stacked = Collector::new(&m, method, 2048, 3);
            let xs: Vec<Tensor> =
                (0..3).map(|s| Tensor::from_shape_vec(vec![1, 1, 100, 100], sample(s)).unwrap()).collect();
            for x in &xs {
                one.observe(1, x);
                one.observe(2, &x.mapv(|v| v.max(0.0)));
            }
            // samples 0 and 1 in one stack, then sample 2 in a stack of two padded with a copy
            // that is not folded
            let views = |a: &Tensor, b: &Tensor| ndarray::concatenate(ndarray::Axis(0), &[a.view(), b.view()]).unwrap();
            for (a, b, images) in [(&xs[0], &xs[1], 2), (&xs[2], &xs[2], 1)] {
                let x = views(a, b);
                let results = vec![None, Some(x.clone()), Some(x.mapv(|v| v.max(0.0)))];
                stacked.observe_stacked(&results, 2, images).unwrap();
            }
            assert_eq!(stacked.stats, one.stats, "{method:?}");
            assert_eq!(stacked.finish(), one.finish(), "{method:?}");
        }
        let mut c = Collector::new(&m, CaliMethod::Max, 2048, 3);
        let odd = Tensor::zeros(vec![3, 1, 100, 100]);
        assert_eq!(
            c.observe_stacked(&[None, Some(odd), None], 2, 2).unwrap_err().to_string(),
            "model: tensor 'in': result [3, 1, 100, 100] does not split into 2 samples"
        );
    }

    // Expected values: tpu-mlir's process_statistic / process_compute_threshold formulas re-run
    // in numpy on the same data (float64 percentile interpolation, float32 data).
    #[test]
    fn percentile9999_matches_tpu_mlir_formula() {
        let r = collect(CaliMethod::Percentile9999);
        assert_eq!((r[0].min, r[0].max), (-49.99100152893065, 49.9889988128662));
        assert_eq!(r[0].threshold, 49.99100152893065);
        assert_eq!((r[1].min, r[1].max), (0.0, 49.99800049899239));
        assert_eq!(r[1].threshold, 49.99800049899239);
    }

    #[test]
    fn mse_matches_tpu_mlir_formula() {
        let r = collect(CaliMethod::Mse);
        // the input keeps its abs max; the ReLU gets the mean clipping value (numpy sums in
        // float32, here in float64: equal to 1e-6)
        assert_eq!(r[0].threshold, 50.000999450683594);
        assert_eq!((r[0].min, r[0].max), (-50.0, 50.000999450683594));
        assert!((r[1].threshold - 49.88875847921096).abs() < 1e-6 * 50.0, "{}", r[1].threshold);
        assert_eq!((r[1].min, r[1].max), (0.0, 50.000999450683594));
    }

    #[test]
    fn max_and_kl_use_the_observed_range() {
        let r = collect(CaliMethod::Max);
        assert_eq!(r[0].threshold, 50.000999450683594);
        assert_eq!(r[1].threshold, 50.000999450683594);
        let k = collect(CaliMethod::Kl);
        assert!(k.iter().all(|t| t.threshold > 0.0 && t.threshold <= t.abs_max));
        assert_eq!(k[0].abs_max, 50.000999450683594);
    }
}
