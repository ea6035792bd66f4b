//! Convolution kernels: im2col + GEMM, integer (i32 accumulation) and f32; transposed conv.
//!
//! Both element types give exactly what the plain loop [`conv2d_reference`] gives:
//! * i32: integer sums are exact in any order, so when the operands are small enough the product
//!   runs as an f32 GEMM (the `gemm` crate) over chunks of the reduction short enough that every
//!   partial sum is an integer below 2^24 (exact in f32); each chunk is converted back to i32 and
//!   the chunks are added in i32. Operands of wider range use the plain loop.
//! * f32: the runtime's float kernels must equal the simulator byte for byte, so every output
//!   element is `acc = acc + w·x` (no FMA) over the reduction index ascending, starting from 0;
//!   the fast kernel keeps exactly that per-element order and only blocks and vectorises over
//!   output channels and positions.
//!
//! Both kernels work on tiles of output positions, so the im2col buffer is one tile, never the
//! whole image.

use super::scratch::{self, Scratch};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

#[path = "winograd.rs"]
mod winograd;
#[path = "winograd4.rs"]
mod winograd4;

/// Geometry of a 2-D convolution.
#[derive(Debug, Clone, Copy)]
pub struct ConvGeom {
    pub n: usize,
    pub ic: usize,
    pub ih: usize,
    pub iw: usize,
    pub oc: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pt: usize,
    pub pl: usize,
    pub dh: usize,
    pub dw: usize,
    pub group: usize,
    pub oh: usize,
    pub ow: usize,
}

/// Numbers the GEMM works on.
pub trait Num: Copy + Send + Sync + Default + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> {
    /// The fastest kernel of this type that gives exactly [`conv2d_reference`]'s result.
    fn conv2d_fast(x: &[Self], w: &[Self], g: &ConvGeom) -> Vec<Self> {
        conv2d_reference(x, w, g)
    }
}

impl Num for i32 {
    fn conv2d_fast(x: &[i32], w: &[i32], g: &ConvGeom) -> Vec<i32> {
        conv2d_i32(x, w, g)
    }
}

impl Num for f32 {
    fn conv2d_fast(x: &[f32], w: &[f32], g: &ConvGeom) -> Vec<f32> {
        conv2d_f32(x, w, g)
    }
}

/// `out[n][oc][p] = Σ_k w[oc][k] · col[k][p]` per group; padding contributes `T::default()` (0).
/// Returns NCHW output (no bias).
pub fn conv2d<T: Num>(x: &[T], w: &[T], g: &ConvGeom) -> Vec<T> {
    T::conv2d_fast(x, w, g)
}

/// The plain im2col loop: per output element, `acc = acc + w·x` over the reduction index
/// `k = (c, ky, kx)` ascending, from 0. The definition the fast kernels are tested against.
pub fn conv2d_reference<T: Num>(x: &[T], w: &[T], g: &ConvGeom) -> Vec<T> {
    let icg = g.ic / g.group;
    let ocg = g.oc / g.group;
    let k = icg * g.kh * g.kw;
    let p = g.oh * g.ow;
    let mut out = vec![T::default(); g.n * g.oc * p];
    for n in 0..g.n {
        for grp in 0..g.group {
            let mut col = vec![T::default(); k * p];
            col.par_chunks_mut(p.max(1)).enumerate().for_each(|(row, dst)| im2col_row(x, g, n, grp, row, 0, dst));
            let obase = (n * g.oc + grp * ocg) * p;
            out[obase..obase + ocg * p].par_chunks_mut(p.max(1)).enumerate().for_each(|(o, acc)| {
                let wrow = &w[(grp * ocg + o) * k..(grp * ocg + o + 1) * k];
                for (kk, &wv) in wrow.iter().enumerate() {
                    let crow = &col[kk * p..(kk + 1) * p];
                    for (a, &c) in acc.iter_mut().zip(crow) {
                        *a = *a + wv * c;
                    }
                }
            });
        }
    }
    out
}

/// One im2col row: reduction index `row` (within the group) for output positions
/// `p0 .. p0 + dst.len()`. Every position inside the image's output is written (padding as 0);
/// positions past the end are left as they are.
#[inline]
fn im2col_row<T: Copy + Default>(x: &[T], g: &ConvGeom, n: usize, grp: usize, row: usize, p0: usize, dst: &mut [T]) {
    let icg = g.ic / g.group;
    let c = row / (g.kh * g.kw);
    let ky = (row / g.kw) % g.kh;
    let kx = row % g.kw;
    let base = (n * g.ic + grp * icg + c) * g.ih * g.iw;
    let p_end = (p0 + dst.len()).min(g.oh * g.ow);
    if p0 >= p_end {
        return;
    }
    // Output columns whose input column is inside the image: ix = ox·sw + kx·dw − pl ∈ [0, iw).
    let off = (kx * g.dw) as isize - g.pl as isize;
    let sw = g.sw.max(1) as isize;
    let lo = if off >= 0 { 0 } else { ((-off) + sw - 1) / sw } as usize;
    let hi = if g.iw as isize - off <= 0 { 0 } else { ((g.iw as isize - off + sw - 1) / sw) as usize };
    let (lo, hi) = (lo.min(g.ow), hi.min(g.ow).max(lo.min(g.ow)));
    let (oy0, oy1) = (p0 / g.ow, (p_end - 1) / g.ow);
    for oy in oy0..=oy1 {
        let ox0 = if oy == oy0 { p0 % g.ow } else { 0 };
        let ox1 = if oy == oy1 { (p_end - 1) % g.ow + 1 } else { g.ow };
        let d = &mut dst[oy * g.ow + ox0 - p0..oy * g.ow + ox1 - p0];
        let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
        if iy < 0 || iy >= g.ih as isize {
            d.fill(T::default());
            continue;
        }
        let xrow = &x[base + iy as usize * g.iw..base + (iy as usize + 1) * g.iw];
        let (a, b) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
        d[..a - ox0].fill(T::default());
        d[b - ox0..].fill(T::default());
        if b > a {
            let ix0 = (a as isize * sw + off) as usize;
            if sw == 1 {
                d[a - ox0..b - ox0].copy_from_slice(&xrow[ix0..ix0 + (b - a)]);
            } else {
                for (k, v) in d[a - ox0..b - ox0].iter_mut().enumerate() {
                    *v = xrow[ix0 + k * sw as usize];
                }
            }
        }
    }
}

