//! Direct AVX2/FMA kernel for dense 3x3 stride-1 convolutions with few input channels (a first
//! RGB layer): no im2col, the input rows of a band of output rows copied once with their zero
//! padding, outputs vectorised along x in register tiles of [`RB`] output channels by
//! [`VB`] vectors of 8 columns, the filter taps broadcast from a small packed copy.
//!
//! Every output is the same single FMA chain as the packed GEMM path computes: start from the
//! bias (or 0), `acc = fma(w[oc][kk], x, acc)` for `kk = ci·9 + ky·3 + kx` increasing (padding
//! taps multiply a stored 0.0), then the fused activation; results are equal bit for bit.

use super::sgemm::{self, Act, SendPtr};
use rayon::prelude::*;

/// Output channels of one register tile.
const RB: usize = 6;
/// Vectors of 8 output columns of one register tile: RB·VB accumulators, VB inputs and one
/// broadcast weight take 15 of the 16 ymm registers (4x3 would need all 16, and the compiler
/// then spills an accumulator).
const VB: usize = 2;
/// Columns of one full register tile.
const COLS: usize = 8 * VB;
/// Largest input channel count taken (beyond it the packed GEMM / Winograd paths are better).
pub(super) const MAX_CHANNELS: usize = 7;
/// Most output rows one task computes (its padded input copy stays in L2).
const MAX_BAND_ROWS: usize = 16;
/// Tasks per thread aimed at (so that work stealing evens out busy cores).
const TASKS_PER_THREAD: usize = 8;

/// True when [`conv`] takes a convolution: 2-D, dense, 3x3, stride 1, dilation 1, at most
/// [`MAX_CHANNELS`] input channels, on a CPU with AVX2 and FMA.
pub(super) fn applies(kernel: [usize; 2], stride: [usize; 2], dilation: [usize; 2], group: usize, c: usize) -> bool {
    kernel == [3, 3]
        && stride == [1, 1]
        && dilation == [1, 1]
        && group == 1
        && (1..=MAX_CHANNELS).contains(&c)
        && sgemm::available()
}

/// Sizes of one convolution: input [n, c, h, w], output [n, oc, oh, ow], pads [t, l, b, r].
#[derive(Debug, Clone, Copy)]
pub(super) struct Dims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oc: usize,
    pub pads: [usize; 4],
}

impl Dims {
    /// Output height (the caller checked that the window fits).
    fn oh(&self) -> usize {
        self.h + self.pads[0] + self.pads[2] - 2
    }

    /// Output width.
    fn ow(&self) -> usize {
        self.w + self.pads[1] + self.pads[3] - 2
    }

    /// Floats per row of the padded input copy: every full tile's loads (`COLS + 2` columns
    /// from its start) stay inside, the columns past the image (and its right pad) are zero.
    fn stride(&self) -> usize {
        self.ow().div_ceil(8) * 8 + 8
    }
}

/// Output channels `start .. start + len` of tile block `b` of `oc`: the fewest blocks of at
/// most `RB`, their sizes as even as possible (16 = 6 + 5 + 5, not 6 + 6 + 4: a tile needs about
/// ten independent accumulators to keep both FMA pipes busy).
fn block(oc: usize, b: usize) -> (usize, usize) {
    let blocks = oc.div_ceil(RB).max(1);
    let (base, extra) = (oc / blocks, oc % blocks);
    (b * base + b.min(extra), base + usize::from(b < extra))
}

/// The filter [oc, c·9] regrouped per tile block (see [`block`]): block `b` holds, for every tap
/// `kk`, `RB` weights (its channels', then zeros), so a tile reads one contiguous run.
fn pack_filter(w: &[f32], oc: usize, k: usize) -> Vec<f32> {
    let blocks = oc.div_ceil(RB);
    let mut out = vec![0f32; blocks * k * RB];
    for b in 0..blocks {
        let (start, len) = block(oc, b);
        for r in 0..len {
            for (kk, &v) in w[(start + r) * k..(start + r + 1) * k].iter().enumerate() {
                out[(b * k + kk) * RB + r] = v;
            }
        }
    }
    out
}

