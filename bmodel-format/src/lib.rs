//! The bmodel container of this project (no_std): a 32-byte [`header`], postcard-encoded network
//! metadata ([`net`]: I/O [`tensor`]s, memory [`plan`], the [`instr`] stream) and the coefficient
//! blob. Reading borrows from `&[u8]` (zero-copy weights, no allocation); [`verify`] does every
//! check the runtime relies on; [`writer`] assembles files (the `alloc` feature adds a `Vec` writer).
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod crc;
pub mod header;
pub mod instr;
pub mod net;
pub mod plan;
pub mod scratch;
pub mod tensor;
pub mod verify;
pub mod writer;

pub use header::{Header, FORMAT_VERSION, HEADER_LEN, MAGIC};
pub use heapless;
pub use instr::{AddParams, CastMode, ConvRequant, Instr, LeakyParams, MulParams, PoolMode, RoundMode, Window};
pub use net::{Bmodel, InstrIter, NetMeta};
pub use plan::MemoryPlan;
pub use tensor::{Chip, DType, IoTensor, Region, TensorRef, MAX_IO, MAX_RANK};
pub use verify::{verify, InstrProblem};

use core::fmt;

/// Everything that can be wrong with a bmodel file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FormatError {
    /// The file is shorter than its header says.
    Truncated {
        /// bytes needed
        needed: usize,
        /// bytes present
        got: usize,
    },
    /// The first four bytes are not [`MAGIC`].
    BadMagic {
        /// the bytes found
        found: [u8; 4],
    },
    /// A format version this reader does not know.
    UnsupportedVersion {
        /// version in the file
        found: u16,
        /// version this crate reads
        supported: u16,
    },
    /// Unknown chip code in the header.
    UnknownChip(u8),
    /// Metadata and coefficient sections overlap.
    BadSections,
    /// The payload CRC does not match.
    BadCrc {
        /// CRC stored in the header
        stored: u32,
        /// CRC of the bytes
        computed: u32,
    },
    /// Bytes after the coefficient section.
    TrailingBytes {
        /// expected file length
        expected: usize,
        /// actual length
        got: usize,
    },
    /// The metadata does not decode.
    BadMetadata,
    /// An instruction does not decode or the count is wrong.
    BadInstruction,
    /// The memory plan is inconsistent.
    BadPlan(&'static str),
    /// A network input/output is invalid.
    BadIo {
        /// index (inputs first, then outputs)
        index: u32,
        /// what is wrong
        problem: InstrProblem,
    },
    /// An instruction failed a check.
    BadInstr {
        /// position in the stream
        index: u32,
        /// its mnemonic
        mnemonic: &'static str,
        /// what is wrong
        problem: InstrProblem,
    },
    /// A section exceeds the 32-bit sizes of the format, or too many I/O tensors.
    TooLarge,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Truncated { needed, got } => write!(f, "bmodel truncated: needs {needed} bytes, has {got}"),
            FormatError::BadMagic { found } => write!(f, "not a bmodel: magic {found:02x?}, expected \"BMRS\""),
            FormatError::UnsupportedVersion { found, supported } => {
                write!(f, "bmodel format version {found} not supported (this reader: {supported})")
            }
            FormatError::UnknownChip(c) => write!(f, "unknown chip code {c}"),
            FormatError::BadSections => f.write_str("bmodel sections overlap"),
            FormatError::BadCrc { stored, computed } => {
                write!(f, "bmodel CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            FormatError::TrailingBytes { expected, got } => {
                write!(f, "bmodel has trailing bytes: expected {expected}, got {got}")
            }
            FormatError::BadMetadata => f.write_str("bmodel metadata does not decode"),
            FormatError::BadInstruction => f.write_str("bmodel instruction stream does not decode"),
            FormatError::BadPlan(s) => write!(f, "bad memory plan: {s}"),
            FormatError::BadIo { index, problem } => write!(f, "network I/O tensor {index}: {problem}"),
            FormatError::BadInstr { index, mnemonic, problem } => {
                write!(f, "instruction {index} ({mnemonic}): {problem}")
            }
            FormatError::TooLarge => f.write_str("bmodel section too large for the format"),
        }
    }
}
