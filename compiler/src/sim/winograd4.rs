//! Exact integer Winograd F(4×4, 3×3) for the INT8 convolution (3 × 3 filters, stride 1,
//! dilation 1, one group): 36 products per 4 × 4 outputs and input channel instead of 144
//! (F(2×2, 3×3), `winograd.rs`, needs 64).
//!
//! Why the result is exact. The interpolation points 0, ±1, ±2, ∞ give the input transform `Bᵀ`
//! (integer entries, every row's |·| summing to at most 10), the filter transform `G` (entries
//! 1/4, 1/6, 1/12, 1/24) and the output transform `Aᵀ` (integers). With `D = diag(4, 6, 6, 24,
//! 24, 1)` the scaled filter transform `DG` is an integer matrix (rows summing to at most 7) and
//! `24·AᵀD⁻¹` too, so in the integers
//! `(24AᵀD⁻¹)[(DG g (DG)ᵀ) ⊙ (Bᵀ d B)](24D⁻¹A) = 576 · (g ⋆ d)`.
//! Each transformed input `|V| ≤ 100·max|x|` and filter `|U| ≤ 49·max|w|` is checked to fit
//! i16, so `pmaddwd` forms every product (and the sum of two) exactly modulo 2^32; every other
//! sum is a wrapping i32 sum, so the output transform gives `576·acc` modulo 2^32. 576 = 2^6 · 9
//! and 9 is invertible modulo 2^32: multiplying by its inverse gives `64·acc` modulo 2^32, which
//! is `64·acc` itself when `|acc| < 2^25`, and an arithmetic shift by 6 then gives `acc`. That
//! bound is checked before routing a layer here from the filters' largest sum of |w| over one
//! output channel times the largest |x|: `|acc| ≤ max_o Σ|w_o| · max|x|`.

use super::winograd::{batch_chunks, gemm_pairs, BatchChunk, Seg};
use super::{ConvGeom, MR16};
use crate::sim::scratch::{self, Scratch};
use rayon::prelude::*;

/// Input channels from which this kernel is faster than the direct one (measured on
/// tiny-yolov3's layers: 16 channels on 208 × 208 1.4×, 32 on 104 × 104 2.1×, 2–2.7× above).
pub const MIN_CHANNELS: usize = 16;
/// The products of one task (`36 · rows · width` i32) stay about this size, so that the output
/// transform finds them in the core's L2 cache.
const TASK_PRODUCTS_BYTES: usize = 192 << 10;
/// About this many 4 × 4 tiles per chunk of tile rows (the GEMM width).
const TILES_PER_CHUNK: usize = 96;
/// The transformed inputs of the chunks in work at once stay about this size: a batch runs in
/// rounds of chunks (every chunk of a round in parallel).
const ROUND_INPUT_BYTES: usize = 8 << 20;
/// Transform positions per tile (6 × 6).
const XI: usize = 36;
/// The multiplicative inverse of 9 modulo 2^32.
const INV9: i32 = 0x38E3_8E39;
/// Sums must stay below this in magnitude (`64·acc` must fit i32).
const ACC_LIMIT: u64 = 1 << 25;

/// `DG`, the scaled integer filter transform.
const DG: [[i32; 3]; 6] = [[1, 0, 0], [-1, -1, -1], [-1, 1, -1], [1, 2, 4], [1, -2, 4], [0, 0, 1]];

/// The filters of a 3 × 3 convolution transformed (`U = DG g (DG)ᵀ`, 36 values per output and
/// input channel) and packed, per transform position `ξ`, like the direct kernel's filters:
/// value `(ξ, o, c)` at `(((ξ·blocks + o / MR16)·ic2 + c / 2)·MR16 + o % MR16)·2 + c % 2`
/// (zeros past the last row and channel).
#[derive(Debug, Clone, PartialEq)]
pub struct Winograd4Filters {
    u: Vec<i16>,
    ic: usize,
    oc: usize,
    /// The largest sum of |w| over one output channel's filters.
    max_l1: u64,
}

/// True when `g` is a convolution this module computes: 3 × 3, stride 1, dilation 1, one group.
pub fn fits(g: &ConvGeom) -> bool {
    super::winograd::fits(g)
}

