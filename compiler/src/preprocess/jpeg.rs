//! A baseline JPEG decoder that reproduces libjpeg-turbo's default output bit for bit (the
//! decoder behind both `cv2.imread` and PIL), so that preprocessed inputs equal tpu-mlir's.
//!
//! What "default" means in libjpeg-turbo (jdhuff.c, jidctint.c, jdsample.c, jdcolor.c):
//! Huffman-coded sequential DCT (SOF0/SOF1, 8-bit), the accurate integer IDCT (`JDCT_ISLOW`:
//! 13-bit constants, 2 extra bits after pass 1, post-IDCT range limiting that wraps at 1024),
//! "fancy" triangular chroma upsampling for 2h1v / 2h2v / 1h2v (plain replication when the
//! subsampled width is <= 2 or for other ratios), edge rows and columns replicated, and
//! YCbCr -> RGB with 16-bit fixed-point tables. Progressive, arithmetic-coded, 12-bit and CMYK
//! files are reported as [`JpegError::Unsupported`] so that the caller can fall back.
//!
//! Speed without changing a bit: Huffman codes are decoded by 11-bit lookahead tables (AC run,
//! size and value in one look-up) from a 64-bit accumulator ([`FastBits`]; the bit-by-bit
//! [`Bits`] decodes again the rare scans whose end it cannot place the same way), blocks whose
//! dequantised coefficients are small use a 32-bit IDCT that provably cannot overflow, flat
//! blocks a single value (the 32-bit IDCT and the YCbCr conversion with AVX2 where the CPU has
//! it, [`super::avx2`]). The tests compare all of it with digests of the previous decoder's
//! output (`testdata/jpeg_digests.txt` and the tests) on the bundled photos and damaged streams.

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

/// Bits of Huffman lookahead: codes up to this long are decoded with one table look-up, longer
/// ones by the canonical `maxcode` walk.
const LOOKAHEAD: u32 = 11;

/// Entries of the lookahead tables (one per `LOOKAHEAD`-bit window).
const LOOKAHEAD_SIZE: usize = 1 << LOOKAHEAD;

/// A canonical Huffman table in libjpeg's `maxcode` / `valoffset` form, with lookahead tables.
#[derive(Debug, Clone)]
struct Huffman {
    maxcode: [i32; 18],
    valoffset: [i32; 17],
    values: Vec<u8>,
    /// per window of the next `LOOKAHEAD` bits: `(code length << 8) | symbol` when the code ends
    /// within the window and names a symbol, else 0 (decoded by the walk, which also reports errors)
    lookup: Box<[u16; LOOKAHEAD_SIZE]>,
    /// per window, read as an AC table: `(coefficient << 16) | (run << 8) | (code + magnitude
    /// length)` when both the code and its magnitude bits lie within the window, `(EOB_RUN << 8)
    /// | code length` for the end-of-block code, else 0
    fast_ac: Box<[i32; LOOKAHEAD_SIZE]>,
}

impl Huffman {
    /// The table of a DHT segment's 16 code counts and its symbols.
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Result<Self, JpegError> {
        let mut h = Huffman {
            maxcode: [-1; 18],
            valoffset: [0; 17],
            values,
            lookup: Box::new([0; LOOKAHEAD_SIZE]),
            fast_ac: Box::new([0; LOOKAHEAD_SIZE]),
        };
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
        h.build_lookahead();
        Ok(h)
    }

    /// What the bit-by-bit walk of [`Bits::decode`] finds for a code that starts with the top bits
    /// of the `LOOKAHEAD`-bit `window`: `(length, symbol)` if it ends within the window and names
    /// a symbol (`None` also when the walk would report a bad code: the slow path reports it).
    #[cfg(test)]
    fn walk(&self, window: u32) -> Option<(u32, u8)> {
        for len in 1..=LOOKAHEAD {
            let code = (window >> (LOOKAHEAD - len)) as i32;
            if code <= self.maxcode[len as usize] {
                return self.values.get((code + self.valoffset[len as usize]) as usize).map(|&s| (len, s));
            }
        }
        None
    }

    /// Fill `lookup` and `fast_ac` with what [`Huffman::walk`] finds for every window (so that
    /// odd tables, incomplete or over-subscribed, decode exactly as the walk does). The windows
    /// whose first `len` bits are at most `maxcode[len]` form a prefix of all windows, and the
    /// walk takes the shortest such `len`: each length owns the part of its prefix that no
    /// shorter one owns, so every window is visited once.
    fn build_lookahead(&mut self) {
        let mut done = 0usize;
        for len in 1..=LOOKAHEAD {
            let shift = LOOKAHEAD - len;
            let prefix = ((self.maxcode[len as usize] as i64 + 1).max(0) as u64) << shift;
            let end = (prefix.min(LOOKAHEAD_SIZE as u64) as usize).max(done);
            for w in done..end {
                let code = (w >> shift) as i64 + self.valoffset[len as usize] as i64;
                if let Some(&sym) = usize::try_from(code).ok().and_then(|i| self.values.get(i)) {
                    self.set_window(w as u32, len, sym);
                }
            }
            done = end;
        }
    }

    /// The lookahead entries of window `w`, whose code is `len` bits long and names `sym`.
    fn set_window(&mut self, w: u32, len: u32, sym: u8) {
        self.lookup[w as usize] = (len as u16) << 8 | sym as u16;
        let (run, s) = ((sym >> 4) as i32, (sym & 15) as u32);
        if s != 0 && len + s <= LOOKAHEAD {
            let v = ((w >> (LOOKAHEAD - len - s)) & ((1 << s) - 1)) as i32;
            self.fast_ac[w as usize] = extend(v, s) << 16 | run << 8 | (len + s) as i32;
        } else if sym == 0 {
            self.fast_ac[w as usize] = EOB_RUN << 8 | len as i32;
        }
    }
}

/// The run field of an end-of-block entry of `Huffman::fast_ac`: no real run (at most 15)
/// has it, and it takes the coefficient index past 63, the reader's one check.
const EOB_RUN: i32 = 0x80;

/// Largest `|coefficient * quantiser|` of a block for which [`idct_narrow`] (32-bit) is exact:
/// every intermediate of the two passes stays below 61214 * (29.9 * 1100 + 1) < 2^31 (the largest
/// sum of absolute weights of one pass is 61214, pass 1 outputs are descaled by 2^11).
pub(super) const NARROW_LIMIT: u32 = 1100;

/// How a decoded block is turned into samples (all three give the result of [`idct_islow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    /// only the DC coefficient may be non-zero: a flat block
    DcOnly,
    /// AC terms present, the dequantised DC within `NARROW_LIMIT`: [`idct_narrow`] when every
    /// dequantised AC term is within it too ([`idct_checked`] looks), else [`idct_islow`]
    Narrow,
    /// anything else: [`idct_islow`] with 64-bit arithmetic
    Wide,
}

