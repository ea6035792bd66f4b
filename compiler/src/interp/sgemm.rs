//! Own AVX2/FMA convolution GEMM: filters prepacked once into 6-row panels, the im2col of the
//! input written on the fly into cache-sized row-major blocks (no full im2col matrix), a 6x16
//! register-tile micro-kernel, bias fused into the accumulator start. Used for dense (group 1) convolutions
//! when the CPU has AVX2 and FMA; other cases go through the `gemm` crate.

use rayon::prelude::*;

/// Rows (output channels) of one register tile.
pub(super) const MR: usize = 6;
/// Columns (output positions) of one register tile.
pub(super) const NR: usize = 16;
/// Depth of one packed block (the KC x NR slice of B a tile reads stays in L1).
pub(super) const KC: usize = 256;
/// Rows of the filter block swept per B micro-panel (A block of MC x KC stays in L2).
const MC: usize = 16 * MR;
/// Widest column block one task packs.
const NC_MAX: usize = 256;
/// How far ahead of the micro-kernel's A reads the next A data is prefetched (16 depth steps;
/// on tiny-yolov3's Winograd layers 5-10 % less time, alternating runs on a busy machine).
const A_PREFETCH_FLOATS: usize = 16 * MR;

/// Activation applied to the finished tiles (fusion of the op that follows a convolution).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Act {
    /// `x >= 0 ? x : alpha·x`
    Leaky(f32),
    /// `max(x, 0)`, then `min` with the limit when given
    Relu(Option<f32>),
}

/// True when this CPU can run the micro-kernel.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A filter matrix [m, k] packed into panels of `MR` rows: panel `i` holds, for every `k`,
/// rows `i·MR .. i·MR+MR` (zero-padded past `m`).
#[derive(Debug, Clone)]
pub(super) struct PackedA {
    pub m: usize,
    pub k: usize,
    data: Vec<f32>,
}

impl PackedA {
    /// Pack a row-major [m, k] matrix.
    pub(super) fn new(a: &[f32], m: usize, k: usize) -> Self {
        let panels = m.div_ceil(MR);
        let mut data = vec![0f32; panels * k * MR];
        for p in 0..panels {
            let dst = &mut data[p * k * MR..(p + 1) * k * MR];
            for r in 0..MR.min(m - p * MR) {
                let row = &a[(p * MR + r) * k..(p * MR + r + 1) * k];
                for (kk, &v) in row.iter().enumerate() {
                    dst[kk * MR + r] = v;
                }
            }
        }
        PackedA { m, k, data }
    }

    /// A matrix [m, k] whose data is already in the packed layout (`m.div_ceil(MR)` panels of
    /// `k · MR` floats, rows past `m` zero); `None` when the length does not fit.
    pub(super) fn from_packed(m: usize, k: usize, data: Vec<f32>) -> Option<Self> {
        (data.len() == m.div_ceil(MR) * k * MR).then_some(PackedA { m, k, data })
    }

    /// The packed floats (tests compare layouts).
    #[cfg(test)]
    pub(super) fn packed_data(&self) -> &[f32] {
        &self.data
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * MR..(p + 1) * self.k * MR]
    }
}

/// Source of the B matrix [k, n]: fills `row` with `B[kk, c0 .. c0 + row.len()]`.
pub(super) trait BSource: Sync {
    fn row(&self, kk: usize, c0: usize, row: &mut [f32]);
}

/// A raw pointer to an output that parallel tasks of the interpreter's kernels share (GEMM
/// tiles, Winograd blocks, direct-convolution bands): each task writes its own disjoint
/// elements only.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
// SAFETY: the pointer is only dereferenced by tasks that write disjoint elements, while the
// buffer it points into outlives the parallel loop (each user's SAFETY comment says how).
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