impl Winograd4Filters {
    /// Transform and pack the filters `w` (`[oc][ic][3][3]` flattened) of `g`; `None` when `g`
    /// does not [`fits`], `w` is too short, or a transformed value does not fit i16.
    pub fn new(w: &[i16], g: &ConvGeom) -> Option<Winograd4Filters> {
        if !fits(g) || w.len() < g.oc * g.ic * 9 {
            return None;
        }
        let (ic, oc) = (g.ic, g.oc);
        let (ic2, blocks) = (ic.div_ceil(2), oc.div_ceil(MR16));
        let mut u = vec![0i16; XI * blocks * ic2 * MR16 * 2];
        for o in 0..oc {
            for c in 0..ic {
                let f = &w[(o * ic + c) * 9..(o * ic + c + 1) * 9];
                // t = DG · g (6 × 3), then U = t · DGᵀ (6 × 6).
                let mut t = [[0i32; 3]; 6];
                for (i, row) in t.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|k| DG[i][k] * f[k * 3 + j] as i32).sum();
                    }
                }
                for (i, ti) in t.iter().enumerate() {
                    for (j, gj) in DG.iter().enumerate() {
                        let v: i32 = (0..3).map(|k| ti[k] * gj[k]).sum();
                        let v = i16::try_from(v).ok()?;
                        let xi = i * 6 + j;
                        u[(((xi * blocks + o / MR16) * ic2 + c / 2) * MR16 + o % MR16) * 2 + c % 2] = v;
                    }
                }
            }
        }
        let max_l1 = w[..oc * ic * 9]
            .chunks(ic * 9)
            .map(|f| f.iter().map(|v| v.unsigned_abs() as u64).sum::<u64>())
            .max()
            .unwrap_or(0);
        Some(Winograd4Filters { u, ic, oc, max_l1 })
    }
}

impl Winograd4Filters {
    /// True when every input of at most 327 in magnitude (every int8 code, uint8 codes minus a
    /// zero point) gives exact sums here, so no other Winograd kernel is ever needed.
    pub fn covers_all_codes(&self) -> bool {
        exact_for(self, 327)
    }
}

/// True when the wrapped sums are exact for inputs bounded by `x_max` (see the module doc):
/// transformed inputs fit i16 and every sum is below 2^25 in magnitude.
fn exact_for(f: &Winograd4Filters, x_max: u64) -> bool {
    x_max.saturating_mul(100) <= i16::MAX as u64 && f.max_l1.saturating_mul(x_max) < ACC_LIMIT
}

/// The 3 × 3 convolution `g` of the i16 codes `x` (every |x| ≤ `x_max`) with the transformed
/// filters `f`, by Winograd F(4×4, 3×3): for every output channel and run of whole output rows,
/// `emit(channel, sums, dst)` turns the sums `Σ w·x` (no bias) into the stored values `dst` of
/// `out` (NCHW). Gives exactly the direct convolution's sums; returns false, leaving `out`
/// untouched, when `g` or the filters do not fit or the sums might not be exact.
pub fn conv3x3<T: Copy + Send + Sync>(
    x: &[i16],
    x_max: u64,
    f: &Winograd4Filters,
    g: &ConvGeom,
    out: &mut [T],
    emit: &(impl Fn(usize, &[i32], &mut [T]) + Sync),
    simd: bool,
) -> bool {
    let p = g.oh * g.ow;
    if !fits(g)
        || (f.ic, f.oc) != (g.ic, g.oc)
        || out.len() != g.n * g.oc * p
        || x.len() < g.n * g.ic * g.ih * g.iw
        || !exact_for(f, x_max)
    {
        return false;
    }
    if p == 0 {
        return true;
    }
    let (th, tw) = (g.oh.div_ceil(4), g.ow.div_ceil(4));
    let chunks = batch_chunks(g.n, th, tw, TILES_PER_CHUNK);
    let ic2 = g.ic.div_ceil(2);
    let widest = chunks.iter().map(|c| c.width).max().unwrap_or(8);
    let rows_per_task = (TASK_PRODUCTS_BYTES / (XI * 4 * widest) / MR16).clamp(1, 16) * MR16;
    let blocks = g.oc.div_ceil(rows_per_task);
    // The output, split per task: (chunk, block of channels) -> (row of the block, segment of
    // the chunk, that channel's output rows of the segment).
    let mut segs_of: Vec<Vec<(usize, usize, Seg)>> = vec![Vec::new(); g.n];
    for (ci, c) in chunks.iter().enumerate() {
        for (si, s) in c.segs.iter().enumerate() {
            segs_of[s.n].push((ci, si, *s));
        }
    }
    type Cell<'a, T> = Vec<(usize, usize, &'a mut [T])>;
    let mut cells: Vec<Cell<T>> = (0..chunks.len() * blocks).map(|_| Vec::new()).collect();
    for (n, out_n) in out.chunks_mut(g.oc * p).enumerate() {
        for (o, plane) in out_n.chunks_mut(p).enumerate() {
            let mut rest = plane;
            for &(ci, si, s) in &segs_of[n] {
                let len = ((4 * s.r1).min(g.oh) - 4 * s.r0) * g.ow;
                let (head, tail) = rest.split_at_mut(len);
                cells[ci * blocks + o / rows_per_task].push((o % rows_per_task, si, head));
                rest = tail;
            }
        }
    }
    let mut cells = cells.into_iter();
    let mut c0 = 0;
    while c0 < chunks.len() {
        // A round: the next chunks whose transformed inputs stay about ROUND_INPUT_BYTES.
        let mut c1 = c0 + 1;
        let mut bytes = XI * ic2 * chunks[c0].width * 4;
        while c1 < chunks.len() && bytes + XI * ic2 * chunks[c1].width * 4 <= ROUND_INPUT_BYTES {
            bytes += XI * ic2 * chunks[c1].width * 4;
            c1 += 1;
        }
        let round = &chunks[c0..c1];
        let v: Vec<Scratch<i16>> = round.par_iter().map(|c| input_transform(x, g, tw, ic2, c, simd)).collect();
        let tasks: Vec<Cell<T>> = cells.by_ref().take(round.len() * blocks).collect();
        tasks.into_par_iter().enumerate().for_each(|(task, mut dst)| {
            let (ci, b) = (task / blocks, task % blocks);
            let (c, o0) = (&round[ci], b * rows_per_task);
            let rows = rows_per_task.min(g.oc - o0);
            let m = gemms(f, ic2, o0, rows, &v[ci], c.width, simd);
            let nt = c.tiles(tw);
            let ymax = c.segs.iter().map(|s| (4 * s.r1).min(g.oh) - 4 * s.r0).max().unwrap_or(0) * g.ow;
            let mut y = scratch::any::<i32>(ymax);
            let mut sc = OutScratch::new(c.width);
            // Each row's transform once, then every segment's output rows of it.
            dst.sort_unstable_by_key(|&(r, si, _)| (r, si));
            let mut done = usize::MAX;
            for (r, si, d) in dst {
                if r != done {
                    output_transform(&m, rows, r, c.width, nt, &mut sc, simd);
                    done = r;
                }
                let s = &c.segs[si];
                let yrows = (4 * s.r1).min(g.oh) - 4 * s.r0;
                output_rows(&sc, c.width, s, tw, g.ow, &mut y[..yrows * g.ow]);
                emit(o0 + r, &y[..yrows * g.ow], d);
            }
        });
        c0 = c1;
    }
    true
}