/// Output positions per tile for a reduction of `k` rows: the im2col tile stays about 256 KiB.
fn tile_width(k: usize, p: usize) -> usize {
    let w = (65536 / k.max(1)).clamp(64, 4096) / 16 * 16;
    // As many tiles as that width needs, evenly filled.
    let tiles = p.div_ceil(w).max(1);
    (p.div_ceil(tiles).div_ceil(16) * 16).max(16)
}

/// Write tile results (`rows` rows of `width` values, row-major) into the `[rows][p]` output at
/// column `p0`.
fn scatter_tile<T: Copy>(out: &mut [T], p: usize, p0: usize, width: usize, rows: usize, tile: &[T]) {
    let n = width.min(p - p0);
    for r in 0..rows {
        out[r * p + p0..r * p + p0 + n].copy_from_slice(&tile[r * width..r * width + n]);
    }
}

// ---- integer: chunked exact f32 GEMM ----

/// f32 represents every integer of magnitude up to 2^24 exactly.
const F32_EXACT: u64 = 1 << 24;
/// Below this many reduction terms per exact chunk the GEMM is not worth it.
const MIN_CHUNK: usize = 16;

/// Reduction terms per chunk such that every partial sum is an exactly representable integer,
/// or `None` when the operands are too wide for the f32 path.
fn exact_chunk(x: &[i32], w: &[i32]) -> Option<usize> {
    let mx = x.iter().map(|v| v.unsigned_abs() as u64).max().unwrap_or(0);
    let mw = w.iter().map(|v| v.unsigned_abs() as u64).max().unwrap_or(0);
    if mx > F32_EXACT || mw > F32_EXACT {
        return None;
    }
    let prod = mx * mw;
    let chunk = F32_EXACT.checked_div(prod).map_or(usize::MAX, |c| c as usize);
    (chunk >= MIN_CHUNK).then_some(chunk)
}

fn conv2d_i32(x: &[i32], w: &[i32], g: &ConvGeom) -> Vec<i32> {
    let icg = g.ic / g.group;
    let ocg = g.oc / g.group;
    let k = icg * g.kh * g.kw;
    let p = g.oh * g.ow;
    let chunk = exact_chunk(x, w);
    let Some(chunk) = chunk.filter(|_| ocg >= 4 && k > 0 && p > 0) else {
        return conv2d_reference(x, w, g);
    };
    let chunk = chunk.min(k);
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let width = tile_width(chunk, p);
    let tiles = p.div_ceil(width);
    #[cfg(target_arch = "x86_64")]
    let fma = avx::has_avx2_fma();
    #[cfg(not(target_arch = "x86_64"))]
    let fma = false;
    let mut out = vec![0i32; g.n * g.oc * p];
    for n in 0..g.n {
        for grp in 0..g.group {
            // The group's filters as f32, rows padded for the register blocks.
            let mut wpad = vec![0f32; ocg.div_ceil(ROW_PAD) * ROW_PAD * k];
            for (d, &v) in wpad.iter_mut().zip(&w[grp * ocg * k..(grp + 1) * ocg * k]) {
                *d = v as f32;
            }
            let wg = &wpad[..];
            let results: Vec<Vec<i32>> = (0..tiles)
                .into_par_iter()
                .map(|t| {
                    let p0 = t * width;
                    let mut col = vec![0f32; chunk * width];
                    let mut acc = vec![0f32; ocg * width];
                    let mut sum = vec![0i32; ocg * width];
                    let mut k0 = 0;
                    while k0 < k {
                        let kc = chunk.min(k - k0);
                        for r in 0..kc {
                            im2col_row(&xf, g, n, grp, k0 + r, p0, &mut col[r * width..(r + 1) * width]);
                        }
                        #[cfg(target_arch = "x86_64")]
                        if fma {
                            // SAFETY: avx2 and fma are present; sizes as the kernel requires.
                            unsafe { avx::tile_fma(wg, k, k0, kc, ocg, &col, width, &mut acc) };
                            for (s, &a) in sum.iter_mut().zip(&acc) {
                                *s += a as i32;
                            }
                            k0 += kc;
                            continue;
                        }
                        // SAFETY: lhs is `ocg × kc` inside `wg` (row stride k), rhs `kc × width`
                        // inside `col`, dst `ocg × width` inside `acc`; all owned or borrowed here.
                        unsafe {
                            gemm::gemm(
                                ocg,
                                width,
                                kc,
                                acc.as_mut_ptr(),
                                1,
                                width as isize,
                                false,
                                wg.as_ptr().add(k0),
                                1,
                                k as isize,
                                col.as_ptr(),
                                1,
                                width as isize,
                                0.0f32,
                                1.0f32,
                                false,
                                false,
                                false,
                                gemm::Parallelism::None,
                            );
                        }
                        for (s, &a) in sum.iter_mut().zip(&acc) {
                            *s += a as i32;
                        }
                        k0 += kc;
                    }
                    sum
                })
                .collect();
            let obase = (n * g.oc + grp * ocg) * p;
            for (t, tile) in results.iter().enumerate() {
                scatter_tile(&mut out[obase..obase + ocg * p], p, t * width, width, ocg, tile);
            }
        }
    }
    out
}

// ---- small integers: i16 operands, exact i32 sums (pmaddwd) ----

/// Output channels per register block of the i16 kernels.
const MR16: usize = 6;
/// Output positions per register block of the i16 kernels (two vectors of 8 i32 lanes).
const NR16: usize = 16;

