//! Exact integer Winograd F(2×2, 3×3) for the INT8 convolution (3 × 3 filters, stride 1,
//! dilation 1, one group): 16 products per 2 × 2 outputs and input channel instead of 36.
//!
//! Why the result is exact. With the input transform `Bᵀ` (entries 0, ±1), the filter transform
//! `2G` (rows `[2,0,0] [1,1,1] [1,−1,1] [0,0,2]`, twice the usual `G`, so every entry is an
//! integer) and the output transform `Aᵀ` (entries 0, ±1), the identity
//! `Aᵀ[(2G g 2Gᵀ) ⊙ (Bᵀ d B)]A = 4 · (g ⋆ d)` holds in the integers. Each transformed input
//! `|V| ≤ 4·max|x|` and filter `|U| ≤ 9·max|w|` is checked to fit i16, so `pmaddwd` forms every
//! product (and the sum of two) exactly. Every other sum is a wrapping i32 sum: the result is
//! `4·acc` modulo 2^32, and since `|4·acc| ≤ 4·9·ic·max|x|·max|w| ≤ i32::MAX` (checked before
//! routing a layer here) it is `4·acc` itself; an arithmetic shift by 2 gives `acc`, exactly the
//! direct convolution's sum.

use super::{ConvGeom, MR16};
use rayon::prelude::*;

/// Output channels computed by one task (a multiple of `MR16`).
const ROWS_PER_TASK: usize = 16 * MR16;
/// Input channels from which the Winograd kernel is faster than the direct one (measured on
/// tiny-yolov3's layers: with fewer, the transforms cost about what the products save).
pub const MIN_CHANNELS: usize = 64;
/// About this many 2 × 2 tiles per chunk of tile rows (the GEMM width).
const TILES_PER_CHUNK: usize = 128;

/// The filters of a 3 × 3 convolution transformed (`U = 2G g 2Gᵀ`, 16 values per output and
/// input channel) and packed, per transform position `ξ`, like the direct kernel's filters:
/// rows in blocks of `MR16`, input channels in pairs; value `(ξ, o, c)` at
/// `(((ξ·blocks + o / MR16)·ic2 + c / 2)·MR16 + o % MR16)·2 + c % 2` (zeros past the last row and
/// channel).
#[derive(Debug, Clone, PartialEq)]
pub struct WinogradFilters {
    u: Vec<i16>,
    ic: usize,
    oc: usize,
    /// The largest |w| of the untransformed filters.
    max_abs: u64,
}

/// True when `g` is a convolution this module computes: 3 × 3, stride 1, dilation 1, one group.
pub fn fits(g: &ConvGeom) -> bool {
    (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.group.max(1)) == (3, 3, 1, 1, 1, 1, 1) && g.ic > 0 && g.oc > 0
}

/// `2G`, the integer filter transform.
const G2: [[i32; 3]; 4] = [[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]];

impl WinogradFilters {
    /// Transform and pack the filters `w` (`[oc][ic][3][3]` flattened) of `g`; `None` when `g`
    /// does not [`fits`], `w` is too short, or a transformed value does not fit i16.
    pub fn new(w: &[i16], g: &ConvGeom) -> Option<WinogradFilters> {
        if !fits(g) || w.len() < g.oc * g.ic * 9 {
            return None;
        }
        let (ic, oc) = (g.ic, g.oc);
        let (ic2, blocks) = (ic.div_ceil(2), oc.div_ceil(MR16));
        let mut u = vec![0i16; 16 * blocks * ic2 * MR16 * 2];
        for o in 0..oc {
            for c in 0..ic {
                let f = &w[(o * ic + c) * 9..(o * ic + c + 1) * 9];
                // t = 2G · g (4 × 3), then U = t · 2Gᵀ (4 × 4).
                let mut t = [[0i32; 3]; 4];
                for (i, row) in t.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|k| G2[i][k] * f[k * 3 + j] as i32).sum();
                    }
                }
                for (i, ti) in t.iter().enumerate() {
                    for (j, gj) in G2.iter().enumerate() {
                        let v: i32 = (0..3).map(|k| ti[k] * gj[k]).sum();
                        let v = i16::try_from(v).ok()?;
                        let xi = i * 4 + j;
                        u[(((xi * blocks + o / MR16) * ic2 + c / 2) * MR16 + o % MR16) * 2 + c % 2] = v;
                    }
                }
            }
        }
        let max_abs = w[..oc * ic * 9].iter().map(|v| v.unsigned_abs() as u64).max().unwrap_or(0);
        Some(WinogradFilters { u, ic, oc, max_abs })
    }
}

/// True when the wrapped Winograd sums are exact for inputs bounded by `x_max` (see the module
/// doc): transformed inputs fit i16 and `4 · 9 · ic · x_max · max|w|` fits i32.
fn exact_for(f: &WinogradFilters, x_max: u64) -> bool {
    let acc_bound = (36 * f.ic as u64).saturating_mul(x_max.saturating_mul(f.max_abs));
    x_max.saturating_mul(4) <= i16::MAX as u64 && acc_bound <= i32::MAX as u64
}

/// A run of whole tile rows: tile rows `r0 .. r1`, `width` GEMM columns (the chunk's tiles,
/// row-major, padded to a multiple of 8). Shared with the F(4×4) kernel.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chunk {
    pub(super) r0: usize,
    pub(super) r1: usize,
    pub(super) width: usize,
}

/// Split `th` tile rows of `tw` tiles into chunks of about `per_chunk` tiles.
pub(super) fn chunks(th: usize, tw: usize, per_chunk: usize) -> Vec<Chunk> {
    let n = (th * tw).div_ceil(per_chunk).clamp(1, th.max(1));
    (0..n)
        .map(|i| {
            let (r0, r1) = (i * th / n, (i + 1) * th / n);
            Chunk { r0, r1, width: ((r1 - r0) * tw).div_ceil(8) * 8 }
        })
        .filter(|c| c.r1 > c.r0)
        .collect()
}

