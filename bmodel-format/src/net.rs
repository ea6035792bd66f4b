//! The network metadata and the zero-copy reader of a whole bmodel.

use crate::crc::crc32;
use crate::header::{Header, HEADER_LEN};
use crate::instr::Instr;
use crate::plan::MemoryPlan;
use crate::tensor::{Chip, IoTensor, MAX_IO};
use crate::FormatError;
use serde::{Deserialize, Serialize};

/// Metadata section: name, memory plan, I/O tensors and the encoded instruction stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetMeta<'a> {
    /// Model name.
    pub name: &'a str,
    /// Memory plan.
    pub plan: MemoryPlan,
    /// Network inputs in argument order.
    #[serde(borrow)]
    pub inputs: heapless::Vec<IoTensor<'a>, MAX_IO>,
    /// Network outputs in return order.
    #[serde(borrow)]
    pub outputs: heapless::Vec<IoTensor<'a>, MAX_IO>,
    /// Number of instructions in `instrs`.
    pub instr_count: u32,
    /// Concatenated postcard encodings of the instructions, decoded lazily by [`InstrIter`].
    pub instrs: &'a [u8],
}

/// A parsed bmodel borrowing the file bytes (header checked, CRC checked, metadata decoded).
/// Instructions are not yet checked: use [`crate::verify::verify`] for that.
#[derive(Debug, Clone)]
pub struct Bmodel<'a> {
    /// File header.
    pub header: Header,
    /// Network metadata.
    pub meta: NetMeta<'a>,
    /// Coefficient region (zero-copy slice of the file).
    pub coeff: &'a [u8],
}

impl<'a> Bmodel<'a> {
    /// Parse `bytes`: header fields, payload CRC, metadata decoding.
    pub fn parse(bytes: &'a [u8]) -> Result<Bmodel<'a>, FormatError> {
        let header = Header::decode(bytes)?;
        let end = header.coeff_offset as usize + header.coeff_len as usize;
        let payload = &bytes[HEADER_LEN..end];
        let computed = crc32(payload);
        if computed != header.crc {
            return Err(FormatError::BadCrc { stored: header.crc, computed });
        }
        if bytes.len() != end {
            return Err(FormatError::TrailingBytes { expected: end, got: bytes.len() });
        }
        let meta_bytes = &bytes[HEADER_LEN..HEADER_LEN + header.meta_len as usize];
        let (meta, rest): (NetMeta<'a>, _) =
            postcard::take_from_bytes(meta_bytes).map_err(|_| FormatError::BadMetadata)?;
        if !rest.is_empty() {
            return Err(FormatError::BadMetadata);
        }
        let coeff = &bytes[header.coeff_offset as usize..end];
        Ok(Bmodel { header, meta, coeff })
    }

    /// Target chip.
    pub fn chip(&self) -> Chip {
        self.header.chip
    }

    /// Iterator decoding the instruction stream.
    pub fn instrs(&self) -> InstrIter<'a> {
        InstrIter { rest: self.meta.instrs, left: self.meta.instr_count }
    }
}

/// Lazy decoder of the instruction stream (no allocation).
#[derive(Debug, Clone)]
pub struct InstrIter<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> InstrIter<'a> {
    /// Start decoding an encoded stream of `count` instructions.
    pub fn new(bytes: &'a [u8], count: u32) -> Self {
        InstrIter { rest: bytes, left: count }
    }
}

impl Iterator for InstrIter<'_> {
    type Item = Result<Instr, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match postcard::take_from_bytes::<Instr>(self.rest) {
            Ok((i, rest)) => {
                self.rest = rest;
                Some(Ok(i))
            }
            Err(_) => {
                self.left = 0;
                Some(Err(FormatError::BadInstruction))
            }
        }
    }
}
