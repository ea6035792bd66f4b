//! The real [`MixedRunner`]: for a set of float layers it lowers the top model for the chip
//! (those layers in the float mode, the rest INT8, casts at the boundaries), runs the chip
//! simulator on every sample in parallel, and compares every layer and the network outputs with
//! the float model's (the chip's float mode lowered for the whole network, run once).

use super::{Evaluation, LayerInfo, MixedRunner, SearchError};
use crate::compare::cos_sim;
use crate::interp::{Interpreter, Tensor};
use crate::ir::weights::Weights;
use crate::ir::Module;
use crate::lower::{lower, CaliMap, Chip, LowerOptions, Mode, QTable};
use crate::sim;
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap};

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

/// Output comparison weights (`--global_compare_layers a:0.3,b:0.7`); empty = the network outputs
/// with equal weights.
pub type CompareLayers = Vec<(String, f64)>;

/// Lowers and simulates the model for a float set; compares against the float model.
pub struct SimRunner<'a> {
    top: &'a Module,
    weights: &'a Weights,
    table: &'a CaliMap,
    chip: Chip,
    float_mode: Mode,
    layers: Vec<LayerInfo>,
    samples: Vec<Vec<Tensor>>,
    compare: CompareLayers,
    /// Per sample, per layer: the float model's output (f32).
    float_ref: Vec<Vec<Tensor>>,
}

impl<'a> SimRunner<'a> {
    /// Prepare a runner: runs the float model once on every sample and keeps each layer's output.
    pub fn new(
        top: &'a Module,
        weights: &'a Weights,
        table: &'a CaliMap,
        chip: Chip,
        float_mode: Mode,
        samples: Vec<Vec<Tensor>>,
        compare: CompareLayers,
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
        let mut runner =
            SimRunner { top, weights, table, chip, float_mode, layers, samples, compare, float_ref: Vec::new() };
        runner.float_ref = if float_mode == Mode::F32 {
            // F32 lowering computes what the top model computes: the F32 interpreter is the same
            // arithmetic, an order of magnitude faster than simulating it op by op.
            runner.run_top_f32()?
        } else {
            let all_float: BTreeSet<String> = runner.layers.iter().map(|l| l.name.clone()).collect();
            runner.run_layers(&all_float)?
        };
        Ok(runner)
    }

    /// Number of samples.
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// Every layer's output of the top model run by the F32 interpreter, per sample.
    fn run_top_f32(&self) -> Result<Vec<Vec<Tensor>>, SearchError> {
        let interp = Interpreter::new(self.top, self.weights).map_err(|e| SearchError::Run(e.to_string()))?;
        let f = &self.top.func;
        let index: HashMap<&str, usize> = self.layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        self.samples
            .iter()
            .map(|inputs| {
                let mut out: Vec<Option<Tensor>> = vec![None; self.layers.len()];
                interp
                    .run_observe(inputs, &mut |v, t| {
                        if let Some(&i) = index.get(f.values[v].name.as_str()) {
                            out[i] = Some(t.clone());
                        }
                    })
                    .map_err(|e| SearchError::Run(e.to_string()))?;
                out.into_iter()
                    .enumerate()
                    .map(|(i, t)| {
                        t.ok_or_else(|| SearchError::Run(format!("layer '{}' was not computed", self.layers[i].name)))
                    })
                    .collect()
            })
            .collect()
    }

    /// Lower with `float_layers` in the float mode and return per sample the f32 view of every
    /// layer's output (layer order).
    fn run_layers(&self, float_layers: &BTreeSet<String>) -> Result<Vec<Vec<Tensor>>, SearchError> {
        let qtable: QTable = float_layers.iter().map(|n| (n.clone(), self.float_mode)).collect();
        let opts = LowerOptions {
            chip: self.chip,
            mode: Mode::Int8,
            asymmetric: false,
            table: Some(self.table),
            qtable: Some(&qtable),
        };
        let (lowered, lw) = lower(self.top, self.weights, &opts).map_err(|e| SearchError::Run(e.to_string()))?;
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
                out.into_iter()
                    .enumerate()
                    .map(|(i, t)| {
                        t.ok_or_else(|| {
                            SearchError::Run(format!(
                                "layer '{}' has no output in the lowered model",
                                self.layers[i].name
                            ))
                        })
                    })
                    .collect()
            })
            .collect()
    }
}

impl MixedRunner for SimRunner<'_> {
    fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    fn evaluate(&self, float_layers: &BTreeSet<String>) -> Result<Evaluation, SearchError> {
        let outs = self.run_layers(float_layers)?;
        let n = outs.len().max(1) as f64;
        let mut layer_cos = vec![0.0; self.layers.len()];
        let mut network_cos = 0.0;
        let index: HashMap<&str, usize> = self.layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        for (s, out) in outs.iter().enumerate() {
            for (i, t) in out.iter().enumerate() {
                let r = &self.float_ref[s][i];
                layer_cos[i] += cos_sim(t.as_slice().unwrap_or(&[]), r.as_slice().unwrap_or(&[])) / n;
            }
            for (name, rate) in &self.compare {
                if let Some(&i) = index.get(name.as_str()) {
                    let r = &self.float_ref[s][i];
                    network_cos += rate * cos_sim(out[i].as_slice().unwrap_or(&[]), r.as_slice().unwrap_or(&[])) / n;
                }
            }
        }
        Ok(Evaluation { layer_cos, network_cos })
    }
}
