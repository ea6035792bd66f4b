//! The JPEG decoder as it was before the fast Huffman / IDCT / colour paths (commit cf4162a),
//! kept verbatim as the reference the tests compare the new decoder with, pixel for pixel and
//! error for error. Compiled only into the tests of `preprocess::jpeg`.
#![allow(dead_code, clippy::all)]

use std::fmt;

/// Why a JPEG stream was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JpegError {
    /// A valid JPEG using a feature this decoder leaves to another decoder.
    Unsupported(String),
    /// A damaged or non-JPEG stream.
    Corrupt(String),
}

impl fmt::Display for JpegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JpegError::Unsupported(m) => write!(f, "unsupported JPEG: {m}"),
            JpegError::Corrupt(m) => write!(f, "corrupt JPEG: {m}"),
        }
    }
}

/// Colour model of the decoded samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JpegColor {
    /// one luma plane
    Gray,
    /// Y, Cb, Cr planes (converted to RGB by [`DecodedJpeg::to_rgb`])
    YCbCr,
    /// R, G, B planes stored without transform
    Rgb,
}

/// Full-resolution component planes of a decoded JPEG.
#[derive(Debug, Clone)]
pub struct DecodedJpeg {
    /// image width
    pub width: usize,
    /// image height
    pub height: usize,
    /// colour model of `planes`
    pub color: JpegColor,
    /// one `width * height` plane per component, upsampled
    pub planes: Vec<Vec<u8>>,
}

const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63,
];

fn corrupt(m: impl Into<String>) -> JpegError {
    JpegError::Corrupt(m.into())
}

/// A canonical Huffman table in libjpeg's `maxcode` / `valoffset` form.
#[derive(Debug, Clone, Default)]
struct Huffman {
    maxcode: [i32; 18],
    valoffset: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Result<Self, JpegError> {
        let mut h = Huffman { maxcode: [-1; 18], valoffset: [0; 17], values };
        let (mut code, mut p) = (0i32, 0i32);
        for len in 1..=16 {
            let n = counts[len - 1] as i32;
            if n > 0 {
                h.valoffset[len] = p - code;
                code += n;
                p += n;
                h.maxcode[len] = code - 1;
            }
            code <<= 1;
        }
        h.maxcode[17] = i32::MAX;
        if p as usize > h.values.len() {
            return Err(corrupt("Huffman table shorter than its counts"));
        }
        Ok(h)
    }
}

/// Entropy-coded segment reader: byte stuffing, markers end the data (zeros are fed after).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    nbits: u32,
    hit_marker: bool,
}

impl<'a> Bits<'a> {
    fn fill(&mut self) {
        while self.nbits <= 56 {
            let mut byte = 0u8;
            if !self.hit_marker && self.pos < self.data.len() {
                let b = self.data[self.pos];
                if b == 0xFF {
                    let next = self.data.get(self.pos + 1).copied().unwrap_or(0xD9);
                    if next == 0x00 {
                        self.pos += 2;
                        byte = 0xFF;
                    } else if next == 0xFF {
                        self.pos += 1;
                        continue;
                    } else {
                        self.hit_marker = true;
                    }
                } else {
                    self.pos += 1;
                    byte = b;
                }
            }
            self.acc |= (byte as u64) << (56 - self.nbits);
            self.nbits += 8;
        }
    }

    fn bits(&mut self, n: u32) -> i32 {
        if n == 0 {
            return 0;
        }
        if self.nbits < n {
            self.fill();
        }
        let v = (self.acc >> (64 - n)) as i32;
        self.acc <<= n;
        self.nbits -= n;
        v
    }

    fn decode(&mut self, h: &Huffman) -> Result<u8, JpegError> {
        let mut code = self.bits(1);
        let mut len = 1;
        while code > h.maxcode[len] {
            code = (code << 1) | self.bits(1);
            len += 1;
            if len > 16 {
                return Err(corrupt("bad Huffman code"));
            }
        }
        h.values.get((code + h.valoffset[len]) as usize).copied().ok_or_else(|| corrupt("bad Huffman code"))
    }

