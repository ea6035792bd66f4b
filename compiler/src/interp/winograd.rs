//! Winograd F(4x4, 3x3) convolution: the opt-in fast path of dense 3x3 stride-1 convolutions.
//!
//! Each 4x4 block of outputs ("tile") is computed from the 6x6 input patch under it as
//! `Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A` (Lavin & Gray's matrices, interpolation points 0, ±1, ±2, ∞),
//! which takes 36 multiplies per tile and channel pair instead of 144. The filter transform
//! `U = G g Gᵀ` is done once per filter ([`WinogradFilter`]); per run the input patches are
//! transformed straight into the packed-B layout of [`sgemm::gemm_prepacked`], the 36 element-wise
//! products over channels are 36 GEMMs `M[ξ] = U[ξ] · V[ξ]` ([OC, C] x [C, tiles]), and the output
//! transform adds the bias and the fused activation. Results differ from the direct convolution
//! by float rounding (the transforms reorder and scale the sums): measured up to ~2e-6 of the sum
//! of |terms| per output, about 6x the direct sum's error.

use super::sgemm::{self, Act, PackedA, SendPtr, MR, NR};
use super::Tensor;
use ndarray::IxDyn;
use rayon::prelude::*;

/// Output side of one tile.
const TILE: usize = 4;
/// Input side of one tile (TILE + 3 - 1).
const ALPHA: usize = 6;
/// Points of the transformed tile (ALPHA²): one GEMM each.
const POINTS: usize = ALPHA * ALPHA;
/// Lanes the output transform works on at once (one AVX2 register of tiles).
const LANES: usize = 8;
/// Floats in one cache line (the transformed input starts at a line boundary).
const ALIGN_FLOATS: usize = 16;
/// Floats of one point's GEMM operands per tile column (`(c + rows)·tb`) a block aims at: wide
/// enough that each transformed filter element serves many tiles, small enough for L2 (256 KB,
/// half of a Zen 3 core's; 128 KB streamed the deep layers' filters twice as often, which cost
/// ~10% on their tuning and on whole F32 runs in alternating measurements).
const BLOCK_FLOATS: usize = 65536;
/// Most tiles in one block.
const MAX_BLOCK_TILES: usize = 256;
/// Output channels (rows of the GEMMs) one task computes at most: 16 register-tile panels.
const MAX_CHUNK_PANELS: usize = 16;

/// `G` (6x3): the filter transform.
const G: [[f64; 3]; ALPHA] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// A dense 3x3 filter bank [OC, C, 3, 3] transformed once for [`conv`]: for each of the 36
/// points ξ, `U[ξ]` = [OC, C] packed for the GEMM micro-kernel.
#[derive(Debug, Clone)]
pub(super) struct WinogradFilter {
    oc: usize,
    c: usize,
    u: Vec<PackedA>,
}

impl WinogradFilter {
    /// Transform a row-major [oc, c, 3, 3] filter (computed in f64, rounded once to f32).
    pub(super) fn new(w: &[f32], oc: usize, c: usize) -> Result<Self, String> {
        if w.len() != oc * c * 9 {
            return Err(format!("filter of {} elements is not [{oc}, {c}, 3, 3]", w.len()));
        }
        // the 36 transformed values of each filter written straight into the packed layout of
        // the 36 [oc, c] matrices: panel p (rows p·MR ..) holds column ci of row p·MR + r at
        // ci·MR + r; one task per panel writes that panel of every matrix
        let panels = oc.div_ceil(MR);
        let panel_len = c * MR;
        let mut mats: Vec<Vec<f32>> = (0..POINTS).map(|_| vec![0f32; panels * panel_len]).collect();
        let mut columns: Vec<_> = mats.iter_mut().map(|m| m.chunks_mut(panel_len.max(1))).collect();
        let tasks: Vec<Vec<&mut [f32]>> =
            (0..panels).map(|_| columns.iter_mut().filter_map(Iterator::next).collect()).collect();
        tasks.into_par_iter().enumerate().for_each(|(p, mut dst)| {
            let mut u = [0f32; POINTS];
            for r in 0..MR.min(oc - p * MR) {
                let o = p * MR + r;
                for (ci, g) in w[o * c * 9..(o + 1) * c * 9].chunks_exact(9).enumerate() {
                    transform_filter(g, &mut u);
                    for (m, &val) in dst.iter_mut().zip(&u) {
                        m[ci * MR + r] = val;
                    }
                }
            }
        });
        let u = mats
            .into_iter()
            .map(|m| PackedA::from_packed(oc, c, m).ok_or_else(|| format!("packing a [{oc}, {c}] matrix")))
            .collect::<Result<_, _>>()?;
        Ok(WinogradFilter { oc, c, u })
    }

    /// The filter transformed into 36 [oc, c] matrices and packed one by one (tests: the layout
    /// [`WinogradFilter::new`] writes directly).
    #[cfg(test)]
    pub(super) fn packed_one_by_one(w: &[f32], oc: usize, c: usize) -> Vec<PackedA> {
        let mut mats = vec![vec![0f32; oc * c]; POINTS];
        let mut u = [0f32; POINTS];
        for (f, g) in w.chunks_exact(9).enumerate() {
            transform_filter(g, &mut u);
            for (m, &val) in mats.iter_mut().zip(&u) {
                m[f] = val;
            }
        }
        mats.iter().map(|m| PackedA::new(m, oc, c)).collect()
    }

    /// The 36 packed matrices (tests).
    #[cfg(test)]
    pub(super) fn packed(&self) -> &[PackedA] {
        &self.u
    }

    /// Output channels.
    pub(super) fn out_channels(&self) -> usize {
        self.oc
    }

    /// Input channels.
    pub(super) fn in_channels(&self) -> usize {
        self.c
    }
}

/// `G g Gᵀ` of one 3x3 filter `g` into `u` (6x6 row-major), in f64, rounded once.
fn transform_filter(g: &[f32], u: &mut [f32]) {
    let mut gg = [[0f64; 3]; ALPHA];
    for (r, row) in gg.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = G[r][0] * g[j] as f64 + G[r][1] * g[3 + j] as f64 + G[r][2] * g[6 + j] as f64;
        }
    }
    for r in 0..ALPHA {
        for s in 0..ALPHA {
            u[r * ALPHA + s] = (gg[r][0] * G[s][0] + gg[r][1] * G[s][1] + gg[r][2] * G[s][2]) as f32;
        }
    }
}