/// A reader of entropy-coded data that decodes whole blocks, so that a scan can be decoded by
/// the fast reader and, when it cannot vouch for its result, again by the exact one.
trait EntropyReader<'a> {
    /// A reader at the start of `data` (the bytes after an SOS header).
    fn start(data: &'a [u8]) -> Self;
    /// Decode one block's coefficients into `coef` (zeroed by the caller), updating the DC
    /// predictor; `q` (the block's quantisation table) only chooses the [`BlockKind`].
    fn block(
        &mut self,
        dc: &Huffman,
        ac: &Huffman,
        pred: &mut i32,
        coef: &mut [i32; 64],
        q: &[u16; 64],
    ) -> Result<BlockKind, JpegError>;
    /// Skip to after the next RSTn marker and reset the bit buffer.
    fn restart(&mut self);
    /// Bytes of `data` consumed by the scan, up to the marker that ends it.
    fn consumed(&mut self) -> usize;
}

/// The end of a scan as the decoder always found it: from `pos`, the first marker that is not
/// RSTn (or the end of the data); also whether it stopped at a run of 0xFF fill bytes or at the
/// end, the two cases where the answer depends on how far the reader had read ahead.
fn scan_end(data: &[u8], pos: usize) -> (usize, bool) {
    let mut p = pos.min(data.len());
    while p + 1 < data.len() && !(data[p] == 0xFF && data[p + 1] != 0 && !(0xD0..=0xD7).contains(&data[p + 1])) {
        p += 1;
    }
    (p, p + 1 >= data.len() || data[p + 1] == 0xFF)
}

/// Entropy-coded segment reader: byte stuffing, markers end the data (zeros are fed after).
/// Reads a Huffman code bit by bit: the exact reference for [`FastBits`], used where that one
/// cannot vouch for its result (0xFF fill bytes, data ending without a marker).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    nbits: u32,
    hit_marker: bool,
}

impl<'a> Bits<'a> {
    /// Top up the accumulator to more than 56 bits: 0xFF00 is a 0xFF byte, 0xFF 0xFF a fill
    /// byte; a marker (or 0xFF at the end) stops the data and zeros are fed after it.
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

    /// Read `n` (0..=16) bits as an unsigned number.
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

    /// Decode one Huffman symbol a bit at a time (libjpeg's `maxcode` walk).
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
    fn resync(&mut self) {
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

impl<'a> EntropyReader<'a> for Bits<'a> {
    fn start(data: &'a [u8]) -> Self {
        Bits { data, pos: 0, acc: 0, nbits: 0, hit_marker: false }
    }

    fn block(
        &mut self,
        dc: &Huffman,
        ac: &Huffman,
        pred: &mut i32,
        coef: &mut [i32; 64],
        _q: &[u16; 64],
    ) -> Result<BlockKind, JpegError> {
        let s = self.decode(dc)? as u32;
        if s > 16 {
            return Err(corrupt("bad DC magnitude"));
        }
        *pred += extend(self.bits(s), s);
        coef[0] = *pred;
        let mut k = 1;
        while k < 64 {
            let rs = self.decode(ac)?;
            let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
            if s != 0 {
                k += r;
                if k > 63 {
                    return Err(corrupt("AC coefficient index past 63"));
                }
                coef[ZIGZAG[k]] = extend(self.bits(s), s);
                k += 1;
            } else if r == 15 {
                k += 16;
            } else {
                break;
            }
        }
        Ok(BlockKind::Wide)
    }

    fn restart(&mut self) {
        self.resync();
    }

    fn consumed(&mut self) -> usize {
        scan_end(self.data, self.pos).0
    }
}

/// The fast entropy reader: a 64-bit accumulator refilled 8 bytes at once where they hold no
/// 0xFF, Huffman codes and small AC coefficients decoded by table look-up. It reads the same
/// bits as [`Bits`]; only how far it reads ahead differs, which can change a scan's result where
/// 0xFF fill bytes precede a marker or the data ends without one: it then sets `inexact` and the
/// scan is decoded again with [`Bits`].
struct FastBits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    nbits: u32,
    hit_marker: bool,
    /// the result may differ from [`Bits`]'s (see above)
    inexact: bool,
}

/// Whether one of the 8 bytes of `w` is 0xFF (a zero byte of `!w`, by the carry trick).
fn has_ff_byte(w: u64) -> bool {
    let x = !w;
    x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080 != 0
}

impl FastBits<'_> {
    /// [`Bits::fill`], noting the cases that make the result `inexact` (the slow refill: a 0xFF
    /// byte within the next 8, or the end of the data).
    #[cold]
    #[inline(never)]
    fn refill_bytes(&mut self) {
        while self.nbits <= 56 {
            let mut byte = 0u8;
            if !self.hit_marker {
                match self.data.get(self.pos) {
                    None => self.inexact = true,
                    Some(&0xFF) => match self.data.get(self.pos + 1) {
                        Some(0x00) => {
                            self.pos += 2;
                            byte = 0xFF;
                        }
                        Some(0xFF) => {
                            self.inexact = true;
                            self.pos += 1;
                            continue;
                        }
                        Some(_) => self.hit_marker = true,
                        None => {
                            self.inexact = true;
                            self.hit_marker = true;
                        }
                    },
                    Some(&b) => {
                        self.pos += 1;
                        byte = b;
                    }
                }
            }
            self.acc |= (byte as u64) << (56 - self.nbits);
            self.nbits += 8;
        }
    }
}

/// Decode one Huffman symbol from the top bits of `acc` (at least 16 of them valid): the code's
/// length and the symbol.
#[inline(always)]
fn symbol_at(h: &Huffman, acc: u64) -> Result<(u32, u8), JpegError> {
    let e = h.lookup[(acc >> (64 - LOOKAHEAD)) as usize];
    if e != 0 {
        return Ok(((e >> 8) as u32, e as u8));
    }
    symbol_walk_at(h, acc)
}

/// [`Bits::decode`]'s canonical walk on the top bits of `acc`, for codes longer than the
/// lookahead and for bad codes.
#[cold]
fn symbol_walk_at(h: &Huffman, acc: u64) -> Result<(u32, u8), JpegError> {
    for len in 1..=16u32 {
        let code = (acc >> (64 - len)) as i32;
        if code <= h.maxcode[len as usize] {
            return match h.values.get((code + h.valoffset[len as usize]) as usize) {
                Some(&v) => Ok((len, v)),
                None => Err(corrupt("bad Huffman code")),
            };
        }
    }
    Err(corrupt("bad Huffman code"))
}