    /// Skip to after the next RSTn marker and reset the bit buffer.
    fn restart(&mut self) {
        self.acc = 0;
        self.nbits = 0;
        self.hit_marker = false;
        while self.pos + 1 < self.data.len() {
            if self.data[self.pos] == 0xFF && (0xD0..=0xD7).contains(&self.data[self.pos + 1]) {
                self.pos += 2;
                return;
            }
            if self.data[self.pos] == 0xFF && self.data[self.pos + 1] != 0 && self.data[self.pos + 1] != 0xFF {
                return;
            }
            self.pos += 1;
        }
    }
}

fn extend(v: i32, s: u32) -> i32 {
    if s == 0 {
        0
    } else if v < (1 << (s - 1)) {
        v + (-1 << s) + 1
    } else {
        v
    }
}

#[derive(Debug, Clone)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// blocks across / down of the allocated plane
    bw: usize,
    bh: usize,
    plane: Vec<u8>,
}

/// libjpeg-turbo `jpeg_idct_islow` on one dequantised-on-the-fly block, writing 8x8 samples.
fn idct_islow(coef: &[i32; 64], q: &[u16; 64], out: &mut [u8], stride: usize) {
    const CB: i64 = 13;
    const P1: i64 = 2;
    const F0298: i64 = 2446;
    const F0390: i64 = 3196;
    const F0541: i64 = 4433;
    const F0765: i64 = 6270;
    const F0899: i64 = 7373;
    const F1175: i64 = 9633;
    const F1501: i64 = 12299;
    const F1847: i64 = 15137;
    const F1961: i64 = 16069;
    const F2053: i64 = 16819;
    const F2562: i64 = 20995;
    const F3072: i64 = 25172;
    let descale = |x: i64, n: i64| (x + (1 << (n - 1))) >> n;
    // even / odd butterflies shared by both passes
    let core = |s: [i64; 8]| -> [i64; 8] {
        let (z2, z3) = (s[2], s[6]);
        let z1 = (z2 + z3) * F0541;
        let tmp2 = z1 - z3 * F1847;
        let tmp3 = z1 + z2 * F0765;
        let tmp0 = (s[0] + s[4]) << CB;
        let tmp1 = (s[0] - s[4]) << CB;
        let (t10, t13, t11, t12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
        let (o0, o1, o2, o3) = (s[7], s[5], s[3], s[1]);
        let z1 = o0 + o3;
        let z2 = o1 + o2;
        let z3 = o0 + o2;
        let z4 = o1 + o3;
        let z5 = (z3 + z4) * F1175;
        let (mut a0, mut a1, mut a2, mut a3) = (o0 * F0298, o1 * F2053, o2 * F3072, o3 * F1501);
        let z1 = -z1 * F0899;
        let z2 = -z2 * F2562;
        let z3 = -z3 * F1961 + z5;
        let z4 = -z4 * F0390 + z5;
        a0 += z1 + z3;
        a1 += z2 + z4;
        a2 += z2 + z3;
        a3 += z1 + z4;
        [t10 + a3, t11 + a2, t12 + a1, t13 + a0, t13 - a0, t12 - a1, t11 - a2, t10 - a3]
    };
    let mut ws = [0i64; 64];
    for col in 0..8 {
        let s: [i64; 8] = std::array::from_fn(|r| coef[r * 8 + col] as i64 * q[r * 8 + col] as i64);
        let r = core(s);
        for row in 0..8 {
            ws[row * 8 + col] = descale(r[row], CB - P1);
        }
    }
    let limit = |x: i64| -> u8 {
        let m = (x & 1023) as i32;
        if m < 128 {
            (m + 128) as u8
        } else if m < 512 {
            255
        } else if m < 896 {
            0
        } else {
            (m - 896) as u8
        }
    };
    for row in 0..8 {
        let s: [i64; 8] = std::array::from_fn(|c| ws[row * 8 + c]);
        let r = core(s);
        for c in 0..8 {
            out[row * stride + c] = limit(descale(r[c], CB + P1 + 3));
        }
    }
}

fn be16(d: &[u8], at: usize) -> Result<usize, JpegError> {
    match d.get(at..at + 2) {
        Some(b) => Ok(((b[0] as usize) << 8) | b[1] as usize),
        None => Err(corrupt("truncated marker segment")),
    }
}

/// Largest image (in pixels) decoded here; bigger ones are left to the fallback decoder.
const MAX_PIXELS: usize = 1 << 28;

/// Decode a JPEG file's bytes into full-resolution planes.
pub fn decode_jpeg(data: &[u8]) -> Result<DecodedJpeg, JpegError> {
    if data.len() < 4 || data[0] != 0xFF || data[1] != 0xD8 {
        return Err(corrupt("missing SOI marker"));
    }
    let mut qt = [[0u16; 64]; 4];
    let mut dc_tabs: [Option<Huffman>; 4] = Default::default();
    let mut ac_tabs: [Option<Huffman>; 4] = Default::default();
    let mut comps: Vec<Component> = Vec::new();
    let (mut width, mut height) = (0usize, 0usize);
    let (mut hmax, mut vmax) = (1usize, 1usize);
    let mut restart_interval = 0usize;
    let mut adobe_transform: Option<u8> = None;
    let mut jfif = false;
    let mut pos = 2;
    let mut frame_seen = false;
    loop {
        // find the next marker
        while pos < data.len() && data[pos] != 0xFF {
            pos += 1;
        }
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = data.get(pos) else { return Err(corrupt("no EOI marker")) };
        pos += 1;
        match marker {
            0xD9 => break,
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let len = be16(data, pos)?;
        if len < 2 || pos + len > data.len() {
            return Err(corrupt("truncated marker segment"));
        }
        let seg = &data[pos + 2..pos + len];
        pos += len;
        match marker {
            0xC0 | 0xC1 => {
                if seg.len() < 6 || seg[0] != 8 {
                    return Err(JpegError::Unsupported("sample precision other than 8 bits".into()));
                }
                height = (seg[1] as usize) << 8 | seg[2] as usize;
                width = (seg[3] as usize) << 8 | seg[4] as usize;
                let n = seg[5] as usize;
                if width * height > MAX_PIXELS {
                    return Err(JpegError::Unsupported(format!("{width}x{height} is too large")));
                }
                if width == 0 || height == 0 || !(n == 1 || n == 3) || seg.len() < 6 + 3 * n {
                    return Err(JpegError::Unsupported(format!("{n} components or zero size")));
                }
                for i in 0..n {
                    let c = &seg[6 + 3 * i..9 + 3 * i];
                    let (h, v) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
                    if !(1..=4).contains(&h) || !(1..=4).contains(&v) || c[2] > 3 {
                        return Err(corrupt("bad sampling factors or table index"));
                    }
                    comps.push(Component { id: c[0], h, v, tq: c[2] as usize, bw: 0, bh: 0, plane: Vec::new() });
                }
                hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
                vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
                let (mx, my) = (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax));
                // every coded block takes at least two bits (DC code and end of block)
                let blocks: usize = comps.iter().map(|c| mx * c.h * my * c.v).sum();
                if blocks > data.len().saturating_mul(8) {
                    return Err(corrupt(format!("{width}x{height} image cannot fit in {} bytes", data.len())));
                }
                for c in comps.iter_mut() {
                    c.bw = mx * c.h;
                    c.bh = my * c.v;
                    c.plane = vec![0; c.bw * 8 * c.bh * 8];
                }
                frame_seen = true;
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(JpegError::Unsupported(format!("SOF marker 0x{marker:02X} (not baseline Huffman)")))
            }
            0xDB => {
                let mut p = 0;
                while p < seg.len() {
                    let (pq, tq) = (seg[p] >> 4, (seg[p] & 15) as usize);
                    p += 1;
                    if tq > 3 {
                        return Err(corrupt("bad quantisation table index"));
                    }
                    for k in 0..64 {
                        let v = if pq == 0 {
                            seg.get(p + k).map(|&b| b as u16)
                        } else {
                            seg.get(p + 2 * k..p + 2 * k + 2).map(|b| (b[0] as u16) << 8 | b[1] as u16)
                        };
                        qt[tq][ZIGZAG[k]] = v.ok_or_else(|| corrupt("truncated DQT"))?;
                    }
                    p += if pq == 0 { 64 } else { 128 };
                }
            }
            0xC4 => {
                let mut p = 0;
                while p < seg.len() {
                    let (tc, th) = (seg[p] >> 4, (seg[p] & 15) as usize);
                    let counts: [u8; 16] =
                        seg.get(p + 1..p + 17).ok_or_else(|| corrupt("truncated DHT"))?.try_into().unwrap_or([0; 16]);
                    let total: usize = counts.iter().map(|&c| c as usize).sum();
                    let values = seg.get(p + 17..p + 17 + total).ok_or_else(|| corrupt("truncated DHT"))?.to_vec();
                    p += 17 + total;
                    if th > 3 || tc > 1 {
                        return Err(corrupt("bad Huffman table index"));
                    }
                    let t = Huffman::new(&counts, values)?;
                    if tc == 0 {
                        dc_tabs[th] = Some(t);
                    } else {
                        ac_tabs[th] = Some(t);
                    }
                }
            }
            0xDD => restart_interval = be16(seg, 0)?,
            0xE0 => jfif = seg.starts_with(b"JFIF\0"),
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => adobe_transform = Some(seg[11]),
            0xDA => {
                if !frame_seen {
                    return Err(corrupt("scan before frame header"));
                }
                let ns = *seg.first().ok_or_else(|| corrupt("empty SOS"))? as usize;
                let mut scomp = Vec::new();
                for i in 0..ns {
                    let id = *seg.get(1 + 2 * i).ok_or_else(|| corrupt("truncated SOS"))?;
                    let t = *seg.get(2 + 2 * i).ok_or_else(|| corrupt("truncated SOS"))?;
                    let ci = comps
                        .iter()
                        .position(|c| c.id == id)
                        .ok_or_else(|| corrupt("scan names an unknown component"))?;
                    scomp.push((ci, (t >> 4) as usize & 3, (t & 15) as usize & 3));
                }
                let consumed = decode_scan(
                    &data[pos..],
                    &mut comps,
                    &scomp,
                    &qt,
                    &dc_tabs,
                    &ac_tabs,
                    restart_interval,
                    width,
                    height,
                    hmax,
                    vmax,
                )?;
                pos += consumed;
            }
            _ => {}
        }
    }
    if !frame_seen {
        return Err(corrupt("no frame header"));
    }
    let color = if comps.len() == 1 {
        JpegColor::Gray
    } else if jfif {
        JpegColor::YCbCr
    } else if let Some(t) = adobe_transform {
        if t == 0 {
            JpegColor::Rgb
        } else {
            JpegColor::YCbCr
        }
    } else if comps[0].id == b'R' && comps[1].id == b'G' && comps[2].id == b'B' {
        JpegColor::Rgb
    } else {
        JpegColor::YCbCr
    };
    let planes = comps.iter().map(|c| upsample(c, width, height, hmax, vmax)).collect();
    Ok(DecodedJpeg { width, height, color, planes })
}

/// Decode one scan (all its MCUs) into the component planes; returns the bytes consumed.
#[allow(clippy::too_many_arguments)]
fn decode_scan(
    data: &[u8],
    comps: &mut [Component],
    scomp: &[(usize, usize, usize)],
    qt: &[[u16; 64]; 4],
    dc: &[Option<Huffman>; 4],
    ac: &[Option<Huffman>; 4],
    restart_interval: usize,
    width: usize,
    height: usize,
    hmax: usize,
    vmax: usize,
) -> Result<usize, JpegError> {
    let mut bits = Bits { data, pos: 0, acc: 0, nbits: 0, hit_marker: false };
    let mut pred = vec![0i32; scomp.len()];
    let (mcux, mcuy, single) = if scomp.len() == 1 {
        let c = &comps[scomp[0].0];
        let cw = (width * c.h).div_ceil(hmax);
        let ch = (height * c.v).div_ceil(vmax);
        (cw.div_ceil(8), ch.div_ceil(8), true)
    } else {
        (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax), false)
    };
    let mut coef = [0i32; 64];
    let mut mcu_count = 0usize;
    for my in 0..mcuy {
        for mx in 0..mcux {
            if restart_interval > 0 && mcu_count > 0 && mcu_count.is_multiple_of(restart_interval) {
                bits.restart();
                pred.iter_mut().for_each(|p| *p = 0);
            }
            mcu_count += 1;
            for (si, &(ci, td, ta)) in scomp.iter().enumerate() {
                let (bh, bv) = if single { (1, 1) } else { (comps[ci].h, comps[ci].v) };
                let dct = dc[td].as_ref().ok_or_else(|| corrupt("missing DC Huffman table"))?;
                let act = ac[ta].as_ref().ok_or_else(|| corrupt("missing AC Huffman table"))?;
                for by in 0..bv {
                    for bx in 0..bh {
                        coef.fill(0);
                        let s = bits.decode(dct)? as u32;
                        if s > 16 {
                            return Err(corrupt("bad DC magnitude"));
                        }
                        pred[si] += extend(bits.bits(s), s);
                        coef[0] = pred[si];
                        let mut k = 1;
                        while k < 64 {
                            let rs = bits.decode(act)?;
                            let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
                            if s != 0 {
                                k += r;
                                if k > 63 {
                                    return Err(corrupt("AC coefficient index past 63"));
                                }
                                coef[ZIGZAG[k]] = extend(bits.bits(s), s);
                                k += 1;
                            } else if r == 15 {
                                k += 16;
                            } else {
                                break;
                            }
                        }
                        let c = &mut comps[ci];
                        let (col, row) = if single { (mx, my) } else { (mx * c.h + bx, my * c.v + by) };
                        if col < c.bw && row < c.bh {
                            let stride = c.bw * 8;
                            let off = row * 8 * stride + col * 8;
                            idct_islow(&coef, &qt[c.tq], &mut c.plane[off..], stride);
                        }
                    }
                }
            }
        }
    }
    // consumed bytes: up to the marker that ended the entropy-coded data
    let mut p = bits.pos.min(data.len());
    while p + 1 < data.len() && !(data[p] == 0xFF && data[p + 1] != 0 && !(0xD0..=0xD7).contains(&data[p + 1])) {
        p += 1;
    }
    Ok(p)
}