/// True when a convolution of this kernel, strides, dilations and group can take the Winograd
/// path (any padding), on this CPU.
pub(super) fn applies(kernel: [usize; 2], strides: [usize; 2], dilations: [usize; 2], group: usize) -> bool {
    kernel == [3, 3] && strides == [1, 1] && dilations == [1, 1] && group == 1 && sgemm::available()
}

thread_local! {
    /// The transformed input of the last convolution this thread ran, kept so that the next one
    /// reuses its pages (taken out while in use; a nested use starts an empty one).
    static INPUT_SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// The GEMM products of the last phase-2 task this thread ran, kept likewise.
    static PRODUCT_SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// How the tiles of one convolution are laid out and cut into blocks.
#[derive(Clone, Copy)]
struct Tiling {
    /// Batch, input channels, input height and width.
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    /// Output channels, height and width.
    oc: usize,
    oh: usize,
    ow: usize,
    /// Pads top and left (bottom and right only change `oh`, `ow`).
    pt: usize,
    pl: usize,
    /// Tiles down, across, and in all (over the batch too).
    th: usize,
    tw: usize,
    nt: usize,
    /// Packed width of a block (a multiple of NR) and blocks.
    tb: usize,
    /// Tiles per block (`tb` in the whole-input plan; at most `tb` in the fused plan, whose
    /// blocks may be whole tile rows).
    bt: usize,
    nblocks: usize,
    /// Store every output of phase 2 value by value through a spill array (the plain form the
    /// tests compare the vector stores with); false in [`conv`].
    spill_store: bool,
    /// Fused schedule ([`Plan::Fused`]): tiles per GEMM sub-block (a multiple of NR); 0 for the
    /// whole-input schedule.
    sub: usize,
}

impl Tiling {
    /// Floats of one block of transformed input (36 packed [c, tb] matrices).
    fn block_len(&self) -> usize {
        POINTS * self.c * self.tb
    }
}

/// Winograd convolution of `x` [N, C, H, W] with the transformed filter, plus `bias` [OC], then
/// `act`; `pads` = [top, left, bottom, right]. Stride 1, dilation 1, group 1 (see [`applies`]).
pub(super) fn conv(
    x: &[f32],
    x_shape: [usize; 4],
    f: &WinogradFilter,
    bias: Option<&[f32]>,
    pads: [usize; 4],
    act: Option<Act>,
) -> Result<Tensor, String> {
    conv_planned(x, x_shape, f, bias, pads, act, Plan::Auto)
}

/// [`conv`] with the phases scheduled by `plan` (the tests check that every plan gives the same
/// bits).
pub(super) fn conv_planned(
    x: &[f32],
    x_shape: [usize; 4],
    f: &WinogradFilter,
    bias: Option<&[f32]>,
    pads: [usize; 4],
    act: Option<Act>,
    plan: Plan,
) -> Result<Tensor, String> {
    let t = tiling(x, x_shape, f, pads)?;
    if bias.is_some_and(|b| b.len() != f.oc) {
        return Err(format!("bias has {} elements, expected {}", bias.map_or(0, <[f32]>::len), f.oc));
    }
    if !sgemm::available() {
        return Err("the Winograd convolution needs AVX2 and FMA".into());
    }
    let t = planned(t, plan)?;
    run_phases(x, f, &t, bias, act)
}

/// [`conv`] with every output of phase 2 stored value by value (tests: the reference for the
/// vector stores).
#[cfg(test)]
pub(super) fn conv_spill_store(
    x: &[f32],
    x_shape: [usize; 4],
    f: &WinogradFilter,
    bias: Option<&[f32]>,
    pads: [usize; 4],
    act: Option<Act>,
) -> Result<Tensor, String> {
    let t = Tiling { spill_store: true, ..tiling(x, x_shape, f, pads)? };
    if !sgemm::available() {
        return Err("the Winograd convolution needs AVX2 and FMA".into());
    }
    run_phases(x, f, &t, bias, act)
}

/// Check `x` [N, C, H, W] against the filter and the window, and lay out its tiles.
fn tiling(x: &[f32], x_shape: [usize; 4], f: &WinogradFilter, pads: [usize; 4]) -> Result<Tiling, String> {
    let [n, c, h, w] = x_shape;
    if c != f.c || x.len() != n * c * h * w {
        return Err(format!("input {x_shape:?} does not match the filter's {} input channels", f.c));
    }
    if h + pads[0] + pads[2] < 3 || w + pads[1] + pads[3] < 3 {
        return Err(format!("window 3 does not fit input {h}x{w} with pads {pads:?}"));
    }
    let (oh, ow) = (h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2);
    let (th, tw) = (oh.div_ceil(TILE), ow.div_ceil(TILE));
    let nt = n * th * tw;
    let oc = f.oc;
    let chunk_rows = (MAX_CHUNK_PANELS * MR).min(oc.div_ceil(MR) * MR);
    let tb_max = (BLOCK_FLOATS / (c + chunk_rows) / NR * NR).clamp(NR, MAX_BLOCK_TILES);
    let nblocks = nt.div_ceil(tb_max).max(1);
    let tb = nt.div_ceil(nblocks).div_ceil(NR) * NR;
    let nblocks = nt.div_ceil(tb).max(1);
    Ok(Tiling {
        n,
        c,
        h,
        w,
        oc,
        oh,
        ow,
        pt: pads[0],
        pl: pads[1],
        th,
        tw,
        nt,
        tb,
        bt: tb,
        nblocks,
        spill_store: false,
        sub: 0,
    })
}

/// How the two phases are scheduled. Every plan gives the same bits: each output is the same
/// input transform, FMA chain over the channels and output transform wherever its tile lies.
/// [`conv`] takes `Auto`; the tests force the others.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(super) enum Plan {
    /// Chosen from the shape ([`fused_blocks`]).
    Auto,
    /// Phase 1 of the whole input into one buffer, then phase 2 per (tile block, channel chunk):
    /// the layers with large filters, whose transformed filters should be read once per block.
    Whole,
    /// One task per block of `tiles` tiles: it transforms its block's input into its own
    /// buffer, which stays in the core's cache, and multiplies it `sub` tiles at a time (a
    /// multiple of NR; 0: the whole block) by all output channels (only for C <= KC).
    Fused { tiles: usize, sub: usize },
}