impl<'a> EntropyReader<'a> for FastBits<'a> {
    fn start(data: &'a [u8]) -> Self {
        FastBits { data, pos: 0, acc: 0, nbits: 0, hit_marker: false, inexact: false }
    }

    /// The accumulator, its bit count and the read position are kept in locals for the whole
    /// block (in registers: the slow refill, a call, sees them only when it runs).
    #[inline(always)]
    fn block(
        &mut self,
        dc: &Huffman,
        ac: &Huffman,
        pred: &mut i32,
        coef: &mut [i32; 64],
        q: &[u16; 64],
    ) -> Result<BlockKind, JpegError> {
        let data = self.data;
        let (mut acc, mut nbits, mut pos) = (self.acc, self.nbits, self.pos);
        // make at least 32 bits available: `refill` with the reader state in the locals
        macro_rules! ensure32 {
            () => {
                if nbits < 32 {
                    let chunk = if self.hit_marker { None } else { data.get(pos..pos + 8) };
                    match chunk.and_then(|c| <[u8; 8]>::try_from(c).ok()).map(u64::from_be_bytes) {
                        Some(w) if !has_ff_byte(w) => {
                            let n = (64 - nbits) / 8;
                            acc |= (w >> (64 - 8 * n)) << (64 - nbits - 8 * n);
                            nbits += 8 * n;
                            pos += n as usize;
                        }
                        _ => {
                            (self.acc, self.nbits, self.pos) = (acc, nbits, pos);
                            self.refill_bytes();
                            (acc, nbits, pos) = (self.acc, self.nbits, self.pos);
                        }
                    }
                }
            };
        }
        // drop `n` bits / read `s` (1..=16) bits as an unsigned number
        macro_rules! consume {
            ($n:expr) => {{
                let n: u32 = $n;
                acc <<= n;
                nbits -= n;
            }};
        }
        macro_rules! take {
            ($s:expr) => {{
                let s: u32 = $s;
                let v = (acc >> (64 - s)) as i32;
                consume!(s);
                v
            }};
        }
        let result = 'block: {
            ensure32!();
            let (len, s) = match symbol_at(dc, acc) {
                Ok((len, s)) => (len, s as u32),
                Err(e) => break 'block Err(e),
            };
            consume!(len);
            if s > 16 {
                break 'block Err(corrupt("bad DC magnitude"));
            }
            *pred += if s == 0 { 0 } else { extend(take!(s), s) };
            coef[0] = *pred;
            // the AC terms are checked with the IDCT (`idct_checked`), off this serial loop
            let wide = pred.unsigned_abs() as u64 * q[0] as u64 > NARROW_LIMIT as u64;
            let mut any_ac = false;
            let mut k = 1;
            while k < 64 {
                ensure32!();
                let f = ac.fast_ac[(acc >> (64 - LOOKAHEAD)) as usize];
                let (z, v) = if f != 0 {
                    consume!((f & 0xFF) as u32);
                    k += ((f >> 8) & 0xFF) as usize;
                    if k > 63 {
                        if (f >> 8) & 0xFF == EOB_RUN {
                            break;
                        }
                        break 'block Err(corrupt("AC coefficient index past 63"));
                    }
                    (ZIGZAG[k], f >> 16)
                } else {
                    let rs = match symbol_at(ac, acc) {
                        Ok((len, rs)) => {
                            consume!(len);
                            rs
                        }
                        Err(e) => break 'block Err(e),
                    };
                    let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
                    if s == 0 {
                        if r == 15 {
                            k += 16;
                            continue;
                        }
                        break;
                    }
                    k += r;
                    if k > 63 {
                        break 'block Err(corrupt("AC coefficient index past 63"));
                    }
                    (ZIGZAG[k], extend(take!(s), s))
                };
                coef[z] = v;
                any_ac = true;
                k += 1;
            }
            Ok(if !any_ac {
                BlockKind::DcOnly
            } else if wide {
                BlockKind::Wide
            } else {
                BlockKind::Narrow
            })
        };
        (self.acc, self.nbits, self.pos) = (acc, nbits, pos);
        result
    }

    fn restart(&mut self) {
        self.acc = 0;
        self.nbits = 0;
        self.hit_marker = false;
        while self.pos + 1 < self.data.len() {
            let next = self.data[self.pos + 1];
            if self.data[self.pos] == 0xFF && (0xD0..=0xD7).contains(&next) {
                self.pos += 2;
                return;
            }
            if self.data[self.pos] == 0xFF && next != 0 && next != 0xFF {
                return;
            }
            self.pos += 1;
        }
        // no marker up to the end: where Bits stops depends on how far it had read
        self.inexact = true;
    }

    fn consumed(&mut self) -> usize {
        let (p, unsure) = scan_end(self.data, self.pos);
        self.inexact |= unsure;
        p
    }
}

/// JPEG's `EXTEND`: the signed value of an `s`-bit magnitude category code `v`.
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

/// libjpeg's post-IDCT range limit as a table: sample for the low 10 bits of a descaled value
/// (the same as the `limit` closure of [`idct_islow`]).
static RANGE_LIMIT: [u8; 1024] = {
    let mut t = [0u8; 1024];
    let mut m = 0;
    while m < 1024 {
        t[m] = if m < 128 {
            (m + 128) as u8
        } else if m < 512 {
            255
        } else if m < 896 {
            0
        } else {
            (m - 896) as u8
        };
        m += 1;
    }
    t
};

/// [`idct_islow`] of a block whose AC coefficients are all zero: one flat value. Pass 1 gives
/// `dc * 4` in column 0 and zeros elsewhere, pass 2 `(dc * 4) << 13` descaled by 18 bits, that
/// is `(dc + 4) >> 3` (64-bit, as `dc` is unbounded in damaged streams).
fn idct_dc_only(coef0: i32, q0: u16, out: &mut [u8], stride: usize) {
    let v = RANGE_LIMIT[(((coef0 as i64 * q0 as i64) + 4) >> 3) as usize & 1023];
    for row in out.chunks_mut(stride).take(8) {
        row[..8].fill(v);
    }
}

