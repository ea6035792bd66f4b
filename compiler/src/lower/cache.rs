//! A memo of the INT8 convolution weight quantization across lowerings of one top model.
//!
//! The mixed-precision search lowers the same model once per trial, each time with a few layers in
//! float; quantizing every filter again costs most of a lowering. A convolution's quantized filter,
//! bias, multipliers and shifts depend only on its weights, the chip family and the input and
//! output quantization, so [`LowerCache`] keeps them under exactly that key and a lowering with the
//! cache ([`super::lower_cached`]) gives the same module and weights as one without.

use crate::ir::weights::Weights;
use crate::ir::Module;
use ndarray::ArrayD;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What an INT8 convolution's quantization depends on besides its weights.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ConvKey {
    /// The top op's name (it names its weights in the top module).
    pub op: String,
    /// The names of its filter and bias weights.
    pub weights: Vec<String>,
    /// CV18xx (QDM) or BM168x (MultiplierShift) arithmetic.
    pub cv18xx: bool,
    /// Input scale (bits of the f64) and zero point.
    pub s_in: u64,
    pub zp_in: i64,
    /// Output scale (bits of the f64).
    pub s_out: u64,
}

/// The quantized weights and requantization of one INT8 convolution.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuantizedConv {
    /// int8 filter, in the top filter's shape.
    pub filter: ArrayD<i8>,
    /// int32 bias per output channel (all 0 without bias and input zero point).
    pub bias: Vec<i32>,
    /// Requantization multiplier per output channel.
    pub multiplier: Vec<i64>,
    /// Requantization right shift per output channel.
    pub rshift: Vec<i64>,
}

/// Quantized convolution weights kept between lowerings of one top model (see the module doc).
/// It borrows the model, so it cannot be used with another one.
pub struct LowerCache<'a> {
    top: &'a Module,
    weights: &'a Weights,
    convs: Mutex<HashMap<ConvKey, Arc<QuantizedConv>>>,
}

impl<'a> LowerCache<'a> {
    /// An empty cache for the top model `top` with its weights.
    pub fn new(top: &'a Module, weights: &'a Weights) -> Self {
        LowerCache { top, weights, convs: Mutex::new(HashMap::new()) }
    }

    /// The top model the cache belongs to.
    pub fn top(&self) -> &'a Module {
        self.top
    }

    /// The top model's weights.
    pub fn weights(&self) -> &'a Weights {
        self.weights
    }

    /// Number of quantized convolutions held.
    pub fn len(&self) -> usize {
        self.convs.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The quantization kept under `key`.
    pub(crate) fn get(&self, key: &ConvKey) -> Option<Arc<QuantizedConv>> {
        self.convs.lock().ok()?.get(key).cloned()
    }

    /// Keep a quantization.
    pub(crate) fn insert(&self, key: ConvKey, q: Arc<QuantizedConv>) {
        if let Ok(mut c) = self.convs.lock() {
            c.insert(key, q);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::{lower, lower_cached, Chip, LowerOptions, Mode, QTable};
    use super::*;
    use crate::calibration::CalibrationTable;
    use crate::lower::calib::cali_map_from_table;
    use std::path::PathBuf;

    /// A file under the bundled assets.
    pub(crate) fn asset(p: &str) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/")).join(p)
    }

    /// tiny-yolov3 imported as the walkthrough does (no preprocessing), with tpu-mlir's
    /// calibration table; shared with the search runner's tests.
    pub(crate) fn tiny_yolov3_with_table() -> (Module, Weights, crate::lower::CaliMap) {
        let opts = crate::onnx::ImportOptions {
            model_name: "yolov3_tiny".into(),
            input_shapes: Some(vec![vec![1, 3, 416, 416]]),
            output_names: vec!["convolution_output1".into(), "convolution_output".into()],
            preprocess: None,
        };
        let (top, w) = crate::onnx::import(&asset("models/tiny-yolov3-11.onnx"), &opts).unwrap();
        let text = std::fs::read_to_string(asset("reference/tiny-yolov3/tpu-mlir/yolov3_cali_table")).unwrap();
        (top, w, cali_map_from_table(&CalibrationTable::parse(&text).unwrap()))
    }

    #[test]
    fn cached_lowering_equals_a_fresh_one() {
        let (top, w, table) = tiny_yolov3_with_table();
        let qtable = |mode: Mode, names: &[&str]| -> QTable { names.iter().map(|n| (n.to_string(), mode)).collect() };
        for (chip, float, asymmetric) in
            [(Chip::Bm1684x, Mode::F32, false), (Chip::Bm1684x, Mode::F16, true), (Chip::Cv183x, Mode::BF16, false)]
        {
            let cache = LowerCache::new(&top, &w);
            // All INT8; two convolutions (and what reads them) in float; the first again.
            let tables = [
                qtable(float, &[]),
                qtable(float, &["conv2d_2_Conv", "leaky_re_lu_2_LeakyRelu", "conv2d_9_Conv"]),
                qtable(float, &[]),
            ];
            let mut held = Vec::new();
            for qt in &tables {
                let o = LowerOptions { chip, mode: Mode::Int8, asymmetric, table: Some(&table), qtable: Some(qt) };
                let fresh = lower(&top, &w, &o).unwrap();
                let cached = lower_cached(&cache, &o).unwrap();
                assert!(cached == fresh, "{chip:?} {qt:?}");
                held.push(cache.len());
            }
            // Every INT8 convolution was quantized once, by the first lowering: the later ones
            // found all theirs in the cache.
            assert_eq!(held, vec![13, 13, 13], "{chip:?}");
        }
    }
}