/// Most floats of the 36 transformed filters for the fused plan: each task reads all of them
/// for every block (and sub-block). Measured on one thread, CPU time: 32→64 channels at
/// 104x104 (76k floats) takes about half the time fused at batch 4 (the whole-input plan's
/// 12 MB of transformed input and products overflow the caches), the same at batch 1; 64→128
/// at 52x52 (304k floats, beyond L2) ~10-15 % less at batches 4 and 1 fused with sub-blocks of
/// [`FUSED_LARGE_SUB`] tiles; 128→256 at 26x26 (1.2M floats) no less (whole-input plan).
const FUSED_MAX_FILTER_FLOATS: usize = 393_216;
/// Filters of more floats than this take the fused plan in GEMM sub-blocks of
/// [`FUSED_LARGE_SUB`] tiles (their products then stay in L2 beside the filter's stream).
const FUSED_WHOLE_BLOCK_FLOATS: usize = 131_072;
/// Tiles per GEMM sub-block of the fused plan for filters over [`FUSED_WHOLE_BLOCK_FLOATS`]
/// (64→128 channels: 32 and 48 measured alike, 0 (the whole block) and 96 ~10 % slower).
const FUSED_LARGE_SUB: usize = 32;
/// Tiles a block of the fused plan aims at (a multiple of NR): on the 3→16, 16→32 and 32→64
/// channel layers at 416..104 pixels, 208 (2..8 tile rows) took less time than 52, 104, 312,
/// 416 or 624 (one thread, CPU time), though its products (up to 36·32·208 floats) overflow L2.
const FUSED_BLOCK_TILES: usize = 208;

/// Tiles per block of the fused plan for this tiling when it applies (input channels within one
/// depth block, a small filter, at least 4 blocks per thread to share out): whole tile rows, up
/// to [`FUSED_BLOCK_TILES`], so that each vertical pass serves a whole row, with the fewest
/// padded GEMM columns; maps wider than that take blocks of exactly that many tiles.
fn fused_blocks(t: &Tiling) -> Option<usize> {
    let oc_pad = t.oc.div_ceil(MR) * MR;
    if t.c > sgemm::KC || POINTS * t.c * oc_pad > FUSED_MAX_FILTER_FLOATS {
        return None;
    }
    let least_blocks = 4 * rayon::current_num_threads().max(1);
    if t.nt < least_blocks * FUSED_BLOCK_TILES / 2 {
        return None;
    }
    if t.tw >= FUSED_BLOCK_TILES {
        return Some(FUSED_BLOCK_TILES);
    }
    let most = (FUSED_BLOCK_TILES / t.tw).min(t.n * t.th / least_blocks).max(1);
    // padded lanes per tile with r rows per block
    let waste = |r: usize| (r * t.tw).div_ceil(NR) * NR * 1000 / (r * t.tw);
    let rows = (most.div_ceil(2)..=most).rev().fold(most, |b, r| if waste(r) < waste(b) { r } else { b });
    Some(rows * t.tw)
}

/// Tiles per GEMM sub-block of the automatic fused plan (0: the whole block).
fn fused_sub(t: &Tiling) -> usize {
    let oc_pad = t.oc.div_ceil(MR) * MR;
    if POINTS * t.c * oc_pad > FUSED_WHOLE_BLOCK_FLOATS {
        FUSED_LARGE_SUB
    } else {
        0
    }
}

/// `t` re-laid out for `plan` (checked: the fused plan needs C <= KC and NR-multiple sizes).
fn planned(t: Tiling, plan: Plan) -> Result<Tiling, String> {
    let fused = match plan {
        Plan::Whole => None,
        Plan::Auto => fused_blocks(&t).map(|bt| (bt, fused_sub(&t))),
        Plan::Fused { tiles, sub } => Some((tiles, sub)),
    };
    let Some((bt, sub)) = fused else {
        return Ok(t);
    };
    let tb = bt.div_ceil(NR) * NR;
    let sub = if sub == 0 { tb } else { sub.min(tb) };
    if t.c > sgemm::KC || bt == 0 || !sub.is_multiple_of(NR) {
        return Err(format!("fused plan ({bt} tiles, sub {sub}) does not fit {} input channels", t.c));
    }
    Ok(Tiling { tb, bt, nblocks: t.nt.div_ceil(bt), sub, ..t })
}

/// Phase 1 alone (tests): the transformed input of `x` into `v` as [`conv`] packs it (reusing
/// `v`'s pages like [`conv`] does; the unused tile lanes zero), and the tiles per block (`tb`).
#[cfg(test)]
pub(super) fn transformed_input(
    x: &[f32],
    x_shape: [usize; 4],
    f: &WinogradFilter,
    pads: [usize; 4],
    v: &mut Vec<f32>,
) -> Result<usize, String> {
    let t = tiling(x, x_shape, f, pads)?;
    if !sgemm::available() {
        return Err("the Winograd convolution needs AVX2 and FMA".into());
    }
    let len = t.nblocks * t.block_len();
    v.resize(len, 0.0);
    v[len - t.block_len()..].fill(0.0);
    // SAFETY: AVX2 and FMA are present; `v` holds every block.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        transform_input(x, &t, v.as_mut_ptr())
    };
    Ok(t.tb)
}

/// Both phases (x86-64 with AVX2 and FMA, checked by the caller).
#[cfg(target_arch = "x86_64")]
fn run_phases(
    x: &[f32],
    f: &WinogradFilter,
    t: &Tiling,
    bias: Option<&[f32]>,
    act: Option<Act>,
) -> Result<Tensor, String> {
    let (n, oc, oh, ow) = (t.n, t.oc, t.oh, t.ow);
    if t.sub != 0 {
        let mut out: Vec<f32> = Vec::with_capacity(n * oc * oh * ow);
        // SAFETY: AVX2 and FMA are present; every task writes its own tiles' outputs only, and
        // every output belongs to exactly one (tile, channel), all of which the tasks wrote.
        unsafe {
            run_fused(x, f, t, bias, act, out.as_mut_ptr());
            out.set_len(n * oc * oh * ow);
        }
        return Tensor::from_shape_vec(IxDyn(&[n, oc, oh, ow]), out).map_err(|e| e.to_string());
    }
    // every block but the last is written whole by phase 1; the lanes of the last one's last
    // tile panel past its last tile are zero (the GEMMs read them; the panels after it they
    // never read)
    let len = t.nblocks * t.block_len();
    let mut scratch = INPUT_SCRATCH.with(|c| c.take());
    let v = line_aligned(&mut scratch, len);
    zero_tail_lanes(&mut v[len - t.block_len()..], t);
    // SAFETY (both calls): AVX2 and FMA are present; every task writes disjoint parts only.
    unsafe { transform_input(x, t, v.as_mut_ptr()) };
    let mut out: Vec<f32> = Vec::with_capacity(n * oc * oh * ow);
    unsafe {
        multiply_and_transform_output(v, f, t, bias, act, out.as_mut_ptr());
        // every output belongs to exactly one (tile, channel), all of which phase 2 wrote
        out.set_len(n * oc * oh * ow);
    }
    INPUT_SCRATCH.with(|c| c.replace(scratch));
    Tensor::from_shape_vec(IxDyn(&[n, oc, oh, ow]), out).map_err(|e| e.to_string())
}