/// The butterflies of [`idct_islow`] (one 1-D pass, before descaling) in 32-bit arithmetic:
/// exact while every input is within 61214 * |input| < 2^31 (see `NARROW_LIMIT`).
#[inline(always)]
fn islow_pass32(s: [i32; 8]) -> [i32; 8] {
    let (z2, z3) = (s[2], s[6]);
    let z1 = (z2 + z3) * 4433;
    let tmp2 = z1 - z3 * 15137;
    let tmp3 = z1 + z2 * 6270;
    let tmp0 = (s[0] + s[4]) << 13;
    let tmp1 = (s[0] - s[4]) << 13;
    let (t10, t13, t11, t12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
    let (o0, o1, o2, o3) = (s[7], s[5], s[3], s[1]);
    let z5 = (o0 + o1 + o2 + o3) * 9633;
    let z1 = -(o0 + o3) * 7373;
    let z2 = -(o1 + o2) * 20995;
    let z3 = -(o0 + o2) * 16069 + z5;
    let z4 = -(o1 + o3) * 3196 + z5;
    let a0 = o0 * 2446 + z1 + z3;
    let a1 = o1 * 16819 + z2 + z4;
    let a2 = o2 * 25172 + z2 + z3;
    let a3 = o3 * 12299 + z1 + z4;
    [t10 + a3, t11 + a2, t12 + a1, t13 + a0, t13 - a0, t12 - a1, t11 - a2, t10 - a3]
}

/// [`idct_islow`] in 32-bit arithmetic, with libjpeg's shortcuts for columns and rows whose AC
/// terms are zero (exact: a lone DC term passes through the butterflies as `dc << 13`). Only
/// for blocks whose dequantised coefficients are all within `NARROW_LIMIT`.
fn idct_narrow(coef: &[i32; 64], q: &[u16; 64], out: &mut [u8], stride: usize) {
    let mut ws = [0i32; 64];
    for col in 0..8 {
        let mut s = [0i32; 8];
        let mut ac = 0;
        for (r, v) in s.iter_mut().enumerate() {
            *v = coef[r * 8 + col] * q[r * 8 + col] as i32;
            ac |= if r > 0 { *v } else { 0 };
        }
        if ac == 0 {
            for r in 0..8 {
                ws[r * 8 + col] = s[0] << 2;
            }
            continue;
        }
        let r = islow_pass32(s);
        for row in 0..8 {
            ws[row * 8 + col] = (r[row] + (1 << 10)) >> 11;
        }
    }
    for (w, line) in ws.chunks_exact(8).zip(out.chunks_mut(stride)) {
        let line = &mut line[..8];
        let w: [i32; 8] = [w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]];
        if w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7] == 0 {
            line.fill(RANGE_LIMIT[((w[0] + (1 << 4)) >> 5) as usize & 1023]);
            continue;
        }
        let r = islow_pass32(w);
        for (o, v) in line.iter_mut().zip(r) {
            *o = RANGE_LIMIT[((v + (1 << 17)) >> 18) as usize & 1023];
        }
    }
}

/// [`idct_narrow`] when every dequantised coefficient is within `NARROW_LIMIT` (by the AVX2
/// kernel when `avx2`, the same samples, see [`super::avx2`]), else [`idct_islow`]. The DC term
/// must be within the limit already: then no product overflows 32 bits (|AC| < 2^15).
#[inline(always)]
fn idct_checked(avx2: bool, coef: &[i32; 64], q: &[u16; 64], out: &mut [u8], stride: usize) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` comes from `avx2::available()`, so the CPU supports AVX2.
        if !unsafe { super::avx2::idct_narrow_avx2(coef, q, out, stride) } {
            idct_islow(coef, q, out, stride);
        }
        return;
    }
    let _ = avx2;
    if is_narrow(coef, q) {
        idct_narrow(coef, q, out, stride)
    } else {
        idct_islow(coef, q, out, stride)
    }
}

/// Whether every `|coef * q|` is within `NARROW_LIMIT` (products of at most 2^31: a DC term
/// within the limit and AC terms below 2^15).
fn is_narrow(coef: &[i32; 64], q: &[u16; 64]) -> bool {
    coef.iter().zip(q).fold(0u32, |m, (&c, &q)| m.max(c.unsigned_abs() * q as u32)) <= NARROW_LIMIT
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
    let avx2 = super::avx2::available();
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
                let setup = ScanSetup {
                    scomp: &scomp,
                    qt: &qt,
                    dc: &dc_tabs,
                    ac: &ac_tabs,
                    restart_interval,
                    width,
                    height,
                    hmax,
                    vmax,
                    avx2,
                };
                let mut fast = FastBits::start(&data[pos..]);
                let result = decode_scan(&mut fast, &mut comps, &setup);
                // rare streams where the fast reader cannot vouch for its result: read them again
                let consumed = if fast.inexact {
                    decode_scan(&mut Bits::start(&data[pos..]), &mut comps, &setup)?
                } else {
                    result?
                };
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
    let planes = comps.into_iter().map(|c| upsample(c, width, height, hmax, vmax)).collect();
    Ok(DecodedJpeg { width, height, color, planes })
}

/// What a scan needs besides its data: its components and the tables and frame geometry.
struct ScanSetup<'t> {
    /// (component index, DC table, AC table) per scan component
    scomp: &'t [(usize, usize, usize)],
    /// quantisation tables (natural order)
    qt: &'t [[u16; 64]; 4],
    /// DC Huffman tables
    dc: &'t [Option<Huffman>; 4],
    /// AC Huffman tables
    ac: &'t [Option<Huffman>; 4],
    /// MCUs between RSTn markers (0: none)
    restart_interval: usize,
    /// image width
    width: usize,
    /// image height
    height: usize,
    /// largest horizontal sampling factor
    hmax: usize,
    /// largest vertical sampling factor
    vmax: usize,
    /// the CPU has AVX2 (for [`idct_checked`])
    avx2: bool,
}

/// Decode one scan (all its MCUs) into the component planes with `bits`; returns the bytes
/// consumed.
fn decode_scan<'a, R: EntropyReader<'a>>(
    bits: &mut R,
    comps: &mut [Component],
    setup: &ScanSetup,
) -> Result<usize, JpegError> {
    let ScanSetup { scomp, qt, dc, ac, restart_interval, width, height, hmax, vmax, avx2 } = *setup;
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
                let c = &mut comps[ci];
                let q = &qt[c.tq];
                for by in 0..bv {
                    for bx in 0..bh {
                        coef.fill(0);
                        let kind = bits.block(dct, act, &mut pred[si], &mut coef, q)?;
                        let (col, row) = if single { (mx, my) } else { (mx * c.h + bx, my * c.v + by) };
                        if col < c.bw && row < c.bh {
                            let stride = c.bw * 8;
                            let out = &mut c.plane[row * 8 * stride + col * 8..];
                            match kind {
                                BlockKind::DcOnly => idct_dc_only(coef[0], q[0], out, stride),
                                BlockKind::Narrow => idct_checked(avx2, &coef, q, out, stride),
                                BlockKind::Wide => idct_islow(&coef, q, out, stride),
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(bits.consumed())
}

/// Upsample one component plane to the image size as libjpeg-turbo's default (fancy) upsampler,
/// a row at a time (a full-size plane without subsampling is handed over as it is).
fn upsample(c: Component, width: usize, height: usize, hmax: usize, vmax: usize) -> Vec<u8> {
    let stride = c.bw * 8;
    let dw = (width * c.h).div_ceil(hmax);
    let dh = (height * c.v).div_ceil(vmax);
    let (fx, fy) = (hmax / c.h, vmax / c.v);
    let exact = hmax.is_multiple_of(c.h) && vmax.is_multiple_of(c.v);
    let row = |y: usize| &c.plane[y.min(dh - 1) * stride..][..dw];
    if (fx, fy, exact) == (1, 1, true) && stride == width {
        let mut plane = c.plane;
        plane.truncate(width * height);
        return plane;
    }
    let mut out = vec![0u8; width * height];
    let lines = out.chunks_exact_mut(width);
    match (fx, fy, exact) {
        (1, 1, true) => lines.enumerate().for_each(|(y, o)| o.copy_from_slice(&row(y)[..width])),
        (2, 1, true) if dw > 2 => {
            let mut sums = vec![0i32; dw];
            for (y, o) in lines.enumerate() {
                sums.iter_mut().zip(row(y)).for_each(|(s, &v)| *s = v as i32);
                fancy_h2_row(&sums, o, (1, 2, 2));
            }
        }
        (2, 2, true) if dw > 2 => {
            let mut sums = vec![0i32; dw];
            for (y, o) in lines.enumerate() {
                let r = y / 2;
                let other = if y % 2 == 0 { r.saturating_sub(1) } else { (r + 1).min(dh - 1) };
                for ((s, &a), &b) in sums.iter_mut().zip(row(r)).zip(row(other)) {
                    *s = a as i32 * 3 + b as i32;
                }
                fancy_h2_row(&sums, o, (8, 7, 4));
            }
        }
        (1, 2, true) => {
            for (y, o) in lines.enumerate() {
                let r = y / 2;
                let (other, bias) = if y % 2 == 0 { (r.saturating_sub(1), 1) } else { ((r + 1).min(dh - 1), 2) };
                for ((o, &a), &b) in o.iter_mut().zip(row(r)).zip(row(other)) {
                    *o = ((a as i32 * 3 + b as i32 + bias) >> 2) as u8;
                }
            }
        }
        _ => {
            // plain replication (libjpeg's int_upsample / h2v1 / h2v2 for narrow planes)
            let (fx, fy) = (hmax.div_ceil(c.h).max(1), vmax.div_ceil(c.v).max(1));
            for (y, o) in lines.enumerate() {
                let src = row(y / fy);
                o.iter_mut().enumerate().for_each(|(x, o)| *o = src[(x / fx).min(dw - 1)]);
            }
        }
    }
    out
}

/// One output row of libjpeg's fancy 2x horizontal upsampling from `v` (the row's samples, or
/// for 2h2v its vertical sums `3 * near + far`): sample `2i` is `(3 v[i] + v[i-1] + even) >>
/// shift`, sample `2i+1` is `(3 v[i] + v[i+1] + odd) >> shift`, neighbours clamped to the row
/// (which gives libjpeg's edge formulas); `out` holds `2 v.len()` or one fewer samples.
fn fancy_h2_row(v: &[i32], out: &mut [u8], (even, odd, shift): (i32, i32, u32)) {
    let n = v.len();
    for (o, w) in out[2..].chunks_exact_mut(2).zip(v.windows(3)).take(n.saturating_sub(2)) {
        let t = w[1] * 3;
        o[0] = ((t + w[0] + even) >> shift) as u8;
        o[1] = ((t + w[2] + odd) >> shift) as u8;
    }
    for i in [0, n - 1] {
        let t = v[i] * 3;
        let pair = [(2 * i, v[i.saturating_sub(1)] + even), (2 * i + 1, v[(i + 1).min(n - 1)] + odd)];
        for (k, add) in pair {
            if let Some(o) = out.get_mut(k) {
                *o = ((t + add) >> shift) as u8;
            }
        }
    }
}