/// `c` [a.m, n] (row stride `n`) = A · B + bias[row]; every element of `c[..a.m * n]` is
/// written (never read before), so `c` may start uninitialised.
pub(super) fn gemm_packed(
    a: &PackedA,
    b: &dyn BSource,
    n: usize,
    bias: Option<&[f32]>,
    act: Option<Act>,
    c: &mut [std::mem::MaybeUninit<f32>],
) {
    assert!(c.len() >= a.m * n, "gemm_packed: destination too small");
    assert!(bias.is_none_or(|bb| bb.len() >= a.m), "gemm_packed: bias too short");
    if a.m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    let nc = n.min(NC_MAX).div_ceil(NR) * NR;
    let n_blocks = n.div_ceil(nc);
    let m_panels = a.m.div_ceil(MR);
    let cp = SendPtr(c.as_mut_ptr().cast::<f32>());
    if n_blocks >= 2 * threads {
        // wide output: one task per column block, each packing its own B block
        (0..n_blocks).into_par_iter().for_each_init(Vec::new, |bp: &mut Vec<f32>, jb| {
            let cols = (jb * nc, ((jb + 1) * nc).min(n));
            for k0 in (0..a.k).step_by(KC) {
                let kc = KC.min(a.k - k0);
                let off = pack_b(b, cols, k0, kc, bp);
                let cpp = cp;
                // SAFETY: block jb writes columns `cols` only, disjoint from other blocks;
                // `c` outlives the parallel loop.
                unsafe { compute(a, &bp[off..], (k0, kc), n, (bias, act), cpp.0, cols, (0, m_panels)) };
            }
        });
        return;
    }
    // narrow output: pack all of B once (in parallel), then split the filter rows
    let k_blocks = a.k.div_ceil(KC);
    let packs: Vec<(Vec<f32>, usize)> = (0..k_blocks * n_blocks)
        .into_par_iter()
        .map(|t| {
            let (kb, jb) = (t / n_blocks, t % n_blocks);
            let k0 = kb * KC;
            let mut bp = Vec::new();
            let off = pack_b(b, (jb * nc, ((jb + 1) * nc).min(n)), k0, KC.min(a.k - k0), &mut bp);
            (bp, off)
        })
        .collect();
    // many row splits (of at least 8 panels) so that work stealing evens out busy cores
    let m_splits = (m_panels / 8).clamp(1, 8 * threads);
    let per = m_panels.div_ceil(m_splits);
    (0..m_splits).into_par_iter().for_each(|ms| {
        let panels = (ms * per, ((ms + 1) * per).min(m_panels));
        if panels.0 >= panels.1 {
            return;
        }
        for jb in 0..n_blocks {
            let cols = (jb * nc, ((jb + 1) * nc).min(n));
            for kb in 0..k_blocks {
                let k0 = kb * KC;
                let cpp = cp;
                // SAFETY: split ms writes the rows of `panels` only, disjoint from other splits.
                unsafe {
                    compute(
                        a,
                        &packs[kb * n_blocks + jb].0[packs[kb * n_blocks + jb].1..],
                        (k0, KC.min(a.k - k0)),
                        n,
                        (bias, act),
                        cpp.0,
                        cols,
                        panels,
                    )
                };
            }
        }
    });
}

