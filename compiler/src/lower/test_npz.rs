//! Test-only npz reader (stored and deflate members, zip64 local headers as numpy writes them),
//! used by the golden tests so they do not depend on the state of `crate::npz`.

use crate::ir::weights::TensorData;
use ndarray::{ArrayD, IxDyn};

fn u16le(b: &[u8], o: usize) -> usize {
    u16::from_le_bytes([b[o], b[o + 1]]) as usize
}
fn u32le(b: &[u8], o: usize) -> usize {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize
}
fn u64le(b: &[u8], o: usize) -> usize {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize
}

/// Read every member of an npz file.
pub(crate) fn read(path: &std::path::Path) -> Vec<(String, TensorData)> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut o = 0;
    let mut out = Vec::new();
    while o + 30 <= b.len() && u32le(&b, o) == 0x0403_4b50 {
        let method = u16le(&b, o + 8);
        let mut csize = u32le(&b, o + 18);
        let mut usize_ = u32le(&b, o + 22);
        let nlen = u16le(&b, o + 26);
        let xlen = u16le(&b, o + 28);
        let name = String::from_utf8_lossy(&b[o + 30..o + 30 + nlen]).to_string();
        let mut x = o + 30 + nlen;
        let xend = x + xlen;
        while x + 4 <= xend {
            let id = u16le(&b, x);
            let len = u16le(&b, x + 2);
            if id == 1 {
                let mut p = x + 4;
                if usize_ == 0xFFFF_FFFF {
                    usize_ = u64le(&b, p);
                    p += 8;
                }
                if csize == 0xFFFF_FFFF {
                    csize = u64le(&b, p);
                }
            }
            x += 4 + len;
        }
        let data = &b[xend..xend + csize];
        let raw = if method == 8 { miniz_oxide::inflate::decompress_to_vec(data).unwrap() } else { data.to_vec() };
        assert_eq!(raw.len(), usize_, "{name}");
        out.push((name.trim_end_matches(".npy").to_string(), parse_npy(&raw)));
        o = xend + csize;
    }
    out
}

fn parse_npy(b: &[u8]) -> TensorData {
    assert_eq!(&b[..6], b"\x93NUMPY");
    let (hlen, start) = if b[6] == 1 { (u16le(b, 8), 10) } else { (u32le(b, 8), 12) };
    let h = std::str::from_utf8(&b[start..start + hlen]).unwrap();
    let d = &b[start + hlen..];
    let descr = h.split("'descr':").nth(1).unwrap().split('\'').nth(1).unwrap().to_string();
    assert!(!h.contains("'fortran_order': True"));
    let shp = h.split("'shape':").nth(1).unwrap();
    let shp = &shp[shp.find('(').unwrap() + 1..shp.find(')').unwrap()];
    let shape: Vec<usize> = shp.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let sh = IxDyn(&shape);
    match descr.as_str() {
        "<f4" => TensorData::F32(
            ArrayD::from_shape_vec(sh, d.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
                .unwrap(),
        ),
        "|i1" | "<i1" => TensorData::I8(ArrayD::from_shape_vec(sh, d.iter().map(|&v| v as i8).collect()).unwrap()),
        "|u1" | "<u1" => TensorData::U8(ArrayD::from_shape_vec(sh, d.to_vec()).unwrap()),
        "<i4" => TensorData::I32(
            ArrayD::from_shape_vec(sh, d.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect())
                .unwrap(),
        ),
        "<u2" => TensorData::U16(
            ArrayD::from_shape_vec(sh, d.chunks_exact(2).map(|c| u16::from_le_bytes(c.try_into().unwrap())).collect())
                .unwrap(),
        ),
        "<i8" => TensorData::I64(
            ArrayD::from_shape_vec(sh, d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect())
                .unwrap(),
        ),
        other => panic!("unsupported dtype {other}"),
    }
}