/// libjpeg's `ycc_rgb_convert` for one pixel: 16-bit fixed-point factors (1.40200, 0.34414,
/// 0.71414, 1.77200 times 65536, rounded), products within 32 bits.
#[inline(always)]
fn ycc_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    const HALF: i32 = 1 << 15;
    let (y, cb, cr) = (y as i32, cb as i32 - 128, cr as i32 - 128);
    let r = y + ((91881 * cr + HALF) >> 16);
    let g = y + ((-22554 * cb + HALF - 46802 * cr) >> 16);
    let b = y + ((116130 * cb + HALF) >> 16);
    [r.clamp(0, 255) as u8, g.clamp(0, 255) as u8, b.clamp(0, 255) as u8]
}

/// YCbCr planes to interleaved RGB (`BGR`: B, G, R order), [`ycc_to_rgb`] per pixel.
fn ycc_interleave_scalar<const BGR: bool>(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    for (o, ((&y, &cb), &cr)) in out.chunks_exact_mut(3).zip(y.iter().zip(cb).zip(cr)) {
        let [r, g, b] = ycc_to_rgb(y, cb, cr);
        o.copy_from_slice(&if BGR { [b, g, r] } else { [r, g, b] });
    }
}

/// [`ycc_interleave_scalar`], 16 pixels at a time by the AVX2 kernel when the CPU has it.
fn ycc_interleave<const BGR: bool>(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if super::avx2::available() {
        let n = y.len().min(cb.len()).min(cr.len()).min(out.len() / 3) / 16 * 16;
        let (yc, cbc, crc) = (y[..n].chunks_exact(16), cb[..n].chunks_exact(16), cr[..n].chunks_exact(16));
        for (((y, cb), cr), o) in yc.zip(cbc).zip(crc).zip(out[..3 * n].chunks_exact_mut(48)) {
            let (Ok(y), Ok(cb), Ok(cr), Ok(o)) = (y.try_into(), cb.try_into(), cr.try_into(), o.try_into()) else {
                continue;
            };
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { super::avx2::ycc_interleave16::<BGR>(y, cb, cr, o) };
        }
        return ycc_interleave_scalar::<BGR>(&y[n..], &cb[n..], &cr[n..], &mut out[3 * n..]);
    }
    ycc_interleave_scalar::<BGR>(y, cb, cr, out)
}

impl DecodedJpeg {
    /// Interleaved RGB samples (`width * height * 3`); gray is replicated, YCbCr converted with
    /// libjpeg's `ycc_rgb_convert` tables.
    pub fn to_rgb(&self) -> Vec<u8> {
        self.interleaved::<false>()
    }

    /// Interleaved BGR samples (what `cv2.imread` gives): [`DecodedJpeg::to_rgb`] with the
    /// first and last channel swapped.
    pub fn to_bgr(&self) -> Vec<u8> {
        self.interleaved::<true>()
    }