/// A run of whole tile rows `r0 .. r1` of image `n` of the batch, at GEMM columns `t0 ..` of its
/// [`BatchChunk`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Seg {
    pub(super) n: usize,
    pub(super) r0: usize,
    pub(super) r1: usize,
    pub(super) t0: usize,
}

/// The GEMM columns of one pass over the filters: runs of tile rows of one or more images of
/// the batch side by side (`width` columns, a multiple of 8), so that the images of a batch on
/// a small map share the pass instead of streaming every filter once each.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct BatchChunk {
    pub(super) segs: Vec<Seg>,
    pub(super) width: usize,
}

impl BatchChunk {
    /// The GEMM columns holding tiles (the rest, up to `width`, are zero padding).
    pub(super) fn tiles(&self, tw: usize) -> usize {
        self.segs.last().map_or(0, |s| s.t0 + (s.r1 - s.r0) * tw)
    }
}

/// The chunks of a batch of `images` maps of `th` × `tw` tiles, about `per_chunk` tiles each:
/// an image of several chunks is split as [`chunks`] splits it; images of one chunk each are
/// grouped, about `per_chunk` tiles a group (at least one image). Image-major order.
pub(super) fn batch_chunks(images: usize, th: usize, tw: usize, per_chunk: usize) -> Vec<BatchChunk> {
    let own = chunks(th, tw, per_chunk);
    let tiles = th * tw;
    if own.len() == 1 && tiles > 0 {
        let per = ((per_chunk + tiles / 2) / tiles).max(1);
        return (0..images)
            .step_by(per)
            .map(|n0| {
                let segs: Vec<Seg> =
                    (n0..(n0 + per).min(images)).map(|n| Seg { n, r0: 0, r1: th, t0: (n - n0) * tiles }).collect();
                BatchChunk { width: (segs.len() * tiles).div_ceil(8) * 8, segs }
            })
            .collect();
    }
    (0..images)
        .flat_map(|n| {
            own.iter().map(move |c| BatchChunk { segs: vec![Seg { n, r0: c.r0, r1: c.r1, t0: 0 }], width: c.width })
        })
        .collect()
}

/// The 3 × 3 convolution `g` of the i16 codes `x` (every |x| ≤ `x_max`) with the transformed
/// filters `f`, by Winograd F(2×2, 3×3): for every output channel and run of whole output rows,
/// `emit(channel, sums, dst)` turns the sums `Σ w·x` (no bias) into the stored values `dst` of
/// `out` (NCHW). Gives exactly the direct convolution's sums; returns false, leaving `out`
/// untouched, when `g` or the filters do not fit or the sums might not be exact.
pub fn conv3x3<T: Copy + Send + Sync>(
    x: &[i16],
    x_max: u64,
    f: &WinogradFilters,
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
    let (th, tw) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
    let chunks = chunks(th, tw, TILES_PER_CHUNK);
    let ic2 = g.ic.div_ceil(2);
    let blocks = g.oc.div_ceil(ROWS_PER_TASK);
    let plane_in = g.ic * g.ih * g.iw;
    for (n, out_n) in out.chunks_mut(g.oc * p).enumerate() {
        let xn = &x[n * plane_in..(n + 1) * plane_in];
        let v: Vec<Vec<i16>> = chunks.par_iter().map(|c| input_transform(xn, g, tw, ic2, c)).collect();
        // The output, split per task: (chunk, block of channels) -> each channel's rows of the chunk.
        let mut cells: Vec<Vec<&mut [T]>> = (0..chunks.len() * blocks).map(|_| Vec::new()).collect();
        for (o, plane) in out_n.chunks_mut(p).enumerate() {
            let mut rest = plane;
            for (ci, c) in chunks.iter().enumerate() {
                let len = ((2 * c.r1).min(g.oh) - 2 * c.r0) * g.ow;
                let (head, tail) = rest.split_at_mut(len);
                cells[ci * blocks + o / ROWS_PER_TASK].push(head);
                rest = tail;
            }
        }
        cells.into_par_iter().enumerate().for_each(|(task, dst)| {
            let (ci, b) = (task / blocks, task % blocks);
            let (c, o0) = (&chunks[ci], b * ROWS_PER_TASK);
            let rows = ROWS_PER_TASK.min(g.oc - o0);
            let m = gemms(f, ic2, o0, rows, &v[ci], c.width, simd);
            let yrows = (2 * c.r1).min(g.oh) - 2 * c.r0;
            let mut y = vec![0i32; yrows * g.ow];
            for (r, d) in dst.into_iter().enumerate() {
                output_transform(&m, rows, r, c, tw, g.ow, yrows, &mut y);
                emit(o0 + r, &y, d);
            }
        });
    }
    true
}