/// `c` rows `[p0·MR, min(p1·MR, a.m))` (row stride `ldc`, `c` starting at row `p0·MR`) =
/// A · B for the filter panels `p0 .. p1` and the columns `cols.0 .. cols.1` of B (`cols.0` a
/// multiple of `NR`, `cols.1 <= n_pad`; `c` starts at column `cols.0`), single-threaded, no bias
/// or activation. The tiles are `NR` columns wide, the last one 8 wide when 8 reach `cols.1`:
/// the columns up to `cols.1` rounded up to 8 (or to `NR` past 8) are written. `bp` is B [a.k, n_pad] already packed by
/// depth blocks of `KC` rows, then micro-panels of `NR` columns (`n_pad` a multiple of `NR`,
/// `ldc >= cols.1 - cols.0` rounded up to `NR`): element (kk, col) at
/// `k0·n_pad + (col / NR)·kc·NR + (kk - k0)·NR + col % NR`, where `k0 = kk / KC · KC` and
/// `kc = min(KC, k - k0)`. Callers that split rows or columns over threads call it per part.
pub(super) fn gemm_prepacked(
    a: &PackedA,
    panels: (usize, usize),
    bp: &[f32],
    n_pad: usize,
    cols: (usize, usize),
    c: &mut [f32],
    ldc: usize,
) {
    let (p0, p1) = (panels.0, panels.1.min(a.m.div_ceil(MR)));
    let (c0, c1) = cols;
    if p0 >= p1 || c0 >= c1 || a.k == 0 {
        return;
    }
    let width = (c1 - c0).div_ceil(NR) * NR;
    assert!(
        n_pad.is_multiple_of(NR) && c0.is_multiple_of(NR) && c1 <= n_pad && ldc >= width,
        "gemm_prepacked: n_pad {n_pad} / cols {cols:?} / ldc {ldc}"
    );
    assert!(bp.len() >= a.k * n_pad, "gemm_prepacked: packed B too small");
    let rows = (p1 * MR).min(a.m) - p0 * MR;
    assert!(c.len() >= (rows - 1) * ldc + width, "gemm_prepacked: destination too small");
    for k0 in (0..a.k).step_by(KC) {
        let kc = KC.min(a.k - k0);
        for m0 in (p0..p1).step_by(MC / MR) {
            let m1 = (m0 + MC / MR).min(p1);
            let b = &bp[k0 * n_pad + c0 * kc..];
            let block = DepthBlock { a, k0, kc, b, cols: c1 - c0, panels: (m0, m1) };
            // SAFETY: `block` lies inside `a` and `bp`, and its tiles inside `c` (checked above).
            unsafe { depth_block(&block, c.as_mut_ptr().add((m0 - p0) * MR * ldc), ldc) };
        }
    }
}

/// One depth block of [`gemm_prepacked`] for a run of filter panels.
struct DepthBlock<'a> {
    /// The filter, its depth range `k0 .. k0 + kc`.
    a: &'a PackedA,
    k0: usize,
    kc: usize,
    /// The depth block of packed B (micro-panels of `kc · NR` floats) and its columns used (the
    /// last micro-panel may be partly used).
    b: &'a [f32],
    cols: usize,
    /// Filter panels `m0 .. m1`.
    panels: (usize, usize),
}

/// Tiles of one depth block: per B micro-panel (which stays in L1), every filter panel of the
/// run (which stays in L2). The first micro-panel's sweep reads the filter from memory (the
/// deep Winograd layers' filters are tens of MB): it prefetches the next filter panel into L2
/// while it computes this one; every sweep but the last prefetches the next B micro-panel into
/// L2, a share during each tile, spread over its steps (measured on tiny-yolov3's 512→1024 and
/// 384→256 Winograd layers at batch 4, one thread, CPU time: ~18 % and ~15 % less time, the
/// latter with the early stop of a partial last tile block). Prefetches are hints: they never
/// fault.
/// Safety: AVX2/FMA present; the block lies inside its filter and B, `c` (at row `m0·MR`) holds
/// its tiles (row stride `ldc`).
unsafe fn depth_block(d: &DepthBlock, c: *mut f32, ldc: usize) {
    let DepthBlock { a, k0, kc, b, cols, panels: (m0, m1) } = *d;
    let init = [0f32; MR];
    let npanels = cols.div_ceil(NR);
    let lines = kc * NR / LINE_FLOATS;
    let share = lines.div_ceil(m1 - m0);
    for j in 0..npanels {
        let far = if j == 0 { a.k * MR } else { 0 };
        let bpp = b.as_ptr().add(j * kc * NR);
        for p in m0..m1 {
            let first = ((p - m0) * share).min(lines);
            let count = if j + 1 < npanels { share.min(lines - first) } else { 0 };
            let pf = Prefetch { far, lines: bpp.wrapping_add(kc * NR + first * LINE_FLOATS), count };
            let nrows = MR.min(a.m - p * MR);
            let ap = a.panel(p).as_ptr().add(k0 * MR);
            let ct = c.add((p - m0) * MR * ldc + j * NR);
            // (the caller's safety) panel p holds a.k·MR >= (k0 + kc)·MR floats, micro-panel j
            // of the block kc·NR floats, and tile (p, j) of `c` MR rows of NR floats
            if cols - j * NR <= NR / 2 {
                // the product's last 1..=8 columns: a half-width tile (half the padded columns' work)
                kernel_rows::<true, 1>(nrows, (kc, NR), ap, bpp, ct, ldc, k0 != 0, &init, None, pf);
            } else {
                kernel_rows::<true, 2>(nrows, (kc, NR), ap, bpp, ct, ldc, k0 != 0, &init, None, pf);
            }
        }
    }
}

