//! Mixed-precision search (`run_qtable`): which layers must stay in float, and why.
//!
//! The algorithm is tpu-mlir's run_qtable (flow reference 3.3), as the walkthrough document
//! describes it: the whole-network INT8 cos first; then the layers in order, each judged by the cos
//! of its INT8 output (its predecessors as already decided) against the float model; a layer under
//! `min_layer_cos` is set to float with its immediate successors, the network cos is recomputed, and
//! the change is kept only if it raises the network cos (tpu-mlir keeps any change that is not
//! below the all-INT8 cos; a change that lowers the current cos only costs size). The search stops once the network
//! cos exceeds `expected_cos` or too many layers are float.
//!
//! The model evaluation is behind [`MixedRunner`], so the algorithm is tested on its own and the
//! real runner ([`runner`]) lowers and simulates the chip's arithmetic.

pub mod plot;
pub mod report;
pub mod runner;

use std::collections::BTreeSet;

/// Errors of the search.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The model could not be lowered or run for some float set.
    #[error("{0}")]
    Run(String),
    /// Bad search parameters.
    #[error("{0}")]
    Config(String),
}

/// One searchable layer of the top graph.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// Layer name (`conv2d_1_Conv`).
    pub name: String,
    /// Short op kind (`Conv`, `LeakyRelu`, ...).
    pub kind: String,
    /// Immediate consumers among the layers, in program order.
    pub successors: Vec<String>,
    /// Direct producers among the layers.
    pub predecessors: Vec<String>,
}

/// The cos of every layer and of the network for one precision assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Per layer (same order as [`MixedRunner::layers`]): mean over samples of
    /// `cos_sim(layer output in this assignment, float layer output)`.
    pub layer_cos: Vec<f64>,
    /// Network cos: output-weighted mean of `cos_sim`, averaged over samples.
    pub network_cos: f64,
}

/// Evaluates a model with a given set of layers in float mode.
pub trait MixedRunner {
    /// The layers in program order.
    fn layers(&self) -> &[LayerInfo];
    /// Run every sample with `float_layers` in the float mode and every other layer in INT8.
    fn evaluate(&self, float_layers: &BTreeSet<String>) -> Result<Evaluation, SearchError>;
    /// The walk will not judge the layers before `index` again nor read their cos, so a runner
    /// may free what only their cos needs (the float reference of the early, large layers);
    /// their cos in later evaluations may then be NaN. By default everything is kept.
    fn judged_before(&self, _index: usize) {}
}

/// Search parameters (tpu-mlir's flags).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchParams {
    /// Stop once the network cos exceeds this.
    pub expected_cos: f64,
    /// A layer under this cos is tried in float.
    pub min_layer_cos: f64,
}

/// Layer kinds never judged on their own (they only move or reorder data).
pub const SKIPPED_KINDS: &[&str] = &["Input", "Reshape", "Softmax", "Weight", "Slice", "Tile", "Permute", "Upsample"];

/// What happened at one step of the search, for the report and the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// The layer whose cos triggered the trial.
    pub layer: String,
    /// Layers set to float in this trial (the layer and its successors).
    pub added: Vec<String>,
    /// Network cos with them in float.
    pub network_cos: f64,
    /// Whether the change was kept.
    pub kept: bool,
    /// Number of float layers after the trial.
    pub float_count: usize,
}

/// The outcome of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResult {
    /// Network cos with every layer in INT8.
    pub int8_cos: f64,
    /// Network cos of the final mixed assignment.
    pub mixed_cos: f64,
    /// `(layer, cos)` for every judged layer, in walk order.
    pub losses: Vec<(String, f64)>,
    /// Float layers in the order they were added.
    pub float_layers: Vec<String>,
    /// Every trial in order.
    pub trials: Vec<Trial>,
    /// True when INT8 already met `expected_cos` (nothing searched, no table needed).
    pub int8_enough: bool,
    /// True when the search stopped because the network cos exceeded `expected_cos`.
    pub reached: bool,
}