/// Upsample one component plane to the image size as libjpeg-turbo's default (fancy) upsampler.
fn upsample(c: &Component, width: usize, height: usize, hmax: usize, vmax: usize) -> Vec<u8> {
    let stride = c.bw * 8;
    let dw = (width * c.h).div_ceil(hmax);
    let dh = (height * c.v).div_ceil(vmax);
    let at = |x: usize, y: usize| c.plane[y.min(dh - 1) * stride + x.min(dw - 1)] as i32;
    let (fx, fy) = (hmax / c.h, vmax / c.v);
    let exact = hmax.is_multiple_of(c.h) && vmax.is_multiple_of(c.v);
    let mut out = vec![0u8; width * height];
    match (fx, fy, exact) {
        (1, 1, true) => {
            for y in 0..height {
                out[y * width..(y + 1) * width].copy_from_slice(&c.plane[y * stride..y * stride + width]);
            }
        }
        (2, 1, true) if dw > 2 => {
            for y in 0..height {
                for x in 0..width {
                    let i = x / 2;
                    let v = at(i, y) * 3;
                    let o = if x % 2 == 0 {
                        if i == 0 {
                            at(0, y) * 4
                        } else {
                            v + at(i - 1, y) + 1
                        }
                    } else if i + 1 >= dw {
                        at(i, y) * 4 + 1
                    } else {
                        v + at(i + 1, y) + 2
                    };
                    out[y * width + x] = (o >> 2) as u8;
                }
            }
        }
        (2, 2, true) if dw > 2 => {
            for y in 0..height {
                let r = y / 2;
                let other = if y % 2 == 0 { r.saturating_sub(1) } else { (r + 1).min(dh - 1) };
                let colsum = |i: usize| at(i, r) * 3 + at(i, other);
                for x in 0..width {
                    let i = x / 2;
                    let this = colsum(i);
                    let o = if x % 2 == 0 {
                        if i == 0 {
                            this * 4 + 8
                        } else {
                            this * 3 + colsum(i - 1) + 8
                        }
                    } else if i + 1 >= dw {
                        this * 4 + 7
                    } else {
                        this * 3 + colsum(i + 1) + 7
                    };
                    out[y * width + x] = (o >> 4) as u8;
                }
            }
        }
        (1, 2, true) => {
            for y in 0..height {
                let r = y / 2;
                let (other, bias) = if y % 2 == 0 { (r.saturating_sub(1), 1) } else { ((r + 1).min(dh - 1), 2) };
                for x in 0..width {
                    out[y * width + x] = ((at(x, r) * 3 + at(x, other) + bias) >> 2) as u8;
                }
            }
        }
        _ => {
            // plain replication (libjpeg's int_upsample / h2v1 / h2v2 for narrow planes)
            let (fx, fy) = (hmax.div_ceil(c.h).max(1), vmax.div_ceil(c.v).max(1));
            for y in 0..height {
                for x in 0..width {
                    out[y * width + x] = at(x / fx, y / fy) as u8;
                }
            }
        }
    }
    out
}