/// Convolution of `x` [n, c, h, w] with `w` [oc, c, 3, 3] plus `bias`, then `act`: returns the
/// output [n, oc, oh, ow] row-major. The caller checked [`applies`], the filter and bias sizes
/// and that the padded input is at least 3x3.
pub(super) fn conv(x: &[f32], w: &[f32], bias: Option<&[f32]>, d: Dims, act: Option<Act>) -> Vec<f32> {
    let (oh, ow) = (d.oh(), d.ow());
    let k = d.c * 9;
    assert!(x.len() >= d.n * d.c * d.h * d.w && w.len() >= d.oc * k, "direct3x3: operands too small");
    assert!(bias.is_none_or(|b| b.len() >= d.oc), "direct3x3: bias too short");
    let total = d.n * d.oc * oh * ow;
    let mut out: Vec<f32> = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let wp = pack_filter(w, d.oc, k);
    let threads = rayon::current_num_threads().max(1);
    let bands_per_image = (TASKS_PER_THREAD * threads).div_ceil(d.n).max(oh.div_ceil(MAX_BAND_ROWS)).min(oh);
    let rows = oh.div_ceil(bands_per_image);
    let bands = oh.div_ceil(rows);
    let op = SendPtr(out.as_mut_ptr());
    (0..d.n * bands).into_par_iter().for_each_init(Vec::new, |buf: &mut Vec<f32>, t| {
        let (b, band) = (t / bands, t % bands);
        let oy = (band * rows, ((band + 1) * rows).min(oh));
        let img = &x[b * d.c * d.h * d.w..(b + 1) * d.c * d.h * d.w];
        fill_band(buf, img, &d, oy);
        let ptr = op;
        // SAFETY: task (b, band) writes rows oy.0 .. oy.1 of every output plane of image b only,
        // disjoint from every other task; `out` has capacity for all n·oc·oh·ow elements and
        // outlives the parallel loop.
        unsafe { band_rows(buf, &wp, bias, act, &d, oy, ptr.0.add(b * d.oc * oh * ow)) };
    });
    // SAFETY: the bands cover every output row of every image, and `band_rows` writes every
    // column of every channel of its rows.
    unsafe { out.set_len(total) };
    out
}

/// Copy the input rows of output rows `oy` (rows `oy.0 - top .. oy.1 + 2 - top` of every channel,
/// zero outside the image) into `buf`, each row as [left pad zeros, image row, zeros] of
/// [`Dims::stride`] floats; channel `ci` starts at `ci · (oy.1 - oy.0 + 2) · stride`.
fn fill_band(buf: &mut Vec<f32>, img: &[f32], d: &Dims, oy: (usize, usize)) {
    let (s, nrows) = (d.stride(), oy.1 - oy.0 + 2);
    // every float is written below (the buffer is only grown, never cleared)
    buf.resize(d.c * nrows * s, 0.0);
    for ci in 0..d.c {
        let plane = &img[ci * d.h * d.w..(ci + 1) * d.h * d.w];
        for (r, line) in buf[ci * nrows * s..(ci + 1) * nrows * s].chunks_exact_mut(s).enumerate() {
            let iy = (oy.0 + r) as isize - d.pads[0] as isize;
            if iy < 0 || iy >= d.h as isize {
                line.fill(0.0);
                continue;
            }
            let (left, rest) = line.split_at_mut(d.pads[1]);
            let (mid, right) = rest.split_at_mut(d.w);
            left.fill(0.0);
            mid.copy_from_slice(&plane[iy as usize * d.w..(iy as usize + 1) * d.w]);
            right.fill(0.0);
        }
    }
}

/// Output rows `oy` of one image from its band copy `buf` (see [`fill_band`]); `c` points at the
/// image's output [oc, oh, ow].
///
/// # Safety
/// `c` must be valid for writes of the image's `oc · oh · ow` floats; no other thread may touch
/// rows `oy` of them meanwhile. The CPU must have AVX2 and FMA.
unsafe fn band_rows(
    buf: &[f32],
    wp: &[f32],
    bias: Option<&[f32]>,
    act: Option<Act>,
    d: &Dims,
    oy: (usize, usize),
    c: *mut f32,
) {
    let (oh, ow, k, s) = (d.oh(), d.ow(), d.c * 9, d.stride());
    let plane = oh * ow;
    let src = Src { cs: (oy.1 - oy.0 + 2) * s, rs: s, channels: d.c };
    for y in oy.0..oy.1 {
        let xrow = buf.as_ptr().add((y - oy.0) * s);
        for ob in 0..d.oc.div_ceil(RB) {
            let (start, nr) = block(d.oc, ob);
            let mut init = [0f32; RB];
            if let Some(bb) = bias {
                init[..nr].copy_from_slice(&bb[start..start + nr]);
            }
            let tile = Tile { w: wp.as_ptr().add(ob * k * RB), init, act, ldc: plane };
            let crow = c.add(start * plane + y * ow);
            row_tiles(&tile, &src, xrow, crow, nr, ow);
        }
    }
}

