//! npz files (numpy zip archives) as tpu-mlir reads and writes them: weights, inputs, all-tensor dumps.
//!
//! The npy header is parsed here (not through `ndarray-npy`) so that an archive can be read without
//! knowing its element types in advance. Array names are kept exactly as stored (tpu-mlir names
//! contain `/` and `:`), minus the `.npy` suffix numpy adds.

use crate::ir::weights::TensorData;
use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use std::fs::File;
use std::io::{BufWriter, Cursor, Read, Write};
use std::path::{Path, PathBuf};

/// Errors reading or writing an npz file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum NpzError {
    /// The file could not be opened, read or written.
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
    /// The file is not a valid npz or holds an unsupported array.
    #[error("{path}: not a valid npz file: {msg}")]
    Format { path: PathBuf, msg: String },
}

/// Element type of an npy array as described by its `descr` (byte order handled separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NpyKind {
    F4,
    F8,
    F2,
    I1,
    U1,
    B1,
    I2,
    U2,
    I4,
    U4,
    I8,
    U8,
}

impl NpyKind {
    fn from_code(c: &str) -> Option<Self> {
        Some(match c {
            "f4" => NpyKind::F4,
            "f8" => NpyKind::F8,
            "f2" => NpyKind::F2,
            "i1" => NpyKind::I1,
            "u1" => NpyKind::U1,
            "b1" => NpyKind::B1,
            "i2" => NpyKind::I2,
            "u2" => NpyKind::U2,
            "i4" => NpyKind::I4,
            "u4" => NpyKind::U4,
            "i8" => NpyKind::I8,
            "u8" => NpyKind::U8,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            NpyKind::I1 | NpyKind::U1 | NpyKind::B1 => 1,
            NpyKind::F2 | NpyKind::I2 | NpyKind::U2 => 2,
            NpyKind::F4 | NpyKind::I4 | NpyKind::U4 => 4,
            NpyKind::F8 | NpyKind::I8 | NpyKind::U8 => 8,
        }
    }
}

/// The parsed npy header: element kind, byte order, layout and shape.
#[derive(Debug, Clone, PartialEq)]
struct NpyHeader {
    kind: NpyKind,
    big_endian: bool,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Read every array of an npz file, in archive order.
///
/// Element types are kept where [`TensorData`] has them (f32, i8, u8, i32, u16, i64); the others
/// are widened or converted: f64 and f16 -> f32, bool -> u8, i16 -> i32, u32 -> i64, u64 -> i64.
pub fn read_npz(path: &Path) -> Result<Vec<(String, TensorData)>, NpzError> {
    let io = |e: &dyn std::fmt::Display| NpzError::Io { path: path.to_path_buf(), msg: e.to_string() };
    let fmt = |msg: String| NpzError::Format { path: path.to_path_buf(), msg };
    let mut bytes = std::fs::read(path).map_err(|e| io(&e))?;
    repair_zip64_record_size(&mut bytes);
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| fmt(e.to_string()))?;
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| fmt(e.to_string()))?;
        if entry.is_dir() {
            continue;
        }
        let full = entry.name().to_string();
        let name = full.strip_suffix(".npy").unwrap_or(&full).to_string();
        let mut bytes = Vec::with_capacity(entry.size().min(1 << 32) as usize);
        entry.read_to_end(&mut bytes).map_err(|e| fmt(format!("array '{name}': {e}")))?;
        let data = parse_npy(&bytes).map_err(|m| fmt(format!("array '{name}': {m}")))?;
        out.push((name, data));
    }
    Ok(out)
}

/// tpu-mlir's C++ npz writer (cnpy) writes a wrong size (0x44 instead of 44) into the zip64
/// end-of-central-directory record and a wrong offset of that record into the zip64 locator;
/// strict zip readers reject both. When the record sits right before the locator (as the
/// writer places it), put the right size and offset back in memory.
fn repair_zip64_record_size(bytes: &mut [u8]) {
    let n = bytes.len();
    let window = n.saturating_sub(22 + 65_535);
    let Some(eocd) = (window..n.saturating_sub(21)).rev().find(|&p| bytes[p..p + 4] == *b"PK\x05\x06") else {
        return;
    };
    let Some(loc) = eocd.checked_sub(20).filter(|&l| bytes[l..l + 4] == *b"PK\x06\x07") else {
        return;
    };
    let Some(rec) = loc.checked_sub(56).filter(|&r| bytes[r..r + 4] == *b"PK\x06\x06") else {
        return;
    };
    bytes[rec + 4..rec + 12].copy_from_slice(&44u64.to_le_bytes());
    bytes[loc + 8..loc + 16].copy_from_slice(&(rec as u64).to_le_bytes());
}