/// Floats in one cache line.
const LINE_FLOATS: usize = 16;

/// What [`kernel`] prefetches into L2 beside its own A reads: with `far` nonzero, each step
/// the A line `far` floats on (the next filter panel); and `count` lines from `lines`, one
/// every `kc / count` steps (spread out so that they never fill the miss buffers at once).
#[derive(Clone, Copy)]
struct Prefetch {
    far: usize,
    lines: *const f32,
    count: usize,
}

impl Prefetch {
    /// Nothing beyond the kernel's own A reads.
    const NONE: Prefetch = Prefetch { far: 0, lines: std::ptr::null(), count: 0 };
}

/// Pack `B[k0 .. k0+kc, cols]` into micro-panels of `NR` columns, each `kc` rows of `NR`
/// contiguous floats (one cache line per row, the panel sequential in memory), zero past the
/// last column, starting at the returned offset of `bp` (64-byte aligned, so no vector load
/// splits a line). Panel `j` starts `j · kc · NR` floats after the offset.
fn pack_b(b: &dyn BSource, cols: (usize, usize), k0: usize, kc: usize, bp: &mut Vec<f32>) -> usize {
    let width = cols.1 - cols.0;
    let npanels = width.div_ceil(NR);
    let padded = npanels * NR;
    bp.resize(npanels * kc * NR + 16, 0.0);
    let off = bp.as_ptr().align_offset(64).min(16);
    let mut row = [0f32; NC_MAX.div_ceil(NR) * NR];
    let mut heap;
    let row: &mut [f32] = if padded <= row.len() {
        &mut row[..padded]
    } else {
        heap = vec![0f32; padded];
        &mut heap
    };
    for kk in 0..kc {
        b.row(k0 + kk, cols.0, &mut row[..width]);
        row[width..].fill(0.0);
        for (j, src) in row.chunks_exact(NR).enumerate() {
            let at = off + j * kc * NR + kk * NR;
            bp[at..at + NR].copy_from_slice(src);
        }
    }
    off
}

/// Multiply filter panels `panels` (depth range `kr`) by the packed B block of columns `cols`.
#[allow(clippy::too_many_arguments)]
unsafe fn compute(
    a: &PackedA,
    bp: &[f32],
    kr: (usize, usize),
    ldc: usize,
    epilogue: (Option<&[f32]>, Option<Act>),
    c: *mut f32,
    cols: (usize, usize),
    panels: (usize, usize),
) {
    let (k0, kc) = kr;
    let (bias, act) = epilogue;
    let act = if k0 + kc == a.k { act } else { None };
    let width = cols.1 - cols.0;
    let npanels = width.div_ceil(NR);
    let ldb = NR;
    let first = k0 == 0;
    for m0 in (panels.0..panels.1).step_by(MC / MR) {
        let m1 = (m0 + MC / MR).min(panels.1);
        for j in 0..npanels {
            let bpanel = bp.as_ptr().add(j * kc * NR);
            let ncols = NR.min(width - j * NR);
            for p in m0..m1 {
                let apanel = a.panel(p).as_ptr().add(k0 * MR);
                let nrows = MR.min(a.m - p * MR);
                let ctile = c.add(p * MR * ldc + cols.0 + j * NR);
                let bias_rows = bias.map(|bb| &bb[p * MR..p * MR + nrows]);
                tile((kc, ldb), apanel, bpanel, ctile, ldc, (nrows, ncols), first, bias_rows, act);
            }
        }
    }
}