/// `Bᵀ` applied to six rows of values, element by element: `out[i][k] = Σ_a Bᵀ[i][a]·c[a][k]`
/// (wrapping i16: exact whenever the result fits, which the caller checked).
#[inline(always)]
fn bt6(c: [&[i16]; 6], out: [&mut [i16]; 6]) {
    let [o0, o1, o2, o3, o4, o5] = out;
    let n = o0.len();
    let (c0, c1, c2, c3, c4, c5) = (&c[0][..n], &c[1][..n], &c[2][..n], &c[3][..n], &c[4][..n], &c[5][..n]);
    let (o1, o2, o3, o4, o5) = (&mut o1[..n], &mut o2[..n], &mut o3[..n], &mut o4[..n], &mut o5[..n]);
    for k in 0..n {
        let (a0, a1, a2, a3, a4, a5) = (c0[k], c1[k], c2[k], c3[k], c4[k], c5[k]);
        // Bᵀ rows: [4 0 −5 0 1 0] [0 −4 −4 1 1 0] [0 4 −4 −1 1 0] [0 −2 −1 2 1 0] [0 2 −1 −2 1 0]
        // [0 4 0 −5 0 1].
        let p = a4.wrapping_sub(a2.wrapping_mul(4));
        let q = a3.wrapping_sub(a1.wrapping_mul(4));
        let r = a4.wrapping_sub(a2);
        let s = a3.wrapping_sub(a1).wrapping_mul(2);
        o0[k] = a0.wrapping_mul(4).wrapping_sub(a2.wrapping_mul(5)).wrapping_add(a4);
        o1[k] = p.wrapping_add(q);
        o2[k] = p.wrapping_sub(q);
        o3[k] = r.wrapping_add(s);
        o4[k] = r.wrapping_sub(s);
        o5[k] = a1.wrapping_mul(4).wrapping_sub(a3.wrapping_mul(5)).wrapping_add(a5);
    }
}

/// The transformed inputs of one chunk of the batch `x`: `V = Bᵀ d B` for every input channel
/// and tile, value `(ξ, c, t)` at `((ξ·ic2 + c / 2)·width + t)·2 + c % 2` (zeros past the last
/// channel and tile).
fn input_transform(x: &[i16], g: &ConvGeom, tw: usize, ic2: usize, c: &BatchChunk, simd: bool) -> Scratch<i16> {
    let mut v = scratch::any::<i16>(XI * ic2 * c.width * 2);
    // The padding columns past the last tile (the transforms below write every other one).
    let nt = c.tiles(tw);
    for row in v.chunks_exact_mut(c.width * 2) {
        row[nt * 2..].fill(0);
    }
    let plane_in = g.ic * g.ih * g.iw;
    for s in &c.segs {
        let xn = &x[s.n * plane_in..(s.n + 1) * plane_in];
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: the caller checked avx2.
            unsafe { avx2::input_transform(xn, g, tw, ic2, s, c.width, &mut v) };
            continue;
        }
        let _ = simd;
        input_transform_body(xn, g, tw, ic2, s, c.width, &mut v);
    }
    v
}