/// Read an npz and convert every array to f32 (integer codes keep their numeric value).
pub fn read_f32_map(path: &Path) -> Result<Vec<(String, ArrayD<f32>)>, NpzError> {
    Ok(read_npz(path)?.into_iter().map(|(n, d)| (n, d.to_f32())).collect())
}

/// Read a single `.npy` file.
pub fn read_npy(path: &Path) -> Result<TensorData, NpzError> {
    let bytes = std::fs::read(path).map_err(|e| NpzError::Io { path: path.to_path_buf(), msg: e.to_string() })?;
    parse_npy(&bytes).map_err(|msg| NpzError::Format { path: path.to_path_buf(), msg })
}

/// Write arrays to an npz file atomically (temporary file, then rename).
///
/// Arrays are stored uncompressed as `<name>.npy` in the given order, like `numpy.savez`.
pub fn write_npz(path: &Path, arrays: &[(String, TensorData)]) -> Result<(), NpzError> {
    write_atomically(path, |w| {
        let mut zw = zip::ZipWriter::new(w);
        for (name, data) in arrays {
            let bytes = encode_npy(data);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(bytes.len() as u64 >= u32::MAX as u64);
            zw.start_file(format!("{name}.npy"), opts).map_err(|e| format!("array '{name}': {e}"))?;
            zw.write_all(&bytes).map_err(|e| format!("array '{name}': {e}"))?;
        }
        zw.finish().map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Write f32 arrays (the usual tensor dump) to an npz file atomically.
pub fn write_f32_npz(path: &Path, arrays: &[(String, ArrayD<f32>)]) -> Result<(), NpzError> {
    let owned: Vec<(String, TensorData)> =
        arrays.iter().map(|(n, a)| (n.clone(), TensorData::F32(a.clone()))).collect();
    write_npz(path, &owned)
}

/// Create `path` atomically ([`crate::atomic_file`]) with what `fill` writes.
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<(), String>,
) -> Result<(), NpzError> {
    crate::atomic_file::write_with(path, |w| fill(w).map_err(std::io::Error::other))
        .map_err(|e| NpzError::Io { path: path.to_path_buf(), msg: e.to_string() })
}

/// Encode one array as an npy (format 1.0, little endian, C order) byte string.
fn encode_npy(data: &TensorData) -> Vec<u8> {
    let (descr, shape) = match data {
        TensorData::F32(a) => ("<f4", a.shape()),
        TensorData::I8(a) => ("|i1", a.shape()),
        TensorData::U8(a) => ("|u1", a.shape()),
        TensorData::I32(a) => ("<i4", a.shape()),
        TensorData::U16(a) => ("<u2", a.shape()),
        TensorData::I64(a) => ("<i8", a.shape()),
    };
    let shape_txt = match shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // magic(6) + version(2) + len(2) + header + '\n', padded to a multiple of 64
    let unpadded = 10 + header.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data_len(data));
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match data {
        TensorData::F32(a) => a.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        TensorData::I8(a) => a.iter().for_each(|v| out.push(*v as u8)),
        TensorData::U8(a) => a.iter().for_each(|v| out.push(*v)),
        TensorData::I32(a) => a.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        TensorData::U16(a) => a.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        TensorData::I64(a) => a.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
    }
    out
}

fn data_len(data: &TensorData) -> usize {
    let n: usize = data.shape().iter().product();
    n * match data {
        TensorData::F32(_) | TensorData::I32(_) => 4,
        TensorData::I8(_) | TensorData::U8(_) => 1,
        TensorData::U16(_) => 2,
        TensorData::I64(_) => 8,
    }
}

/// Parse a whole npy byte string into typed data.
fn parse_npy(bytes: &[u8]) -> Result<TensorData, String> {
    let (header, offset) = parse_npy_header(bytes)?;
    let numel = header.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let numel = numel.ok_or("shape overflows")?;
    let need = numel.checked_mul(header.kind.size()).ok_or("shape overflows")?;
    let body = &bytes[offset..];
    if body.len() < need {
        return Err(format!("data truncated: {} bytes for shape {:?}, need {need}", body.len(), header.shape));
    }
    let body = &body[..need];
    let be = header.big_endian;
    macro_rules! words {
        ($t:ty, $n:expr) => {
            body.chunks_exact($n)
                .map(|c| {
                    let arr: [u8; $n] = c.try_into().unwrap_or([0; $n]);
                    if be {
                        <$t>::from_be_bytes(arr)
                    } else {
                        <$t>::from_le_bytes(arr)
                    }
                })
                .collect::<Vec<$t>>()
        };
    }
    let shape = header.shape.clone();
    let fortran = header.fortran_order;
    fn build<T: Clone>(shape: Vec<usize>, fortran: bool, v: Vec<T>) -> Result<ArrayD<T>, String> {
        let r = if fortran {
            ArrayD::from_shape_vec(IxDyn(&shape).f(), v)
        } else {
            ArrayD::from_shape_vec(IxDyn(&shape), v)
        };
        let a = r.map_err(|e| e.to_string())?;
        // normalise to standard (C) layout so that `iter`/`as_slice` give row-major order
        Ok(if a.is_standard_layout() { a } else { a.as_standard_layout().into_owned() })
    }
    Ok(match header.kind {
        NpyKind::F4 => TensorData::F32(build(shape, fortran, words!(f32, 4))?),
        NpyKind::F8 => TensorData::F32(build(shape, fortran, words!(f64, 8).into_iter().map(|x| x as f32).collect())?),
        NpyKind::F2 => TensorData::F32(build(
            shape,
            fortran,
            words!(u16, 2).into_iter().map(|x| half::f16::from_bits(x).to_f32()).collect(),
        )?),
        NpyKind::I1 => TensorData::I8(build(shape, fortran, body.iter().map(|&b| b as i8).collect())?),
        NpyKind::U1 => TensorData::U8(build(shape, fortran, body.to_vec())?),
        NpyKind::B1 => TensorData::U8(build(shape, fortran, body.iter().map(|&b| (b != 0) as u8).collect())?),
        NpyKind::I2 => TensorData::I32(build(shape, fortran, words!(i16, 2).into_iter().map(i32::from).collect())?),
        NpyKind::U2 => TensorData::U16(build(shape, fortran, words!(u16, 2))?),
        NpyKind::I4 => TensorData::I32(build(shape, fortran, words!(i32, 4))?),
        NpyKind::U4 => TensorData::I64(build(shape, fortran, words!(u32, 4).into_iter().map(i64::from).collect())?),
        NpyKind::I8 => TensorData::I64(build(shape, fortran, words!(i64, 8))?),
        NpyKind::U8 => TensorData::I64(build(shape, fortran, words!(u64, 8).into_iter().map(|x| x as i64).collect())?),
    })
}

/// Parse the npy preamble; returns the header and the offset of the data.
fn parse_npy_header(bytes: &[u8]) -> Result<(NpyHeader, usize), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("missing the npy magic string".into());
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated npy header".into());
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported npy format version {v}")),
    };
    let end = start.checked_add(hlen).filter(|&e| e <= bytes.len()).ok_or("truncated npy header")?;
    let text = std::str::from_utf8(&bytes[start..end]).map_err(|_| "npy header is not text")?;
    let descr = dict_value(text, "descr").ok_or("npy header without 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    if descr.len() < 3 {
        return Err(format!("unsupported dtype '{descr}'"));
    }
    let (order, code) = descr.split_at(1);
    let big_endian = match order {
        "<" | "|" | "=" => false,
        ">" => true,
        _ => return Err(format!("unsupported dtype '{descr}'")),
    };
    let kind = NpyKind::from_code(code).ok_or_else(|| format!("unsupported dtype '{descr}'"))?;
    let fortran_order = match dict_value(text, "fortran_order") {
        Some(v) if v.starts_with("True") => true,
        Some(v) if v.starts_with("False") => false,
        _ => return Err("npy header without a valid 'fortran_order'".into()),
    };
    let shape_txt = dict_value(text, "shape").ok_or("npy header without 'shape'")?;
    let inner = shape_txt
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| format!("bad shape '{shape_txt}'"))?;
    let mut shape = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let d = part.trim_end_matches('L');
        shape.push(d.parse::<usize>().map_err(|_| format!("bad shape '{shape_txt}'"))?);
    }
    Ok((NpyHeader { kind, big_endian, fortran_order, shape }, end))
}