/// The transformed inputs of one chunk: `V = Bᵀ d B` for every input channel and tile, value
/// `(ξ, c, t)` at `((ξ·ic2 + c / 2)·width + t)·2 + c % 2` (zeros past the last channel and tile).
fn input_transform(x: &[i16], g: &ConvGeom, tw: usize, ic2: usize, c: &Chunk) -> Vec<i16> {
    let width = c.width;
    let mut v = vec![0i16; 16 * ic2 * width * 2];
    // The two channels of a pair: their 16 transformed values for each tile of a tile row.
    let mut vals = vec![0i16; 2 * 16 * tw];
    let mut rows = RowTransform::new(tw);
    for cp in 0..ic2 {
        for ty in c.r0..c.r1 {
            for h in 0..2 {
                let dst = &mut vals[h * 16 * tw..(h + 1) * 16 * tw];
                match 2 * cp + h {
                    ch if ch < g.ic => rows.tile_row(x, g, ch, ty, dst),
                    _ => dst.fill(0),
                }
            }
            // Interleave the pair into V: (V_c, V_c+1) per tile, for every ξ.
            let col0 = (ty - c.r0) * tw;
            let (va, vb) = vals.split_at(16 * tw);
            for xi in 0..16 {
                let base = ((xi * ic2 + cp) * width + col0) * 2;
                let dst = &mut v[base..base + 2 * tw];
                let (a, b) = (&va[xi * tw..(xi + 1) * tw], &vb[xi * tw..(xi + 1) * tw]);
                for (d, (&p, &q)) in dst.chunks_exact_mut(2).zip(a.iter().zip(b)) {
                    d[0] = p;
                    d[1] = q;
                }
            }
        }
    }
    v
}

/// Scratch of [`input_transform`] for one tile row of one channel: the four input rows split
/// into even and odd columns (so that every step below works on contiguous runs).
struct RowTransform {
    tw: usize,
    /// Input rows 0..4 of the tile row, even columns then odd columns, `tw + 1` each.
    d: Vec<i16>,
    /// `Bᵀ d` (rows), same layout.
    t: Vec<i16>,
}

impl RowTransform {
    fn new(tw: usize) -> RowTransform {
        RowTransform { tw, d: vec![0; 8 * (tw + 1)], t: vec![0; 8 * (tw + 1)] }
    }

    /// The 16 transformed values of every tile of tile row `ty` of channel `ch`: value `ξ` of
    /// tile `tx` at `ξ·tw + tx` of `dst`.
    fn tile_row(&mut self, x: &[i16], g: &ConvGeom, ch: usize, ty: usize, dst: &mut [i16]) {
        let (tw, n) = (self.tw, self.tw + 1);
        let plane = g.ih * g.iw;
        let xc = &x[ch * plane..(ch + 1) * plane];
        // Column k of a tile row holds x[.., k − pl]; k = 2·k' (even) or 2·k' + 1 (odd).
        for a in 0..4 {
            let (even, odd) = self.d[2 * a * n..(2 * a + 2) * n].split_at_mut(n);
            even.fill(0);
            odd.fill(0);
            let iy = (2 * ty + a) as isize - g.pt as isize;
            if iy < 0 || iy >= g.ih as isize {
                continue;
            }
            let src = &xc[iy as usize * g.iw..(iy as usize + 1) * g.iw];
            for (k, &val) in src.iter().enumerate().map(|(ix, v)| (ix + g.pl, v)).take_while(|&(k, _)| k < 2 * n) {
                if k % 2 == 0 {
                    even[k / 2] = val;
                } else {
                    odd[k / 2] = val;
                }
            }
        }
        // Bᵀ on the rows: (d0 − d2, d1 + d2, d2 − d1, d1 − d3), on even and odd columns alike.
        {
            let d = &self.d;
            let row = |a: usize| &d[2 * a * n..(2 * a + 2) * n];
            let (d0, d1, d2, d3) = (row(0), row(1), row(2), row(3));
            let (t0, rest) = self.t.split_at_mut(2 * n);
            let (t1, rest) = rest.split_at_mut(2 * n);
            let (t2, t3) = rest.split_at_mut(2 * n);
            for k in 0..2 * n {
                t0[k] = d0[k].wrapping_sub(d2[k]);
                t1[k] = d1[k].wrapping_add(d2[k]);
                t2[k] = d2[k].wrapping_sub(d1[k]);
                t3[k] = d1[k].wrapping_sub(d3[k]);
            }
        }
        // B on the columns: tile tx has columns 2tx .. 2tx + 3 = e[tx], o[tx], e[tx+1], o[tx+1]:
        // (e[tx] − e[tx+1], o[tx] + e[tx+1], e[tx+1] − o[tx], o[tx] − o[tx+1]).
        for i in 0..4 {
            let (e, o) = self.t[2 * i * n..(2 * i + 2) * n].split_at(n);
            let (e0, e1, o0, o1) = (&e[..tw], &e[1..], &o[..tw], &o[1..]);
            let out = &mut dst[4 * i * tw..(4 * i + 4) * tw];
            let (v0, rest) = out.split_at_mut(tw);
            let (v1, rest) = rest.split_at_mut(tw);
            let (v2, v3) = rest.split_at_mut(tw);
            for k in 0..tw {
                v0[k] = e0[k].wrapping_sub(e1[k]);
                v1[k] = o0[k].wrapping_add(e1[k]);
                v2[k] = e1[k].wrapping_sub(o0[k]);
                v3[k] = o0[k].wrapping_sub(o1[k]);
            }
        }
    }
}

/// The 16 products `M_ξ = U_ξ · V_ξ` of output channels `o0 .. o0 + rows` (`o0` a multiple of
/// `MR16`) over one chunk of `width` tiles: `M[ξ][r][t]` at `(ξ·rows + r)·width + t`, wrapping
/// i32 sums.
fn gemms(f: &WinogradFilters, ic2: usize, o0: usize, rows: usize, v: &[i16], width: usize, simd: bool) -> Vec<i32> {
    let blocks = f.oc.div_ceil(MR16);
    let ublock = ic2 * MR16 * 2;
    let mut m = vec![0i32; 16 * rows * width];
    for xi in 0..16 {
        let u0 = (xi * blocks + o0 / MR16) * ublock;
        let u = &f.u[u0..u0 + rows.div_ceil(MR16) * ublock];
        let vx = &v[xi * ic2 * width * 2..(xi + 1) * ic2 * width * 2];
        let mx = &mut m[xi * rows * width..(xi + 1) * rows * width];
        gemm_pairs(u, ic2, rows, vx, width, mx, simd);
    }
    m
}

