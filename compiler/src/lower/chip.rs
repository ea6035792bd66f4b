//! Target chips and quantization modes of `model_deploy`.

use std::fmt;

/// A target processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chip {
    /// BM1684X (bmodel).
    Bm1684x,
    /// BM1684 (bmodel, F32 only as float mode).
    Bm1684,
    /// CV183x.
    Cv183x,
    /// CV182x.
    Cv182x,
    /// CV181x.
    Cv181x,
    /// CV180x.
    Cv180x,
}

impl Chip {
    /// Parse the `--chip` spelling (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "bm1684x" => Chip::Bm1684x,
            "bm1684" => Chip::Bm1684,
            "cv183x" => Chip::Cv183x,
            "cv182x" => Chip::Cv182x,
            "cv181x" => Chip::Cv181x,
            "cv180x" => Chip::Cv180x,
            _ => return None,
        })
    }

    /// Lower-case name as tpu-mlir writes it in file names and `module.chip`.
    pub fn name(self) -> &'static str {
        match self {
            Chip::Bm1684x => "bm1684x",
            Chip::Bm1684 => "bm1684",
            Chip::Cv183x => "cv183x",
            Chip::Cv182x => "cv182x",
            Chip::Cv181x => "cv181x",
            Chip::Cv180x => "cv180x",
        }
    }

    /// True for the CV18xx family (QDM arithmetic, signed tensors, BF16 float mode).
    pub fn is_cv18xx(self) -> bool {
        matches!(self, Chip::Cv183x | Chip::Cv182x | Chip::Cv181x | Chip::Cv180x)
    }

    /// Float modes this chip accepts as `--quantize` or in a qtable (flow reference 3.6).
    pub fn float_modes(self) -> &'static [Mode] {
        match self {
            Chip::Bm1684x => &[Mode::F32, Mode::F16, Mode::BF16],
            Chip::Bm1684 => &[Mode::F32],
            _ => &[Mode::BF16],
        }
    }

    /// The float mode used for ops without an INT8 lowering (F32 on BM, BF16 on CV18xx).
    pub fn fallback_float(self) -> Mode {
        if self.is_cv18xx() {
            Mode::BF16
        } else {
            Mode::F32
        }
    }
}

impl fmt::Display for Chip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A quantization mode of one op or of the whole model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// 8-bit integer (symmetric or asymmetric).
    Int8,
    /// float32
    F32,
    /// IEEE half
    F16,
    /// bfloat16
    BF16,
}

impl Mode {
    /// Parse `INT8`, `F32`, `F16`, `BF16` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "INT8" => Mode::Int8,
            "F32" => Mode::F32,
            "F16" => Mode::F16,
            "BF16" => Mode::BF16,
            _ => return None,
        })
    }

    /// Upper-case name (`module.mode`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Int8 => "INT8",
            Mode::F32 => "F32",
            Mode::F16 => "F16",
            Mode::BF16 => "BF16",
        }
    }

    /// Element type of a float mode.
    pub fn float_elem(self) -> Option<crate::ir::ElemType> {
        use crate::ir::ElemType;
        match self {
            Mode::F32 => Some(ElemType::F32),
            Mode::F16 => Some(ElemType::F16),
            Mode::BF16 => Some(ElemType::BF16),
            Mode::Int8 => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
