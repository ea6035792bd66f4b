//! Writing a bmodel: encode instructions and metadata with postcard, then assemble header, metadata
//! and coefficients with the CRC. The assembly works on a caller buffer (no allocation); the
//! `alloc` feature adds [`write_bmodel`] returning a `Vec`.

use crate::crc::crc32;
use crate::header::{Header, FORMAT_VERSION, HEADER_LEN};
use crate::tensor::Chip;
use crate::FormatError;

/// Total file length for the given section lengths.
pub fn assembled_len(meta_len: usize, coeff_len: usize) -> usize {
    Header::coeff_offset_for(meta_len) + coeff_len
}

/// Write header + metadata + padding + coefficients into `out` (exactly
/// [`assembled_len`] bytes) and return the header.
pub fn assemble_into(out: &mut [u8], chip: Chip, meta: &[u8], coeff: &[u8]) -> Result<Header, FormatError> {
    let coeff_offset = Header::coeff_offset_for(meta.len());
    let total = coeff_offset + coeff.len();
    if out.len() != total {
        return Err(FormatError::Truncated { needed: total, got: out.len() });
    }
    let too_big = |_| FormatError::TooLarge;
    out.fill(0);
    out[HEADER_LEN..HEADER_LEN + meta.len()].copy_from_slice(meta);
    out[coeff_offset..].copy_from_slice(coeff);
    let header = Header {
        version: FORMAT_VERSION,
        chip,
        meta_len: u32::try_from(meta.len()).map_err(too_big)?,
        coeff_offset: u32::try_from(coeff_offset).map_err(too_big)?,
        coeff_len: u32::try_from(coeff.len()).map_err(too_big)?,
        crc: crc32(&out[HEADER_LEN..]),
    };
    out[..HEADER_LEN].copy_from_slice(&header.encode());
    Ok(header)
}

/// Encode a whole bmodel into a new vector.
#[cfg(feature = "alloc")]
pub fn write_bmodel(
    chip: Chip,
    name: &str,
    plan: crate::plan::MemoryPlan,
    inputs: &[crate::tensor::IoTensor<'_>],
    outputs: &[crate::tensor::IoTensor<'_>],
    instrs: &[crate::instr::Instr],
    coeff: &[u8],
) -> Result<alloc::vec::Vec<u8>, FormatError> {
    let mut stream = alloc::vec::Vec::new();
    for i in instrs {
        let enc = postcard::to_allocvec(i).map_err(|_| FormatError::BadInstruction)?;
        stream.extend_from_slice(&enc);
    }
    let meta = crate::net::NetMeta {
        name,
        plan,
        inputs: heapless::Vec::from_slice(inputs).map_err(|_| FormatError::TooLarge)?,
        outputs: heapless::Vec::from_slice(outputs).map_err(|_| FormatError::TooLarge)?,
        instr_count: u32::try_from(instrs.len()).map_err(|_| FormatError::TooLarge)?,
        instrs: &stream,
    };
    let meta_bytes = postcard::to_allocvec(&meta).map_err(|_| FormatError::BadMetadata)?;
    let mut out = alloc::vec![0u8; assembled_len(meta_bytes.len(), coeff.len())];
    assemble_into(&mut out, chip, &meta_bytes, coeff)?;
    Ok(out)
}