/// `m[r][j] = Σ_cp u[r][cp]·v[cp][j]` over pairs of i16, wrapping i32 sums: `u` holds the rows in
/// blocks of `MR16` (pair `cp` of row `r` at `((r / MR16 · ic2 + cp) · MR16 + r % MR16) · 2`),
/// `v` `ic2` rows of `width` pairs (`width` a multiple of 8), `m` `rows` rows of `width`. The
/// AVX2 kernel when `simd` (the caller checked the CPU), else the portable loop.
pub(super) fn gemm_pairs(u: &[i16], ic2: usize, rows: usize, v: &[i16], width: usize, m: &mut [i32], simd: bool) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: the caller checked avx2; `avx::gemm_pairs` asserts the sizes it reads.
        unsafe { avx::gemm_pairs(u, ic2, rows, v, width, m) };
        return;
    }
    let _ = simd;
    gemm_pairs_portable(u, ic2, rows, v, width, m);
}

/// Portable twin of `avx::gemm_pairs`: `m[r][j] = Σ_cp u[r][cp]·v[cp][j]` over pairs, wrapping.
fn gemm_pairs_portable(u: &[i16], ic2: usize, rows: usize, v: &[i16], width: usize, m: &mut [i32]) {
    for r in 0..rows {
        let (b, rr) = (r / MR16, r % MR16);
        let acc = &mut m[r * width..(r + 1) * width];
        acc.fill(0);
        for cp in 0..ic2 {
            let ui = ((b * ic2 + cp) * MR16 + rr) * 2;
            let (u0, u1) = (u[ui] as i32, u[ui + 1] as i32);
            let vr = &v[cp * width * 2..(cp + 1) * width * 2];
            for (a, pair) in acc.iter_mut().zip(vr.chunks_exact(2)) {
                *a = a.wrapping_add((u0 * pair[0] as i32).wrapping_add(u1 * pair[1] as i32));
            }
        }
    }
}

