//! The real [`MixedRunner`]: for a set of float layers it lowers the top model for the chip
//! (those layers in the float mode, the rest INT8, casts at the boundaries), runs the chip
//! simulator on every sample in parallel, and compares every layer and the network outputs with
//! the float model's (the chip's float mode lowered for the whole network, run once).
//!
//! Samples are simulated in groups ([`batch`]): a group's inputs are stacked into one batch, so
//! each op runs once per group instead of once per image, and each image's cos is computed from
//! its slice of the batched result (equal, bit for bit, to its result alone). The float
//! references are computed in groups of their own ([`REFERENCE_GROUP_SIZE`]).
//!
//! Trials re-simulate only what changed: every lowered value gets a structural signature
//! ([`signature`]), the raw tensors of the last evaluated assignments are kept by signature, and a
//! trial runs only the ops whose results are not known yet (everything upstream of the changed
//! layers is reused), and computes the cos only of layers whose output signature is new.

mod batch;
mod reference;
mod signature;

use super::{Evaluation, LayerInfo, MixedRunner, SearchError};
use crate::calibration::{CalibError, Dataset, InputLoader};
use crate::compare::cos_sim;
use crate::interp::{Interpreter, Tensor};
use crate::ir::weights::Weights;
use crate::ir::{Module, ValueId};
use crate::lower::{lower_cached, CaliMap, Chip, LowerCache, LowerOptions, Mode, QTable};
use crate::sim::{self, SimTensor};
use rayon::prelude::*;
use reference::RefLayer;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Images of a group whose layer cos are computed in one task (see [`reference::cos_of_images`]).
const COS_IMAGES: usize = 4;

/// Samples simulated together as one batch unless told otherwise
/// ([`SimRunner::with_group_size`]).
pub const DEFAULT_GROUP_SIZE: usize = 1;

/// Samples whose float references are computed together as one batch. One: the F32
/// interpreter's batches cost more than they save (larger transient buffers), and each
/// reference then has a buffer of its own, freed or kept on its own.
const REFERENCE_GROUP_SIZE: usize = 1;

/// Kinds that are not layers of the search (no computation of their own).
const NOT_LAYERS: &[&str] = &["top.Input", "top.Weight", "top.None"];

/// The searchable layers of a top module: every computing op in program order, with its
/// immediate successors and predecessors among the layers, restricted to ancestors of the outputs.
pub fn layers_of(top: &Module) -> Vec<LayerInfo> {
    let f = &top.func;
    let producers = f.producers();
    let users = f.users();
    let is_layer = |op: usize| !NOT_LAYERS.contains(&f.ops[op].kind.as_str());
    // Ancestors of the returned values.
    let mut needed = vec![false; f.ops.len()];
    let mut stack: Vec<usize> = f.returns.iter().filter_map(|&r| producers[r]).collect();
    while let Some(op) = stack.pop() {
        if needed[op] {
            continue;
        }
        needed[op] = true;
        stack.extend(f.ops[op].operands.iter().filter_map(|&v| producers[v]));
    }
    let mut out = Vec::new();
    for (i, op) in f.ops.iter().enumerate() {
        if !is_layer(i) || !needed[i] {
            continue;
        }
        let mut successors = Vec::new();
        for &r in &op.results {
            for &u in &users[r] {
                if is_layer(u) {
                    let n = f.op_name(&f.ops[u]).to_string();
                    if !successors.contains(&n) {
                        successors.push(n);
                    }
                }
            }
        }
        let predecessors = op
            .operands
            .iter()
            .filter_map(|&v| producers[v])
            .filter(|&p| is_layer(p))
            .map(|p| f.op_name(&f.ops[p]).to_string())
            .collect();
        out.push(LayerInfo {
            name: f.op_name(op).to_string(),
            kind: op.short_kind().to_string(),
            successors,
            predecessors,
        });
    }
    out
}

/// Load every sample of `dataset` in order, decoding several at once: the tensors of
/// `loader.load` one sample after the other, and on failure the first failing sample's error.
pub fn load_samples(loader: &InputLoader, dataset: &Dataset) -> Result<Vec<Vec<Tensor>>, CalibError> {
    let loaded: Vec<Result<Vec<Tensor>, CalibError>> =
        dataset.samples.par_iter().map(|files| loader.load(dataset.kind, files)).collect();
    loaded.into_iter().collect()
}

/// Output comparison weights (`--global_compare_layers a:0.3,b:0.7`); empty = the network outputs
/// with equal weights.
pub type CompareLayers = Vec<(String, f64)>;

/// Where the time of the evaluations went, and how much was reused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunnerStats {
    /// Number of `evaluate` calls.
    pub evaluations: usize,
    /// Time spent lowering the top model.
    pub lower: Duration,
    /// Time spent computing signatures (hashing the lowered weights).
    pub signatures: Duration,
    /// Time spent simulating and comparing.
    pub simulate: Duration,
    /// Non-weight ops simulated (summed over samples).
    pub ops_run: usize,
    /// Non-weight ops whose results were reused (summed over samples).
    pub ops_reused: usize,
}