/// The filters of an integer convolution packed for the i16 kernels, once for every run: per
/// group, rows in blocks of `MR16`, pair `kp` of the reduction of row `o` at
/// `((o / MR16 · k2 + kp) · MR16 + o % MR16) · 2` (zeros past the last row and term).
#[derive(Debug, Clone, PartialEq)]
pub struct PackedFilters {
    groups: Vec<Vec<i16>>,
    /// Reduction length (`ic / group · kh · kw`).
    k: usize,
    /// Output channels per group.
    ocg: usize,
    /// The largest |w|.
    max_abs: u64,
    /// The same filters for the Winograd kernel, when the convolution is one it computes.
    wino: Option<winograd::WinogradFilters>,
    /// The same filters for the Winograd F(4×4, 3×3) kernel, likewise.
    wino4: Option<winograd4::Winograd4Filters>,
}

impl PackedFilters {
    /// Pack the filters `w` (`[oc][ic / group][kh][kw]` flattened) of the convolution `g`;
    /// `None` when `w` is too short for `g`.
    pub fn new(w: &[i16], g: &ConvGeom) -> Option<PackedFilters> {
        let group = g.group.max(1);
        let (k, ocg) = (g.ic / group * g.kh * g.kw, g.oc / group);
        if w.len() < g.oc * k {
            return None;
        }
        let (k2, blocks) = (k.div_ceil(2), ocg.div_ceil(MR16));
        let groups = (0..group)
            .map(|grp| {
                let mut wp = vec![0i16; blocks * k2 * MR16 * 2];
                for o in 0..ocg {
                    let (b, r) = (o / MR16, o % MR16);
                    let dst = &mut wp[b * k2 * MR16 * 2..(b + 1) * k2 * MR16 * 2];
                    let src = &w[(grp * ocg + o) * k..(grp * ocg + o + 1) * k];
                    for (kp, pair) in src.chunks(2).enumerate() {
                        let d = (kp * MR16 + r) * 2;
                        dst[d..d + pair.len()].copy_from_slice(pair);
                    }
                }
                wp
            })
            .collect();
        let max_abs = w[..g.oc * k].iter().map(|v| v.unsigned_abs() as u64).max().unwrap_or(0);
        // Only where the Winograd kernel is the faster one: it replaces the direct kernel there.
        let wino4 = (g.ic >= winograd4::MIN_CHANNELS).then(|| winograd4::Winograd4Filters::new(w, g)).flatten();
        // F(2×2) only where F(4×4) might refuse some input.
        let wino = (g.ic >= winograd::MIN_CHANNELS && !wino4.as_ref().is_some_and(|f| f.covers_all_codes()))
            .then(|| winograd::WinogradFilters::new(w, g))
            .flatten();
        Some(PackedFilters { groups, k, ocg, max_abs, wino, wino4 })
    }
}

impl PackedFilters {
    /// A bound on every sum `Σ w·x` of these filters with inputs of magnitude at most `x_max`:
    /// the reduction length times the largest |w| times `x_max` (saturating).
    pub fn sum_bound(&self, x_max: u64) -> u64 {
        (self.k as u64).saturating_mul(self.max_abs).saturating_mul(x_max)
    }
}

/// Exact integer convolution of i16 codes with i32 sums. `x_max` bounds every |x|; `f` are the
/// packed filters of `g`. For every output channel and run of positions, `emit(channel, sums,
/// dst)` turns the sums `Σ w·x` (no bias) into the stored values `dst` (the caller's
/// requantization) of `out` (NCHW, `n·oc·oh·ow` elements). Gives exactly [`conv2d_reference`]'s
/// sums; returns false (and leaves `out` untouched) when the shapes do not match or a partial sum
/// could leave i32 (`k · x_max · max|w|` > `i32::MAX`).
///
/// The reduction runs over pairs of terms (`_mm256_madd_epi16` on AVX2: 16 products per
/// instruction, summed pairwise into i32 lanes); integer sums are exact in any order. 3 × 3
/// stride-1 convolutions of at least `winograd4::MIN_CHANNELS` input channels run as the exact
/// integer Winograd F(4×4, 3×3) (`winograd4.rs`) when its sums are exact for `x_max`, else (from
/// `winograd::MIN_CHANNELS`) as F(2×2, 3×3) (`winograd.rs`) when its sums are.
pub fn conv2d_i16<T: Copy + Send + Sync>(
    x: &[i16],
    x_max: u64,
    f: &PackedFilters,
    g: &ConvGeom,
    out: &mut [T],
    emit: impl Fn(usize, &[i32], &mut [T]) + Sync,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    let simd = avx::has_avx2();
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    conv2d_i16_with(x, x_max, f, g, out, emit, simd, true)
}

#[allow(clippy::too_many_arguments)]
fn conv2d_i16_with<T: Copy + Send + Sync>(
    x: &[i16],
    x_max: u64,
    f: &PackedFilters,
    g: &ConvGeom,
    out: &mut [T],
    emit: impl Fn(usize, &[i32], &mut [T]) + Sync,
    simd: bool,
    wino: bool,
) -> bool {
    let group = g.group.max(1);
    let (k, ocg) = (g.ic / group * g.kh * g.kw, g.oc / group);
    let p = g.oh * g.ow;
    if out.len() != g.n * g.oc * p
        || x.len() < g.n * g.ic * g.ih * g.iw
        || (f.k, f.ocg, f.groups.len()) != (k, ocg, group)
        || k == 0
        || (k as u64).saturating_mul(x_max.saturating_mul(f.max_abs)) > i32::MAX as u64
    {
        return false;
    }
    if p == 0 || ocg == 0 {
        return true;
    }
    if let Some(wf) = f.wino4.as_ref().filter(|_| wino) {
        if winograd4::conv3x3(x, x_max, wf, g, out, &emit, simd) {
            return true;
        }
    }
    if let Some(wf) = f.wino.as_ref().filter(|_| wino) {
        if winograd::conv3x3(x, x_max, wf, g, out, &emit, simd) {
            return true;
        }
    }
    let k2 = k.div_ceil(2);
    let width = tile_width_i16(p);
    let tiles = p.div_ceil(width);
    for n in 0..g.n {
        for (grp, wp) in f.groups.iter().enumerate() {
            let obase = (n * g.oc + grp * ocg) * p;
            // Every task requantizes its own sums: no buffer of the whole output.
            let cells = split_per_tile(&mut out[obase..obase + ocg * p], p, width, tiles);
            cells.into_par_iter().enumerate().for_each(|(t, dst)| {
                let col = im2col_pairs(x, g, n, grp, k, t * width, width);
                // Every element is written by the kernel.
                let mut acc = scratch::any::<i32>(ocg * width);
                tile_madd_any(wp, k2, ocg, &col, width, &mut acc, simd);
                for (o, d) in dst.into_iter().enumerate() {
                    emit(grp * ocg + o, &acc[o * width..o * width + d.len()], d);
                }
            });
        }
    }
    true
}

