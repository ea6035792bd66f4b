//! Lowering of the top IR to the tpu level (tpu-mlir's `--import-calibration-table`,
//! `--convert-top-to-tpu`): INT8 per chip family, F32 / F16 / BF16, per-layer mixed precision from
//! a qtable, and `tpu.Cast` insertion at every precision boundary. The op vocabulary and its exact
//! integer semantics are in `lower/TPU_OPS.md`.

pub mod cache;
pub mod calib;
pub mod chip;
mod emit;
mod float_ops;
mod int8_ops;
pub mod qtable;

pub use cache::LowerCache;
pub use calib::{CaliEntry, CaliMap};
pub use chip::{Chip, Mode};
pub use qtable::{parse_qtable, QTable};

use crate::ir::weights::Weights;
use crate::ir::Module;

/// Errors of lowering; each names the op, tensor or table line concerned.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum LowerError {
    /// INT8 without a calibration table.
    #[error("INT8 lowering needs a calibration table (--calibration_table)")]
    NoCalibrationTable,
    /// The table lacks a tensor an INT8 op needs.
    #[error("calibration table has no entry for tensor '{0}' (needed by its INT8 lowering)")]
    MissingCalibration(String),
    /// A float mode the chip does not have.
    #[error("mode {mode} is not supported on {chip} (float modes: {modes})")]
    ModeNotSupported { chip: String, mode: String, modes: String },
    /// Asymmetric INT8 on CV18xx.
    #[error("asymmetric INT8 is not supported on {0} (CV18xx is symmetric only)")]
    AsymmetricNotSupported(String),
    /// A qtable line that is not `name mode`.
    #[error("quantize table line {line}: {msg}")]
    QTable { line: usize, msg: String },
    /// A qtable name that is not a layer of the model.
    #[error("quantize table names '{name}', which is not a layer of the model (closest: {closest})")]
    UnknownLayer { name: String, closest: String },
    /// A weight referenced by an op is missing from the weight store.
    #[error("op '{op}': weight '{weight}' is missing")]
    MissingWeight { op: String, weight: String },
    /// Any other problem with one op (bad attribute, unsupported configuration).
    #[error("op '{op}' ({kind}): {msg}")]
    Op { op: String, kind: String, msg: String },
}

impl LowerError {
    pub(crate) fn mode_not_supported(chip: Chip, mode: Mode) -> Self {
        LowerError::ModeNotSupported {
            chip: chip.name().into(),
            mode: mode.name().into(),
            modes: chip.float_modes().iter().map(|m| m.name()).collect::<Vec<_>>().join(", "),
        }
    }
}

/// Options of one lowering (the `model_deploy` flags that reach `--convert-top-to-tpu`).
#[derive(Debug, Clone, Copy)]
pub struct LowerOptions<'a> {
    /// Target processor.
    pub chip: Chip,
    /// Global quantization mode (`--quantize`).
    pub mode: Mode,
    /// Asymmetric INT8 (`--asymmetric`, BM1684X only).
    pub asymmetric: bool,
    /// Calibration table (required for INT8, also used for INT8 layers of a mixed model).
    pub table: Option<&'a CaliMap>,
    /// Per-layer modes (`--quantize_table`).
    pub qtable: Option<&'a QTable>,
}

/// Lower a top module (with its f32 weights) to the tpu level. Returns the lowered module (state
/// `TPU_LOWERED`) and the lowered weights (int8 filters, int32 biases, f16/bf16 patterns, f32).
pub fn lower(top: &Module, weights: &Weights, opts: &LowerOptions) -> Result<(Module, Weights), LowerError> {
    emit::lower_module(top, weights, opts, None)
}

/// [`lower`] of the cache's top model, reusing the INT8 convolution weights that earlier lowerings
/// with the same cache quantized (and keeping those it quantizes): the same module and weights as
/// `lower`, faster when the model is lowered many times with different qtables.
pub fn lower_cached(cache: &LowerCache<'_>, opts: &LowerOptions) -> Result<(Module, Weights), LowerError> {
    emit::lower_module(cache.top(), cache.weights(), opts, Some(cache))
}

/// tpu-mlir's output file prefix: `<name>_<chip>_<mode>[_sym|_asym]` (lower-case mode; the
/// `_sym`/`_asym` suffix only for INT8).
pub fn file_prefix(name: &str, chip: Chip, mode: Mode, asymmetric: bool) -> String {
    let m = mode.name().to_ascii_lowercase();
    if mode == Mode::Int8 {
        format!("{name}_{}_{m}_{}", chip.name(), if asymmetric { "asym" } else { "sym" })
    } else {
        format!("{name}_{}_{m}", chip.name())
    }
}

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod test_npz;