/// The transformed inputs of one segment `c` (of image `x`) into its columns of `v` (a chunk
/// of `width` columns). The two channels of a pair are transformed together, interleaved as
/// `V` stores them, and all the segment's tile rows at once (long runs for the vector units).
/// Compiled for the portable and for the AVX2 entry point.
#[inline(always)]
fn input_transform_body(x: &[i16], g: &ConvGeom, tw: usize, ic2: usize, c: &Seg, width: usize, v: &mut [i16]) {
    let (nr, n) = (c.r1 - c.r0, tw + 1);
    // Input rows 0..6 of every tile row, split by column modulo 4: row `a`, tile row `tyl`,
    // column `k`, channel `h` of the pair at `(((a·4 + k % 4)·nr + tyl)·n + k / 4)·2 + h`.
    let run = 8 * nr * n;
    let mut d = scratch::any::<i16>(6 * run);
    // `Bᵀ d`, same layout (every element written below).
    let mut t = scratch::any::<i16>(6 * run);
    // `Bᵀ d B`: value ξ of the tile at flat position `f = tyl·n + tx`, channel `h`, at
    // `(ξ·(nr·n) + f)·2 + h` (the positions `tx = tw` are not tiles).
    let flat = nr * n;
    let mut tv = scratch::any::<i16>(XI * flat * 2);
    let plane = g.ih * g.iw;
    // One input row of each channel of the pair, by column k (zeros outside the image).
    let mut line = [scratch::any::<i16>(4 * n), scratch::any::<i16>(4 * n)];
    // Columns k = ix + pl inside the image and the tile row: ix in lo .. hi.
    let (lo, hi) = (0, g.iw.min((4 * n).saturating_sub(g.pl)));
    for cp in 0..ic2 {
        d.fill(0);
        for a in 0..6 {
            for tyl in 0..nr {
                let iy = (4 * (c.r0 + tyl) + a) as isize - g.pt as isize;
                if iy < 0 || iy >= g.ih as isize {
                    continue;
                }
                for (h, l) in line.iter_mut().enumerate() {
                    let ch = 2 * cp + h;
                    if ch >= g.ic || hi <= lo {
                        l.fill(0);
                        continue;
                    }
                    let base = ch * plane + iy as usize * g.iw;
                    l[..g.pl.min(4 * n)].fill(0);
                    l[lo + g.pl..hi + g.pl].copy_from_slice(&x[base + lo..base + hi]);
                    l[hi + g.pl..].fill(0);
                }
                // Split by column modulo 4, the pair interleaved.
                for m in 0..4 {
                    let at = (((a * 4 + m) * nr + tyl) * n) * 2;
                    let dst = &mut d[at..at + 2 * n];
                    for (pair, (q0, q1)) in
                        dst.chunks_exact_mut(2).zip(line[0].chunks_exact(4).zip(line[1].chunks_exact(4)))
                    {
                        pair[0] = q0[m];
                        pair[1] = q1[m];
                    }
                }
            }
        }
        // Bᵀ on the rows, all columns, tile rows and both channels at once.
        {
            let row = |a: usize| &d[a * run..(a + 1) * run];
            bt6([row(0), row(1), row(2), row(3), row(4), row(5)], split6(&mut t, run));
        }
        // B on the columns: tile tx has columns 4tx .. 4tx + 5, phases 0, 1, 2, 3 at tx and
        // phases 0, 1 at tx + 1.
        let len = (flat - 1) * 2;
        for i in 0..6 {
            let ti = &t[i * run..(i + 1) * run];
            let ph = |m: usize, s: usize| &ti[(m * flat + s) * 2..(m * flat + s) * 2 + len];
            let cols = [ph(0, 0), ph(1, 0), ph(2, 0), ph(3, 0), ph(0, 1), ph(1, 1)];
            bt6(cols, runs6(&mut tv, std::array::from_fn(|j| (6 * i + j) * flat * 2), len));
        }
        // Into V, the tiles of each tile row.
        for xi in 0..XI {
            for tyl in 0..nr {
                let src = &tv[(xi * flat + tyl * n) * 2..(xi * flat + tyl * n + tw) * 2];
                let at = ((xi * ic2 + cp) * width + c.t0 + tyl * tw) * 2;
                v[at..at + 2 * tw].copy_from_slice(src);
            }
        }
    }
}

/// Six runs of `len` of `s` starting at `starts` (ascending, not overlapping).
fn runs6(s: &mut [i16], starts: [usize; 6], len: usize) -> [&mut [i16]; 6] {
    let mut rest = s;
    let mut pos = 0;
    let mut out: [&mut [i16]; 6] = Default::default();
    for (o, &st) in out.iter_mut().zip(&starts) {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(st - pos);
        let (run, tail) = tail.split_at_mut(len);
        *o = run;
        rest = tail;
        pos = st + len;
    }
    out
}

/// Six consecutive runs of `len` of `s`.
fn split6(s: &mut [i16], len: usize) -> [&mut [i16]; 6] {
    let (a, r) = s.split_at_mut(len);
    let (b, r) = r.split_at_mut(len);
    let (c, r) = r.split_at_mut(len);
    let (d, r) = r.split_at_mut(len);
    let (e, r) = r.split_at_mut(len);
    [a, b, c, d, e, &mut r[..len]]
}