/// Where a tile's inputs are: `channels` planes `cs` floats apart, rows `rs` floats apart.
struct Src {
    cs: usize,
    rs: usize,
    channels: usize,
}

/// One tile's filter block (`RB` weights per tap), accumulator start, activation, and the
/// distance between its output channels' rows.
struct Tile {
    w: *const f32,
    init: [f32; RB],
    act: Option<Act>,
    ldc: usize,
}

/// One output row of `nr` channels: full tiles of [`COLS`] columns, then one tile of the
/// remaining whole vectors, then the last partial vector through a scratch tile.
///
/// # Safety
/// As [`band_rows`]: `x` is the top-left input of the row inside the band copy, `c` the row of
/// the first channel (channel `r` at `c + r · ldc`), valid for `ow` floats per channel.
unsafe fn row_tiles(t: &Tile, src: &Src, x: *const f32, c: *mut f32, nr: usize, ow: usize) {
    let mut x0 = 0;
    while x0 + COLS <= ow {
        kernel_rv(nr, VB, t, src, x.add(x0), c.add(x0), t.ldc);
        x0 += COLS;
    }
    let vecs = (ow - x0) / 8;
    if vecs > 0 {
        kernel_rv(nr, vecs, t, src, x.add(x0), c.add(x0), t.ldc);
        x0 += 8 * vecs;
    }
    let rest = ow - x0;
    if rest > 0 {
        let mut tmp = [0f32; RB * 8];
        kernel_rv(nr, 1, t, src, x.add(x0), tmp.as_mut_ptr(), 8);
        for r in 0..nr {
            std::ptr::copy_nonoverlapping(tmp.as_ptr().add(r * 8), c.add(r * t.ldc + x0), rest);
        }
    }
}

/// [`kernel`] for `nr` (1..=RB) channels and `nv` (1..=VB) vectors.
///
/// # Safety
/// As [`kernel`].
#[inline(always)]
unsafe fn kernel_rv(nr: usize, nv: usize, t: &Tile, src: &Src, x: *const f32, c: *mut f32, ldc: usize) {
    macro_rules! by_v {
        ($r:literal) => {
            match nv {
                2 => kernel::<$r, 2>(t, src, x, c, ldc),
                _ => kernel::<$r, 1>(t, src, x, c, ldc),
            }
        };
    }
    match nr {
        6 => by_v!(6),
        5 => by_v!(5),
        4 => by_v!(4),
        3 => by_v!(3),
        2 => by_v!(2),
        _ => by_v!(1),
    }
}