/// One MR x NR tile (full or partial): start from bias (first block) or from `c`, add A·B.
/// Tiles with fewer rows run a kernel of that many rows straight on `c`; only tiles with fewer
/// than `NR` columns go through a scratch tile.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    depth: (usize, usize),
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    size: (usize, usize),
    first: bool,
    bias: Option<&[f32]>,
    act: Option<Act>,
) {
    let (nrows, ncols) = size;
    let mut init = [0f32; MR];
    if let Some(bb) = bias {
        init[..nrows].copy_from_slice(bb);
    }
    if ncols == NR {
        kernel_rows::<false, 2>(nrows, depth, a, b, c, ldc, !first, &init, act, Prefetch::NONE);
        return;
    }
    let mut tmp = [0f32; MR * NR];
    if !first {
        for r in 0..nrows {
            for j in 0..ncols {
                tmp[r * NR + j] = *c.add(r * ldc + j);
            }
        }
    }
    kernel_rows::<false, 2>(nrows, depth, a, b, tmp.as_mut_ptr(), NR, !first, &init, act, Prefetch::NONE);
    for r in 0..nrows {
        for j in 0..ncols {
            *c.add(r * ldc + j) = tmp[r * NR + j];
        }
    }
}

/// [`kernel`] for `nrows` (1..=MR) rows of the A panel (which always holds MR rows per k);
/// `PF`: issue the L2 prefetches of `pf` (compiled out for the direct convolutions' GEMM); `V`:
/// vectors of 8 columns per row (2: a whole `NR`-wide tile, 1: its first half).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn kernel_rows<const PF: bool, const V: usize>(
    nrows: usize,
    depth: (usize, usize),
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    load_c: bool,
    init: &[f32; MR],
    act: Option<Act>,
    pf: Prefetch,
) {
    match nrows {
        6 => kernel::<6, PF, V>(depth, a, b, c, ldc, load_c, init, act, pf),
        5 => kernel::<5, PF, V>(depth, a, b, c, ldc, load_c, init, act, pf),
        4 => kernel::<4, PF, V>(depth, a, b, c, ldc, load_c, init, act, pf),
        3 => kernel::<3, PF, V>(depth, a, b, c, ldc, load_c, init, act, pf),
        2 => kernel::<2, PF, V>(depth, a, b, c, ldc, load_c, init, act, pf),
        _ => kernel::<1, PF, V>(depth, a, b, c, ldc, load_c, init, act, pf),
    }
}

/// c[R x 8V] = (load_c ? c : init[row]) + sum_k a[k·6 + r] · b[k·ldb + j], then the activation
/// (R <= 6 rows of the 6-row A panel, V = 2 vectors of 8 columns, or 1 for the last few
/// columns of a product; every output is one FMA chain in k order, the same arithmetic for
/// every R and V). With `PF`, also the L2 prefetches of `pf`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize, const PF: bool, const V: usize>(
    depth: (usize, usize),
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    load_c: bool,
    init: &[f32; MR],
    act: Option<Act>,
    pf: Prefetch,
) {
    use std::arch::x86_64::*;
    let (kc, ldb) = depth;
    let Prefetch { far, lines: mut line, count: mut left } = pf;
    // one line of the L2 stream every `gap` steps
    let gap = kc.checked_div(left).unwrap_or(1).max(1);
    let mut next = 0;
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    if load_c {
        for (r, accr) in acc.iter_mut().enumerate() {
            for (q, v) in accr.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(c.add(r * ldc + 8 * q));
            }
        }
    } else {
        for (r, accr) in acc.iter_mut().enumerate() {
            *accr = [_mm256_set1_ps(init[r]); V];
        }
    }
    let (mut ap, mut bp) = (a, b);
    for step in 0..kc {
        // the A panel streams from memory when its filter is larger than the caches (the deep
        // Winograd layers): ask for it 16 steps ahead (a hint only: past the panel's end it
        // reads nothing and faults never)
        _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(A_PREFETCH_FLOATS) as *const i8);
        if PF && far != 0 {
            // the next panel's line, 1500+ cycles before its first use
            _mm_prefetch::<_MM_HINT_T1>(ap.wrapping_add(far) as *const i8);
        }
        if PF && left != 0 && step == next {
            _mm_prefetch::<_MM_HINT_T1>(line as *const i8);
            (line, left, next) = (line.wrapping_add(LINE_FLOATS), left - 1, next + gap);
        }
        let bv: [__m256; V] = std::array::from_fn(|q| _mm256_loadu_ps(bp.add(8 * q)));
        for (r, accr) in acc.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*ap.add(r));
            for (v, &bq) in accr.iter_mut().zip(&bv) {
                *v = _mm256_fmadd_ps(av, bq, *v);
            }
        }
        ap = ap.add(MR);
        bp = bp.add(ldb);
    }
    if act.is_some() {
        for v in acc.iter_mut().flatten() {
            *v = activate(*v, act);
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        for (q, v) in accr.iter().enumerate() {
            _mm256_storeu_ps(c.add(r * ldc + 8 * q), *v);
        }
    }
}