/// Zero the lanes of the last tile block's (`last`) last tile panel past its last tile, in every
/// row of every point: only they, of the block's unused lanes, enter the GEMMs (which stop at
/// the last tile), so the rest keep whatever the buffer held (a whole-block fill wrote the
/// 4-6 MB block of the deep layers every run).
fn zero_tail_lanes(last: &mut [f32], t: &Tiling) {
    let ntiles = t.nt - (t.nblocks - 1) * t.bt;
    let (panel, lane) = (ntiles / NR, ntiles % NR);
    if lane == 0 {
        return;
    }
    for point in last.chunks_exact_mut(t.c * t.tb) {
        for k0 in (0..t.c).step_by(sgemm::KC) {
            let kc = sgemm::KC.min(t.c - k0);
            let rows = &mut point[k0 * t.tb + panel * kc * NR..][..kc * NR];
            for row in rows.chunks_exact_mut(NR) {
                row[lane..].fill(0.0);
            }
        }
    }
}

/// `len` floats of `buf` (grown as needed) from a cache line boundary: the packed rows of 16
/// floats are then whole lines, which the stores of phase 1 and the vector loads of the GEMM and
/// the output transform never split (measured: 16→32 channels at 208x208 about a quarter less
/// time).
fn line_aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len + ALIGN_FLOATS {
        buf.resize(len + ALIGN_FLOATS, 0.0);
    }
    let start = (buf.as_ptr() as usize).wrapping_neg() % (ALIGN_FLOATS * 4) / 4;
    &mut buf[start..start + len]
}

/// Other targets have no micro-kernel (`applies` is false there).
#[cfg(not(target_arch = "x86_64"))]
fn run_phases(_: &[f32], _: &WinogradFilter, _: &Tiling, _: Option<&[f32]>, _: Option<Act>) -> Result<Tensor, String> {
    Err("the Winograd convolution needs x86-64 with AVX2 and FMA".into())
}

/// Floats past the last column of a vertical-pass row that the 8-tile loads may read (zeros):
/// the last group of a tile row reads up to column `4·(tw − 1) + 40`.
const ROW_SLACK: usize = 40;

/// Per-worker buffers of phase 1: the six `Bᵀ`-down-the-columns rows of one or two tile rows
/// (padded columns and slack zero) and a zero input row for rows outside the plane.
struct InputScratch {
    /// Two tile rows' six rows of `stride` floats: `vert[(r·6 + ξy)·stride + column]` (padded
    /// coordinates; the second tile row only for maps 4 tiles wide, see [`input_channel`]).
    vert: Vec<f32>,
    /// `w` zeros (the input row above or below the plane).
    zeros: Vec<f32>,
    /// Row stride of `vert`.
    stride: usize,
}

impl InputScratch {
    /// Buffers for the tiling `t`.
    fn new(t: &Tiling) -> Self {
        let stride = TILE * (t.tw + 1) + ROW_SLACK;
        InputScratch { vert: vec![0.0; 2 * ALPHA * stride], zeros: vec![0.0; t.w], stride }
    }
}

/// Phase 1: every tile's 6x6 input patch of every channel, transformed by `Bᵀ d B`, written into
/// `v` (per block: 36 B matrices [c, tb] packed for [`sgemm::gemm_prepacked`]). Parallel over
/// channels: a channel's packed rows (one cache line per point and tile panel) belong to one
/// task only. Safety: AVX2/FMA present; `v` valid for `nblocks · block_len` writes.
#[cfg(target_arch = "x86_64")]
unsafe fn transform_input(x: &[f32], t: &Tiling, v: *mut f32) {
    let vp = SendPtr(v);
    (0..t.c).into_par_iter().for_each_init(
        || InputScratch::new(t),
        |scratch, ch| {
            let vq = vp;
            // SAFETY: avx2/fma checked by `conv`; channels are disjoint between tasks.
            unsafe { input_channel(x, t, ch, (0, t.nt), scratch, vq.0) };
        },
    );
}

/// Phase 1 for input channel `ch`, tiles `tiles.0 .. tiles.1` (over the batch; `tiles.0` the
/// first tile of a block, `v` where that block starts). Per tile row, `Bᵀ` down the columns of
/// the six input rows ([`vertical`]), then `Bᵀ` along each tile's six columns for 8 tiles at a
/// time, stored straight into the packed layout ([`horizontal`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_channel(
    x: &[f32],
    t: &Tiling,
    ch: usize,
    tiles: (usize, usize),
    scratch: &mut InputScratch,
    v: *mut f32,
) {
    let k0 = ch / sgemm::KC * sgemm::KC;
    let kc = sgemm::KC.min(t.c - k0);
    let ch_off = k0 * t.tb + (ch - k0) * NR;
    let plane = |row_index: usize| &x[(row_index / t.th * t.c + ch) * t.h * t.w..][..t.h * t.w];
    if t.tw == TILE && tiles == (0, t.nt) {
        // maps 4 tiles wide: two tile rows per 8 lanes (tiles tt .. tt + 8, tt a multiple of 8,
        // lie in one panel)
        for pair in (0..t.n * t.th).step_by(2) {
            let lanes = LANES.min((t.n * t.th - pair) * TILE);
            for r in 0..lanes / TILE {
                vertical(plane(pair + r), t, (pair + r) % t.th, r, scratch);
            }
            let tt = pair * TILE;
            let (blk, tl) = (tt / t.tb, tt % t.tb);
            let off = blk * t.block_len() + (tl / NR) * kc * NR + tl % NR + ch_off;
            let [first, second] = [0, ALPHA * scratch.stride];
            // SAFETY: as below, for tiles tt .. tt + lanes.
            horizontal(scratch, (first, second), lanes, v.add(off), t.c * t.tb);
        }
        return;
    }
    for row_index in tiles.0 / t.tw..tiles.1.div_ceil(t.tw) {
        vertical(plane(row_index), t, row_index % t.th, 0, scratch);
        // runs of tiles inside one NR-wide panel are contiguous in `v`
        let row_start = row_index * t.tw;
        let mut tx = tiles.0.max(row_start) - row_start;
        let tx_end = tiles.1.min(row_start + t.tw) - row_start;
        while tx < tx_end {
            let tt = row_start + tx - tiles.0;
            let (blk, tl) = (tt / t.tb, tt % t.tb);
            let run = (NR - tl % NR).min(tx_end - tx);
            let off = blk * t.block_len() + (tl / NR) * kc * NR + tl % NR + ch_off;
            for g in (0..run).step_by(LANES) {
                // SAFETY: elements (ξ, ch, tiles tt + g .. tt + g + lanes) of block `blk` are
                // inside `v` (one panel row); no other task writes channel `ch`; the loads stay
                // inside `vert` (ROW_SLACK).
                let first = TILE * (tx + g);
                horizontal(scratch, (first, first + 4 * TILE), LANES.min(run - g), v.add(off + g), t.c * t.tb);
            }
            tx += run;
        }
    }
}