    /// Interleaved samples in RGB order, or BGR when `BGR`.
    fn interleaved<const BGR: bool>(&self) -> Vec<u8> {
        let n = self.width * self.height;
        let mut out = vec![0u8; n * 3];
        match self.color {
            JpegColor::Gray => {
                for (o, &g) in out.chunks_exact_mut(3).zip(&self.planes[0][..n]) {
                    o.copy_from_slice(&[g, g, g]);
                }
            }
            JpegColor::Rgb => {
                let (r, g, b) = (&self.planes[0][..n], &self.planes[1][..n], &self.planes[2][..n]);
                let (first, last) = if BGR { (b, r) } else { (r, b) };
                for (o, ((&f, &g), &l)) in out.chunks_exact_mut(3).zip(first.iter().zip(g).zip(last)) {
                    o.copy_from_slice(&[f, g, l]);
                }
            }
            JpegColor::YCbCr => {
                let (y, cb, cr) = (&self.planes[0][..n], &self.planes[1][..n], &self.planes[2][..n]);
                ycc_interleave::<BGR>(y, cb, cr, &mut out);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// (sum, position-weighted checksum, first pixel, last pixel) of interleaved BGR samples.
    fn checksums(bgr: &[u8]) -> (u64, u64, [u8; 3], [u8; 3]) {
        let sum = bgr.iter().map(|&v| v as u64).sum();
        let weighted =
            bgr.iter().enumerate().fold(0u64, |acc, (i, &v)| (acc + ((i as u64 % 65521) + 1) * v as u64) % (1 << 61));
        let n = bgr.len();
        (sum, weighted, [bgr[0], bgr[1], bgr[2]], [bgr[n - 3], bgr[n - 2], bgr[n - 1]])
    }

    fn bgr(j: &DecodedJpeg) -> Vec<u8> {
        let mut v = j.to_rgb();
        v.chunks_exact_mut(3).for_each(|p| p.swap(0, 2));
        v
    }

    // Small 37x23 files written by Pillow 13; expected values: numpy on `cv2.imread` (BGR) and
    // `cv2.imread(..., IMREAD_GRAYSCALE)` of the same files (opencv-python 5.0).
    #[test]
    fn h2v1_with_restart_markers_matches_libjpeg() {
        let j = decode_jpeg(include_bytes!("testdata/h2v1_restart.jpg")).unwrap();
        assert_eq!((j.width, j.height, j.color), (37, 23, JpegColor::YCbCr));
        assert_eq!(checksums(&bgr(&j)), (330141, 420962622, [255, 0, 32], [12, 23, 27]));
        assert_eq!(j.luma().unwrap().iter().map(|&v| v as u64).sum::<u64>(), 108481);
    }

    #[test]
    fn h2v2_odd_size_matches_libjpeg() {
        let j = decode_jpeg(include_bytes!("testdata/h2v2_odd.jpg")).unwrap();
        assert_eq!(checksums(&bgr(&j)), (330028, 421290984, [171, 8, 23], [12, 30, 1]));
        assert_eq!(j.luma().unwrap().iter().map(|&v| v as u64).sum::<u64>(), 108406);
    }

    #[test]
    fn grayscale_matches_libjpeg() {
        let j = decode_jpeg(include_bytes!("testdata/gray.jpg")).unwrap();
        assert_eq!(j.color, JpegColor::Gray);
        assert_eq!(checksums(&bgr(&j)), (325575, 425829366, [35, 35, 35], [26, 26, 26]));
    }

    #[test]
    fn damaged_streams_never_panic() {
        let good: &[u8] = include_bytes!("testdata/h2v1_restart.jpg");
        for cut in [0, 3, 20, 200, 600, good.len() - 2] {
            let _ = decode_jpeg(&good[..cut]);
        }
        let mut state = 12345u64;
        for _ in 0..300 {
            let mut bad = good.to_vec();
            for _ in 0..4 {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let i = (state >> 33) as usize % bad.len();
                bad[i] = (state >> 17) as u8;
            }
            let _ = decode_jpeg(&bad);
        }
        assert_eq!(decode_jpeg(b"GIF89a").unwrap_err(), JpegError::Corrupt("missing SOI marker".into()));
    }

    #[test]
    fn idct_of_a_dc_block_is_flat() {
        let mut coef = [0i32; 64];
        coef[0] = 10;
        let q = [8u16; 64];
        let mut out = [0u8; 64];
        idct_islow(&coef, &q, &mut out, 8);
        // 10 * 8 / 8 = 10 -> 128 + 10
        assert!(out.iter().all(|&v| v == 138));
    }

    /// The 32-bit IDCT and the flat-block shortcut against the 64-bit one, up to the largest
    /// in-range coefficients (all +-NARROW_LIMIT in every sign pattern found by random draws, and
    /// random blocks); overflow would panic in this (overflow-checked) test build.
    #[test]
    fn narrow_idct_equals_islow() {
        let mut next = lcg(777);
        let lim = NARROW_LIMIT as i32;
        for round in 0..200_000 {
            let mut coef = [0i32; 64];
            let mut q = [1u16; 64];
            for i in 0..64 {
                match round % 4 {
                    0 => {
                        q[i] = NARROW_LIMIT as u16;
                        coef[i] = if next() % 2 == 0 { 1 } else { -1 };
                    }
                    1 => {
                        q[i] = 1 + (next() % 60) as u16;
                        coef[i] = (next() % (2 * (lim / q[i] as i32) as u64 + 1)) as i32 - lim / q[i] as i32;
                    }
                    2 if next() % 8 == 0 => coef[i] = (next() % (2 * lim as u64 + 1)) as i32 - lim,
                    _ if next() % 16 == 0 => coef[i] = (next() % 41) as i32 - 20,
                    _ => {}
                }
            }
            let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
            idct_islow(&coef, &q, &mut a, 8);
            idct_narrow(&coef, &q, &mut b, 8);
            assert_eq!(a, b, "round {round}");
            if round % 4 == 0 {
                // flat blocks, also with DC terms far outside the 32-bit range once dequantised
                let mut flat = [0i32; 64];
                flat[0] = (next() as i32 % 3000 - 1500) * if round % 8 == 0 { 1 << 16 } else { 1 };
                q[0] = (next() % 65536) as u16;
                idct_islow(&flat, &q, &mut a, 8);
                idct_dc_only(flat[0], q[0], &mut b, 8);
                assert_eq!(a, b, "dc round {round}");
            }
        }
    }
    /// A small deterministic generator (64-bit LCG).
    fn lcg(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            state >> 33
        }
    }

    /// The lookahead tables against the walk of every window, for random tables: complete,
    /// incomplete and over-subscribed code counts, symbol lists shorter than the counts allow.
    #[test]
    fn lookahead_tables_equal_the_walk() {
        let mut next = lcg(2024);
        for round in 0..3000 {
            let mut counts = [0u8; 16];
            for c in counts.iter_mut() {
                *c = match next() % 4 {
                    0 => 0,
                    1 => (next() % 4) as u8,
                    2 => (next() % 20) as u8,
                    _ => (next() % 256) as u8,
                };
            }
            let total: usize = counts.iter().map(|&c| c as usize).sum();
            let values: Vec<u8> = (0..total).map(|_| next() as u8).collect();
            let Ok(h) = Huffman::new(&counts, values) else { continue };
            for w in 0..LOOKAHEAD_SIZE as u32 {
                let (mut lookup, mut fast) = (0u16, 0i32);
                if let Some((len, sym)) = h.walk(w) {
                    lookup = (len as u16) << 8 | sym as u16;
                    let (run, s) = ((sym >> 4) as i32, (sym & 15) as u32);
                    if s != 0 && len + s <= LOOKAHEAD {
                        let v = ((w >> (LOOKAHEAD - len - s)) & ((1 << s) - 1)) as i32;
                        fast = extend(v, s) << 16 | run << 8 | (len + s) as i32;
                    } else if sym == 0 {
                        fast = EOB_RUN << 8 | len as i32;
                    }
                }
                assert_eq!((h.lookup[w as usize], h.fast_ac[w as usize]), (lookup, fast), "round {round}, window {w}");
            }
        }
    }

    /// The AVX2 IDCT against the scalar 32-bit one on random in-range blocks (the extremes of
    /// `narrow_idct_equals_islow` included), written with a stride wider than a block.
    #[test]
    fn avx2_idct_equals_narrow() {
        if !super::super::avx2::available() {
            return;
        }
        let mut next = lcg(4242);
        let lim = NARROW_LIMIT as i32;
        for round in 0..200_000 {
            let mut coef = [0i32; 64];
            let mut q = [1u16; 64];
            for i in 0..64 {
                match round % 5 {
                    0 => {
                        q[i] = NARROW_LIMIT as u16;
                        coef[i] = if next().is_multiple_of(2) { 1 } else { -1 };
                    }
                    1 => {
                        q[i] = 1 + (next() % 60) as u16;
                        coef[i] = (next() % (2 * (lim / q[i] as i32) as u64 + 1)) as i32 - lim / q[i] as i32;
                    }
                    2 if next().is_multiple_of(8) => coef[i] = (next() % (2 * lim as u64 + 1)) as i32 - lim,
                    3 if i.is_multiple_of(8) || i < 8 => coef[i] = (next() % 201) as i32 - 100,
                    _ if next().is_multiple_of(16) => coef[i] = (next() % 41) as i32 - 20,
                    _ => {}
                }
            }
            let (mut a, mut b) = ([7u8; 8 * 13], [7u8; 8 * 13]);
            idct_narrow(&coef, &q, &mut a[3..], 13);
            // SAFETY: AVX2 is available (checked above).
            assert!(unsafe { super::super::avx2::idct_narrow_avx2(&coef, &q, &mut b[3..], 13) });
            assert_eq!(a, b, "round {round}");
        }
    }

    /// The checked IDCT (AVX2 or scalar) against the 64-bit one around and beyond the narrow
    /// limit: AC terms up to 2^15 - 1, DC terms within the limit (what the fast reader sends).
    #[test]
    fn checked_idct_equals_islow() {
        let mut next = lcg(31337);
        let lim = NARROW_LIMIT as i32;
        for round in 0..100_000 {
            let mut coef = [0i32; 64];
            let mut q = [1u16; 64];
            for i in 1..64 {
                q[i] = 1 + (next() % if round % 3 == 0 { 65535 } else { 40 }) as u16;
                coef[i] = match next() % 4 {
                    0 => (next() % 65535) as i32 - 32767,
                    1 => (next() % (2 * lim as u64 + 3)) as i32 - lim - 1,
                    _ => 0,
                };
            }
            q[0] = 1 + (next() % 30) as u16;
            coef[0] = (next() % (2 * (lim / q[0] as i32) as u64 + 1)) as i32 - lim / q[0] as i32;
            let (mut a, mut b, mut c) = ([9u8; 8 * 11], [9u8; 8 * 11], [9u8; 8 * 11]);
            idct_islow(&coef, &q, &mut a[2..], 11);
            idct_checked(super::super::avx2::available(), &coef, &q, &mut b[2..], 11);
            idct_checked(false, &coef, &q, &mut c[2..], 11);
            assert_eq!(a, b, "round {round}");
            assert_eq!(a, c, "round {round} (scalar)");
        }
    }

    /// The AVX2 colour conversion against the scalar one for every (Y, Cb, Cr) triple, in both
    /// orders, and on plane lengths that leave remainders.
    #[test]
    fn avx2_ycc_equals_scalar_for_every_pixel() {
        let n = 1 << 24;
        let y: Vec<u8> = (0..n).map(|i| (i >> 16) as u8).collect();
        let cb: Vec<u8> = (0..n).map(|i| (i >> 8) as u8).collect();
        let cr: Vec<u8> = (0..n).map(|i| i as u8).collect();
        let (mut a, mut b) = (vec![0u8; 3 * n], vec![1u8; 3 * n]);
        ycc_interleave_scalar::<true>(&y, &cb, &cr, &mut a);
        ycc_interleave::<true>(&y, &cb, &cr, &mut b);
        assert!(a == b, "bgr");
        ycc_interleave_scalar::<false>(&y, &cb, &cr, &mut a);
        ycc_interleave::<false>(&y, &cb, &cr, &mut b);
        assert!(a == b, "rgb");
        let mut next = lcg(5);
        for len in 0..70 {
            let start = next() as usize % (n - len);
            let (y, cb, cr) = (&y[start..start + len], &cb[start + 7..start + 7 + len], &cr[start..start + len]);
            let (mut a, mut b) = (vec![0u8; 3 * len], vec![1u8; 3 * len]);
            ycc_interleave_scalar::<true>(y, cb, cr, &mut a);
            ycc_interleave::<true>(y, cb, cr, &mut b);
            assert_eq!(a, b, "length {len}");
        }
    }

    /// The upsampler as it was before the row-wise version (the reference of the test below).
    fn upsample_reference(c: &Component, width: usize, height: usize, hmax: usize, vmax: usize) -> Vec<u8> {
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
    /// The row-wise upsampler against the previous per-pixel one on random planes of random
    /// sizes, for every pair of sampling factors.
    #[test]
    fn upsample_equals_reference() {
        let mut next = lcg(99);
        for round in 0..3000 {
            let (hmax, vmax) = (1 + (next() % 4) as usize, 1 + (next() % 4) as usize);
            let (h, v) = (1 + (next() % hmax as u64) as usize, 1 + (next() % vmax as u64) as usize);
            let (width, height) = (1 + (next() % 70) as usize, 1 + (next() % 40) as usize);
            let (mx, my) = (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax));
            let (bw, bh) = (mx * h, my * v);
            let plane: Vec<u8> = (0..bw * 8 * bh * 8).map(|_| next() as u8).collect();
            let c = Component { id: 1, h, v, tq: 0, bw, bh, plane };
            let want = upsample_reference(&c, width, height, hmax, vmax);
            let got = upsample(c, width, height, hmax, vmax);
            assert_eq!(got, want, "round {round}: {width}x{height}, {h}x{v} of {hmax}x{vmax}");
        }
    }
}

/// Comparisons of this decoder with the one it replaced (the bit-by-bit Huffman reader and the
/// 64-bit IDCT throughout, itself checked against libjpeg above): digests of that decoder's
/// output, recorded before the fast paths went in, for every bundled photo
/// (`testdata/jpeg_digests.txt`) and for thousands of damaged streams (one digest per test), so
/// the same pixels and the same `Result`s.
#[cfg(test)]
mod versus_old {
    use super::*;
    use std::path::PathBuf;

    /// The bundled photos (`assets/images`) and the small test files, as (name, bytes).
    fn bundled_jpegs() -> Vec<(String, Vec<u8>)> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dirs = [
            root.join("../assets/images/COCO2017"),
            root.join("../assets/images/misc"),
            root.join("src/preprocess/testdata"),
        ];
        let mut files = Vec::new();
        for dir in dirs {
            let Ok(rd) = std::fs::read_dir(&dir) else { continue };
            let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for p in paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "jpg")) {
                files.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
        files
    }

    /// FNV-1a over bytes, folded into `h`.
    fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        h
    }