/// `Y = Aᵀ M A / 4` of row `r` of `m` (see [`gemms`]) for every tile of chunk `c`, into `y`
/// (`yrows` output rows of `ow`, from output row `2·c.r0`); outputs past the map are dropped.
#[allow(clippy::too_many_arguments)]
fn output_transform(m: &[i32], rows: usize, r: usize, c: &Chunk, tw: usize, ow: usize, yrows: usize, y: &mut [i32]) {
    let width = c.width;
    let mut q = vec![0i32; 4 * tw];
    for tyl in 0..c.r1 - c.r0 {
        let s = (tyl * tw)..(tyl * tw + tw);
        let mm: [&[i32]; 16] = std::array::from_fn(|xi| &m[(xi * rows + r) * width..][s.clone()]);
        {
            let (q0, rest) = q.split_at_mut(tw);
            let (q1, rest) = rest.split_at_mut(tw);
            let (q2, q3) = rest.split_at_mut(tw);
            for tx in 0..tw {
                // Aᵀ on the rows: (m0 + m1 + m2, m1 − m2 − m3), per column j.
                let s0: [i32; 4] =
                    std::array::from_fn(|j| mm[j][tx].wrapping_add(mm[4 + j][tx]).wrapping_add(mm[8 + j][tx]));
                let s1: [i32; 4] =
                    std::array::from_fn(|j| mm[4 + j][tx].wrapping_sub(mm[8 + j][tx]).wrapping_sub(mm[12 + j][tx]));
                // A on the columns; the sums are 4·acc exactly, so the shift divides exactly.
                q0[tx] = s0[0].wrapping_add(s0[1]).wrapping_add(s0[2]) >> 2;
                q1[tx] = s0[1].wrapping_sub(s0[2]).wrapping_sub(s0[3]) >> 2;
                q2[tx] = s1[0].wrapping_add(s1[1]).wrapping_add(s1[2]) >> 2;
                q3[tx] = s1[1].wrapping_sub(s1[2]).wrapping_sub(s1[3]) >> 2;
            }
        }
        for i in 0..2 {
            let oy = 2 * tyl + i;
            if oy >= yrows {
                break;
            }
            let dst = &mut y[oy * ow..(oy + 1) * ow];
            let (even, odd) = (&q[2 * i * tw..(2 * i + 1) * tw], &q[(2 * i + 1) * tw..(2 * i + 2) * tw]);
            let mut pairs = dst.chunks_exact_mut(2);
            for (d, (&a, &b)) in (&mut pairs).zip(even.iter().zip(odd)) {
                d[0] = a;
                d[1] = b;
            }
            if let Some(last) = pairs.into_remainder().first_mut() {
                *last = even[tw - 1];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::MR16;
    use std::arch::x86_64::*;

    /// Pairs of input channels per cache block (a 16-column panel of them is 16 KiB).
    const KC: usize = 256;

    /// `m[r][j] = Σ_cp u[r][cp]·v[cp][j]` for `r < rows`, `j < width`, over pairs of i16 with
    /// `_mm256_madd_epi16` and wrapping i32 sums. `u` holds the rows in blocks of `MR16`
    /// (pair `cp` of row `r` at `((r / MR16 · ic2 + cp) · MR16 + r % MR16) · 2`), `v` `ic2` rows
    /// of `width` pairs, `m` `rows` rows of `width`; `width` is a multiple of 8.
    ///
    /// # Safety
    /// The CPU must support avx2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn gemm_pairs(u: &[i16], ic2: usize, rows: usize, v: &[i16], width: usize, m: &mut [i32]) {
        assert!(u.len() >= rows.div_ceil(MR16) * ic2 * MR16 * 2);
        assert!(v.len() >= ic2 * width * 2 && m.len() >= rows * width && width.is_multiple_of(8));
        for kb in (0..ic2).step_by(KC) {
            let ke = (kb + KC).min(ic2);
            let mut j0 = 0;
            while j0 < width {
                let two = j0 + 16 <= width;
                for ob in (0..rows).step_by(MR16) {
                    if two {
                        block2(u, ic2, rows, ob, kb, ke, v, width, j0, m);
                    } else {
                        block1(u, ic2, rows, ob, kb, ke, v, width, j0, m);
                    }
                }
                j0 += if two { 16 } else { 8 };
            }
        }
    }

    /// One `MR16 × 16` register block over pairs `kb .. ke`, added to `m` when `kb > 0`. The
    /// twelve accumulators are named variables, so they stay in registers.
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block2(
        u: &[i16],
        ic2: usize,
        rows: usize,
        ob: usize,
        kb: usize,
        ke: usize,
        v: &[i16],
        width: usize,
        j0: usize,
        m: &mut [i32],
    ) {
        const R: usize = MR16;
        const _: () = assert!(R == 6, "block2 is written for six rows");
        let live = R.min(rows - ob);
        let mp = m.as_mut_ptr().add(ob * width + j0);
        let row = |o: usize| mp.add(o * width) as *mut __m256i;
        let z = _mm256_setzero_si256();
        let (mut a00, mut a01, mut a10, mut a11, mut a20, mut a21) = (z, z, z, z, z, z);
        let (mut a30, mut a31, mut a40, mut a41, mut a50, mut a51) = (z, z, z, z, z, z);
        if kb > 0 {
            let ld = |o: usize, h: usize| if o < live { _mm256_loadu_si256(row(o).add(h)) } else { z };
            (a00, a01, a10, a11, a20, a21) = (ld(0, 0), ld(0, 1), ld(1, 0), ld(1, 1), ld(2, 0), ld(2, 1));
            (a30, a31, a40, a41, a50, a51) = (ld(3, 0), ld(3, 1), ld(4, 0), ld(4, 1), ld(5, 0), ld(5, 1));
        }
        let mut vp = v.as_ptr().add((kb * width + j0) * 2) as *const __m256i;
        let mut up = u.as_ptr().add(((ob / R) * ic2 + kb) * R * 2) as *const i32;
        let vstep = width / 8;
        for _ in kb..ke {
            let c0 = _mm256_loadu_si256(vp);
            let c1 = _mm256_loadu_si256(vp.add(1));
            let w = _mm256_set1_epi32(up.read_unaligned());
            a00 = _mm256_add_epi32(a00, _mm256_madd_epi16(c0, w));
            a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(c1, w));
            let w = _mm256_set1_epi32(up.add(1).read_unaligned());
            a10 = _mm256_add_epi32(a10, _mm256_madd_epi16(c0, w));
            a11 = _mm256_add_epi32(a11, _mm256_madd_epi16(c1, w));
            let w = _mm256_set1_epi32(up.add(2).read_unaligned());
            a20 = _mm256_add_epi32(a20, _mm256_madd_epi16(c0, w));
            a21 = _mm256_add_epi32(a21, _mm256_madd_epi16(c1, w));
            let w = _mm256_set1_epi32(up.add(3).read_unaligned());
            a30 = _mm256_add_epi32(a30, _mm256_madd_epi16(c0, w));
            a31 = _mm256_add_epi32(a31, _mm256_madd_epi16(c1, w));
            let w = _mm256_set1_epi32(up.add(4).read_unaligned());
            a40 = _mm256_add_epi32(a40, _mm256_madd_epi16(c0, w));
            a41 = _mm256_add_epi32(a41, _mm256_madd_epi16(c1, w));
            let w = _mm256_set1_epi32(up.add(5).read_unaligned());
            a50 = _mm256_add_epi32(a50, _mm256_madd_epi16(c0, w));
            a51 = _mm256_add_epi32(a51, _mm256_madd_epi16(c1, w));
            vp = vp.add(vstep);
            up = up.add(R);
        }
        let acc = [[a00, a01], [a10, a11], [a20, a21], [a30, a31], [a40, a41], [a50, a51]];
        for (o, a) in acc.iter().enumerate().take(live) {
            _mm256_storeu_si256(row(o), a[0]);
            _mm256_storeu_si256(row(o).add(1), a[1]);
        }
    }

    /// One `MR16 × 8` register block (the last columns of a width that is not a multiple of
    /// 16), as [`block2`].
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block1(
        u: &[i16],
        ic2: usize,
        rows: usize,
        ob: usize,
        kb: usize,
        ke: usize,
        v: &[i16],
        width: usize,
        j0: usize,
        m: &mut [i32],
    ) {
        const R: usize = MR16;
        let live = R.min(rows - ob);
        let mp = m.as_mut_ptr().add(ob * width + j0);
        let row = |o: usize| mp.add(o * width) as *mut __m256i;
        let z = _mm256_setzero_si256();
        let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5) = (z, z, z, z, z, z);
        if kb > 0 {
            let ld = |o: usize| if o < live { _mm256_loadu_si256(row(o)) } else { z };
            (a0, a1, a2, a3, a4, a5) = (ld(0), ld(1), ld(2), ld(3), ld(4), ld(5));
        }
        let mut vp = v.as_ptr().add((kb * width + j0) * 2) as *const __m256i;
        let mut up = u.as_ptr().add(((ob / R) * ic2 + kb) * R * 2) as *const i32;
        let vstep = width / 8;
        for _ in kb..ke {
            let c = _mm256_loadu_si256(vp);
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(c, _mm256_set1_epi32(up.read_unaligned())));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(c, _mm256_set1_epi32(up.add(1).read_unaligned())));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(c, _mm256_set1_epi32(up.add(2).read_unaligned())));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(c, _mm256_set1_epi32(up.add(3).read_unaligned())));
            a4 = _mm256_add_epi32(a4, _mm256_madd_epi16(c, _mm256_set1_epi32(up.add(4).read_unaligned())));
            a5 = _mm256_add_epi32(a5, _mm256_madd_epi16(c, _mm256_set1_epi32(up.add(5).read_unaligned())));
            vp = vp.add(vstep);
            up = up.add(R);
        }
        for (o, a) in [a0, a1, a2, a3, a4, a5].iter().enumerate().take(live) {
            _mm256_storeu_si256(row(o), *a);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::{conv2d_i16_with, conv2d_reference, PackedFilters};
    use super::*;

    /// Deterministic pseudo-random numbers (64-bit LCG, high bits); shared with the F(4×4) tests.
    pub(crate) struct Lcg(pub(crate) u64);
    impl Lcg {
        pub(crate) fn int(&mut self, lo: i32, hi: i32) -> i32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + ((self.0 >> 33) as u32 % (hi - lo + 1) as u32) as i32
        }
    }

    /// A 3 × 3 stride-1 convolution: (n, ic, ih, iw, oc, pad top, pad left), output as padded.
    pub(crate) fn geom(n: usize, ic: usize, ih: usize, iw: usize, oc: usize, pt: usize, pl: usize) -> ConvGeom {
        let (oh, ow) = ((ih + 2 * pt).saturating_sub(2), (iw + 2 * pl).saturating_sub(2));
        ConvGeom { n, ic, ih, iw, oc, kh: 3, kw: 3, sh: 1, sw: 1, pt, pl, dh: 1, dw: 1, group: 1, oh, ow }
    }

    fn wino_sums(x: &[i16], x_max: u64, w: &[i16], g: &ConvGeom, simd: bool) -> Option<Vec<i32>> {
        let f = WinogradFilters::new(w, g)?;
        let mut out = vec![i32::MIN; g.n * g.oc * g.oh * g.ow];
        let copy = |_: usize, s: &[i32], d: &mut [i32]| d.copy_from_slice(s);
        conv3x3(x, x_max, &f, g, &mut out, &copy, simd).then_some(out)
    }

    /// The kernels this CPU can run: portable (false) and, with AVX2, the SIMD one (true).
    pub(crate) fn kernels() -> Vec<bool> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            return vec![false, true];
        }
        vec![false]
    }

    #[test]
    fn winograd_sums_equal_the_direct_sums() {
        let mut r = Lcg(17);
        let cases = [
            geom(1, 16, 13, 13, 32, 1, 1), // tiny-yolov3's smallest map
            geom(1, 5, 13, 13, 7, 0, 0),   // pad 0, odd channel counts
            geom(1, 3, 1, 1, 16, 1, 1),    // 1 × 1 map
            geom(1, 9, 2, 3, 13, 1, 1),    // 2 × 3 map
            geom(2, 1, 6, 5, 6, 1, 0),     // batch, one channel, unequal pads
            geom(1, 12, 40, 37, 25, 1, 1), // several chunks, a partial last task of rows
            geom(1, 1024, 3, 4, 12, 1, 1), // the widest reduction (pairs in cache blocks)
            geom(1, 8, 3, 3, 4, 0, 0),     // one output position
            geom(1, 31, 27, 9, 50, 1, 1),  // odd everything, channels across three tasks
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
                for simd in kernels() {
                    let got = wino_sums(&x16, x_max, &w16, g, simd).expect("routed");
                    assert_eq!(got, want, "{g:?} simd {simd}");
                }
            }
        }
    }

    #[test]
    fn the_widest_int8_layer_is_exact_at_the_extremes() {
        // 1024 channels of (−128)·(−128): 4·acc = 603 979 776 still fits i32, while the
        // transformed partial sums wrap; the wrapped result must still be exact.
        let g = geom(1, 1024, 13, 13, 8, 1, 1);
        let (nx, nw) = (g.ic * 169, g.oc * g.ic * 9);
        let want = conv2d_reference(&vec![-128; nx], &vec![-128; nw], &g);
        assert_eq!(want[14], 1024 * 9 * 128 * 128, "an inner position");
        for simd in kernels() {
            assert_eq!(wino_sums(&vec![-128; nx], 128, &vec![-128; nw], &g, simd).unwrap(), want, "simd {simd}");
        }
    }

    #[test]
    fn sums_that_might_not_be_exact_take_the_direct_path() {
        let g = geom(1, 1024, 5, 5, 6, 1, 1);
        let (nx, nw) = (g.ic * 25, g.oc * g.ic * 9);
        // 36 · 1024 · 500 · 128 > i32::MAX: refused, and `out` is left as it was.
        let f = WinogradFilters::new(&vec![-128; nw], &g).unwrap();
        let mut out = vec![7i32; g.oc * 25];
        let copy = |_: usize, s: &[i32], d: &mut [i32]| d.copy_from_slice(s);
        assert!(!conv3x3(&vec![500; nx], 500, &f, &g, &mut out, &copy, false));
        assert_eq!(out, vec![7; g.oc * 25]);
        // 36 · 1024 · 255 · 128 fits: taken.
        assert!(conv3x3(&vec![255; nx], 255, &f, &g, &mut out, &copy, false));
        // Inputs whose transform could leave i16: 4 · 8192 > 32767.
        let small = geom(1, 2, 4, 4, 2, 1, 1);
        let f = WinogradFilters::new(&[1; 36], &small).unwrap();
        let mut out = vec![0i32; 32];
        assert!(!conv3x3(&[8192; 32], 8192, &f, &small, &mut out, &copy, false));
        // Filters whose transform leaves i16 (9 · 3641 > 32767) are not transformed.
        assert!(WinogradFilters::new(&[3641; 36], &small).is_none());
        assert!(WinogradFilters::new(&[3640; 36], &small).is_some());
        // Neither are other geometries, nor too few weights.
        let stride2 = ConvGeom { sh: 2, sw: 2, oh: 2, ow: 2, ..small };
        assert!(WinogradFilters::new(&[1; 36], &stride2).is_none());
        assert!(WinogradFilters::new(&[1; 35], &small).is_none());
        // Through the i16 entry point the refused case still gives the exact sums (direct path).
        let x: Vec<i32> = (0..nx).map(|i| if i % 2 == 0 { 500 } else { -500 }).collect();
        let want = conv2d_reference(&x, &vec![-128; nw], &g);
        let x16: Vec<i16> = x.iter().map(|&v| v as i16).collect();
        let p = PackedFilters::new(&vec![-128; nw], &g).unwrap();
        let mut out = vec![0i32; want.len()];
        for simd in kernels() {
            assert!(conv2d_i16_with(&x16, 500, &p, &g, &mut out, copy, simd, true));
            assert_eq!(out, want, "simd {simd}");
        }
    }
}