/// `Bᵀ` down the columns of the six input rows under tile row `ty` (zero rows outside the
/// plane) into slot `slot` (0 or 1) of `vert`: `vert[(slot·6 + ξy)·stride + pl + j]` for the `w`
/// input columns `j`; the padded columns are zero, which is what `Bᵀ` gives for six zeros.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn vertical(plane: &[f32], t: &Tiling, ty: usize, slot: usize, scratch: &mut InputScratch) {
    use std::arch::x86_64::*;
    let (w, stride) = (t.w, scratch.stride);
    let row = |i: usize| -> &[f32] {
        let iy = (ty * TILE + i) as isize - t.pt as isize;
        if iy < 0 || iy >= t.h as isize {
            &scratch.zeros
        } else {
            &plane[iy as usize * w..(iy as usize + 1) * w]
        }
    };
    let d = [row(0), row(1), row(2), row(3), row(4), row(5)];
    let out = scratch.vert.as_mut_ptr().add(slot * ALPHA * stride + t.pl);
    let mut j = 0;
    while j + LANES <= w {
        // SAFETY: columns j .. j + 8 of six rows of w floats; outputs at pl + j + 8 <= width.
        let ld = |i: usize| _mm256_loadu_ps(d[i].as_ptr().add(j));
        let y = bt8([ld(0), ld(1), ld(2), ld(3), ld(4), ld(5)]);
        for (yi, &val) in y.iter().enumerate() {
            _mm256_storeu_ps(out.add(yi * stride + j), val);
        }
        j += LANES;
    }
    if j < w {
        // the last w − j (< 8) columns, and zeros past them (Bᵀ of zeros: the padded columns'
        // zeros again)
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((w - j) as i32), lane);
        // SAFETY: the masked loads read columns j .. w only; the stores end at pl + j + 8 <=
        // pl + w + 7 < stride (ROW_SLACK).
        let ld = |i: usize| _mm256_maskload_ps(d[i].as_ptr().add(j), mask);
        let y = bt8([ld(0), ld(1), ld(2), ld(3), ld(4), ld(5)]);
        for (yi, &val) in y.iter().enumerate() {
            _mm256_storeu_ps(out.add(yi * stride + j), val);
        }
    }
}

/// `Bᵀ` along the six columns of `lanes` (≤ 8) tiles of the six vertical-pass rows (tiles 0..4
/// from column `first.0` of each row, tiles 4..8 from column `first.1`), stored to
/// `dst + ξ·point_stride` (`lanes` consecutive floats per point).
/// Safety: AVX2 present; those stores valid; the 24-float reads from `first.0` and `first.1`
/// of each of the six rows stay inside `vert`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn horizontal(scratch: &InputScratch, first: (usize, usize), lanes: usize, dst: *mut f32, point_stride: usize) {
    for yi in 0..ALPHA {
        let row = scratch.vert.as_ptr().add(yi * scratch.stride);
        let y = bt8(phases(row.add(first.0), row.add(first.1)));
        for (xi, &val) in y.iter().enumerate() {
            store_lanes(dst.add((yi * ALPHA + xi) * point_stride), val, lanes);
        }
    }
}

/// The six columns of 8 tiles as vectors over the tiles: tiles 0..4 side by side from `a`
/// (tile k's column j = `a[4k + j]`), tiles 4..8 likewise from `b`; 24 floats read from each.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn phases(a: *const f32, b: *const f32) -> [std::arch::x86_64::__m256; ALPHA] {
    use std::arch::x86_64::*;
    // 128-bit halves (a tile's 4 columns): a0 = [t0 t1], a1 = [t2 t3], a2 = [t4 ·] from `a`;
    // b0 = [t4' t5'], b1 = [t6' t7'], b2 = [t8' ·] from `b` (tile k' = lane k)
    let [a0, a1, a2] = [0, 8, 16].map(|o| _mm256_loadu_ps(a.add(o)));
    let [b0, b1, b2] = [0, 8, 16].map(|o| _mm256_loadu_ps(b.add(o)));
    let r0 = _mm256_permute2f128_ps::<0x20>(a0, b0); // [t0 t4']
    let r1 = _mm256_permute2f128_ps::<0x31>(a0, b0); // [t1 t5']
    let r2 = _mm256_permute2f128_ps::<0x20>(a1, b1); // [t2 t6']
    let r3 = _mm256_permute2f128_ps::<0x31>(a1, b1); // [t3 t7']
    let r4 = _mm256_permute2f128_ps::<0x20>(a2, b2); // [t4 t8']

    // 4x4 transposes inside each 128-bit lane
    let lo01 = _mm256_unpacklo_ps(r0, r1);
    let hi01 = _mm256_unpackhi_ps(r0, r1);
    let lo23 = _mm256_unpacklo_ps(r2, r3);
    let hi23 = _mm256_unpackhi_ps(r2, r3);
    let lo12 = _mm256_unpacklo_ps(r1, r2);
    let lo34 = _mm256_unpacklo_ps(r3, r4);
    [
        _mm256_shuffle_ps::<0x44>(lo01, lo23),
        _mm256_shuffle_ps::<0xEE>(lo01, lo23),
        _mm256_shuffle_ps::<0x44>(hi01, hi23),
        _mm256_shuffle_ps::<0xEE>(hi01, hi23),
        _mm256_shuffle_ps::<0x44>(lo12, lo34),
        _mm256_shuffle_ps::<0xEE>(lo12, lo34),
    ]
}