/// Consecutive samples run as one batch.
struct Group {
    /// The samples' indexes.
    samples: Range<usize>,
    /// Their inputs stacked along the batch axis (empty for a lone sample: its own inputs
    /// serve, see [`SimRunner::inputs_of`]).
    inputs: Vec<Tensor>,
}

impl Group {
    /// Number of samples (the batch size).
    fn len(&self) -> usize {
        self.samples.len()
    }
}

/// The raw tensors of one evaluated float set, per group, by value signature.
struct Snapshot {
    float_set: BTreeSet<String>,
    values: Vec<HashMap<u64, Arc<SimTensor>>>,
    /// Per value signature, the last layer whose evaluation may read the value: the largest
    /// layer index among the op making it and the ops reading it (`usize::MAX` when one of
    /// them is no layer's). Once the walk has passed it, no later evaluation runs those ops
    /// (they are upstream of every layer it may still change), so the value is dropped.
    needed_until: HashMap<u64, usize>,
}

impl Snapshot {
    /// Drop the values no evaluation reads once the walk is at layer `released`.
    fn prune(&mut self, released: usize) {
        let needed = |h: &u64| self.needed_until.get(h).is_none_or(|&u| u >= released);
        for group in &mut self.values {
            group.retain(|h, _| needed(h));
        }
    }
}

/// What `evaluate` keeps between calls.
#[derive(Default)]
struct Memo {
    /// At most two: the assignment the last trial started from and the last trial.
    snapshots: Vec<Snapshot>,
    /// `(layer index, output signature)` -> the layer's cos per sample.
    layer_cos: HashMap<(usize, u64), Arc<Vec<f64>>>,
    /// The weights and packed filters the simulator prepared, by signature: shared by every
    /// evaluation (a trial's lowering differs from the last one in a few layers only).
    cache: sim::SimCache,
    stats: RunnerStats,
}

/// Lowers and simulates the model for a float set; compares against the float model.
pub struct SimRunner<'a> {
    top: &'a Module,
    weights: &'a Weights,
    table: &'a CaliMap,
    chip: Chip,
    float_mode: Mode,
    layers: Vec<LayerInfo>,
    samples: Vec<Vec<Tensor>>,
    /// The samples in groups simulated as batches.
    groups: Vec<Group>,
    /// The samples in groups whose float references are computed as batches.
    ref_groups: Vec<Group>,
    compare: CompareLayers,
    /// Per reference group, per layer: the float model's output (f32, as the layer cos needs
    /// it). The layers the walk has passed are freed (see [`MixedRunner::judged_before`]).
    float_ref: RwLock<Vec<Vec<RefLayer>>>,
    /// Per layer: whether the network cos reads it (never freed).
    compared: Vec<bool>,
    /// Free the references of the layers the walk has passed (on by default).
    free_judged: bool,
    /// Leading layers whose references are freed (those not in `compared`).
    released: AtomicUsize,
    /// Reuse results across evaluations (on by default).
    reuse: bool,
    memo: Mutex<Memo>,
    /// The INT8 convolution weights quantized by earlier lowerings (every trial lowers the whole
    /// model again, with the same quantization for all but a few layers).
    lower_cache: LowerCache<'a>,
}

impl<'a> SimRunner<'a> {
    /// Prepare a runner: runs the float model once on every sample and keeps each layer's output.
    /// Samples run in groups of [`DEFAULT_GROUP_SIZE`].
    pub fn new(
        top: &'a Module,
        weights: &'a Weights,
        table: &'a CaliMap,
        chip: Chip,
        float_mode: Mode,
        samples: Vec<Vec<Tensor>>,
        compare: CompareLayers,
    ) -> Result<Self, SearchError> {
        Self::with_group_size(top, weights, table, chip, float_mode, samples, compare, DEFAULT_GROUP_SIZE)
    }