#[cfg(test)]
mod real_layers {
    use super::super::{conv2d_i16_with, PackedFilters};
    use super::*;
    use crate::calibration::CalibrationTable;
    use crate::ir::weights::TensorData;
    use crate::lower::{calib::cali_map_from_table, Chip, LowerOptions, Mode};

    fn asset(p: &str) -> String {
        format!("{}/../assets/{p}", env!("CARGO_MANIFEST_DIR"))
    }

    /// Every 3 × 3 INT8 convolution of tiny-yolov3 lowered for `chip`, on its input in the
    /// simulation of a real photo: the Winograd sums equal the direct kernel's, element for
    /// element. Returns how many layers were compared.
    fn compare_layers(chip: Chip) -> usize {
        let opts = crate::onnx::ImportOptions {
            model_name: "yolov3_tiny".into(),
            input_shapes: Some(vec![vec![1, 3, 416, 416]]),
            output_names: vec!["convolution_output1".into(), "convolution_output".into()],
            preprocess: None,
        };
        let (top, weights) =
            crate::onnx::import(std::path::Path::new(&asset("models/tiny-yolov3-11.onnx")), &opts).unwrap();
        let text = std::fs::read_to_string(asset("reference/tiny-yolov3/tpu-mlir/yolov3_cali_table")).unwrap();
        let table = cali_map_from_table(&CalibrationTable::parse(&text).unwrap());
        let lo = LowerOptions { chip, mode: Mode::Int8, asymmetric: false, table: Some(&table), qtable: None };
        let (m, lw) = crate::lower::lower(&top, &weights, &lo).unwrap();
        let x = crate::npz::read_f32_map(std::path::Path::new(&asset("reference/tiny-yolov3/yolov3_tiny_in_f32.npz")))
            .unwrap()[0]
            .1
            .clone();
        let values: std::collections::HashMap<String, super::super::super::SimTensor> =
            crate::sim::run(&m, &lw, &[x]).unwrap().into_iter().collect();
        let f = &m.func;
        let mut compared = 0;
        for op in f.ops.iter().filter(|op| op.kind == "tpu.Conv2D") {
            let Some(TensorData::I8(w)) = lw.get(&f.values[op.operands[1]].name) else { continue };
            let Some(x) = values.get(&f.values[op.operands[0]].name) else { continue };
            let (xs, ws, os) = (x.shape().to_vec(), w.shape().to_vec(), f.values[op.results[0]].ty.shape().to_vec());
            let pads = op.attr_ints_or("pads", &[0, 0, 0, 0]).unwrap();
            let g = ConvGeom {
                n: xs[0],
                ic: xs[1],
                ih: xs[2],
                iw: xs[3],
                oc: os[1],
                kh: ws[2],
                kw: ws[3],
                sh: 1,
                sw: 1,
                pt: pads[0] as usize,
                pl: pads[1] as usize,
                dh: 1,
                dw: 1,
                group: 1,
                oh: os[2],
                ow: os[3],
            };
            if !fits(&g) || op.attr_ints_or("strides", &[1, 1]).unwrap() != [1, 1] {
                continue;
            }
            let xv: Vec<i16> = x.codes_i32().unwrap().iter().map(|&v| v as i16).collect();
            let wv: Vec<i16> = w.iter().map(|&v| v as i16).collect();
            let x_max = xv.iter().map(|v| v.unsigned_abs() as u64).max().unwrap();
            let copy = |_: usize, s: &[i32], d: &mut [i32]| d.copy_from_slice(s);
            let packed = PackedFilters::new(&wv, &g).unwrap();
            let mut direct = vec![0i32; g.oc * g.oh * g.ow];
            assert!(conv2d_i16_with(&xv, x_max, &packed, &g, &mut direct, copy, true, false));
            let wf = WinogradFilters::new(&wv, &g).unwrap();
            let mut wino = vec![0i32; direct.len()];
            assert!(conv3x3(&xv, x_max, &wf, &g, &mut wino, &copy, true), "{g:?}");
            assert_eq!(wino, direct, "{chip:?} layer {}", f.values[op.results[0]].name);
            // F(4×4, 3×3) takes every layer of at least 16 channels: its bound holds for them all.
            let w4 = packed.wino4.as_ref();
            assert_eq!(w4.is_some(), g.ic >= super::super::winograd4::MIN_CHANNELS, "F(4x4) filters");
            if let Some(w4) = w4 {
                let mut wino4 = vec![0i32; direct.len()];
                assert!(super::super::winograd4::conv3x3(&xv, x_max, w4, &g, &mut wino4, &copy, true), "{g:?}");
                assert_eq!(wino4, direct, "{chip:?} layer {} F(4x4)", f.values[op.results[0]].name);
            }
            // F(2×2) filters are packed only where F(4×4) might refuse some code (conv2d_7 here).
            let covered = packed.wino4.as_ref().is_some_and(|f| f.covers_all_codes());
            assert_eq!(packed.wino.is_some(), g.ic >= MIN_CHANNELS && !covered, "{g:?}");
            compared += 1;
        }
        compared
    }