/// Store the first `lanes` (1..=8) lanes of `val` at `dst` (4, 2 and 1 lanes at a time).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_lanes(dst: *mut f32, val: std::arch::x86_64::__m256, lanes: usize) {
    use std::arch::x86_64::*;
    if lanes == LANES {
        _mm256_storeu_ps(dst, val);
        return;
    }
    let (mut p, mut rest, mut part) = (dst, lanes, _mm256_castps256_ps128(val));
    if rest >= 4 {
        _mm_storeu_ps(p, part);
        (p, rest, part) = (p.add(4), rest - 4, _mm256_extractf128_ps::<1>(val));
    }
    if rest >= 2 {
        // two floats as one (unaligned) 64-bit store
        p.cast::<f64>().write_unaligned(_mm_cvtsd_f64(_mm_castps_pd(part)));
        (p, rest, part) = (p.add(2), rest - 2, _mm_movehl_ps(part, part));
    }
    if rest == 1 {
        _mm_store_ss(p, part);
    }
}

/// `Bᵀ d` for 8 six-vectors at once (lane by lane): `4·d0 − 5·d2 + d4` evaluated left to right
/// and no fused multiply-add, the operations of the scalar form this replaced, bit for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bt8(d: [std::arch::x86_64::__m256; 6]) -> [std::arch::x86_64::__m256; 6] {
    use std::arch::x86_64::*;
    let [d0, d1, d2, d3, d4, d5] = d;
    let (two, four, five) = (_mm256_set1_ps(2.0), _mm256_set1_ps(4.0), _mm256_set1_ps(5.0));
    let m4 = _mm256_sub_ps(d4, _mm256_mul_ps(four, d2));
    let m3 = _mm256_sub_ps(d3, _mm256_mul_ps(four, d1));
    let n4 = _mm256_sub_ps(d4, d2);
    let n3 = _mm256_mul_ps(two, _mm256_sub_ps(d3, d1));
    [
        _mm256_add_ps(_mm256_sub_ps(_mm256_mul_ps(four, d0), _mm256_mul_ps(five, d2)), d4),
        _mm256_add_ps(m4, m3),
        _mm256_sub_ps(m4, m3),
        _mm256_add_ps(n4, n3),
        _mm256_sub_ps(n4, n3),
        _mm256_add_ps(_mm256_sub_ps(_mm256_mul_ps(four, d1), _mm256_mul_ps(five, d3)), d5),
    ]
}

/// Phase 2: per (tile block, chunk of output channels), the 36 GEMMs into a scratch `M`, then
/// `Aᵀ M A` + bias + activation into the output tiles (cut at the output's edges).
/// Safety: AVX2/FMA present; `out` valid for `n · oc · oh · ow` writes.
#[cfg(target_arch = "x86_64")]
unsafe fn multiply_and_transform_output(
    v: &[f32],
    f: &WinogradFilter,
    t: &Tiling,
    bias: Option<&[f32]>,
    act: Option<Act>,
    out: *mut f32,
) {
    let threads = rayon::current_num_threads().max(1);
    let m_panels = t.oc.div_ceil(MR);
    let mut chunk_panels = MAX_CHUNK_PANELS.min(m_panels);
    // enough tasks that work stealing evens out the cores: eight per thread (four left the
    // small maps' few large tasks unevenly shared; calibration of tiny-yolov3 ~8 % faster in
    // alternating runs, sixteen no better)
    while t.nblocks * m_panels.div_ceil(chunk_panels) < 8 * threads && chunk_panels > 2 {
        chunk_panels = chunk_panels.div_ceil(2);
    }
    let nchunks = m_panels.div_ceil(chunk_panels);
    let op = SendPtr(out);
    (0..t.nblocks * nchunks).into_par_iter().for_each_init(
        || vec![TileSpot::default(); t.tb],
        |tiles, task| {
            let (blk, chunk) = (task / nchunks, task % nchunks);
            let panels = (chunk * chunk_panels, ((chunk + 1) * chunk_panels).min(m_panels));
            let oq = op;
            // SAFETY: avx2/fma checked by `conv`; the task writes only its (tile block, channel
            // chunk) outputs, disjoint from every other task's.
            let mut m = PRODUCT_SCRATCH.with(|c| c.take());
            unsafe { block_task(v, f, t, (bias, act), (blk, panels), &mut m, tiles, oq.0) };
            PRODUCT_SCRATCH.with(|c| c.replace(m));
        },
    );
}

/// The fused plan: one task per tile block (see [`Plan::Fused`]).
/// Safety: AVX2/FMA present; `t.c <= KC`; `out` valid for `n · oc · oh · ow` writes.
#[cfg(target_arch = "x86_64")]
unsafe fn run_fused(x: &[f32], f: &WinogradFilter, t: &Tiling, bias: Option<&[f32]>, act: Option<Act>, out: *mut f32) {
    let op = SendPtr(out);
    (0..t.nblocks).into_par_iter().for_each_init(
        || (InputScratch::new(t), vec![TileSpot::default(); t.tb]),
        |(scratch, tiles), blk| {
            let oq = op;
            let mut v = INPUT_SCRATCH.with(|c| c.take());
            let mut m = PRODUCT_SCRATCH.with(|c| c.take());
            // SAFETY: avx2/fma checked by `conv`; the task writes only its tile block's outputs.
            unsafe { fused_block(x, f, t, (bias, act), blk, (scratch, tiles), (&mut v, &mut m), oq.0) };
            PRODUCT_SCRATCH.with(|c| c.replace(m));
            INPUT_SCRATCH.with(|c| c.replace(v));
        },
    );
}

/// One task of the fused plan: phase 1 of tile block `blk` into `bufs.0`, then per sub-block of
/// `t.sub` tiles the 36 GEMMs into `bufs.1` and the output transform.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn fused_block(
    x: &[f32],
    f: &WinogradFilter,
    t: &Tiling,
    epilogue: (Option<&[f32]>, Option<Act>),
    blk: usize,
    work: (&mut InputScratch, &mut [TileSpot]),
    bufs: (&mut Vec<f32>, &mut Vec<f32>),
    out: *mut f32,
) {
    let (scratch, tiles) = work;
    let tt0 = blk * t.bt;
    let ntiles = t.bt.min(t.nt - tt0);
    let vb = line_aligned(bufs.0, t.block_len());
    if ntiles < t.tb {
        // the unused tile lanes of a partial block are zero, as in the whole-input plan
        vb.fill(0.0);
    }
    for ch in 0..t.c {
        // SAFETY: the block's elements of channel ch are inside `vb` (one block).
        input_channel(x, t, ch, (tt0, tt0 + ntiles), scratch, vb.as_mut_ptr());
    }
    locate_tiles(t, blk, &mut tiles[..ntiles]);
    let m_panels = t.oc.div_ceil(MR);
    let m = line_aligned(bufs.1, POINTS * point_stride(t.oc, t.sub));
    let point = t.c * t.tb;
    for s0 in (0..ntiles).step_by(t.sub) {
        let nsub = t.sub.min(ntiles - s0);
        let ld = nsub.div_ceil(NR) * NR;
        let ps = point_stride(t.oc, ld);
        for (xi, u) in f.u.iter().enumerate() {
            // tile panel s0 / NR of point ξ starts s0·c floats into the point (one depth block)
            let b = &vb[xi * point + s0 * t.c..(xi + 1) * point];
            sgemm::gemm_prepacked(u, (0, m_panels), b, ld, (0, nsub), &mut m[xi * ps..xi * ps + t.oc * ld], ld);
        }
        let (bias, act) = epilogue;
        let rows_out = RowsOut { r0: 0, rows: t.oc, bias, act, tiles: &tiles[s0..s0 + nsub], out };
        transform_rows(m, ld, nsub, t, &rows_out);
    }
}