/// `out[o][j] = Σ_kp w[o][kp]·col[kp][j]` over pairs (see `avx::tile_madd`): the AVX2 kernel
/// when `simd` (the caller checked the CPU), else the portable loop.
fn tile_madd_any(wp: &[i16], k2: usize, rows: usize, col: &[i16], width: usize, out: &mut [i32], simd: bool) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: avx2 is present (the caller checked); `avx::tile_madd` asserts the sizes.
        unsafe { avx::tile_madd(wp, k2, rows, col, width, out) };
        return;
    }
    let _ = simd;
    tile_madd_portable(wp, k2, rows, col, width, out);
}

/// Output positions per tile of the i16 kernel: at most 256 (the kernel blocks the reduction
/// for the caches itself, so a tile may be long), a multiple of `NR16`, chosen among a few
/// tile counts to compute the fewest padding columns (13 × 13 = 169 positions: one tile of 176,
/// not three of 64).
fn tile_width_i16(p: usize) -> usize {
    let fewest = p.div_ceil(256).max(1);
    (fewest..fewest + 4)
        .map(|tiles| p.div_ceil(tiles).div_ceil(NR16) * NR16)
        .min_by_key(|&w| (p.div_ceil(w) * w, usize::MAX - w))
        .unwrap_or(NR16)
        .max(NR16)
}

/// The im2col tile of output positions `p0 .. p0 + width` as pairs of reduction rows:
/// element `(kp, j, h)` (row `2·kp + h`, position `p0 + j`) at `(kp·width + j)·2 + h`; the odd
/// row past the end of the reduction and positions past the end of the image are 0.
fn im2col_pairs(x: &[i16], g: &ConvGeom, n: usize, grp: usize, k: usize, p0: usize, width: usize) -> Scratch<i16> {
    let k2 = k.div_ceil(2);
    // Every element is written below; the rows' positions past the image stay 0.
    let mut col = scratch::any::<i16>(k2 * width * 2);
    let mut rows = scratch::zeroed::<i16>(2 * width);
    for kp in 0..k2 {
        let (a, b) = rows.split_at_mut(width);
        im2col_row(x, g, n, grp, 2 * kp, p0, a);
        if 2 * kp + 1 < k {
            im2col_row(x, g, n, grp, 2 * kp + 1, p0, b);
        } else {
            b.fill(0);
        }
        for ((d, &lo), &hi) in col[kp * width * 2..(kp + 1) * width * 2].chunks_exact_mut(2).zip(&*a).zip(&*b) {
            d[0] = lo;
            d[1] = hi;
        }
    }
    col
}

/// Portable twin of `avx::tile_madd`: `out[o][j] = Σ_kp w[o][kp]·col[kp][j]` over pairs, in i32.
fn tile_madd_portable(wp: &[i16], k2: usize, rows: usize, col: &[i16], width: usize, out: &mut [i32]) {
    for o in 0..rows {
        let (b, r) = (o / MR16, o % MR16);
        let acc = &mut out[o * width..(o + 1) * width];
        acc.fill(0);
        for kp in 0..k2 {
            let wi = ((b * k2 + kp) * MR16 + r) * 2;
            let (w0, w1) = (wp[wi] as i32, wp[wi + 1] as i32);
            let c = &col[kp * width * 2..(kp + 1) * width * 2];
            for (a, pair) in acc.iter_mut().zip(c.chunks_exact(2)) {
                *a += w0 * pair[0] as i32 + w1 * pair[1] as i32;
            }
        }
    }
}

// ---- f32: blocked kernel with the reference's per-element order ----

/// Output channels per register block of the portable kernel.
const MR: usize = 4;
/// Filter rows are padded to a multiple of this (of every kernel's rows per block).
const ROW_PAD: usize = 12;
/// Output positions per register block.
const NR: usize = 16;

/// `acc[o][j] = acc[o][j] + w[o][kk] · col[kk][j]` for kk ascending, for one `MR × NR` block.
/// `w` holds MR rows of `k` weights, `col` the tile (`k` rows of `width`), `j0` the block column.
#[inline(always)]
fn block_f32(w: &[f32], k: usize, col: &[f32], width: usize, j0: usize) -> [[f32; NR]; MR] {
    let mut acc = [[0f32; NR]; MR];
    for kk in 0..k {
        let c: &[f32; NR] =
            col[kk * width + j0..kk * width + j0 + NR].try_into().expect("tile width is a multiple of NR");
        for (o, a) in acc.iter_mut().enumerate() {
            let wv = w[o * k + kk];
            for j in 0..NR {
                // Spelled out: the reference's `acc = acc + w·x`, two roundings.
                #[allow(clippy::assign_op_pattern)]
                {
                    a[j] = a[j] + wv * c[j];
                }
            }
        }
    }
    acc
}