/// The fused activation of one vector of outputs, the one epilogue of every convolution
/// kernel of the interpreter (GEMM tiles, Winograd output transform, direct 3x3), so that the
/// paths stay equal bit for bit (NaN and signed zeros included): LeakyRelu keeps `v >= 0` and
/// takes `v·alpha` otherwise; Relu is `max(v, 0)`, then `min` with the limit when given.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn activate(v: std::arch::x86_64::__m256, act: Option<Act>) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    match act {
        None => v,
        Some(Act::Leaky(alpha)) => {
            let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(v, _mm256_setzero_ps());
            _mm256_blendv_ps(_mm256_mul_ps(v, _mm256_set1_ps(alpha)), v, keep)
        }
        Some(Act::Relu(limit)) => {
            let r = _mm256_max_ps(v, _mm256_setzero_ps());
            limit.map_or(r, |l| _mm256_min_ps(r, _mm256_set1_ps(l)))
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize, const PF: bool, const V: usize>(
    depth: (usize, usize),
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    load_c: bool,
    init: &[f32; MR],
    act: Option<Act>,
    _: Prefetch,
) {
    let (kc, ldb) = depth;
    for r in 0..R {
        for j in 0..8 * V {
            let mut s = if load_c { *c.add(r * ldc + j) } else { init[r] };
            for k in 0..kc {
                s += *a.add(k * MR + r) * *b.add(k * ldb + j);
            }
            *c.add(r * ldc + j) = match act {
                None => s,
                Some(Act::Leaky(al)) => {
                    if s >= 0.0 {
                        s
                    } else {
                        s * al
                    }
                }
                Some(Act::Relu(l)) => l.map_or(s.max(0.0), |l| s.max(0.0).min(l)),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row-major [k, n] matrix as a B source.
    struct Dense<'a> {
        b: &'a [f32],
        n: usize,
    }

    impl BSource for Dense<'_> {
        fn row(&self, kk: usize, c0: usize, row: &mut [f32]) {
            row.copy_from_slice(&self.b[kk * self.n + c0..kk * self.n + c0 + row.len()]);
        }
    }

    /// Every row count (full and partial panels), a partial column tile and two depth blocks:
    /// each output is one FMA chain in k order from the bias, bit for bit.
    #[test]
    fn partial_tiles_equal_the_fma_chain_bit_for_bit() {
        if !available() {
            return;
        }
        let (k, n) = (KC + 37, 2 * NR + 5);
        for m in 1..=2 * MR + 1 {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1013) as f32 * 1e-3 - 0.5).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 997) as f32 * 1e-3 - 0.4).collect();
            let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.25 - 1.0).collect();
            let mut c = vec![std::mem::MaybeUninit::new(f32::NAN); m * n];
            let act = Some(Act::Leaky(0.1));
            gemm_packed(&PackedA::new(&a, m, k), &Dense { b: &b, n }, n, Some(&bias), act, &mut c);
            for r in 0..m {
                for j in 0..n {
                    let mut s = bias[r];
                    for kk in 0..k {
                        s = a[r * k + kk].mul_add(b[kk * n + j], s);
                    }
                    let want = if s >= 0.0 { s } else { s * 0.1 };
                    // SAFETY: gemm_packed wrote every element.
                    let got = unsafe { c[r * n + j].assume_init() };
                    assert_eq!(got.to_bits(), want.to_bits(), "m {m} row {r} col {j}");
                }
            }
        }
    }
    /// B [k, n] packed as [`gemm_prepacked`] reads it: depth blocks of `KC` rows, micro-panels
    /// of `NR` columns (`n_pad` wide, zero past `n`).
    fn pack_prepacked(b: &[f32], k: usize, n: usize, n_pad: usize) -> Vec<f32> {
        let mut bp = vec![0f32; k * n_pad];
        for kk in 0..k {
            let (k0, kc) = (kk / KC * KC, KC.min(k - kk / KC * KC));
            for col in 0..n {
                bp[k0 * n_pad + (col / NR) * kc * NR + (kk - k0) * NR + col % NR] = b[kk * n + col];
            }
        }
        bp
    }

    /// [`gemm_prepacked`] on column ranges (whole, leading, inner, one panel, ends inside a
    /// panel: by up to 8 columns (half tiles) and by more), row ranges of several MC runs and
    /// partial panels, over two depth blocks: every output is the FMA chain in k order from
    /// zero, bit for bit (the prefetches and half tiles change no arithmetic), and no column
    /// past the range's last tile is written.
    #[test]
    fn prepacked_column_ranges_equal_the_fma_chain_bit_for_bit() {
        if !available() {
            return;
        }
        let (k, n) = (KC + 45, 5 * NR - 3);
        let n_pad = n.div_ceil(NR) * NR;
        for m in [5, 2 * MC + 7] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1013) as f32 * 1e-3 - 0.5).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 997) as f32 * 1e-3 - 0.4).collect();
            let pa = PackedA::new(&a, m, k);
            let bp = pack_prepacked(&b, k, n, n_pad);
            let m_panels = m.div_ceil(MR);
            for (cols, panels) in [
                ((0, n_pad), (0, m_panels)),
                ((0, n), (0, m_panels)),
                ((0, 2 * NR), (1, m_panels)),
                ((NR, 3 * NR), (0, 1)),
                ((NR, 3 * NR - 9), (0, m_panels)),
                ((2 * NR, 2 * NR + 8), (1, m_panels)),
                ((0, 1), (0, m_panels)),
                ((4 * NR, 5 * NR), (2, m_panels - 1)),
            ] {
                if panels.0 >= panels.1 {
                    continue;
                }
                let width = cols.1 - cols.0;
                let tail = width % NR;
                let written = if tail != 0 && tail <= NR / 2 { width - tail + NR / 2 } else { width.div_ceil(NR) * NR };
                let ldc = width.div_ceil(NR) * NR + 3;
                let rows = (panels.1 * MR).min(m) - panels.0 * MR;
                let mut c = vec![f32::NAN; rows * ldc];
                gemm_prepacked(&pa, panels, &bp, n_pad, cols, &mut c, ldc);
                for r in 0..rows {
                    let row = panels.0 * MR + r;
                    for j in 0..ldc {
                        let got = c[r * ldc + j];
                        let col = cols.0 + j;
                        if j >= written {
                            assert!(got.is_nan(), "m {m} {cols:?}: column {col} written");
                        }
                        if j >= width {
                            continue;
                        }
                        let mut s = 0f32;
                        for kk in 0..k {
                            let bv = if col < n { b[kk * n + col] } else { 0.0 };
                            s = a[row * k + kk].mul_add(bv, s);
                        }
                        assert_eq!(got.to_bits(), s.to_bits(), "m {m} {cols:?} {panels:?}: row {row} col {col}");
                    }
                }
            }
        }
    }
}