/// Other targets have no micro-kernel (`applies` is false there).
#[cfg(not(target_arch = "x86_64"))]
unsafe fn run_fused(_: &[f32], _: &WinogradFilter, _: &Tiling, _: Option<&[f32]>, _: Option<Act>, _: *mut f32) {}

/// Where one tile's outputs go: offset of its corner in channel 0 of its image, valid rows and
/// columns, and which tile row (over the batch) it is in.
#[derive(Clone, Copy, Default)]
struct TileSpot {
    base: usize,
    rows: usize,
    cols: usize,
    row_id: usize,
}

/// One task of phase 2: tile block `blk`, filter panels `panels`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn block_task(
    v: &[f32],
    f: &WinogradFilter,
    t: &Tiling,
    epilogue: (Option<&[f32]>, Option<Act>),
    part: (usize, (usize, usize)),
    m: &mut Vec<f32>,
    tiles: &mut [TileSpot],
    out: *mut f32,
) {
    let (bias, act) = epilogue;
    let (blk, (p0, p1)) = part;
    let (r0, r1) = (p0 * MR, (p1 * MR).min(t.oc));
    let rows = r1 - r0;
    let ntiles = t.bt.min(t.nt - blk * t.bt);
    locate_tiles(t, blk, &mut tiles[..ntiles]);
    let vb = &v[blk * t.block_len()..(blk + 1) * t.block_len()];
    let ld = t.tb;
    let ps = point_stride(rows, ld);
    let m = line_aligned(m, POINTS * ps);
    // the last block's GEMMs stop at its last tile (its packed layout keeps width tb)
    let cols = (0, ntiles);
    for (xi, u) in f.u.iter().enumerate() {
        let b = &vb[xi * t.c * ld..(xi + 1) * t.c * ld];
        sgemm::gemm_prepacked(u, (p0, p1), b, ld, cols, &mut m[xi * ps..xi * ps + rows * ld], ld);
    }
    let rows_out = RowsOut { r0, rows, bias, act, tiles: &tiles[..ntiles], out };
    transform_rows(m, ld, ntiles, t, &rows_out);
}

/// Where [`transform_rows`] puts its outputs: output channels `r0 .. r0 + rows`, their bias and
/// activation, the block's tiles, the output tensor.
struct RowsOut<'a> {
    r0: usize,
    rows: usize,
    bias: Option<&'a [f32]>,
    act: Option<Act>,
    tiles: &'a [TileSpot],
    out: *mut f32,
}

/// Fill in where each tile of block `blk` goes (`spots[tl]` for tile `blk·tb + tl`).
fn locate_tiles(t: &Tiling, blk: usize, spots: &mut [TileSpot]) {
    let plane = t.oh * t.ow;
    for (tl, e) in spots.iter_mut().enumerate() {
        let tt = blk * t.bt + tl;
        let (b, rest) = (tt / (t.th * t.tw), tt % (t.th * t.tw));
        let (ty, tx) = (rest / t.tw, rest % t.tw);
        let (oy, ox) = (ty * TILE, tx * TILE);
        *e = TileSpot {
            base: (b * t.oc) * plane + oy * t.ow + ox,
            rows: TILE.min(t.oh - oy),
            cols: TILE.min(t.ow - ox),
            row_id: tt / t.tw,
        };
    }
}

/// Floats from one point's products to the next for `rows` rows of `ld` floats: at least
/// `rows·ld`, a whole number of cache lines, and an odd one, so that the 36 loads of one output
/// transform (one per point) fall in 36 different sets of the L1 cache (a stride of a multiple
/// of 4 KB would put them all in one 8-way set; not timed on its own).
fn point_stride(rows: usize, ld: usize) -> usize {
    let lines = (rows * ld).div_ceil(ALIGN_FLOATS);
    (lines | 1) * ALIGN_FLOATS
}

/// Output transform, bias, activation and store of the first `ntiles` tiles of every row: the
/// products of row o, point ξ, tile g at `m[ξ·point_stride(rows, ld) + o·ld + g]`. While one
/// output channel is stored, the lines of the next one's outputs are prefetched: the stores
/// miss the caches (a new output map of megabytes), and the prefetches let the misses overlap
/// (measured: 3→16 channels at 416x416 ~30% less time).
/// Safety: AVX2/FMA present; `ld` >= `ntiles` rounded up to LANES; `out` as in
/// [`block_task`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transform_rows(m: &[f32], ld: usize, ntiles: usize, t: &Tiling, dst: &RowsOut) {
    use std::arch::x86_64::*;
    let RowsOut { r0, rows, bias, act, tiles, out } = *dst;
    let plane = t.oh * t.ow;
    let stride = point_stride(rows, ld);
    let mut spill = [[0f32; LANES]; TILE * TILE];
    for o in 0..rows {
        let bv = _mm256_set1_ps(bias.map_or(0.0, |bb| bb[r0 + o]));
        for g0 in (0..ntiles).step_by(LANES) {
            // SAFETY: g0 + LANES <= ld (a multiple of NR = 2·LANES), so all 36 loads stay
            // inside row o of each point's [rows, ld] product.
            let y = output_transform(m.as_ptr().add(o * ld + g0), stride, bv, act);
            let group = &tiles[g0..ntiles.min(g0 + LANES)];
            let (first, last) = (group[0], group[group.len() - 1]);
            let dst = (r0 + o) * plane;
            if o + 1 < rows {
                prefetch_outputs(out.wrapping_add(dst + plane), [first, last], t.ow);
            }
            if group.len() == LANES && first.row_id == last.row_id && last.cols == TILE && !t.spill_store {
                // 8 whole-width tiles side by side: each output row is 32 contiguous floats
                for (i, yi) in y.iter().enumerate().take(first.rows) {
                    let row = out.add(dst + first.base + i * t.ow);
                    store_interleaved(row, yi);
                }
                continue;
            }
            if !t.spill_store {
                // SAFETY: each tile's valid outputs of channel r0 + o, inside `out`.
                store_tiles(out.add(dst), group, &y, t.ow);
                continue;
            }
            for (i, yi) in y.iter().enumerate() {
                for (j, yij) in yi.iter().enumerate() {
                    _mm256_storeu_ps(spill[i * TILE + j].as_mut_ptr(), *yij);
                }
            }
            for (l, spot) in group.iter().enumerate() {
                for i in 0..spot.rows {
                    for j in 0..spot.cols {
                        *out.add(dst + spot.base + i * t.ow + j) = spill[i * TILE + j][l];
                    }
                }
            }
        }
    }
}