/// The text after `'key':` in a Python dict literal, up to the end of the header.
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat1 = format!("'{key}'");
    let pat2 = format!("\"{key}\"");
    let pos = text.find(&pat1).map(|p| p + pat1.len()).or_else(|| text.find(&pat2).map(|p| p + pat2.len()))?;
    let rest = text[pos..].trim_start().strip_prefix(':')?.trim_start();
    // a quoted string value ends at its closing quote; other values at ',' or '}' outside parens
    if let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
        let close = rest[1..].find(q)?;
        return Some(&rest[..close + 2]);
    }
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(p: &str) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/")).join(p)
    }

    #[test]
    fn reads_int8_weights_with_types_and_order() {
        let w = read_npz(&asset("reference/tpu-mlir-vectors/tnet_bm1684x_w.npz")).unwrap();
        let names: Vec<&str> = w.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["conv_Conv_bias_int32", "conv_Conv_filter_i8"]);
        // written by tpu-mlir's cnpy (its zip64 trailer needs the repair), stored flat
        match &w[0].1 {
            TensorData::I32(a) => assert_eq!(a.iter().copied().collect::<Vec<_>>(), vec![4050, 4018, 5816, 2506]),
            other => panic!("bias should be i32, got {other:?}"),
        }
        match &w[1].1 {
            TensorData::I8(a) => {
                assert_eq!(a.shape(), &[108]);
                assert_eq!(a.iter().take(6).copied().collect::<Vec<_>>(), vec![88, 20, 49, 111, 93, -49]);
            }
            other => panic!("filter should be i8, got {other:?}"),
        }
    }

    #[test]
    fn reads_top_outputs_with_golden_shapes() {
        let m = read_f32_map(&asset("reference/tiny-yolov3/yolov3_tiny_in_f32.npz")).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].0, "input_1");
        assert_eq!(m[0].1.shape(), &[1, 3, 416, 416]);
        // letterbox border: pad value 128 / 255 scaled by 0.0039216
        let v = m[0].1[[0, 0, 0, 0]];
        assert!((v - 128.0 * 0.0039216).abs() < 1e-6, "{v}");
    }

    #[test]
    fn round_trips_every_type_and_odd_names() {
        let dir = std::env::temp_dir().join(format!("npz_rt_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.npz");
        let arrays = vec![
            (
                "model_1/conv:0_Conv".to_string(),
                TensorData::F32(
                    ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.5, -2.0, 0.0, 3.25, f32::MAX, -0.1]).unwrap(),
                ),
            ),
            ("a_i8".to_string(), TensorData::I8(ArrayD::from_shape_vec(IxDyn(&[3]), vec![-128, 0, 127]).unwrap())),
            ("u".to_string(), TensorData::U8(ArrayD::from_shape_vec(IxDyn(&[]), vec![200]).unwrap())),
            ("b".to_string(), TensorData::I32(ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![i32::MIN, 7]).unwrap())),
            ("h".to_string(), TensorData::U16(ArrayD::from_shape_vec(IxDyn(&[2]), vec![0x3f80, 65535]).unwrap())),
            ("l".to_string(), TensorData::I64(ArrayD::from_shape_vec(IxDyn(&[1]), vec![-5]).unwrap())),
        ];
        write_npz(&p, &arrays).unwrap();
        let back = read_npz(&p).unwrap();
        assert_eq!(back, arrays);
        // no temporary file left behind
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_f64_fortran_and_big_endian_headers() {
        let hdr = "{'descr': '>f8', 'fortran_order': True, 'shape': (2, 2), }";
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(hdr.len() as u16).to_le_bytes());
        b.extend_from_slice(hdr.as_bytes());
        for v in [1.0f64, 2.0, 3.0, 4.0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let d = parse_npy(&b).unwrap();
        let a = d.as_f32().unwrap();
        // column-major storage: [[1, 3], [2, 4]]
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), vec![1.0, 3.0, 2.0, 4.0]);
    }

    #[test]
    fn bad_files_give_errors_naming_the_file() {
        let p = asset("reference/tpu-mlir-vectors/tnet.mlir");
        let e = read_npz(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: not a valid npz file", p.display())), "{e}");
        let e = read_npz(Path::new("/nonexistent/x.npz")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/x.npz: "), "{e}");
        assert!(parse_npy(b"\x93NUMPY\x01\x00\xff\x00{").is_err());
    }

    #[test]
    fn failed_write_leaves_no_file() {
        let e = write_npz(Path::new("/nonexistent_dir/y.npz"), &[]).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent_dir/y.npz: "));
    }
}