/// Run the search of flow reference 3.3. `progress(layer_index, layer_name, best_cos)` is
/// called as each layer is examined.
pub fn search(
    runner: &dyn MixedRunner,
    params: &SearchParams,
    progress: &mut dyn FnMut(usize, &str, f64),
) -> Result<SearchResult, SearchError> {
    let layers = runner.layers().to_vec();
    let mut float_set: BTreeSet<String> = BTreeSet::new();
    let mut float_order: Vec<String> = Vec::new();
    let int8 = runner.evaluate(&float_set)?;
    let int8_cos = int8.network_cos;
    let mut result = SearchResult {
        int8_cos,
        mixed_cos: int8_cos,
        losses: Vec::new(),
        float_layers: Vec::new(),
        trials: Vec::new(),
        int8_enough: false,
        reached: false,
    };
    if int8_cos > params.expected_cos {
        result.int8_enough = true;
        return Ok(result);
    }
    let max_float = layers.len() / 4;
    let mut current = int8;
    let mut best_cos = int8_cos;
    for (i, layer) in layers.iter().enumerate() {
        runner.judged_before(i);
        progress(i, &layer.name, best_cos);
        if float_set.contains(&layer.name) {
            continue;
        }
        if SKIPPED_KINDS.contains(&layer.kind.as_str()) {
            // A data-movement layer after a float producer follows it into float.
            if layer.predecessors.iter().any(|p| float_set.contains(p)) {
                float_set.insert(layer.name.clone());
                float_order.push(layer.name.clone());
            }
            continue;
        }
        let cos = current.layer_cos[i];
        result.losses.push((layer.name.clone(), cos));
        if cos >= params.min_layer_cos {
            continue;
        }
        let mut added = Vec::new();
        for name in std::iter::once(&layer.name).chain(layer.successors.iter()) {
            if !float_set.contains(name) && !added.contains(name) {
                added.push(name.clone());
            }
        }
        let mut trial_set = float_set.clone();
        trial_set.extend(added.iter().cloned());
        let eval = runner.evaluate(&trial_set)?;
        // Keep the change only if it helps: the network must get closer to float than it is now.
        let kept = eval.network_cos > best_cos;
        result.trials.push(Trial {
            layer: layer.name.clone(),
            added: added.clone(),
            network_cos: eval.network_cos,
            kept,
            float_count: if kept { trial_set.len() } else { float_set.len() },
        });
        if !kept {
            continue;
        }
        float_set = trial_set;
        float_order.extend(added);
        best_cos = eval.network_cos;
        current = eval;
        if best_cos > params.expected_cos {
            result.reached = true;
            break;
        }
        if float_set.len() > max_float {
            break;
        }
    }
    result.mixed_cos = best_cos;
    result.float_layers = float_order;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A runner whose layer cos is fixed per layer and whose network cos rises by a fixed gain
    /// for every float layer.
    struct FakeRunner {
        layers: Vec<LayerInfo>,
        base_cos: Vec<f64>,
        gains: Vec<f64>,
        calls: RefCell<usize>,
    }

    impl MixedRunner for FakeRunner {
        fn layers(&self) -> &[LayerInfo] {
            &self.layers
        }
        fn evaluate(&self, float_layers: &BTreeSet<String>) -> Result<Evaluation, SearchError> {
            *self.calls.borrow_mut() += 1;
            let mut net = 0.999;
            for (i, l) in self.layers.iter().enumerate() {
                if float_layers.contains(&l.name) {
                    net += self.gains[i];
                }
            }
            let layer_cos = self
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| if float_layers.contains(&l.name) { 1.0 } else { self.base_cos[i] })
                .collect();
            Ok(Evaluation { layer_cos, network_cos: net })
        }
    }

    fn chain(kinds: &[&str]) -> Vec<LayerInfo> {
        (0..kinds.len())
            .map(|i| LayerInfo {
                name: format!("l{i}_{}", kinds[i]),
                kind: kinds[i].to_string(),
                successors: if i + 1 < kinds.len() { vec![format!("l{}_{}", i + 1, kinds[i + 1])] } else { vec![] },
                predecessors: if i > 0 { vec![format!("l{}_{}", i - 1, kinds[i - 1])] } else { vec![] },
            })
            .collect()
    }

    #[test]
    fn int8_good_enough_stops_before_searching() {
        let r = FakeRunner {
            layers: chain(&["Conv", "LeakyRelu"]),
            base_cos: vec![0.9, 0.9],
            gains: vec![0.0, 0.0],
            calls: RefCell::new(0),
        };
        let p = SearchParams { expected_cos: 0.99, min_layer_cos: 0.999 };
        let res = search(&r, &p, &mut |_, _, _| {}).unwrap();
        assert!(res.int8_enough);
        assert!(res.float_layers.is_empty());
        assert_eq!(*r.calls.borrow(), 1);
    }

    #[test]
    fn bad_layer_and_successor_go_float_and_harmful_change_is_undone() {
        // l1 is bad and helps (+0.0002 each for l1 and l2), l4 is bad but hurts (-0.001).
        let kinds = ["Conv", "Conv", "LeakyRelu", "Conv", "Conv", "LeakyRelu", "Conv", "Conv"];
        let r = FakeRunner {
            layers: chain(&kinds),
            base_cos: vec![0.9999, 0.99, 0.9995, 0.9999, 0.98, 0.9999, 0.9999, 0.9999],
            gains: vec![0.0, 0.0002, 0.0002, 0.0, -0.001, 0.0, 0.0, 0.0],
            calls: RefCell::new(0),
        };
        let p = SearchParams { expected_cos: 0.99999, min_layer_cos: 0.999 };
        let res = search(&r, &p, &mut |_, _, _| {}).unwrap();
        assert_eq!(res.float_layers, vec!["l1_Conv".to_string(), "l2_LeakyRelu".to_string()]);
        assert_eq!(res.trials.len(), 2);
        assert!(res.trials[0].kept);
        assert!(!res.trials[1].kept);
        assert!((res.mixed_cos - 0.9994).abs() < 1e-12);
        assert!(!res.reached);
        // l2's cos is not judged again once it is float; the losses list holds the judged layers.
        let judged: Vec<&str> = res.losses.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(judged, vec!["l0_Conv", "l1_Conv", "l3_Conv", "l4_Conv", "l5_LeakyRelu", "l6_Conv", "l7_Conv"]);
    }

    #[test]
    fn stops_when_expected_cos_is_reached() {
        let kinds = ["Conv", "LeakyRelu", "Conv", "LeakyRelu"];
        let r = FakeRunner {
            layers: chain(&kinds),
            base_cos: vec![0.99, 0.99, 0.99, 0.99],
            gains: vec![0.0006, 0.0, 0.0006, 0.0],
            calls: RefCell::new(0),
        };
        let p = SearchParams { expected_cos: 0.9995, min_layer_cos: 0.999 };
        let res = search(&r, &p, &mut |_, _, _| {}).unwrap();
        assert!(res.reached);
        assert_eq!(res.float_layers, vec!["l0_Conv".to_string(), "l1_LeakyRelu".to_string()]);
        assert_eq!(*r.calls.borrow(), 2);
    }
}