    /// [`SimRunner::new`] running the samples in groups of at most `group_size` (as even as
    /// possible), each as one batch; one sample at a time when the model's ops are not known to
    /// run a batch image by image. Every figure is the same whatever the grouping.
    #[allow(clippy::too_many_arguments)]
    pub fn with_group_size(
        top: &'a Module,
        weights: &'a Weights,
        table: &'a CaliMap,
        chip: Chip,
        float_mode: Mode,
        samples: Vec<Vec<Tensor>>,
        compare: CompareLayers,
        group_size: usize,
    ) -> Result<Self, SearchError> {
        let layers = layers_of(top);
        let f = &top.func;
        let compare = if compare.is_empty() {
            let n = f.returns.len().max(1) as f64;
            f.returns.iter().map(|&r| (f.values[r].name.clone(), 1.0 / n)).collect()
        } else {
            let total: f64 = compare.iter().map(|c| c.1).sum();
            if (total - 1.0).abs() > 1e-6 {
                return Err(SearchError::Config(format!("--global_compare_layers rates sum to {total}, not 1")));
            }
            for (name, _) in &compare {
                if !layers.iter().any(|l| &l.name == name) {
                    return Err(SearchError::Config(format!("--global_compare_layers: no layer named '{name}'")));
                }
            }
            compare
        };
        let mut runner = SimRunner {
            top,
            weights,
            table,
            chip,
            float_mode,
            layers,
            samples,
            groups: Vec::new(),
            ref_groups: Vec::new(),
            compare,
            float_ref: RwLock::new(Vec::new()),
            compared: Vec::new(),
            free_judged: true,
            released: AtomicUsize::new(0),
            reuse: true,
            memo: Mutex::new(Memo::default()),
            lower_cache: LowerCache::new(top, weights),
        };
        runner.compared = runner.layers.iter().map(|l| runner.compare.iter().any(|(n, _)| n == &l.name)).collect();
        runner.groups = runner.make_groups(group_size)?;
        runner.ref_groups = runner.make_groups(REFERENCE_GROUP_SIZE)?;
        let float_ref = if float_mode == Mode::F32 {
            // F32 lowering computes what the top model computes: the F32 interpreter is the same
            // arithmetic (up to float rounding, see `run_top_f32`), an order of magnitude faster
            // than simulating it op by op.
            runner.run_top_f32()?
        } else {
            let all_float: BTreeSet<String> = runner.layers.iter().map(|l| l.name.clone()).collect();
            runner.run_layers_grouped(&all_float)?
        };
        runner.float_ref = RwLock::new(float_ref);
        Ok(runner)
    }

    /// Number of samples.
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// Sizes of the groups of samples run as one batch, in sample order.
    pub fn group_sizes(&self) -> Vec<usize> {
        self.groups.iter().map(Group::len).collect()
    }

    /// The samples in groups of at most `size`, when the top model and its all-INT8 and
    /// all-float lowerings run batches image by image ([`batch::rebatch`]); else one by one.
    fn make_groups(&self, size: usize) -> Result<Vec<Group>, SearchError> {
        let alone =
            || self.samples.iter().enumerate().map(|(s, _)| Group { samples: s..s + 1, inputs: Vec::new() }).collect();
        if size <= 1 || self.samples.len() <= 1 {
            return Ok(alone());
        }
        let all_float: BTreeSet<String> = self.layers.iter().map(|l| l.name.clone()).collect();
        for float_set in [BTreeSet::new(), all_float] {
            let (lowered, _) = self.lower_for(&float_set)?;
            if batch::rebatch(&lowered, 2).is_err() {
                return Ok(alone());
            }
        }
        if batch::rebatch(self.top, 2).is_err() {
            return Ok(alone());
        }
        let mut groups = Vec::new();
        for r in batch::group_ranges(self.samples.len(), size) {
            match batch::stack(&self.samples[r.clone()]) {
                Some(inputs) => groups.push(Group { samples: r, inputs }),
                None => return Ok(alone()),
            }
        }
        Ok(groups)
    }

    /// Where sample `s` is in `groups`: its group and its image in the group's batch.
    fn position(groups: &[Group], s: usize) -> (usize, usize) {
        let g = groups.partition_point(|gr| gr.samples.end <= s);
        (g, s - groups.get(g).map_or(s, |gr| gr.samples.start))
    }

    /// The inputs of a group: stacked, or a lone sample's own.
    fn inputs_of<'s>(&'s self, group: &'s Group) -> &'s [Tensor] {
        match group.len() {
            1 => self.samples.get(group.samples.start).map_or(&[], |s| s.as_slice()),
            _ => &group.inputs,
        }
    }