    #[test]
    fn tiny_yolov3_bm1684x_layers_are_exact() {
        // 416, 208, 104, 52, 26, 13 (×2), the 13 × 13 head and the 26 × 26 head: 9 layers.
        assert_eq!(compare_layers(Chip::Bm1684x), 9);
    }

    #[test]
    fn tiny_yolov3_cv183x_layers_are_exact() {
        assert_eq!(compare_layers(Chip::Cv183x), 9);
    }
}

#[cfg(test)]
mod bench {
    use super::super::{conv2d_i16_with, PackedFilters};
    use super::*;

    /// tiny-yolov3's 3 × 3 layers: (input channels, map size, output channels).
    const LAYERS: [(usize, usize, usize); 8] = [
        (3, 416, 16),
        (16, 208, 32),
        (32, 104, 64),
        (64, 52, 128),
        (128, 26, 256),
        (256, 13, 512),
        (512, 13, 1024),
        (384, 26, 256),
    ];

    /// CPU time of this process so far in ns: the sum over its threads of the time on a CPU
    /// (the machine is shared, so wall time says little).
    fn cpu_ns() -> u64 {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// A 3 × 3, stride 1, pad 1 layer of `ic` -> `oc` channels on an `s` × `s` map, with
    /// deterministic codes spread over the whole int8 range.
    fn layer_case(ic: usize, s: usize, oc: usize) -> (ConvGeom, Vec<i16>, Vec<i16>) {
        let g = ConvGeom {
            n: 1,
            ic,
            ih: s,
            iw: s,
            oc,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            pt: 1,
            pl: 1,
            dh: 1,
            dw: 1,
            group: 1,
            oh: s,
            ow: s,
        };
        let x: Vec<i16> = (0..ic * s * s).map(|i| ((i * 7919) % 255) as i16 - 127).collect();
        let w: Vec<i16> = (0..oc * ic * 9).map(|i| ((i * 104729) % 63) as i16 - 31).collect();
        (g, x, w)
    }

    /// Times the direct and the Winograd kernel on tiny-yolov3's 3 × 3 layers, by CPU time, the
    /// fastest of several calls (run by hand: `RAYON_NUM_THREADS=1 cargo test -p compiler --lib
    /// winograd::bench -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn tiny_yolov3_layers() {
        let (mut td, mut tw) = (0.0, 0.0);
        for (ic, s, oc) in LAYERS {
            let (g, x, w) = layer_case(ic, s, oc);
            let f = PackedFilters::new(&w, &g).unwrap();
            let copy = |_: usize, s: &[i32], d: &mut [i32]| d.copy_from_slice(s);
            let fastest = |wino: bool, out: &mut Vec<i32>| {
                (0..15)
                    .map(|_| {
                        let t = cpu_ns();
                        assert!(conv2d_i16_with(&x, 127, &f, &g, out, copy, true, wino));
                        (cpu_ns() - t) as f64 * 1e-6
                    })
                    .fold(f64::MAX, f64::min)
            };
            let (mut a, mut b, mut c) = (vec![0i32; oc * s * s], vec![0i32; oc * s * s], vec![0i32; oc * s * s]);
            let d = fastest(false, &mut a);
            let wt = fastest(true, &mut b);
            let w2 = match f.wino.as_ref() {
                Some(wf) => (0..15)
                    .map(|_| {
                        let t = cpu_ns();
                        assert!(conv3x3(&x, 127, wf, &g, &mut c, &copy, true));
                        (cpu_ns() - t) as f64 * 1e-6
                    })
                    .fold(f64::MAX, f64::min),
                None => f64::NAN,
            };
            assert_eq!(a, b);
            println!(
                "ic {ic:4} map {s:3} oc {oc:4}: direct {d:7.2} ms  F(2x2) {w2:7.2} ms  routed {wt:7.2} ms  x{:.2}",
                d / wt
            );
            td += d;
            tw += wt;
        }
        println!("total: direct {td:.1} ms, routed {tw:.1} ms");
    }

    /// Runs one kernel on one of tiny-yolov3's 3 × 3 layers, for timing by hand under
    /// `perf stat -e cycles:u` (the machine is shared, so wall time says little):
    /// `WINO_BENCH="wino|direct LAYER REPS" RAYON_NUM_THREADS=1 <test binary> winograd::bench
    /// --ignored`.
    #[test]
    #[ignore]
    fn tiny_yolov3_layer() {
        let spec = std::env::var("WINO_BENCH").unwrap_or_else(|_| "wino 6 10".into());
        let args: Vec<&str> = spec.split_whitespace().collect();
        let (wino, layer, reps) =
            (args[0] == "wino", args[1].parse::<usize>().unwrap(), args[2].parse::<usize>().unwrap());
        let (ic, s, oc) = LAYERS[layer];
        let (g, x, w) = layer_case(ic, s, oc);
        let f = PackedFilters::new(&w, &g).unwrap();
        let copy = |_: usize, s: &[i32], d: &mut [i32]| d.copy_from_slice(s);
        let mut a = vec![0i32; oc * s * s];
        for _ in 0..reps {
            assert!(conv2d_i16_with(&x, 127, &f, &g, &mut a, copy, true, wino));
        }
    }
}