/// One tile: `wp` (ocg rounded up to MR rows of k), `col` (`k × width`) -> `rows × width`.
#[inline(always)]
fn tile_f32_body(wp: &[f32], k: usize, rows: usize, col: &[f32], width: usize, out: &mut [f32]) {
    for ob in (0..rows).step_by(MR) {
        let wb = &wp[ob * k..(ob + MR) * k];
        for j0 in (0..width).step_by(NR) {
            let acc = block_f32(wb, k, col, width, j0);
            for (o, a) in acc.iter().enumerate() {
                if ob + o < rows {
                    out[(ob + o) * width + j0..(ob + o) * width + j0 + NR].copy_from_slice(a);
                }
            }
        }
    }
}

fn tile_f32(wp: &[f32], k: usize, rows: usize, col: &[f32], width: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx::has_avx2() {
        // SAFETY: the CPU supports avx2 (checked just above); `wp` rows are padded to ROW_PAD,
        // a multiple of avx::MR, `width` is a multiple of NR = avx::NR.
        unsafe { avx::tile_mul_add(wp, k, 0, k, rows, col, width, out) };
        return;
    }
    tile_f32_body(wp, k, rows, col, width, out)
}

fn conv2d_f32(x: &[f32], w: &[f32], g: &ConvGeom) -> Vec<f32> {
    let icg = g.ic / g.group;
    let ocg = g.oc / g.group;
    let k = icg * g.kh * g.kw;
    let p = g.oh * g.ow;
    if k == 0 || p == 0 || ocg == 0 {
        return conv2d_reference(x, w, g);
    }
    let width = tile_width(k, p);
    let tiles = p.div_ceil(width);
    let rows_padded = ocg.div_ceil(ROW_PAD) * ROW_PAD;
    let mut out = vec![0f32; g.n * g.oc * p];
    let mut wp = vec![0f32; rows_padded * k];
    for grp in 0..g.group {
        wp[..ocg * k].copy_from_slice(&w[grp * ocg * k..(grp + 1) * ocg * k]);
        let wp = &wp[..];
        for n in 0..g.n {
            let obase = (n * g.oc + grp * ocg) * p;
            // Every task writes its own results: no buffer of whole tiles.
            let cells = split_per_tile(&mut out[obase..obase + ocg * p], p, width, tiles);
            cells.into_par_iter().enumerate().for_each(|(t, dst)| {
                let p0 = t * width;
                let valid = width.min(p - p0);
                // Every position inside the image is written; those past it are zeroed here.
                let mut col = scratch::any::<f32>(k * width);
                for (r, row) in col.chunks_exact_mut(width).enumerate() {
                    im2col_row(x, g, n, grp, r, p0, row);
                    row[valid..].fill(0.0);
                }
                let mut tile = scratch::any::<f32>(ocg * width);
                tile_f32(wp, k, ocg, &col, width, &mut tile);
                for (o, d) in dst.into_iter().enumerate() {
                    d.copy_from_slice(&tile[o * width..o * width + d.len()]);
                }
            });
        }
    }
    out
}

