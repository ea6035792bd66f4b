//! Tensor descriptions: element types, memory regions, operand references and network I/O.

use serde::{Deserialize, Serialize};

/// Target chip; selects the integer arithmetic of the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Chip {
    /// Sophgo BM1684X (multiplier/shift requant, F16/BF16 float modes).
    Bm1684x = 0,
    /// CV183x (QDM requant, BF16 float mode).
    Cv183x = 1,
    /// CV182x (same arithmetic as CV183x).
    Cv182x = 2,
    /// CV181x (same arithmetic as CV183x).
    Cv181x = 3,
    /// CV180x (same arithmetic as CV183x).
    Cv180x = 4,
}

impl Chip {
    /// Decode the header byte.
    pub fn from_u8(v: u8) -> Option<Chip> {
        Some(match v {
            0 => Chip::Bm1684x,
            1 => Chip::Cv183x,
            2 => Chip::Cv182x,
            3 => Chip::Cv181x,
            4 => Chip::Cv180x,
            _ => return None,
        })
    }

    /// True for the CV18xx family (QDM requant, bf16 rules of `cvi_f32_to_bf16`).
    pub fn is_cv18xx(self) -> bool {
        !matches!(self, Chip::Bm1684x)
    }

    /// Lower-case name as tpu-mlir spells it (`bm1684x`, `cv183x`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Chip::Bm1684x => "bm1684x",
            Chip::Cv183x => "cv183x",
            Chip::Cv182x => "cv182x",
            Chip::Cv181x => "cv181x",
            Chip::Cv180x => "cv180x",
        }
    }

    /// Parse a tpu-mlir chip name (case-insensitive).
    pub fn from_name(s: &str) -> Option<Chip> {
        [Chip::Bm1684x, Chip::Cv183x, Chip::Cv182x, Chip::Cv181x, Chip::Cv180x]
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
    }
}

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DType {
    /// signed 8-bit integer
    I8,
    /// unsigned 8-bit integer
    U8,
    /// signed 16-bit integer
    I16,
    /// signed 32-bit integer
    I32,
    /// IEEE binary32
    F32,
    /// IEEE binary16
    F16,
    /// bfloat16 (upper half of a binary32)
    BF16,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::F32 => 4,
        }
    }

    /// True for F32/F16/BF16.
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// True for the 8-bit integer types.
    pub const fn is_int8(self) -> bool {
        matches!(self, DType::I8 | DType::U8)
    }

    /// Short name (`i8`, `f16`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }
}

/// Memory region an operand lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Region {
    /// Read-only coefficients (weights, biases, requant tables, LUTs), borrowed from the file.
    Coeff,
    /// Activations (and network inputs/outputs) in the caller's arena.
    Activation,
}

/// One operand: where it lives and how it is laid out (dense NCHW, ranks < 4 padded with 1s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorRef {
    /// Region holding the data.
    pub region: Region,
    /// Byte offset inside the region.
    pub offset: u32,
    /// Shape as N, C, H, W.
    pub shape: [u32; 4],
    /// Element type.
    pub dtype: DType,
}

impl TensorRef {
    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    /// Size in bytes.
    pub fn byte_len(&self) -> u64 {
        self.numel() * self.dtype.size() as u64
    }

    /// Byte range `offset .. offset + byte_len` (as u64, no overflow).
    pub fn byte_end(&self) -> u64 {
        self.offset as u64 + self.byte_len()
    }
}

/// Maximum rank of a network input/output shape.
pub const MAX_RANK: usize = 6;
/// Maximum length of a tensor name kept in the metadata.
pub const MAX_IO: usize = 16;

/// A network input or output: name, logical shape, type, quantization and location in the arena.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IoTensor<'a> {
    /// Tensor name (the tpu-mlir layer name).
    pub name: &'a str,
    /// Logical shape (rank up to [`MAX_RANK`]).
    pub dims: heapless::Vec<u32, MAX_RANK>,
    /// Storage: activation-region offset, NCHW shape and element type.
    pub storage: TensorRef,
    /// Quantization scale (real = scale * (q - zero_point)); 1.0 for float tensors.
    pub scale: f32,
    /// Quantization zero point; 0 for float tensors.
    pub zero_point: i32,
}
