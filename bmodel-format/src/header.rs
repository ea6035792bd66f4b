//! The fixed 32-byte file header: magic, format version, chip, section sizes and the payload CRC.
//!
//! Layout (little-endian): `0..4` magic `BMRS`, `4..6` format version, `6` chip, `7` reserved (0),
//! `8..12` metadata length, `12..16` coefficient offset (from the start of the file, 64-aligned),
//! `16..20` coefficient length, `20..24` CRC-32 of every byte after the header, `24..32` reserved (0).

use crate::{Chip, FormatError};

/// Magic number at the start of every bmodel written by this project.
pub const MAGIC: [u8; 4] = *b"BMRS";
/// Version of the container layout this crate reads and writes (2: `Mul`, `Copy`, `Pad`, `Sigmoid`,
/// `Softmax` instructions, broadcasting `Add` with `relu`).
pub const FORMAT_VERSION: u16 = 2;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 32;
/// Alignment of the coefficient section inside the file.
pub const COEFF_ALIGN: usize = 64;

/// Decoded file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version found in the file.
    pub version: u16,
    /// Target chip whose arithmetic the instructions use.
    pub chip: Chip,
    /// Length of the postcard-encoded network metadata (starts right after the header).
    pub meta_len: u32,
    /// Offset of the coefficient blob from the start of the file.
    pub coeff_offset: u32,
    /// Length of the coefficient blob.
    pub coeff_len: u32,
    /// CRC-32 of the payload (every byte after the header).
    pub crc: u32,
}

impl Header {
    /// Offset of the coefficient section for a given metadata length.
    pub fn coeff_offset_for(meta_len: usize) -> usize {
        (HEADER_LEN + meta_len).div_ceil(COEFF_ALIGN) * COEFF_ALIGN
    }

    /// Encode into the 32 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4..6].copy_from_slice(&self.version.to_le_bytes());
        h[6] = self.chip as u8;
        h[8..12].copy_from_slice(&self.meta_len.to_le_bytes());
        h[12..16].copy_from_slice(&self.coeff_offset.to_le_bytes());
        h[16..20].copy_from_slice(&self.coeff_len.to_le_bytes());
        h[20..24].copy_from_slice(&self.crc.to_le_bytes());
        h
    }

    /// Decode and check the header fields of `bytes` (magic, version, chip, section bounds).
    /// The CRC is checked by [`crate::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Header, FormatError> {
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::Truncated { needed: HEADER_LEN, got: bytes.len() });
        }
        if bytes[0..4] != MAGIC {
            return Err(FormatError::BadMagic { found: [bytes[0], bytes[1], bytes[2], bytes[3]] });
        }
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
        }
        let chip = Chip::from_u8(bytes[6]).ok_or(FormatError::UnknownChip(bytes[6]))?;
        let h = Header {
            version,
            chip,
            meta_len: u32_at(8),
            coeff_offset: u32_at(12),
            coeff_len: u32_at(16),
            crc: u32_at(20),
        };
        let meta_end = HEADER_LEN as u64 + h.meta_len as u64;
        let coeff_end = h.coeff_offset as u64 + h.coeff_len as u64;
        if (h.coeff_offset as u64) < meta_end {
            return Err(FormatError::BadSections);
        }
        if coeff_end > bytes.len() as u64 {
            return Err(FormatError::Truncated { needed: coeff_end as usize, got: bytes.len() });
        }
        Ok(h)
    }
}