/// `Aᵀ M A` of `LANES` tiles of one output channel (`m` at point 0, point ξ at `m + ξ·stride`),
/// plus `bias`, then `act`: the 4x4 outputs as [row][column] vectors over the tiles.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn output_transform(
    m: *const f32,
    stride: usize,
    bias: std::arch::x86_64::__m256,
    act: Option<Act>,
) -> [[std::arch::x86_64::__m256; TILE]; TILE] {
    use std::arch::x86_64::*;
    let (two, four, eight) = (_mm256_set1_ps(2.0), _mm256_set1_ps(4.0), _mm256_set1_ps(8.0));
    let at = |v: [__m256; ALPHA]| -> [__m256; TILE] {
        let (a, b) = (_mm256_add_ps(v[1], v[2]), _mm256_sub_ps(v[1], v[2]));
        let (c, d) = (_mm256_add_ps(v[3], v[4]), _mm256_sub_ps(v[3], v[4]));
        [
            _mm256_add_ps(_mm256_add_ps(v[0], a), c),
            _mm256_fmadd_ps(two, d, b),
            _mm256_fmadd_ps(four, c, a),
            _mm256_add_ps(_mm256_fmadd_ps(eight, d, b), v[5]),
        ]
    };
    let mut cols = [[_mm256_setzero_ps(); TILE]; ALPHA];
    for (s, col) in cols.iter_mut().enumerate() {
        let ld = |r: usize| _mm256_loadu_ps(m.add((r * ALPHA + s) * stride));
        *col = at([ld(0), ld(1), ld(2), ld(3), ld(4), ld(5)]);
    }
    let mut y = [[_mm256_setzero_ps(); TILE]; TILE];
    for (i, yi) in y.iter_mut().enumerate() {
        *yi = at([cols[0][i], cols[1][i], cols[2][i], cols[3][i], cols[4][i], cols[5][i]]);
    }
    for v in y.iter_mut().flatten() {
        *v = sgemm::activate(_mm256_add_ps(*v, bias), act);
    }
    y
}

/// Prefetch the output lines of a group of tiles (`out` at the channel's corner): per output
/// row of its first and of its last tile, the line of the row's start and the line 60 bytes on
/// (the tiles between them lie in those lines). A hint only: it never faults.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn prefetch_outputs(out: *mut f32, spots: [TileSpot; 2], ow: usize) {
    use std::arch::x86_64::*;
    for spot in spots {
        for i in 0..spot.rows {
            let p = out.wrapping_add(spot.base + i * ow) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(p);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(60));
        }
    }
}

/// Store one output row of 8 tiles: `y[j]` holds column j of tiles 0..8; memory gets tile 0's
/// 4 columns, then tile 1's, ... (32 floats from `dst`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_interleaved(dst: *mut f32, y: &[std::arch::x86_64::__m256; TILE]) {
    use std::arch::x86_64::*;
    for (q, pair) in interleave(y).iter().enumerate() {
        _mm256_storeu_ps(dst.add(q * 2 * TILE), *pair);
    }
}

/// One output row of 8 tiles regrouped by tile: `y[j]` holds column j of tiles 0..8; vector q
/// of the result holds tile 2q's 4 columns, then tile 2q+1's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn interleave(y: &[std::arch::x86_64::__m256; TILE]) -> [std::arch::x86_64::__m256; TILE] {
    use std::arch::x86_64::*;
    let ab_lo = _mm256_unpacklo_ps(y[0], y[1]);
    let ab_hi = _mm256_unpackhi_ps(y[0], y[1]);
    let cd_lo = _mm256_unpacklo_ps(y[2], y[3]);
    let cd_hi = _mm256_unpackhi_ps(y[2], y[3]);
    let t0 = _mm256_shuffle_ps::<0x44>(ab_lo, cd_lo);
    let t1 = _mm256_shuffle_ps::<0xEE>(ab_lo, cd_lo);
    let t2 = _mm256_shuffle_ps::<0x44>(ab_hi, cd_hi);
    let t3 = _mm256_shuffle_ps::<0xEE>(ab_hi, cd_hi);
    [
        _mm256_permute2f128_ps::<0x20>(t0, t1),
        _mm256_permute2f128_ps::<0x20>(t2, t3),
        _mm256_permute2f128_ps::<0x31>(t0, t1),
        _mm256_permute2f128_ps::<0x31>(t2, t3),
    ]
}

/// Store each tile of `group` (lane l = tile l of `y`, [row][column] vectors over the tiles) at
/// `dst + spot.base`, cut to its valid rows and columns: one 128-bit store per whole tile row,
/// for groups whose tiles are not 8 whole ones side by side (tile row ends, narrow maps).
/// Safety: AVX2 present; every valid output of every tile is inside the destination.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_tiles(dst: *mut f32, group: &[TileSpot], y: &[[std::arch::x86_64::__m256; TILE]; TILE], ow: usize) {
    use std::arch::x86_64::*;
    for (i, yi) in y.iter().enumerate() {
        let pairs = interleave(yi);
        for (l, spot) in group.iter().enumerate().filter(|(_, s)| i < s.rows) {
            let pair = pairs[l / 2];
            let row = if l % 2 == 0 { _mm256_castps256_ps128(pair) } else { _mm256_extractf128_ps::<1>(pair) };
            let p = dst.add(spot.base + i * ow);
            if spot.cols == TILE {
                _mm_storeu_ps(p, row);
            } else {
                let mut part = [0f32; TILE];
                _mm_storeu_ps(part.as_mut_ptr(), row);
                for (j, &val) in part.iter().enumerate().take(spot.cols) {
                    *p.add(j) = val;
                }
            }
        }
    }
}