/// The 36 products `M_ξ = U_ξ · V_ξ` of output channels `o0 .. o0 + rows` (`o0` a multiple of
/// `MR16`) over one chunk of `width` tiles: `M[ξ][r][t]` at `(ξ·rows + r)·width + t`, wrapping
/// i32 sums.
fn gemms(
    f: &Winograd4Filters,
    ic2: usize,
    o0: usize,
    rows: usize,
    v: &[i16],
    width: usize,
    simd: bool,
) -> Scratch<i32> {
    let blocks = f.oc.div_ceil(MR16);
    let ublock = ic2 * MR16 * 2;
    // Every element is written by `gemm_pairs`.
    let mut m = scratch::any::<i32>(XI * rows * width);
    for xi in 0..XI {
        let u0 = (xi * blocks + o0 / MR16) * ublock;
        let u = &f.u[u0..u0 + rows.div_ceil(MR16) * ublock];
        let vx = &v[xi * ic2 * width * 2..(xi + 1) * ic2 * width * 2];
        gemm_pairs(u, ic2, rows, vx, width, &mut m[xi * rows * width..(xi + 1) * rows * width], simd);
    }
    m
}

/// `(24AᵀD⁻¹)` applied to six runs of values, element by element: `out[a][k] = Σ_i
/// (24AᵀD⁻¹)[a][i]·m[i][k]` with the rows `[6 4 4 1 1 0] [0 4 −4 2 −2 0] [0 4 4 4 4 0]
/// [0 4 −4 8 −8 24]`, wrapping.
#[inline(always)]
fn at6(m: [&[i32]; 6], out: [&mut [i32]; 4]) {
    let [o0, o1, o2, o3] = out;
    let n = o0.len();
    let (m0, m1, m2, m3, m4, m5) = (&m[0][..n], &m[1][..n], &m[2][..n], &m[3][..n], &m[4][..n], &m[5][..n]);
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for k in 0..n {
        let (p12, n12) = (m1[k].wrapping_add(m2[k]), m1[k].wrapping_sub(m2[k]));
        let (p34, n34) = (m3[k].wrapping_add(m4[k]), m3[k].wrapping_sub(m4[k]));
        o0[k] = m0[k].wrapping_mul(6).wrapping_add(p12.wrapping_mul(4)).wrapping_add(p34);
        o1[k] = n12.wrapping_mul(4).wrapping_add(n34.wrapping_mul(2));
        o2[k] = p12.wrapping_add(p34).wrapping_mul(4);
        o3[k] = n12.wrapping_mul(4).wrapping_add(n34.wrapping_mul(8)).wrapping_add(m5[k].wrapping_mul(24));
    }
}

/// Scratch of [`output_transform`]: `(24AᵀD⁻¹) M` (24 runs of one value per tile of a chunk)
/// and the tiles' 16 sums (output `(a, b)` of tile `t` at `(a·width + t)·4 + b`).
struct OutScratch {
    s: Scratch<i32>,
    q: Scratch<i32>,
}

impl OutScratch {
    fn new(width: usize) -> OutScratch {
        // Only the runs' first `nt` values are written and read.
        OutScratch { s: scratch::any(24 * width), q: scratch::any(16 * width) }
    }
}

/// `Y = (24AᵀD⁻¹) M (24D⁻¹A) / 576` of row `r` of `m` (see [`gemms`]) for the first `nt` tiles
/// of a chunk of `width` columns, into `sc.q` (see [`output_rows`]). Both passes run over all
/// the tiles at once.
fn output_transform(m: &[i32], rows: usize, r: usize, width: usize, nt: usize, sc: &mut OutScratch, simd: bool) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: the caller checked avx2.
        return unsafe { avx2::output_transform(m, rows, r, width, nt, sc) };
    }
    let _ = simd;
    output_transform_body(m, rows, r, width, nt, sc)
}

/// The output rows of segment `s` (`y.len() / ow` rows from output row `4·s.r0`) from the
/// tiles' sums [`output_transform`] left in `sc`; outputs past the map are dropped.
fn output_rows(sc: &OutScratch, width: usize, s: &Seg, tw: usize, ow: usize, y: &mut [i32]) {
    for (oy, dst) in y.chunks_exact_mut(ow).enumerate() {
        let (tyl, a) = (oy / 4, oy % 4);
        let at = (a * width + s.t0 + tyl * tw) * 4;
        dst.copy_from_slice(&sc.q[at..at + ow]);
    }
}