/// Transposed convolution (ONNX ConvTranspose geometry, weights `[IC, OC/g, kh, kw]` flattened,
/// or depthwise `[C, 1, 1, kh, kw]` with group = C): `y[oc, i·s − p + u·d, …] += x · w`.
pub fn deconv2d<T: Num>(x: &[T], w: &[T], g: &ConvGeom) -> Vec<T> {
    let icg = g.ic / g.group;
    let ocg = g.oc / g.group;
    let mut out = vec![T::default(); g.n * g.oc * g.oh * g.ow];
    for n in 0..g.n {
        for ci in 0..g.ic {
            let grp = ci / icg;
            for o in 0..ocg {
                let oc = grp * ocg + o;
                let wbase = (ci * ocg + o) * g.kh * g.kw;
                for iy in 0..g.ih {
                    for ix in 0..g.iw {
                        let xv = x[((n * g.ic + ci) * g.ih + iy) * g.iw + ix];
                        for u in 0..g.kh {
                            let oy = (iy * g.sh + u * g.dh) as isize - g.pt as isize;
                            if oy < 0 || oy >= g.oh as isize {
                                continue;
                            }
                            for v in 0..g.kw {
                                let ox = (ix * g.sw + v * g.dw) as isize - g.pl as isize;
                                if ox < 0 || ox >= g.ow as isize {
                                    continue;
                                }
                                let idx = ((n * g.oc + oc) * g.oh + oy as usize) * g.ow + ox as usize;
                                out[idx] = out[idx] + xv * w[wbase + u * g.kw + v];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Shape `[n, oc, oh, ow]` as an ndarray from a flat buffer.
pub fn to_array<T: Clone>(v: Vec<T>, g: &ConvGeom) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(&[g.n, g.oc, g.oh, g.ow]), v).expect("conv output shape")
}

/// Hand-written AVX2 tile kernels: `out[o][j] = Σ_kk w[o][k0 + kk] · col[kk][j]` for every row
/// `o < rows` and column `j < width`, in `6 × 16` register blocks, kk ascending from 0 per
/// element. `mul_add` does `acc + w·x` as two roundings (the reference order, for f32 data);
/// `fma` fuses them (for the integer path, where every value is an exact integer).
#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// Rows per register block.
    pub const MR: usize = 6;
    /// Columns per register block (two 8-lane vectors).
    pub const NR: usize = 16;
    /// Reduction rows per cache block (a 16-column panel of them is 16 KiB).
    const KC: usize = 256;
    /// Filter rows per cache block (a multiple of MR).
    const MC: usize = 48;

    macro_rules! tile_kernel {
        ($name:ident, $features:literal, $step:expr) => {
            /// See the module documentation. `wp` holds rows padded to a multiple of [`MR`] with
            /// row stride `wstride`; `width` is a multiple of [`NR`]; `col` holds `kc` rows of
            /// `width`; `out` holds `rows` rows of `width`.
            ///
            /// # Safety
            /// The CPU must support the target features; the slices must have the sizes above.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn $name(
                wp: &[f32],
                wstride: usize,
                k0: usize,
                kc: usize,
                rows: usize,
                col: &[f32],
                width: usize,
                out: &mut [f32],
            ) {
                assert!(wp.len() >= rows.div_ceil(MR) * MR * wstride && k0 + kc <= wstride);
                assert!(col.len() >= kc * width && out.len() >= rows * width && width % NR == 0);
                let step = $step;
                // Cache blocking: KC reduction rows of a 16-column panel stay in L1 while MC
                // filter rows pass over them; the reduction restarts from the stored partial sums,
                // so every element still sees kk ascending from 0 with the same operations.
                for kb in (0..kc).step_by(KC) {
                    let ke = (kb + KC).min(kc);
                    for mc in (0..rows).step_by(MC) {
                        let me = (mc + MC).min(rows);
                        for j0 in (0..width).step_by(NR) {
                            for ob in (mc..me).step_by(MR) {
                                let live = MR.min(rows - ob);
                                let wb = wp.as_ptr().add(ob * wstride + k0);
                                let mut acc = [_mm256_setzero_ps(); 2 * MR];
                                if kb > 0 {
                                    for o in 0..live {
                                        let src = out.as_ptr().add((ob + o) * width + j0);
                                        acc[2 * o] = _mm256_loadu_ps(src);
                                        acc[2 * o + 1] = _mm256_loadu_ps(src.add(8));
                                    }
                                }
                                let mut cp = col.as_ptr().add(kb * width + j0);
                                for kk in kb..ke {
                                    let c0 = _mm256_loadu_ps(cp);
                                    let c1 = _mm256_loadu_ps(cp.add(8));
                                    for o in 0..MR {
                                        let wv = _mm256_broadcast_ss(&*wb.add(o * wstride + kk));
                                        acc[2 * o] = step(acc[2 * o], wv, c0);
                                        acc[2 * o + 1] = step(acc[2 * o + 1], wv, c1);
                                    }
                                    cp = cp.add(width);
                                }
                                for o in 0..live {
                                    let dst = out.as_mut_ptr().add((ob + o) * width + j0);
                                    _mm256_storeu_ps(dst, acc[2 * o]);
                                    _mm256_storeu_ps(dst.add(8), acc[2 * o + 1]);
                                }
                            }
                        }
                    }
                }
            }
        };
    }

    tile_kernel!(tile_mul_add, "avx2", |a: __m256, w: __m256, c: __m256| _mm256_add_ps(a, _mm256_mul_ps(w, c)));
    tile_kernel!(tile_fma, "avx2,fma", |a: __m256, w: __m256, c: __m256| _mm256_fmadd_ps(w, c, a));

    /// Reduction pairs per cache block of [`tile_madd`] (a 16-column panel of them is 16 KiB).
    const KC16: usize = 256;

    /// `out[o][j] = Σ_kp w[o][kp] · col[kp][j]` for `o < rows`, `j < width`, over pairs of i16
    /// terms with `_mm256_madd_epi16` and i32 sums (exact when no partial sum leaves i32).
    /// `wp` holds the rows packed in blocks of `super::MR16` (pair `kp` of row `o` at
    /// `((o / MR16 · k2 + kp) · MR16 + o % MR16) · 2`), `col` `k2` rows of `width` pairs, `out`
    /// `rows` rows of `width`; `width` is a multiple of `super::NR16`.
    ///
    /// # Safety
    /// The CPU must support avx2; the slices must have the sizes above.
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile_madd(wp: &[i16], k2: usize, rows: usize, col: &[i16], width: usize, out: &mut [i32]) {
        const R: usize = super::MR16;
        const C: usize = super::NR16;
        assert!(wp.len() >= rows.div_ceil(R) * k2 * R * 2);
        assert!(col.len() >= k2 * width * 2 && out.len() >= rows * width && width.is_multiple_of(C));
        for kb in (0..k2).step_by(KC16) {
            let ke = (kb + KC16).min(k2);
            for mc in (0..rows).step_by(MC) {
                let me = (mc + MC).min(rows);
                for j0 in (0..width).step_by(C) {
                    for ob in (mc..me).step_by(R) {
                        let live = R.min(rows - ob);
                        let mut acc = [_mm256_setzero_si256(); 2 * R];
                        if kb > 0 {
                            for o in 0..live {
                                let src = out.as_ptr().add((ob + o) * width + j0) as *const __m256i;
                                acc[2 * o] = _mm256_loadu_si256(src);
                                acc[2 * o + 1] = _mm256_loadu_si256(src.add(1));
                            }
                        }
                        let mut cp = col.as_ptr().add((kb * width + j0) * 2);
                        let mut wq = wp.as_ptr().add(((ob / R) * k2 + kb) * R * 2) as *const i32;
                        for _ in kb..ke {
                            let c0 = _mm256_loadu_si256(cp as *const __m256i);
                            let c1 = _mm256_loadu_si256(cp.add(16) as *const __m256i);
                            for o in 0..R {
                                let wv = _mm256_set1_epi32(wq.add(o).read_unaligned());
                                acc[2 * o] = _mm256_add_epi32(acc[2 * o], _mm256_madd_epi16(c0, wv));
                                acc[2 * o + 1] = _mm256_add_epi32(acc[2 * o + 1], _mm256_madd_epi16(c1, wv));
                            }
                            cp = cp.add(width * 2);
                            wq = wq.add(R);
                        }
                        for o in 0..live {
                            let dst = out.as_mut_ptr().add((ob + o) * width + j0) as *mut __m256i;
                            _mm256_storeu_si256(dst, acc[2 * o]);
                            _mm256_storeu_si256(dst.add(1), acc[2 * o + 1]);
                        }
                    }
                }
            }
        }
    }

    /// True when the CPU runs [`tile_mul_add`].
    pub fn has_avx2() -> bool {
        is_x86_feature_detected!("avx2")
    }

    /// True when the CPU runs [`tile_fma`].
    pub fn has_avx2_fma() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
}

/// A group's output (channel planes of `p` positions) split per tile of `width` positions: for
/// each of the `tiles` tiles, every channel's run of that tile's positions, so that parallel tasks
/// each write their own tile.
fn split_per_tile<T>(out: &mut [T], p: usize, width: usize, tiles: usize) -> Vec<Vec<&mut [T]>> {
    let channels = out.len() / p.max(1);
    let mut cells: Vec<Vec<&mut [T]>> = (0..tiles).map(|_| Vec::with_capacity(channels)).collect();
    for plane in out.chunks_mut(p.max(1)) {
        let mut rest = plane;
        for cell in cells.iter_mut() {
            let (head, tail) = rest.split_at_mut(width.min(rest.len()));
            cell.push(head);
            rest = tail;
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers (64-bit LCG, high bits).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        fn int(&mut self, lo: i32, hi: i32) -> i32 {
            lo + (self.next() % (hi - lo + 1) as u32) as i32
        }
        fn float(&mut self) -> f32 {
            (self.next() as f32 / (1u32 << 31) as f32) * 2.0 - 1.0
        }
    }

    /// (n, ic, ih, iw, oc, kh, kw, stride, pad, dilation, group)
    type Case = (usize, usize, usize, usize, usize, usize, usize, usize, usize, usize, usize);

    const CASES: &[Case] = &[
        (1, 3, 20, 17, 16, 3, 3, 1, 1, 1, 1),  // first-layer like
        (2, 8, 9, 11, 12, 3, 3, 2, 1, 1, 1),   // batch, stride 2, oc not a multiple of 4
        (1, 64, 7, 7, 8, 3, 3, 1, 1, 1, 1),    // k = 576: several exact chunks
        (1, 16, 13, 13, 33, 1, 1, 1, 0, 1, 1), // 1x1, odd oc
        (1, 12, 10, 10, 24, 3, 3, 1, 2, 2, 2), // groups, dilation, wide padding
        (1, 8, 9, 9, 8, 3, 3, 1, 1, 1, 8),     // depthwise
        (1, 4, 40, 41, 8, 5, 3, 3, 2, 1, 1),   // rectangular kernel, stride 3
        (1, 2, 3, 3, 5, 3, 3, 1, 0, 1, 1),     // one output position
        (1, 1024, 2, 2, 4, 3, 3, 1, 1, 1, 1),  // k = 9216
    ];

    fn geom(c: &Case) -> ConvGeom {
        let &(n, ic, ih, iw, oc, kh, kw, s, p, d, group) = c;
        let oh = (ih + 2 * p - d * (kh - 1) - 1) / s + 1;
        let ow = (iw + 2 * p - d * (kw - 1) - 1) / s + 1;
        ConvGeom { n, ic, ih, iw, oc, kh, kw, sh: s, sw: s, pt: p, pl: p, dh: d, dw: d, group, oh, ow }
    }

    fn sizes(g: &ConvGeom) -> (usize, usize) {
        (g.n * g.ic * g.ih * g.iw, g.oc * (g.ic / g.group) * g.kh * g.kw)
    }

    #[test]
    fn integer_fast_path_equals_the_plain_loop() {
        let mut r = Lcg(7);
        for c in CASES {
            let g = geom(c);
            let (nx, nw) = sizes(&g);
            // int8 codes, uint8 codes, extremes at the 2^24 chunk bound, and a wide range.
            let variants: Vec<(Vec<i32>, Vec<i32>)> = vec![
                ((0..nx).map(|_| r.int(-128, 127)).collect(), (0..nw).map(|_| r.int(-128, 127)).collect()),
                ((0..nx).map(|_| r.int(0, 255)).collect(), (0..nw).map(|_| r.int(-128, 127)).collect()),
                (vec![255; nx], vec![-128; nw]),
                ((0..nx).map(|i| if i % 2 == 0 { -255 } else { 255 }).collect(), vec![128; nw]),
                // wide: small exact chunks (41 terms), then too wide for f32 (the plain loop).
                ((0..nx).map(|_| r.int(-20_000, 20_000)).collect(), (0..nw).map(|_| r.int(-20, 20)).collect()),
                ((0..nx).map(|_| r.int(-20_000_000, 20_000_000)).collect(), (0..nw).map(|_| r.int(-1, 1)).collect()),
            ];
            for (x, w) in variants {
                assert_eq!(conv2d(&x, &w, &g), conv2d_reference(&x, &w, &g), "{c:?}");
            }
        }
    }

    /// Identity emission that also records the channel, so a wrong channel shows too.
    fn emit_with_channel(o: usize, sums: &[i32], dst: &mut [(usize, i32)]) {
        for (d, &a) in dst.iter_mut().zip(sums) {
            *d = (o, a);
        }
    }

    #[test]
    fn i16_kernels_equal_the_plain_loop() {
        let mut r = Lcg(5);
        #[cfg(target_arch = "x86_64")]
        let kernels: &[bool] = if avx::has_avx2() { &[false, true] } else { &[false] };
        #[cfg(not(target_arch = "x86_64"))]
        let kernels: &[bool] = &[false];
        // Odd channel counts, an odd reduction length (k = 3·5·5 = 75), rows not a multiple of
        // the register block, more positions than one tile.
        let extra: &[Case] = &[(1, 3, 11, 13, 7, 5, 5, 1, 2, 1, 1), (1, 5, 70, 70, 13, 3, 3, 1, 1, 1, 1)];
        for c in CASES.iter().chain(extra) {
            let g = geom(c);
            let (nx, nw) = sizes(&g);
            let variants: Vec<(Vec<i32>, Vec<i32>)> = vec![
                ((0..nx).map(|_| r.int(-128, 127)).collect(), (0..nw).map(|_| r.int(-128, 127)).collect()),
                // uint8 codes minus a zero point, and the extremes.
                ((0..nx).map(|_| r.int(-255, 255)).collect(), (0..nw).map(|_| r.int(-128, 127)).collect()),
                (vec![-255; nx], vec![-128; nw]),
                ((0..nx).map(|i| if i % 3 == 0 { -255 } else { 255 }).collect(), vec![127; nw]),
            ];
            for (x, w) in variants {
                let want = conv2d_reference(&x, &w, &g);
                let x16: Vec<i16> = x.iter().map(|&v| v as i16).collect();
                let w16: Vec<i16> = w.iter().map(|&v| v as i16).collect();
                let f = PackedFilters::new(&w16, &g).unwrap();
                for &simd in kernels {
                    let mut got = vec![(usize::MAX, 0i32); want.len()];
                    assert!(conv2d_i16_with(&x16, 255, &f, &g, &mut got, emit_with_channel, simd, false), "{c:?}");
                    let p = g.oh * g.ow;
                    for (i, (&(o, a), &e)) in got.iter().zip(&want).enumerate() {
                        assert_eq!((o, a), ((i / p) % g.oc, e), "{c:?} simd {simd} at {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn i16_tiles_waste_few_columns() {
        // (positions, tile width): 13², 26², 52², 104², 208², and small or awkward counts.
        let want = [(169, 176), (676, 176), (2704, 208), (10816, 256), (43264, 256), (1, 16), (257, 144)];
        for (p, w) in want {
            assert_eq!(tile_width_i16(p), w, "{p} positions");
        }
    }

    #[test]
    fn i16_path_refuses_sums_that_could_leave_i32() {
        // k = 1024·9 = 9216 products of up to 32767·32767: far beyond i32.
        let g = geom(&(1, 1024, 3, 3, 4, 3, 3, 1, 0, 1, 1));
        let (nx, nw) = sizes(&g);
        let copy = |_: usize, s: &[i32], d: &mut [i32]| d.copy_from_slice(s);
        let mut out = vec![0i32; 4];
        let wide = PackedFilters::new(&vec![i16::MAX; nw], &g).unwrap();
        assert!(!conv2d_i16(&vec![i16::MAX; nx], i16::MAX as u64, &wide, &g, &mut out, copy));
        assert_eq!(out, vec![0; 4]);
        // Filters of another geometry are refused too.
        let other = geom(&(1, 1024, 3, 3, 8, 3, 3, 1, 0, 1, 1));
        let f8 = PackedFilters::new(&vec![1; 8 * 9216], &other).unwrap();
        assert!(!conv2d_i16(&vec![1; nx], 1, &f8, &g, &mut out, copy));
        assert!(PackedFilters::new(&vec![1; 9216], &g).is_none(), "too few weights");
        // The int8 extremes fit: 9216 · 255 · 128 = 300 810 240.
        let f = PackedFilters::new(&vec![-128; nw], &g).unwrap();
        assert!(conv2d_i16(&vec![255; nx], 255, &f, &g, &mut out, copy));
        assert_eq!(out, vec![-300_810_240; 4]);
    }

    /// The convolution straight from its definition, no im2col.
    fn direct(x: &[i32], w: &[i32], g: &ConvGeom) -> Vec<i32> {
        let (icg, ocg) = (g.ic / g.group, g.oc / g.group);
        let mut out = vec![0; g.n * g.oc * g.oh * g.ow];
        for n in 0..g.n {
            for oc in 0..g.oc {
                let grp = oc / ocg;
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut acc = 0;
                        for c in 0..icg {
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                                    let ix = (ox * g.sw + kx * g.dw) as isize - g.pl as isize;
                                    if iy < 0 || ix < 0 || iy >= g.ih as isize || ix >= g.iw as isize {
                                        continue;
                                    }
                                    let xi = ((n * g.ic + grp * icg + c) * g.ih + iy as usize) * g.iw + ix as usize;
                                    acc += x[xi] * w[((oc * icg + c) * g.kh + ky) * g.kw + kx];
                                }
                            }
                        }
                        out[((n * g.oc + oc) * g.oh + oy) * g.ow + ox] = acc;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn plain_loop_is_the_convolution() {
        let mut r = Lcg(3);
        for c in CASES.iter().filter(|c| c.1 < 100) {
            let g = geom(c);
            let (nx, nw) = sizes(&g);
            let x: Vec<i32> = (0..nx).map(|_| r.int(-128, 127)).collect();
            let w: Vec<i32> = (0..nw).map(|_| r.int(-128, 127)).collect();
            assert_eq!(conv2d_reference(&x, &w, &g), direct(&x, &w, &g), "{c:?}");
        }
    }

    #[test]
    fn extreme_sums_are_exact() {
        // 1024·9 products of 255·(−128): −300 810 240, far beyond f32's exact range as one sum.
        let g = geom(&(1, 1024, 3, 3, 4, 3, 3, 1, 0, 1, 1));
        let (nx, nw) = sizes(&g);
        let out = conv2d(&vec![255; nx], &vec![-128; nw], &g);
        assert_eq!(out, vec![-300_810_240; 4]);
    }

    #[test]
    fn float_fast_path_equals_the_plain_loop_bit_for_bit() {
        let mut r = Lcg(11);
        for c in CASES {
            let g = geom(c);
            let (nx, nw) = sizes(&g);
            let mut x: Vec<f32> = (0..nx).map(|_| r.float() * 10.0).collect();
            let w: Vec<f32> = (0..nw).map(|_| r.float()).collect();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&conv2d(&x, &w, &g)), bits(&conv2d_reference(&x, &w, &g)), "{c:?}");
            // Order-sensitive magnitudes, overflow to inf, inf·0 in the padding, signed zeros.
            for (i, v) in x.iter_mut().enumerate() {
                *v = match i % 7 {
                    0 => 3.0e38,
                    1 => -1.0e-30,
                    2 => -0.0,
                    3 => f32::INFINITY,
                    _ => *v * 1.0e7,
                };
            }
            let w2: Vec<f32> = w.iter().enumerate().map(|(i, &v)| if i % 5 == 0 { 1.0e30 } else { v }).collect();
            assert_eq!(bits(&conv2d(&x, &w2, &g)), bits(&conv2d_reference(&x, &w2, &g)), "{c:?} extremes");
        }
    }
}