    /// `module` for a group of `n` samples (itself for one sample).
    fn for_batch(module: &Module, n: usize) -> Result<std::borrow::Cow<'_, Module>, SearchError> {
        if n == 1 {
            return Ok(std::borrow::Cow::Borrowed(module));
        }
        batch::rebatch(module, n)
            .map(std::borrow::Cow::Owned)
            .map_err(|e| SearchError::Run(format!("cannot run {n} samples as one batch: {e}")))
    }

    /// Turn the reuse of earlier results off (every evaluation simulates the whole network) or
    /// on. The results are the same either way; off is the check of that.
    pub fn set_reuse(&mut self, on: bool) {
        self.reuse = on;
        if let Ok(mut m) = self.memo.lock() {
            m.snapshots.clear();
            m.layer_cos.clear();
            m.cache = sim::SimCache::new();
        }
    }

    /// Keep every layer's float reference for the whole search (off frees a layer's once the walk
    /// has passed it). On is needed to run a second search with the same runner.
    pub fn set_keep_references(&mut self, keep: bool) {
        self.free_judged = !keep;
    }

    /// True when layer `i`'s float reference has been freed.
    fn is_released(&self, i: usize, released: usize) -> bool {
        i < released && !self.compared[i]
    }

    /// Time and reuse figures of the evaluations so far.
    pub fn stats(&self) -> RunnerStats {
        self.memo.lock().map(|m| m.stats.clone()).unwrap_or_default()
    }

    /// The lowering options for a float set.
    fn lower_for(&self, float_layers: &BTreeSet<String>) -> Result<(Module, Weights), SearchError> {
        let qtable: QTable = float_layers.iter().map(|n| (n.clone(), self.float_mode)).collect();
        let opts = LowerOptions {
            chip: self.chip,
            mode: Mode::Int8,
            asymmetric: false,
            table: Some(self.table),
            qtable: Some(&qtable),
        };
        lower_cached(&self.lower_cache, &opts).map_err(|e| SearchError::Run(e.to_string()))
    }

    /// Each layer's output value in the lowered module: the last op result named like the layer.
    fn layer_values(&self, lowered: &Module) -> Result<Vec<ValueId>, SearchError> {
        let f = &lowered.func;
        let index: HashMap<&str, usize> = self.layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        let mut out: Vec<Option<ValueId>> = vec![None; self.layers.len()];
        for op in &f.ops {
            if op.is_weight() || op.is_none() {
                continue;
            }
            for &r in &op.results {
                if let Some(&i) = index.get(f.values[r].name.as_str()) {
                    out[i] = Some(r);
                }
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.ok_or_else(|| {
                    SearchError::Run(format!("layer '{}' has no output in the lowered model", self.layers[i].name))
                })
            })
            .collect()
    }

    /// Per value signature of `lowered`, the last layer whose evaluation may read it (see
    /// [`Snapshot::needed_until`]).
    fn needed_until(&self, lowered: &Module, sig: &[u64]) -> HashMap<u64, usize> {
        let f = &lowered.func;
        let index: HashMap<&str, usize> = self.layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        let mut until: HashMap<u64, usize> = HashMap::new();
        for op in &f.ops {
            if op.is_weight() || op.is_none() {
                continue;
            }
            let owner =
                op.results.iter().find_map(|&r| index.get(f.values[r].name.as_str()).copied()).unwrap_or(usize::MAX);
            for &v in op.results.iter().chain(&op.operands) {
                let u = until.entry(sig[v]).or_insert(0);
                *u = (*u).max(owner);
            }
        }
        until
    }

    /// Evaluate a float set, reusing the tensors and layer cos of earlier evaluations.
    fn evaluate_memo(&self, float_layers: &BTreeSet<String>) -> Result<Evaluation, SearchError> {
        let mut memo = self.memo.lock().map_err(|_| SearchError::Run("runner state poisoned".into()))?;
        if !self.reuse {
            memo.snapshots.clear();
            memo.layer_cos.clear();
        }
        let t0 = Instant::now();
        let (lowered, lw) = self.lower_for(float_layers)?;
        let t1 = Instant::now();
        let sig = signature::signatures(&lowered, &lw);
        let keys = sim::CacheKeys { ops: signature::prepared_keys(&lowered, &sig), values: sig.clone() };
        let t2 = Instant::now();
        let f = &lowered.func;
        let layer_vals = self.layer_values(&lowered)?;
        let n_layers = self.layers.len();
        // Freed layers are not judged any more: their cos is NaN, not computed.
        let released = self.released.load(Ordering::Acquire);
        let unjudged = Arc::new(vec![f64::NAN; self.samples.len()]);
        let known: Vec<Option<Arc<Vec<f64>>>> = (0..n_layers)
            .map(|i| match self.is_released(i, released) {
                true => Some(unjudged.clone()),
                false => memo.layer_cos.get(&(i, sig[layer_vals[i]])).cloned(),
            })
            .collect();
        let mut wanted = vec![false; f.values.len()];
        for i in 0..n_layers {
            if known[i].is_none() {
                wanted[layer_vals[i]] = true;
            }
        }
        let n_ops = f.ops.iter().filter(|op| !op.is_weight() && !op.is_none()).count();
        // Only the assignment this one starts from (the largest evaluated subset) is kept from
        // here on, and only it can hold this one's values: the other one differs in a layer this
        // one does not have in float, so everything downstream of that layer differs too. Drop
        // it before simulating, so that two sets of tensors, not three, are alive at the peak.
        let base = memo
            .snapshots
            .iter()
            .enumerate()
            .filter(|(_, snap)| snap.float_set.is_subset(float_layers))
            .max_by_key(|(_, snap)| snap.float_set.len())
            .map(|(i, _)| i);
        let base = base.map(|i| memo.snapshots.swap_remove(i));
        memo.snapshots.clear();
        memo.snapshots.extend(base);
        for snap in &mut memo.snapshots {
            snap.prune(released);
        }
        let snapshots = &memo.snapshots;
        let float_ref = self.float_ref.read().map_err(|_| SearchError::Run("runner state poisoned".into()))?;
        // The lowered module and its cache keys for each group size (the op keys depend on the
        // types, which carry the batch size).
        let sizes: BTreeSet<usize> = self.groups.iter().map(Group::len).collect();
        let mut batched: HashMap<usize, (std::borrow::Cow<'_, Module>, sim::CacheKeys)> = HashMap::new();
        for &n in &sizes {
            let m = Self::for_batch(&lowered, n)?;
            let k = match n {
                1 => keys.clone(),
                _ => sim::CacheKeys { ops: signature::prepared_keys(&m, &sig), values: sig.clone() },
            };
            batched.insert(n, (m, k));
        }
        type GroupOut = (HashMap<u64, Arc<SimTensor>>, usize);
        let per_group: Vec<GroupOut> = self
            .groups
            .par_iter()
            .enumerate()
            .map(|(g, group)| -> Result<GroupOut, SearchError> {
                let (m, keys) = batched
                    .get(&group.len())
                    .ok_or_else(|| SearchError::Run(format!("no module for {} samples", group.len())))?;
                let seeds: Vec<Option<Arc<SimTensor>>> =
                    sig.iter().map(|h| snapshots.iter().find_map(|snap| snap.values[g].get(h).cloned())).collect();
                let computed = sim::run_seeded_keyed(m, &lw, self.inputs_of(group), &seeds, &wanted, &memo.cache, keys)
                    .map_err(|e| SearchError::Run(e.to_string()))?;
                let ran = f
                    .ops
                    .iter()
                    .filter(|op| !op.is_weight() && !op.is_none() && op.results.iter().any(|&r| computed[r].is_some()))
                    .count();
                let mut values = HashMap::new();
                for (v, t) in computed.into_iter().enumerate() {
                    if let Some(t) = t.or_else(|| seeds[v].clone()) {
                        values.insert(sig[v], t);
                    }
                }
                Ok((values, ran * group.len()))
            })
            .collect::<Result<_, _>>()?;
        // The cos of every layer not known yet, a few images of a group at a time.
        let units: Vec<(usize, usize, usize)> = (0..n_layers)
            .filter(|&i| known[i].is_none())
            .flat_map(|i| {
                self.groups
                    .iter()
                    .enumerate()
                    .flat_map(move |(g, group)| (0..group.len()).step_by(COS_IMAGES).map(move |k0| (i, g, k0)))
            })
            .collect();
        let unit_cos: Vec<Vec<f64>> = units
            .par_iter()
            .map(|&(i, g, k0)| -> Result<Vec<f64>, SearchError> {
                let group = &self.groups[g];
                let k1 = (k0 + COS_IMAGES).min(group.len());
                let t = per_group[g]
                    .0
                    .get(&sig[layer_vals[i]])
                    .ok_or_else(|| SearchError::Run(format!("layer '{}' was not computed", self.layers[i].name)))?;
                let mut deq = None;
                let cos = (k0..k1).map(|k| {
                    let (rg, rk) = Self::position(&self.ref_groups, group.samples.start + k);
                    reference::cos_in_batch(&float_ref[rg][i], rk, t, k, group.len(), &mut deq)
                });
                Ok(cos.collect())
            })
            .collect::<Result<_, _>>()?;
        let mut computed_cos: Vec<Vec<f64>> = vec![Vec::new(); n_layers];
        for (&(i, _, _), c) in units.iter().zip(unit_cos) {
            computed_cos[i].extend(c);
        }
        // Per layer, the cos of every sample (known or just computed).
        let mut layer_sample_cos: Vec<Arc<Vec<f64>>> = Vec::with_capacity(n_layers);
        for (i, computed) in computed_cos.into_iter().enumerate() {
            let c = match &known[i] {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(computed);
                    memo.layer_cos.insert((i, sig[layer_vals[i]]), c.clone());
                    c
                }
            };
            layer_sample_cos.push(c);
        }
        let ran: usize = per_group.iter().map(|p| p.1).sum();
        let values: Vec<HashMap<u64, Arc<SimTensor>>> = per_group.into_iter().map(|p| p.0).collect();
        drop(batched);
        drop(float_ref);
        // Keep the assignment this one started from and this one.
        if self.reuse {
            let mut snap =
                Snapshot { float_set: float_layers.clone(), values, needed_until: self.needed_until(&lowered, &sig) };
            snap.prune(released);
            memo.snapshots.push(snap);
        } else {
            memo.snapshots.clear();
            memo.layer_cos.clear();
        }
        let t3 = Instant::now();
        let st = &mut memo.stats;
        st.evaluations += 1;
        st.lower += t1 - t0;
        st.signatures += t2 - t1;
        st.simulate += t3 - t2;
        st.ops_run += ran;
        st.ops_reused += n_ops * self.samples.len() - ran;

        // The same sums, in the same order, as a full evaluation.
        let n = self.samples.len().max(1) as f64;
        let mut layer_cos = vec![0.0; n_layers];
        let mut network_cos = 0.0;
        let index: HashMap<&str, usize> = self.layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        #[allow(clippy::needless_range_loop)]
        for s in 0..self.samples.len() {
            for i in 0..n_layers {
                layer_cos[i] += layer_sample_cos[i][s] / n;
            }
            for (name, rate) in &self.compare {
                if let Some(&i) = index.get(name.as_str()) {
                    network_cos += rate * layer_sample_cos[i][s] / n;
                }
            }
        }
        Ok(Evaluation { layer_cos, network_cos })
    }

    /// Every layer's output of the top model run by the F32 interpreter, per group of samples. The ops run
    /// one by one ([`Interpreter::eval_op`], the arithmetic of a whole run) so that each layer's
    /// output tensor becomes its reference without a copy. The 3x3 convolutions run as Winograd
    /// convolutions ([`Interpreter::set_fast_conv`], about a quarter less time): the references
    /// move at float rounding level, tiny-yolov3's layer cos on 30 images by at most 2e-9 (the
    /// search's table, its order and every cos to 6 digits unchanged).
    fn run_top_f32(&self) -> Result<Vec<Vec<RefLayer>>, SearchError> {
        let f = &self.top.func;
        let index: HashMap<&str, usize> = self.layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        // Per value: the layer it is the output of, and the last op reading it.
        let layer_of: Vec<Option<usize>> = f.values.iter().map(|v| index.get(v.name.as_str()).copied()).collect();
        let mut last_use = vec![None; f.values.len()];
        for (i, op) in f.ops.iter().enumerate() {
            for &v in &op.operands {
                last_use[v] = Some(i);
            }
        }
        let arg_index: HashMap<ValueId, usize> = f.args.iter().enumerate().map(|(k, &a)| (a, k)).collect();
        // Per layer: the layer it is the LeakyRelu of, and the slope (its reference may share
        // that layer's values, see `RefLayer::leaky_of`).
        let mut leaky_of: Vec<Option<(usize, f32)>> = vec![None; self.layers.len()];
        for op in &f.ops {
            if op.kind != "top.LeakyRelu" || op.results.len() != 1 {
                continue;
            }
            let (Some(&x), Some(j)) = (op.operands.first(), layer_of[op.results[0]]) else { continue };
            if let (Some(i), Ok(alpha)) = (layer_of[x], op.attr_f64("alpha")) {
                leaky_of[j] = Some((i, alpha as f32));
            }
        }
        // The top model and its interpreter for each group size.
        let sizes: BTreeSet<usize> = self.ref_groups.iter().map(Group::len).collect();
        let tops: Vec<(usize, std::borrow::Cow<'_, Module>)> =
            sizes.iter().map(|&n| Ok((n, Self::for_batch(self.top, n)?))).collect::<Result<_, SearchError>>()?;
        let mut interps = HashMap::new();
        for (n, top) in &tops {
            let mut interp = Interpreter::new(top, self.weights).map_err(|e| SearchError::Run(e.to_string()))?;
            interp.set_fast_conv(true);
            interps.insert(*n, interp);
        }
        // Groups in parallel: the interpreter's own parallelism leaves cores idle on the small
        // layers at the end of the network.
        self.ref_groups
            .par_iter()
            .map(|group| {
                let n = group.len();
                let interp =
                    interps.get(&n).ok_or_else(|| SearchError::Run(format!("no interpreter for {n} samples")))?;
                let inputs = self.inputs_of(group);
                let mut env: Vec<Option<Tensor>> = (0..f.values.len()).map(|_| None).collect();
                for (i, op) in f.ops.iter().enumerate() {
                    if op.is_weight() || op.is_none() {
                        continue;
                    }
                    let operands: Vec<Option<&Tensor>> = op
                        .operands
                        .iter()
                        .map(|v| env[*v].as_ref().or_else(|| arg_index.get(v).and_then(|&k| inputs.get(k))))
                        .collect();
                    let results = interp.eval_op(i, &operands).map_err(|e| SearchError::Run(e.to_string()))?;
                    for (&r, t) in op.results.iter().zip(results) {
                        if last_use[r].is_some() || layer_of[r].is_some() {
                            env[r] = Some(t);
                        }
                    }
                    // Values no later op reads and no layer keeps are freed.
                    for &v in &op.operands {
                        if last_use[v] == Some(i) && layer_of[v].is_none() {
                            env[v] = None;
                        }
                    }
                }
                let mut out: Vec<Option<RefLayer>> = (0..self.layers.len()).map(|_| None).collect();
                let mut leaky: Vec<(usize, usize, f32, Tensor)> = Vec::new();
                for (v, t) in env.into_iter().enumerate() {
                    if let (Some(i), Some(t)) = (layer_of[v], t) {
                        match leaky_of[i] {
                            Some((source, alpha)) => leaky.push((i, source, alpha, t)),
                            None => out[i] = Some(RefLayer::new(t, n)),
                        }
                    }
                }
                for (i, source, alpha, t) in leaky {
                    out[i] = Some(match &out[source] {
                        Some(src) => RefLayer::leaky_of(src, alpha, t),
                        None => RefLayer::new(t, n),
                    });
                }
                self.every_layer(out, "was not computed")
            })
            .collect()
    }

    /// Every layer's item of `out` (layer order), or an error naming the first layer without one
    /// and `why` it has none.
    fn every_layer<T>(&self, out: Vec<Option<T>>, why: &str) -> Result<Vec<T>, SearchError> {
        out.into_iter()
            .enumerate()
            .map(|(i, t)| t.ok_or_else(|| SearchError::Run(format!("layer '{}' {why}", self.layers[i].name))))
            .collect()
    }

    /// Lower with `float_layers` in the float mode and return per group the f32 view of every
    /// layer's output (layer order), each group's samples simulated as one batch.
    fn run_layers_grouped(&self, float_layers: &BTreeSet<String>) -> Result<Vec<Vec<RefLayer>>, SearchError> {
        let (lowered, lw) = self.lower_for(float_layers)?;
        let index: HashMap<&str, usize> = self.layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        let sizes: BTreeSet<usize> = self.ref_groups.iter().map(Group::len).collect();
        let modules: HashMap<usize, std::borrow::Cow<'_, Module>> =
            sizes.iter().map(|&n| Ok((n, Self::for_batch(&lowered, n)?))).collect::<Result<_, SearchError>>()?;
        self.ref_groups
            .par_iter()
            .map(|group| {
                let n = group.len();
                let m = modules.get(&n).ok_or_else(|| SearchError::Run(format!("no module for {n} samples")))?;
                let mut out: Vec<Option<RefLayer>> = (0..self.layers.len()).map(|_| None).collect();
                sim::run_observe(m, &lw, self.inputs_of(group), &mut |name, t| {
                    if let Some(&i) = index.get(name) {
                        out[i] = Some(RefLayer::new(t.dequantize(), n));
                    }
                })
                .map_err(|e| SearchError::Run(e.to_string()))?;
                self.every_layer(out, "has no output in the lowered model")
            })
            .collect()
    }

    /// Lower with `float_layers` in the float mode and return per sample the f32 view of every
    /// layer's output (layer order).
    fn run_layers(&self, float_layers: &BTreeSet<String>) -> Result<Vec<Vec<Tensor>>, SearchError> {
        let (lowered, lw) = self.lower_for(float_layers)?;
        let index: HashMap<&str, usize> = self.layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        self.samples
            .par_iter()
            .map(|inputs| {
                let mut out: Vec<Option<Tensor>> = vec![None; self.layers.len()];
                sim::run_observe(&lowered, &lw, inputs, &mut |name, t| {
                    if let Some(&i) = index.get(name) {
                        out[i] = Some(t.dequantize());
                    }
                })
                .map_err(|e| SearchError::Run(e.to_string()))?;
                self.every_layer(out, "has no output in the lowered model")
            })
            .collect()
    }
}