/// The transforms compiled for AVX2 (the same code: the compiler vectorises it 16 / 8 lanes wide).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{ConvGeom, OutScratch, Seg};

    /// See [`super::input_transform_body`].
    ///
    /// # Safety
    /// The CPU must support avx2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn input_transform(
        x: &[i16],
        g: &ConvGeom,
        tw: usize,
        ic2: usize,
        c: &Seg,
        width: usize,
        v: &mut [i16],
    ) {
        super::input_transform_body(x, g, tw, ic2, c, width, v)
    }

    /// See [`super::output_transform`].
    ///
    /// # Safety
    /// The CPU must support avx2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn output_transform(m: &[i32], rows: usize, r: usize, width: usize, nt: usize, sc: &mut OutScratch) {
        super::output_transform_body(m, rows, r, width, nt, sc)
    }
}

/// [`output_transform`]'s code, compiled for the portable and for the AVX2 entry point.
#[inline(always)]
fn output_transform_body(m: &[i32], rows: usize, r: usize, width: usize, nt: usize, sc: &mut OutScratch) {
    let mm = |xi: usize| &m[(xi * rows + r) * width..(xi * rows + r) * width + nt];
    // On the rows: s[a·6 + j] = Σ_i (24AᵀD⁻¹)[a][i]·M[i·6 + j].
    for j in 0..6 {
        let mut outs = sc.s.chunks_exact_mut(width).skip(j).step_by(6);
        let out: [&mut [i32]; 4] = std::array::from_fn(|_| &mut outs.next().expect("24 runs")[..nt]);
        at6(std::array::from_fn(|i| mm(i * 6 + j)), out);
    }
    // On the columns, then 576·acc modulo 2^32 -> 64·acc (exact, see the module doc) -> acc;
    // q[(a·width + t)·4 + b] is output (a, b) of tile t, so each output row is one run.
    for a in 0..4 {
        let src: [&[i32]; 6] = std::array::from_fn(|j| &sc.s[(a * 6 + j) * width..(a * 6 + j) * width + nt]);
        at6_interleaved(src, &mut sc.q[a * width * 4..(a * width + nt) * 4]);
    }
}