    /// A digest of one decode: size, colour, planes, RGB and luma, or the error text.
    fn digest(r: Result<(String, &[Vec<u8>], Vec<u8>, Option<&[u8]>), String>) -> u64 {
        let mut h = 0xcbf29ce484222325u64;
        match r {
            Ok((head, planes, rgb, luma)) => {
                h = fnv(h, head.as_bytes());
                for p in planes {
                    h = fnv(h, p);
                }
                h = fnv(h, &rgb);
                h = fnv(h, luma.unwrap_or(&[]));
            }
            Err(e) => h = fnv(h, format!("err {e}").as_bytes()),
        }
        h
    }

    /// The digest of decoding `data` (the pixels and RGB, or the error).
    fn decoded(data: &[u8]) -> u64 {
        let r = decode_jpeg(data);
        digest(
            r.as_ref()
                .map(|d| (format!("{}x{} {:?}", d.width, d.height, d.color), &d.planes[..], d.to_rgb(), d.luma()))
                .map_err(|e| format!("{e:?}")),
        )
    }

    #[test]
    fn every_bundled_photo_decodes_as_before() {
        let files = bundled_jpegs();
        assert!(files.len() >= 3);
        let want: std::collections::HashMap<&str, &str> =
            include_str!("testdata/jpeg_digests.txt").lines().filter_map(|l| l.split_once(' ')).collect();
        for (name, data) in &files {
            let file = name.rsplit('/').next().unwrap_or(name);
            let recorded = want.get(file).unwrap_or_else(|| panic!("{file}: no recorded digest"));
            assert_eq!(format!("{:016x}", decoded(data)), *recorded, "{name}");
        }
        assert_eq!(files.len(), want.len(), "photos decoded / digests recorded");
    }