impl DecodedJpeg {
    /// Interleaved RGB samples (`width * height * 3`); gray is replicated, YCbCr converted with
    /// libjpeg's `ycc_rgb_convert` tables.
    pub fn to_rgb(&self) -> Vec<u8> {
        let n = self.width * self.height;
        let mut out = Vec::with_capacity(n * 3);
        match self.color {
            JpegColor::Gray => {
                for &g in &self.planes[0] {
                    out.extend_from_slice(&[g, g, g]);
                }
            }
            JpegColor::Rgb => {
                for i in 0..n {
                    out.extend_from_slice(&[self.planes[0][i], self.planes[1][i], self.planes[2][i]]);
                }
            }
            JpegColor::YCbCr => {
                const HALF: i64 = 1 << 15;
                let fix = |x: f64| (x * 65536.0 + 0.5) as i64;
                let clamp = |v: i64| v.clamp(0, 255) as u8;
                for i in 0..n {
                    let y = self.planes[0][i] as i64;
                    let cb = self.planes[1][i] as i64 - 128;
                    let cr = self.planes[2][i] as i64 - 128;
                    let r = y + ((fix(1.40200) * cr + HALF) >> 16);
                    let g = y + ((-fix(0.34414) * cb + HALF - fix(0.71414) * cr) >> 16);
                    let b = y + ((fix(1.77200) * cb + HALF) >> 16);
                    out.extend_from_slice(&[clamp(r), clamp(g), clamp(b)]);
                }
            }
        }
        out
    }

    /// The luma plane as libjpeg delivers it for a grayscale output (`JCS_GRAYSCALE`): the Y
    /// plane itself for YCbCr and gray files; `None` for RGB files (caller converts).
    pub fn luma(&self) -> Option<&[u8]> {
        match self.color {
            JpegColor::Gray | JpegColor::YCbCr => Some(&self.planes[0]),
            JpegColor::Rgb => None,
        }
    }
}