/// [`at6`] with the four results of element `k` at `out[4k .. 4k + 4]`, each turned from
/// `576·acc` modulo 2^32 into `acc`.
#[inline(always)]
fn at6_interleaved(m: [&[i32]; 6], out: &mut [i32]) {
    let n = out.len() / 4;
    let (m0, m1, m2, m3, m4, m5) = (&m[0][..n], &m[1][..n], &m[2][..n], &m[3][..n], &m[4][..n], &m[5][..n]);
    let fin = |v: i32| v.wrapping_mul(INV9) >> 6;
    for (k, o) in out.chunks_exact_mut(4).enumerate() {
        let (p12, n12) = (m1[k].wrapping_add(m2[k]), m1[k].wrapping_sub(m2[k]));
        let (p34, n34) = (m3[k].wrapping_add(m4[k]), m3[k].wrapping_sub(m4[k]));
        o[0] = fin(m0[k].wrapping_mul(6).wrapping_add(p12.wrapping_mul(4)).wrapping_add(p34));
        o[1] = fin(n12.wrapping_mul(4).wrapping_add(n34.wrapping_mul(2)));
        o[2] = fin(p12.wrapping_add(p34).wrapping_mul(4));
        o[3] = fin(n12.wrapping_mul(4).wrapping_add(n34.wrapping_mul(8)).wrapping_add(m5[k].wrapping_mul(24)));
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv2d_reference;
    use super::super::winograd::tests::{geom, kernels, Lcg};
    use super::*;

    fn wino_sums(x: &[i16], x_max: u64, w: &[i16], g: &ConvGeom, simd: bool) -> Option<Vec<i32>> {
        let f = Winograd4Filters::new(w, g)?;
        let mut out = vec![i32::MIN; g.n * g.oc * g.oh * g.ow];
        let copy = |_: usize, s: &[i32], d: &mut [i32]| d.copy_from_slice(s);
        conv3x3(x, x_max, &f, g, &mut out, &copy, simd).then_some(out)
    }

    #[test]
    fn winograd4_sums_equal_the_direct_sums() {
        let mut r = Lcg(29);
        let cases = [
            geom(1, 16, 13, 13, 32, 1, 1),   // tiny-yolov3's smallest map
            geom(1, 5, 13, 13, 7, 0, 0),     // pad 0, odd channel counts
            geom(1, 3, 1, 1, 16, 1, 1),      // 1 × 1 map
            geom(1, 9, 2, 3, 13, 1, 1),      // 2 × 3 map
            geom(2, 1, 6, 5, 6, 1, 0),       // batch, one channel, unequal pads
            geom(1, 12, 40, 37, 25, 1, 1),   // several chunks, a partial last task of rows
            geom(1, 8, 3, 3, 4, 0, 0),       // one output position
            geom(1, 31, 27, 9, 50, 1, 1),    // odd everything, channels across three tasks
            geom(1, 7, 10, 11, 9, 2, 1),     // wide padding: whole zero tile rows and columns
            geom(1, 100, 26, 26, 200, 1, 1), // more than one task of rows, two chunks
        ];
        for g in &cases {
            let (nx, nw) = (g.n * g.ic * g.ih * g.iw, g.oc * g.ic * 9);
            let variants: Vec<(Vec<i32>, Vec<i32>)> = vec![
                ((0..nx).map(|_| r.int(-128, 127)).collect(), (0..nw).map(|_| r.int(-128, 127)).collect()),
                (vec![-128; nx], vec![-128; nw]),
                (vec![127; nx], vec![-128; nw]),
                (
                    (0..nx).map(|i| if i % 3 == 0 { -128 } else { 127 }).collect(),
                    (0..nw).map(|i| if i % 2 == 0 { 127 } else { -128 }).collect(),
                ),
                // uint8 codes minus a zero point
                ((0..nx).map(|_| r.int(-255, 255)).collect(), (0..nw).map(|_| r.int(-128, 127)).collect()),
            ];
            for (x, w) in variants {
                let want = conv2d_reference(&x, &w, g);
                let x16: Vec<i16> = x.iter().map(|&v| v as i16).collect();
                let w16: Vec<i16> = w.iter().map(|&v| v as i16).collect();
                let x_max = x.iter().map(|v| v.unsigned_abs() as u64).max().unwrap();
                let f = Winograd4Filters::new(&w16, g).unwrap();
                if !exact_for(&f, x_max) {
                    // Only the widest extreme cases are refused.
                    assert!(f.max_l1 * x_max >= 1 << 25, "{g:?}");
                    continue;
                }
                for simd in kernels() {
                    let got = wino_sums(&x16, x_max, &w16, g, simd).expect("routed");
                    assert_eq!(got, want, "{g:?} simd {simd}");
                }
            }
        }
    }

    #[test]
    fn a_batch_gives_each_image_what_it_gives_alone() {
        let mut r = Lcg(31);
        // 13 × 13 (16 tiles: three images share one pass), 26 × 26 (49 tiles: two and one),
        // 40 × 37 (several chunks per image), 1 × 1, and an odd map across two row tasks.
        let cases = [
            geom(3, 16, 13, 13, 32, 1, 1),
            geom(3, 12, 26, 26, 20, 1, 1),
            geom(3, 12, 40, 37, 25, 1, 1),
            geom(3, 3, 1, 1, 16, 1, 1),
            geom(7, 31, 6, 9, 150, 1, 0),
        ];
        for g in &cases {
            let (nx, nw) = (g.n * g.ic * g.ih * g.iw, g.oc * g.ic * 9);
            let x: Vec<i16> = (0..nx).map(|_| r.int(-128, 127) as i16).collect();
            let w: Vec<i16> = (0..nw).map(|_| r.int(-128, 127) as i16).collect();
            let one = ConvGeom { n: 1, ..*g };
            let (xn, on) = (g.ic * g.ih * g.iw, g.oc * g.oh * g.ow);
            let want32 = conv2d_reference(
                &x.iter().map(|&v| v as i32).collect::<Vec<_>>(),
                &w.iter().map(|&v| v as i32).collect::<Vec<_>>(),
                g,
            );
            for simd in kernels() {
                let batch = wino_sums(&x, 128, &w, g, simd).expect("routed");
                let alone: Vec<i32> = (0..g.n)
                    .flat_map(|i| wino_sums(&x[i * xn..(i + 1) * xn], 128, &w, &one, simd).expect("routed"))
                    .collect();
                assert_eq!(batch.len(), g.n * on);
                assert_eq!(batch, alone, "{g:?} simd {simd}");
                assert_eq!(batch, want32, "{g:?} simd {simd}");
            }
        }
    }

    #[test]
    fn small_maps_of_a_batch_share_chunks() {
        use super::super::winograd::{BatchChunk, Seg};
        // 4 × 4 tiles: six images a chunk (96 tiles), the last chunk the remaining one.
        let c = batch_chunks(7, 4, 4, TILES_PER_CHUNK);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].segs.len(), 6);
        assert_eq!((c[0].width, c[0].tiles(4)), (96, 96));
        assert_eq!(c[1], BatchChunk { segs: vec![Seg { n: 6, r0: 0, r1: 4, t0: 0 }], width: 16 });
        assert_eq!(c[0].segs[5], Seg { n: 5, r0: 0, r1: 4, t0: 80 });
        // 7 × 7 tiles: two images a chunk; 13 × 13: each image in two chunks of its own.
        let c = batch_chunks(3, 7, 7, TILES_PER_CHUNK);
        assert_eq!(c.iter().map(|c| (c.segs.len(), c.width)).collect::<Vec<_>>(), [(2, 104), (1, 56)]);
        let c = batch_chunks(2, 13, 13, TILES_PER_CHUNK);
        let rows: Vec<_> = c.iter().map(|c| (c.segs[0].n, c.segs[0].r0, c.segs[0].r1, c.segs.len())).collect();
        assert_eq!(rows, [(0, 0, 6, 1), (0, 6, 13, 1), (1, 0, 6, 1), (1, 6, 13, 1)]);
    }

    #[test]
    fn sums_at_the_bound_are_exact_and_beyond_it_refused() {
        // 2^25 − 1 = 33 554 431 would be the largest allowed sum; one channel of 128 · 3 × 3 ·
        // (−128)·(−128) = 18 874 368 is under it: exact, positive and negative.
        let g = geom(1, 128, 6, 6, 6, 1, 1);
        let (nx, nw) = (g.ic * 36, g.oc * g.ic * 9);
        let w = vec![-128i16; nw];
        for xv in [-128i16, 127] {
            let want = conv2d_reference(&vec![xv as i32; nx], &vec![-128; nw], &g);
            assert_eq!(want[7].unsigned_abs(), 128 * 9 * 128 * xv.unsigned_abs() as u32, "an inner position");
            for simd in kernels() {
                assert_eq!(wino_sums(&vec![xv; nx], 128, &w, &g, simd).unwrap(), want, "x {xv} simd {simd}");
            }
        }
        // 256 channels: 9 · 256 · 128 · 128 = 37 748 736 ≥ 2^25: refused, `out` left as it was.
        let g = geom(1, 256, 6, 6, 6, 1, 1);
        let f = Winograd4Filters::new(&vec![-128; g.oc * g.ic * 9], &g).unwrap();
        let mut out = vec![7i32; g.oc * 36];
        let copy = |_: usize, s: &[i32], d: &mut [i32]| d.copy_from_slice(s);
        assert!(!conv3x3(&vec![-128; g.ic * 36], 128, &f, &g, &mut out, &copy, false));
        assert_eq!(out, vec![7; g.oc * 36]);
        // Inputs whose transform could leave i16: 100 · 328 > 32767.
        let small = geom(1, 2, 4, 4, 2, 1, 1);
        let f = Winograd4Filters::new(&[1; 36], &small).unwrap();
        let mut out = vec![0i32; 32];
        assert!(!conv3x3(&[328; 32], 328, &f, &small, &mut out, &copy, false));
        assert!(conv3x3(&[327; 32], 327, &f, &small, &mut out, &copy, false));
        // Filters whose transform leaves i16 (49 · 669 > 32767) are not transformed.
        assert!(Winograd4Filters::new(&[669; 36], &small).is_none());
        assert!(Winograd4Filters::new(&[668; 36], &small).is_some());
    }
}