/// `c[r][0 .. 8V]` (rows `ldc` apart) = act(init[r] + Σ_kk w[kk][r] · x_kk), one FMA chain per
/// output in `kk = ci·9 + ky·3 + kx` order, where `x_kk` is the band copy at channel `ci`, row
/// `ky`, column `kx ..`.
///
/// # Safety
/// `t.w` holds `9 · channels · RB` floats; every `x + ci·cs + ky·rs + kx + 8V` read lies inside
/// the band copy; `c` is valid for writes of `R` rows of `8V` floats `ldc` apart. The CPU must
/// have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const R: usize, const V: usize>(t: &Tile, src: &Src, x: *const f32, c: *mut f32, ldc: usize) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    for (r, accr) in acc.iter_mut().enumerate() {
        *accr = [_mm256_set1_ps(t.init[r]); V];
    }
    let mut wp = t.w;
    for ci in 0..src.channels {
        let xc = x.add(ci * src.cs);
        for ky in 0..3 {
            let xr = xc.add(ky * src.rs);
            for kx in 0..3 {
                let mut xv = [_mm256_setzero_ps(); V];
                for (v, xvv) in xv.iter_mut().enumerate() {
                    *xvv = _mm256_loadu_ps(xr.add(kx + 8 * v));
                }
                for (r, accr) in acc.iter_mut().enumerate() {
                    let wv = _mm256_broadcast_ss(&*wp.add(r));
                    for (a, &xvv) in accr.iter_mut().zip(&xv) {
                        *a = _mm256_fmadd_ps(wv, xvv, *a);
                    }
                }
                wp = wp.add(RB);
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        for (v, &a) in accr.iter().enumerate() {
            _mm256_storeu_ps(c.add(r * ldc + 8 * v), sgemm::activate(a, t.act));
        }
    }
}

/// Never called: [`applies`] is false without AVX2 (kept so the module builds everywhere).
#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel<const R: usize, const V: usize>(_: &Tile, _: &Src, _: *const f32, _: *mut f32, _: usize) {
    unreachable!("direct3x3 needs AVX2 and FMA")
}

#[cfg(test)]
mod tests {
    use super::super::conv::{self, ConvGeom};
    use super::super::Tensor;
    use super::*;
    use ndarray::IxDyn;