    /// A small deterministic generator (64-bit LCG) for the damage below.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 17
        }
    }

    /// `data` with `n` random bytes overwritten; half of the overwrites are 0xFF, 0x00 or a marker
    /// code, which hit the byte-stuffing and marker paths of the bit reader.
    fn damaged(data: &[u8], n: usize, rng: &mut Lcg) -> Vec<u8> {
        let mut bad = data.to_vec();
        for _ in 0..n {
            let i = rng.next() as usize % bad.len();
            let r = rng.next();
            bad[i] = match r % 8 {
                0 | 1 => 0xFF,
                2 => 0x00,
                3 => 0xD0 + (r >> 8) as u8 % 10,
                _ => (r >> 8) as u8,
            };
        }
        bad
    }

    #[test]
    fn damaged_small_streams_give_the_same_result_as_before() {
        let mut acc = 0u64;
        let mut rng = Lcg(7);
        for data in [
            &include_bytes!("testdata/h2v1_restart.jpg")[..],
            &include_bytes!("testdata/h2v2_odd.jpg")[..],
            &include_bytes!("testdata/gray.jpg")[..],
        ] {
            for cut in 0..data.len() {
                acc = fnv(acc, &decoded(&data[..cut]).to_le_bytes());
            }
            for round in 0..1500 {
                let bad = damaged(data, 1 + round % 6, &mut rng);
                acc = fnv(acc, &decoded(&bad).to_le_bytes());
            }
        }
        assert_eq!(format!("{acc:016x}"), "8d5f34b8524d4397");
    }

    /// Inserted 0xFF bytes (fill bytes before markers, "FF FF 00", stray markers) and cuts
    /// right after them: the cases where only the exact reader knows where a scan ends.
    #[test]
    fn inserted_fill_bytes_give_the_same_result_as_before() {
        let mut acc = 0u64;
        for data in [&include_bytes!("testdata/h2v1_restart.jpg")[..], &include_bytes!("testdata/h2v2_odd.jpg")[..]] {
            for i in 2..data.len() {
                for insert in [&[0xFF][..], &[0xFF, 0xFF], &[0xFF, 0xFF, 0x00], &[0xFF, 0xD0]] {
                    let bad: Vec<u8> = [&data[..i], insert, &data[i..]].concat();
                    acc = fnv(acc, &decoded(&bad).to_le_bytes());
                    for cut in [i + insert.len(), i + insert.len() + 1, i + insert.len() + 5] {
                        acc = fnv(acc, &decoded(&bad[..cut.min(bad.len())]).to_le_bytes());
                    }
                }
            }
        }
        assert_eq!(format!("{acc:016x}"), "bd44cf3775ed1ee8");
    }

    #[test]
    fn damaged_photos_give_the_same_result_as_before() {
        let mut acc = 0u64;
        let files = bundled_jpegs();
        let mut rng = Lcg(99);
        for (_, data) in files.iter().filter(|(n, _)| !n.contains("testdata")).step_by(9) {
            for k in 0..12 {
                let cut = data.len() - 1 - (rng.next() as usize % (data.len() / 2));
                let cut = if k < 3 { data.len() - 1 - k } else { cut };
                acc = fnv(acc, &decoded(&data[..cut]).to_le_bytes());
                let bad = damaged(data, 1 + k % 4, &mut rng);
                acc = fnv(acc, &decoded(&bad).to_le_bytes());
            }
        }
        assert_eq!(format!("{acc:016x}"), "b125d4287c8359a0");
    }
}