#[cfg(test)]
mod bench {
    use super::super::winograd::tests::geom;
    use super::*;

    /// CPU time of this process so far in ns (sum over its threads).
    fn cpu_ns() -> u64 {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// CPU time per image of tiny-yolov3's F(4×4) layers at batch 1 and `WINO4_BATCH` (default
    /// 5), the fastest of several calls (run by hand: `RAYON_NUM_THREADS=1 cargo test -p
    /// compiler --release --lib winograd4::bench -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn tiny_yolov3_layers_per_image() {
        let batch: usize = std::env::var("WINO4_BATCH").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
        let layers = [
            (16, 208, 32),
            (32, 104, 64),
            (64, 52, 128),
            (128, 26, 256),
            (256, 13, 512),
            (512, 13, 1024),
            (384, 26, 256),
        ];
        let only: Option<usize> = std::env::var("WINO4_LAYER").ok().and_then(|s| s.parse().ok());
        let (mut t1, mut tb) = (0.0, 0.0);
        for (i, (ic, s, oc)) in layers.into_iter().enumerate() {
            if only.is_some_and(|l| l != i) {
                continue;
            }
            let mut per = [0.0; 2];
            for (k, n) in [1, batch].into_iter().enumerate() {
                let g = geom(n, ic, s, s, oc, 1, 1);
                let x: Vec<i16> = (0..n * ic * s * s).map(|i| ((i * 7919) % 255) as i16 - 127).collect();
                let w: Vec<i16> = (0..oc * ic * 9).map(|i| ((i * 104729) % 63) as i16 - 31).collect();
                let f = Winograd4Filters::new(&w, &g).unwrap();
                let mut out = vec![0i8; n * oc * s * s];
                let emit = |_: usize, s: &[i32], d: &mut [i8]| {
                    for (d, &v) in d.iter_mut().zip(s) {
                        *d = (v >> 12).clamp(-128, 127) as i8;
                    }
                };
                let reps = if only.is_some() { 60 } else { 7 };
                per[k] = (0..reps)
                    .map(|_| {
                        let t = cpu_ns();
                        assert!(conv3x3(&x, 127, &f, &g, &mut out, &emit, true));
                        (cpu_ns() - t) as f64 * 1e-6 / n as f64
                    })
                    .fold(f64::MAX, f64::min);
            }
            println!(
                "ic {ic:4} map {s:3} oc {oc:4}: batch 1 {:7.2} ms/image, batch {batch} {:7.2} ms/image",
                per[0], per[1]
            );
            t1 += per[0];
            tb += per[1];
        }
        println!("total per image: batch 1 {t1:.1} ms, batch {batch} {tb:.1} ms");
    }
}