impl MixedRunner for SimRunner<'_> {
    fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    fn evaluate(&self, float_layers: &BTreeSet<String>) -> Result<Evaluation, SearchError> {
        self.evaluate_memo(float_layers)
    }

    fn judged_before(&self, index: usize) {
        if !self.free_judged {
            return;
        }
        let from = self.released.load(Ordering::Acquire);
        let upto = index.min(self.layers.len());
        if upto <= from {
            return;
        }
        if let Ok(mut refs) = self.float_ref.write() {
            for (group, layers) in self.ref_groups.iter().zip(refs.iter_mut()) {
                for (r, &compared) in layers[from..upto].iter_mut().zip(&self.compared[from..upto]) {
                    if !compared {
                        *r = RefLayer::released(group.len());
                    }
                }
            }
            self.released.store(upto, Ordering::Release);
        }
    }
}

impl SimRunner<'_> {
    /// The straightforward evaluation (whole network simulated, every f32 layer output kept):
    /// the definition [`MixedRunner::evaluate`] must equal; for tests.
    pub fn evaluate_plain(&self, float_layers: &BTreeSet<String>) -> Result<Evaluation, SearchError> {
        let outs = self.run_layers(float_layers)?;
        let float_ref = self.float_ref.read().map_err(|_| SearchError::Run("runner state poisoned".into()))?;
        let released = self.released.load(Ordering::Acquire);
        let n = outs.len().max(1) as f64;
        let mut layer_cos = vec![0.0; self.layers.len()];
        let mut network_cos = 0.0;
        let index: HashMap<&str, usize> = self.layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        for (s, out) in outs.iter().enumerate() {
            let (g, k) = Self::position(&self.ref_groups, s);
            for (i, t) in out.iter().enumerate() {
                if self.is_released(i, released) {
                    layer_cos[i] = f64::NAN;
                    continue;
                }
                let r = float_ref[g][i].image(k);
                layer_cos[i] += cos_sim(t.as_slice().unwrap_or(&[]), &r) / n;
            }
            for (name, rate) in &self.compare {
                if let Some(&i) = index.get(name.as_str()) {
                    let r = float_ref[g][i].image(k);
                    network_cos += rate * cos_sim(out[i].as_slice().unwrap_or(&[]), &r) / n;
                }
            }
        }
        Ok(Evaluation { layer_cos, network_cos })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::cache::tests::asset;

    fn yolo() -> (Module, Weights, CaliMap, Vec<Vec<Tensor>>) {
        let (top, w, table) = crate::lower::cache::tests::tiny_yolov3_with_table();
        let x = crate::npz::read_f32_map(&asset("reference/tiny-yolov3/yolov3_tiny_in_f32.npz")).unwrap()[0].1.clone();
        // A second sample: the image mirrored.
        let mut y = x.clone();
        y.invert_axis(ndarray::Axis(3));
        let y = y.as_standard_layout().to_owned();
        (top, w, table, vec![vec![x], vec![y]])
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn samples_load_in_order_and_the_first_failure_is_reported() {
        let pp = crate::preprocess::tests::tiny_yolov3_cfg();
        let opts = crate::onnx::ImportOptions {
            model_name: "yolov3_tiny".into(),
            input_shapes: Some(vec![vec![1, 3, 416, 416]]),
            output_names: vec!["convolution_output1".into(), "convolution_output".into()],
            preprocess: Some(pp),
        };
        let (top, _) = crate::onnx::import(&asset("models/tiny-yolov3-11.onnx"), &opts).unwrap();
        let loader = InputLoader::new(&top).unwrap();
        let mut dataset = crate::calibration::select_dataset(&asset("images/COCO2017"), 4).unwrap();
        let one_by_one: Vec<Vec<Tensor>> =
            dataset.samples.iter().map(|f| loader.load(dataset.kind, f).unwrap()).collect();
        assert_eq!(load_samples(&loader, &dataset).unwrap(), one_by_one);
        let missing = |n: &str| asset("images/COCO2017").join(n);
        dataset.samples[1] = vec![missing("no_such_1.jpg")];
        dataset.samples[3] = vec![missing("no_such_3.jpg")];
        let err = load_samples(&loader, &dataset).unwrap_err().to_string();
        let first = loader.load(dataset.kind, &dataset.samples[1]).unwrap_err().to_string();
        assert_eq!(err, first);
        assert!(err.contains("no_such_1.jpg"), "{err}");
    }

    #[test]
    fn reuse_gives_exactly_the_full_evaluation() {
        let (top, w, table, samples) = yolo();
        // Both samples in one batch.
        let runner =
            SimRunner::with_group_size(&top, &w, &table, Chip::Bm1684x, Mode::F32, samples, Vec::new(), 2).unwrap();
        assert_eq!(runner.group_sizes(), vec![2]);
        // The search's pattern: a kept trial, a trial from it (then taken as rejected), and one
        // more from the kept set, changing a layer upstream of the earlier changes.
        let sets = [
            set(&[]),
            set(&["conv2d_2_Conv", "leaky_re_lu_2_LeakyRelu"]),
            set(&["conv2d_2_Conv", "leaky_re_lu_2_LeakyRelu", "conv2d_7_Conv", "leaky_re_lu_7_LeakyRelu"]),
            set(&["conv2d_1_Conv", "conv2d_2_Conv", "leaky_re_lu_2_LeakyRelu"]),
        ];
        let mut before = Vec::new();
        for s in &sets {
            let reused = runner.evaluate(s).unwrap();
            let plain = runner.evaluate_plain(s).unwrap();
            assert_eq!(reused, plain, "float set {s:?}");
            before.push(reused);
        }
        let st = runner.stats();
        assert_eq!(st.evaluations, sets.len());
        // Once the walk has passed the first 4 layers their references are freed: their cos is
        // NaN, every other figure is unchanged (the outputs are never freed).
        runner.judged_before(4);
        for (s, b) in sets.iter().zip(&before) {
            for after in [runner.evaluate(s).unwrap(), runner.evaluate_plain(s).unwrap()] {
                assert_eq!(after.network_cos.to_bits(), b.network_cos.to_bits(), "float set {s:?}");
                for (i, c) in after.layer_cos.iter().enumerate() {
                    assert_eq!(c.is_nan(), i < 4, "layer {i}: {c}");
                }
                assert_eq!(after.layer_cos[4..], b.layer_cos[4..], "float set {s:?}");
            }
        }
        // Every trial after the first reuses at least the ops before conv2d_2 on both samples.
        assert!(st.ops_reused >= 2 * 4 * (sets.len() - 1), "{st:?}");
    }
}