    /// Deterministic pseudo-random values in [-1, 1), with a few exact zeros and negative zeros
    /// (signed-zero results must match too).
    fn noise(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                match i % 37 {
                    5 => 0.0,
                    11 => -0.0,
                    _ => ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0,
                }
            })
            .collect()
    }

    /// A tensor of `shape` filled by [`noise`].
    fn tensor(shape: &[usize], seed: u64) -> Tensor {
        let len = shape.iter().product();
        Tensor::from_shape_vec(IxDyn(shape), noise(len, seed)).expect("shape matches length")
    }

    /// Direct kernel against the packed GEMM path, element by element (`to_bits`), over input
    /// channels 1..=7, output channels with and without a remainder tile, sizes from 1x1 to
    /// widths that are not multiples of 8 or 24, batch 2, asymmetric pads, bias and activations.
    #[test]
    fn direct_equals_packed_gemm_bit_for_bit() {
        if !sgemm::available() {
            return;
        }
        let sizes = [(1, 1), (5, 7), (3, 3), (9, 8), (6, 24), (4, 31), (7, 50), (2, 57), (13, 17)];
        let pads = [[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 1, 0], [2, 1, 0, 3]];
        let acts = [None, Some(Act::Leaky(0.1)), Some(Act::Relu(None)), Some(Act::Relu(Some(0.5)))];
        let mut seed = 1;
        let mut checked = 0;
        for c in 1..=MAX_CHANNELS {
            for (si, &(h, w)) in sizes.iter().enumerate() {
                for &oc in &[8, 16, 24, 12, 13, 3] {
                    let p = pads[(c + si + oc) % pads.len()];
                    if h + p[0] + p[2] < 3 || w + p[1] + p[3] < 3 {
                        continue;
                    }
                    let n = if (c + si) % 3 == 0 { 2 } else { 1 };
                    let act = acts[(c * 7 + si + oc) % acts.len()];
                    seed += 1;
                    let x = tensor(&[n, c, h, w], seed);
                    let wt = tensor(&[oc, c, 3, 3], seed + 1000);
                    let b = tensor(&[oc], seed + 2000);
                    let bias = (seed % 3 != 0).then_some(&b);
                    let g = ConvGeom { kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pads: p, group: 1 };
                    let got = conv::conv(&x, &wt, bias, &g, None, act).expect("direct conv");
                    let want = conv::conv_via_gemm(&x, &wt, bias, &g, act).expect("gemm conv");
                    assert_eq!(got.shape(), want.shape());
                    for (i, (a, e)) in got.iter().zip(want.iter()).enumerate() {
                        let what =
                            format!("c {c} oc {oc} n {n} {h}x{w} pads {p:?} act {act:?} bias {}", bias.is_some());
                        assert_eq!(a.to_bits(), e.to_bits(), "{what}: element {i}: {a} vs {e}");
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 250, "only {checked} cases ran");
    }

    /// The tile blocks partition the output channels in order, none empty or over `RB`.
    #[test]
    fn blocks_partition_the_channels() {
        for oc in 1..=40usize {
            let mut next = 0;
            for b in 0..oc.div_ceil(RB) {
                let (start, len) = block(oc, b);
                assert!(start == next && (1..=RB).contains(&len), "oc {oc} block {b}: {start} + {len}");
                next += len;
            }
            assert_eq!(next, oc);
        }
        assert_eq!([block(16, 0), block(16, 1), block(16, 2)], [(0, 6), (6, 5), (11, 5)]);
    }

    /// Wide images (several bands and full tiles per row), a tiny-yolov3-like first layer at
    /// reduced size: equal bit for bit, with the big and the 1-thread pools alike.
    #[test]
    fn wide_image_equals_packed_gemm_bit_for_bit() {
        if !sgemm::available() {
            return;
        }
        let x = tensor(&[1, 3, 70, 104], 7);
        let wt = tensor(&[16, 3, 3, 3], 8);
        let b = tensor(&[16], 9);
        let g = ConvGeom { kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pads: [1, 1, 1, 1], group: 1 };
        let act = Some(Act::Leaky(0.1));
        let want = conv::conv_via_gemm(&x, &wt, Some(&b), &g, act).expect("gemm conv");
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
        for got in [
            conv::conv(&x, &wt, Some(&b), &g, None, act).expect("direct conv"),
            one.install(|| conv::conv(&x, &wt, Some(&b), &g, None, act)).expect("direct conv"),
        ] {
            assert!(got.iter().zip(want.iter()).all(|(a, e)| a.to_bits() == e.to_bits()));
        }
    }

    /// The non-finite cases the padding taps can reveal: an infinite weight times a padding 0.0
    /// is NaN in both paths.
    #[test]
    fn infinite_weight_on_padding_matches() {
        if !sgemm::available() {
            return;
        }
        let x = tensor(&[1, 2, 5, 9], 3);
        let mut wt = tensor(&[8, 2, 3, 3], 4);
        wt[[2, 1, 0, 0]] = f32::INFINITY;
        let g = ConvGeom { kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pads: [1, 1, 1, 1], group: 1 };
        let got = conv::conv(&x, &wt, None, &g, None, None).expect("direct conv");
        let want = conv::conv_via_gemm(&x, &wt, None, &g, None).expect("gemm conv");
        assert!(got.iter().any(|v| v.is_nan()));
        assert!(got.iter().zip(want.iter()).all(|(a, e)| a.to_bits() == e.to_bits()));
    }
}

#[cfg(test)]
mod timing {
    use super::super::conv::{self, ConvGeom};
    use super::super::Tensor;
    use super::*;
    use ndarray::IxDyn;
    use std::time::Instant;

    /// Timing of tiny-yolov3's first layer (3 -> 16, 416x416, Leaky) on one thread, direct
    /// against packed GEMM, alternating, best of many (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn time_first_layer() {
        if !sgemm::available() {
            return;
        }
        let x = Tensor::from_shape_fn(IxDyn(&[1, 3, 416, 416]), |i| ((i[2] * 7 + i[3] * 3 + i[1]) % 17) as f32 * 0.1);
        let wt = Tensor::from_shape_fn(IxDyn(&[16, 3, 3, 3]), |i| (i[0] as f32 - i[2] as f32 * 0.5) * 0.01);
        let b = Tensor::from_elem(IxDyn(&[16]), 0.1f32);
        let g = ConvGeom { kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pads: [1, 1, 1, 1], group: 1 };
        let act = Some(Act::Leaky(0.1));
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
        let (mut best_d, mut best_g) = (f64::MAX, f64::MAX);
        for _ in 0..40 {
            let t0 = Instant::now();
            drop(one.install(|| conv::conv(&x, &wt, Some(&b), &g, None, act)));
            best_d = best_d.min(t0.elapsed().as_secs_f64());
            let t0 = Instant::now();
            drop(one.install(|| conv::conv_via_gemm(&x, &wt, Some(&b), &g, act)));
            best_g = best_g.min(t0.elapsed().as_secs_f64());
        }
        println!(
            "first layer, 1 thread, best of 40: direct {:.3} ms, packed gemm {:.3} ms",
            best_d * 1e3,
            best_g * 1e3
        );
    }
}
