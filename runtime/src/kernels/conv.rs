//! Convolution engine shared by both chips: im2col panels in the scratch area and a 4x16
//! register-blocked GEMM micro-kernel (AVX2 `vpmaddwd` on x86_64 when available, portable code
//! otherwise). Integer convs hand each int32 accumulator to the chip's requant closure; float
//! convs accumulate in f32 in reduction order (ic, ky, kx), then add the bias.

use super::num::{code8, load_float, load_i32, store_float};
use bmodel_format::scratch::{ConvScratch, ALIGN_SLACK, OC_STRIP, PIXEL_STEP};
use bmodel_format::{DType, TensorRef, Window};

/// Sizes of one conv / deconv, decoded from the operands.
#[derive(Debug, Clone, Copy)]
pub struct ConvGeom {
    /// batch
    pub n: usize,
    /// input channels, height, width
    pub ic: usize,
    /// input height
    pub ih: usize,
    /// input width
    pub iw: usize,
    /// output channels
    pub oc: usize,
    /// output height
    pub oh: usize,
    /// output width
    pub ow: usize,
    /// kernel height, width
    pub kh: usize,
    /// kernel width
    pub kw: usize,
    /// strides
    pub sh: usize,
    /// stride w
    pub sw: usize,
    /// padding top, left
    pub pt: usize,
    /// padding left
    pub pl: usize,
    /// dilations
    pub dh: usize,
    /// dilation w
    pub dw: usize,
    /// groups
    pub group: usize,
}

impl ConvGeom {
    /// Geometry from verified operands.
    pub fn new(x: &TensorRef, y: &TensorRef, win: &Window, group: u32) -> ConvGeom {
        ConvGeom {
            n: x.shape[0] as usize,
            ic: x.shape[1] as usize,
            ih: x.shape[2] as usize,
            iw: x.shape[3] as usize,
            oc: y.shape[1] as usize,
            oh: y.shape[2] as usize,
            ow: y.shape[3] as usize,
            kh: win.kernel[0] as usize,
            kw: win.kernel[1] as usize,
            sh: win.stride[0] as usize,
            sw: win.stride[1] as usize,
            pt: win.pad[0] as usize,
            pl: win.pad[1] as usize,
            dh: win.dilation[0] as usize,
            dw: win.dilation[1] as usize,
            group: group.max(1) as usize,
        }
    }
}

/// Typed, aligned view of the start of a byte buffer (`len` elements).
fn typed<T: Copy>(buf: &mut [u8], len: usize) -> &mut [T] {
    // SAFETY: T is only instantiated with i16 / f32 (every bit pattern valid); align_to_mut
    // gives a correctly aligned middle part.
    let (_, mid, _) = unsafe { buf.align_to_mut::<T>() };
    &mut mid[..len]
}

/// Split the scratch area into the panel and the filter strip views.
fn carve<'s, T: Copy>(scratch: &'s mut [u8], sc: &ConvScratch) -> (&'s mut [T], &'s mut [T]) {
    let (a, b) = scratch.split_at_mut(sc.panel_bytes() + ALIGN_SLACK);
    let panel_len = sc.k_pad * sc.block;
    (typed::<T>(a, panel_len), typed::<T>(&mut b[..sc.strip_bytes() + ALIGN_SLACK], sc.k_pad * OC_STRIP))
}

/// Visit the reduction rows of one pixel block: for reduction index `k` (< K) and each pixel `j`
/// of the block, `f(k, j, Some(input index))` or `None` for padding.
#[inline(always)]
fn for_patch(g: &ConvGeom, x_base: usize, k: usize, p0: usize, pb: usize, mut f: impl FnMut(usize, Option<usize>)) {
    let khw = g.kh * g.kw;
    let ci = k / khw;
    let r = k % khw;
    let ky = r / g.kw;
    let kx = r % g.kw;
    let plane = x_base + ci * g.ih * g.iw;
    let mut oy = p0 / g.ow;
    let mut ox = p0 % g.ow;
    for j in 0..pb {
        let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
        let ix = (ox * g.sw + kx * g.dw) as isize - g.pl as isize;
        if iy >= 0 && ix >= 0 && (iy as usize) < g.ih && (ix as usize) < g.iw {
            f(j, Some(plane + iy as usize * g.iw + ix as usize));
        } else {
            f(j, None);
        }
        ox += 1;
        if ox == g.ow {
            ox = 0;
            oy += 1;
        }
    }
}

/// Operands of an integer convolution.
pub struct IntConv<'s> {
    /// input codes
    pub x: &'s [u8],
    /// input is u8
    pub x_unsigned: bool,
    /// input zero point (subtracted before the product)
    pub x_zp: i32,
    /// filter codes (packed strip layout for convs, `[ic][oc/group][kh][kw]` for deconvs)
    pub w: &'s [u8],
    /// filter is u8
    pub w_unsigned: bool,
    /// i32 bias per output channel
    pub bias: Option<&'s [u8]>,
}

/// Per-output-channel requantization of an int32 accumulator (bias already added).
pub trait Requant {
    /// Parameters of one output channel, looked up once per channel and pixel block.
    type Ch: Copy;
    /// Parameters of output channel `oc`.
    fn channel(&self, oc: usize) -> Self::Ch;
    /// The stored output byte for accumulator `acc`.
    fn apply(&self, ch: Self::Ch, acc: i64) -> u8;
}

/// Unroll the input patch of pixels `p0 .. p0 + pb` into the panel (layout
/// `[chunk][k/2][16 pixels][2]`, zero for padding and for pixels past `pb`).
#[allow(clippy::too_many_arguments)]
fn fill_panel_i16(
    a: &IntConv<'_>,
    g: &ConvGeom,
    x_base: usize,
    k_len: usize,
    kp2: usize,
    p0: usize,
    pb: usize,
    panel: &mut [i16],
) {
    let chunks = pb.div_ceil(PIXEL_STEP);
    let at = |j: usize, kk: usize, t: usize| ((j / PIXEL_STEP * kp2 + kk) * PIXEL_STEP + j % PIXEL_STEP) * 2 + t;
    let khw = g.kh * g.kw;
    for k in 0..kp2 * 2 {
        let (kk, t) = (k / 2, k % 2);
        if k >= k_len {
            for j in 0..chunks * PIXEL_STEP {
                panel[at(j, kk, t)] = 0;
            }
            continue;
        }
        let (ci, r) = (k / khw, k % khw);
        let (ky, kx) = (r / g.kw, r % g.kw);
        let plane = &a.x[x_base + ci * g.ih * g.iw..x_base + (ci + 1) * g.ih * g.iw];
        // valid output columns: 0 <= ox*sw + kx*dw - pl < iw
        let off = (kx * g.dw) as isize - g.pl as isize;
        let ox_lo = if off >= 0 { 0 } else { ((-off) as usize).div_ceil(g.sw) };
        let ox_hi = if (g.iw as isize) <= off { 0 } else { ((g.iw as isize - off) as usize).div_ceil(g.sw).min(g.ow) };
        let mut j = 0;
        let mut oy = p0 / g.ow;
        let mut ox0 = p0 % g.ow;
        while j < pb {
            let seg = (g.ow - ox0).min(pb - j);
            let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
            if iy < 0 || iy as usize >= g.ih {
                for q in 0..seg {
                    panel[at(j + q, kk, t)] = 0;
                }
            } else {
                let row = &plane[iy as usize * g.iw..(iy as usize + 1) * g.iw];
                for q in 0..seg {
                    let ox = ox0 + q;
                    panel[at(j + q, kk, t)] = if ox >= ox_lo && ox < ox_hi {
                        let ix = (ox * g.sw) as isize + off;
                        (code8(row[ix as usize], a.x_unsigned) - a.x_zp) as i16
                    } else {
                        0
                    };
                }
            }
            j += seg;
            ox0 = 0;
            oy += 1;
        }
        for j in pb..chunks * PIXEL_STEP {
            panel[at(j, kk, t)] = 0;
        }
    }
}

/// Integer conv: `acc = Σ w·(x − zp) + bias` per output, then `rq` gives the stored byte.
pub fn conv_int8<R: Requant>(a: &IntConv<'_>, y: &mut [u8], g: &ConvGeom, scratch: &mut [u8], rq: &R) {
    let icg = g.ic / g.group;
    let ocg = g.oc / g.group;
    let k_len = icg * g.kh * g.kw;
    let p_len = g.oh * g.ow;
    let sc = ConvScratch::new(k_len, p_len, true);
    let kp2 = sc.k_pad / 2;
    let (panel, strip) = carve::<i16>(scratch, &sc);
    let avx2 = has_avx2();
    for n in 0..g.n {
        for gi in 0..g.group {
            let x_base = (n * g.ic + gi * icg) * g.ih * g.iw;
            let mut p0 = 0;
            while p0 < p_len {
                let pb = sc.block.min(p_len - p0);
                let chunks = pb.div_ceil(PIXEL_STEP);
                fill_panel_i16(a, g, x_base, k_len, kp2, p0, pb, panel);
                let mut s0 = 0;
                while s0 < ocg {
                    let rows = OC_STRIP.min(ocg - s0);
                    // strip layout: [k/2][4 channels][2]
                    let strip_idx = gi * ocg.div_ceil(OC_STRIP) + s0 / OC_STRIP;
                    let packed = &a.w[strip_idx * strip.len()..(strip_idx + 1) * strip.len()];
                    if a.w_unsigned {
                        for (d, &b) in strip.iter_mut().zip(packed) {
                            *d = b as i16;
                        }
                    } else {
                        for (d, &b) in strip.iter_mut().zip(packed) {
                            *d = b as i8 as i16;
                        }
                    }
                    let mut chans = [(rq.channel(gi * ocg + s0), 0i64); OC_STRIP];
                    for (o, c) in chans.iter_mut().enumerate().take(rows) {
                        let oc = gi * ocg + s0 + o;
                        *c = (rq.channel(oc), a.bias.map(|b| load_i32(b, oc) as i64).unwrap_or(0));
                    }
                    for c in 0..chunks {
                        let pc = &panel[c * kp2 * PIXEL_STEP * 2..(c + 1) * kp2 * PIXEL_STEP * 2];
                        let acc = micro_i16(pc, strip, kp2, avx2);
                        let valid = PIXEL_STEP.min(pb - c * PIXEL_STEP);
                        for (o, acc_row) in acc.iter().enumerate().take(rows) {
                            let oc = gi * ocg + s0 + o;
                            let (ch, b) = chans[o];
                            let out = (n * g.oc + oc) * p_len + p0 + c * PIXEL_STEP;
                            for (dst, &v) in y[out..out + valid].iter_mut().zip(acc_row.iter()) {
                                *dst = rq.apply(ch, v as i64 + b);
                            }
                        }
                    }
                    s0 += OC_STRIP;
                }
                p0 += pb;
            }
        }
    }
}

/// True when the CPU has AVX2 (checked once with cpuid; no std needed).
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use core::sync::atomic::{AtomicU8, Ordering};
        static STATE: AtomicU8 = AtomicU8::new(0);
        match STATE.load(Ordering::Relaxed) {
            1 => return true,
            2 => return false,
            _ => {}
        }
        let l1 = core::arch::x86_64::__cpuid(1);
        let l7 = core::arch::x86_64::__cpuid_count(7, 0);
        let ok = (l1.ecx >> 27) & 1 == 1 && (l1.ecx >> 28) & 1 == 1 && (l7.ebx >> 5) & 1 == 1;
        STATE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
        ok
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// 4 channels x 16 pixels of `Σ_k strip[k][o] · panel[k][j]` over `kp2` pairs.
#[inline(always)]
fn micro_i16(panel: &[i16], strip: &[i16], kp2: usize, avx2: bool) -> [[i32; PIXEL_STEP]; OC_STRIP] {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: AVX2 presence checked; slices hold kp2*32 and kp2*8 elements.
        return unsafe { micro_i16_avx2(panel, strip, kp2) };
    }
    let _ = avx2;
    let mut acc = [[0i32; PIXEL_STEP]; OC_STRIP];
    for kk in 0..kp2 {
        let xs = &panel[kk * PIXEL_STEP * 2..(kk + 1) * PIXEL_STEP * 2];
        let ws = &strip[kk * OC_STRIP * 2..(kk + 1) * OC_STRIP * 2];
        for o in 0..OC_STRIP {
            let (w0, w1) = (ws[o * 2] as i32, ws[o * 2 + 1] as i32);
            for j in 0..PIXEL_STEP {
                acc[o][j] = acc[o][j].wrapping_add(xs[j * 2] as i32 * w0 + xs[j * 2 + 1] as i32 * w1);
            }
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn micro_i16_avx2(panel: &[i16], strip: &[i16], kp2: usize) -> [[i32; PIXEL_STEP]; OC_STRIP] {
    use core::arch::x86_64::*;
    assert!(panel.len() >= kp2 * PIXEL_STEP * 2 && strip.len() >= kp2 * OC_STRIP * 2);
    let mut acc = [_mm256_setzero_si256(); 8];
    let px = panel.as_ptr();
    let pw = strip.as_ptr() as *const i32;
    for kk in 0..kp2 {
        let x0 = _mm256_loadu_si256(px.add(kk * 32) as *const __m256i);
        let x1 = _mm256_loadu_si256(px.add(kk * 32 + 16) as *const __m256i);
        let w = pw.add(kk * 4);
        let w0 = _mm256_set1_epi32(w.read_unaligned());
        let w1 = _mm256_set1_epi32(w.add(1).read_unaligned());
        let w2 = _mm256_set1_epi32(w.add(2).read_unaligned());
        let w3 = _mm256_set1_epi32(w.add(3).read_unaligned());
        acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(x0, w0));
        acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(x1, w0));
        acc[2] = _mm256_add_epi32(acc[2], _mm256_madd_epi16(x0, w1));
        acc[3] = _mm256_add_epi32(acc[3], _mm256_madd_epi16(x1, w1));
        acc[4] = _mm256_add_epi32(acc[4], _mm256_madd_epi16(x0, w2));
        acc[5] = _mm256_add_epi32(acc[5], _mm256_madd_epi16(x1, w2));
        acc[6] = _mm256_add_epi32(acc[6], _mm256_madd_epi16(x0, w3));
        acc[7] = _mm256_add_epi32(acc[7], _mm256_madd_epi16(x1, w3));
    }
    let mut out = [[0i32; PIXEL_STEP]; OC_STRIP];
    for o in 0..OC_STRIP {
        _mm256_storeu_si256(out[o].as_mut_ptr() as *mut __m256i, acc[2 * o]);
        _mm256_storeu_si256(out[o].as_mut_ptr().add(8) as *mut __m256i, acc[2 * o + 1]);
    }
    out
}

/// Operands of a float convolution.
pub struct FloatConv<'s> {
    /// input
    pub x: &'s [u8],
    /// input type
    pub xt: DType,
    /// filter, OIHW
    pub w: &'s [u8],
    /// filter type
    pub wt: DType,
    /// bias and its type
    pub bias: Option<(&'s [u8], DType)>,
}

/// Float conv: f32 accumulation in reduction order, `+ bias`, optional ReLU, rounded to `yt`.
pub fn conv_float(a: &FloatConv<'_>, y: &mut [u8], yt: DType, g: &ConvGeom, scratch: &mut [u8], relu: bool, cv: bool) {
    let icg = g.ic / g.group;
    let ocg = g.oc / g.group;
    let k_len = icg * g.kh * g.kw;
    let p_len = g.oh * g.ow;
    let sc = ConvScratch::new(k_len, p_len, false);
    let (panel, strip) = carve::<f32>(scratch, &sc);
    let avx2 = has_avx2();
    for n in 0..g.n {
        for gi in 0..g.group {
            let x_base = (n * g.ic + gi * icg) * g.ih * g.iw;
            let mut p0 = 0;
            while p0 < p_len {
                let pb = sc.block.min(p_len - p0);
                let chunks = pb.div_ceil(PIXEL_STEP);
                // panel layout: [chunk][k][16 pixels]
                for k in 0..k_len {
                    let at = |j: usize| (j / PIXEL_STEP * k_len + k) * PIXEL_STEP + j % PIXEL_STEP;
                    for_patch(g, x_base, k, p0, pb, |j, src| {
                        panel[at(j)] = match src {
                            Some(i) => load_float(a.x, a.xt, i),
                            None => 0.0,
                        };
                    });
                    for j in pb..chunks * PIXEL_STEP {
                        panel[at(j)] = 0.0;
                    }
                }
                let mut s0 = 0;
                while s0 < ocg {
                    let rows = OC_STRIP.min(ocg - s0);
                    for o in 0..OC_STRIP {
                        let oc = gi * ocg + s0 + o;
                        for k in 0..k_len {
                            strip[k * OC_STRIP + o] =
                                if o < rows { load_float(a.w, a.wt, oc * k_len + k) } else { 0.0 };
                        }
                    }
                    for c in 0..chunks {
                        let pc = &panel[c * k_len * PIXEL_STEP..(c + 1) * k_len * PIXEL_STEP];
                        let acc = micro_f32(pc, strip, k_len, avx2);
                        let valid = PIXEL_STEP.min(pb - c * PIXEL_STEP);
                        for (o, acc_row) in acc.iter().enumerate().take(rows) {
                            let oc = gi * ocg + s0 + o;
                            let b = a.bias.map(|(b, bt)| load_float(b, bt, oc));
                            let out = (n * g.oc + oc) * p_len + p0 + c * PIXEL_STEP;
                            for (jj, &v) in acc_row.iter().enumerate().take(valid) {
                                let mut v = match b {
                                    Some(b) => v + b,
                                    None => v,
                                };
                                if relu && v < 0.0 {
                                    v = 0.0;
                                }
                                store_float(y, yt, out + jj, v, cv);
                            }
                        }
                    }
                    s0 += OC_STRIP;
                }
                p0 += pb;
            }
        }
    }
}

#[inline(always)]
fn micro_f32_body(panel: &[f32], strip: &[f32], k_len: usize) -> [[f32; PIXEL_STEP]; OC_STRIP] {
    let mut acc = [[0f32; PIXEL_STEP]; OC_STRIP];
    for k in 0..k_len {
        let xs: &[f32; PIXEL_STEP] =
            panel[k * PIXEL_STEP..(k + 1) * PIXEL_STEP].try_into().unwrap_or(&[0.0; PIXEL_STEP]);
        let ws = &strip[k * OC_STRIP..(k + 1) * OC_STRIP];
        for o in 0..OC_STRIP {
            let w = ws[o];
            for j in 0..PIXEL_STEP {
                acc[o][j] += xs[j] * w;
            }
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn micro_f32_avx2(panel: &[f32], strip: &[f32], k_len: usize) -> [[f32; PIXEL_STEP]; OC_STRIP] {
    // Same code compiled for AVX2 (no FMA contraction: results identical to the portable path).
    micro_f32_body(panel, strip, k_len)
}

#[inline(always)]
fn micro_f32(panel: &[f32], strip: &[f32], k_len: usize, avx2: bool) -> [[f32; PIXEL_STEP]; OC_STRIP] {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: AVX2 presence checked.
        return unsafe { micro_f32_avx2(panel, strip, k_len) };
    }
    let _ = avx2;
    micro_f32_body(panel, strip, k_len)
}

/// Transposed conv by gathering: output `(oy, ox)` takes input `(iy, ix)` with
/// `iy·sh = oy + pt − ky·dh`. Filter layout `[ic][oc/group][kh][kw]`. `term(x_index, w_index)`
/// accumulates one product; `finish(oc, out_index, acc)` stores the result.
pub fn deconv_gather<A: Copy>(
    g: &ConvGeom,
    zero: A,
    mut term: impl FnMut(A, usize, usize) -> A,
    mut finish: impl FnMut(usize, usize, A),
) {
    let icg = g.ic / g.group;
    let ocg = g.oc / g.group;
    for n in 0..g.n {
        for oc in 0..g.oc {
            let gi = oc / ocg;
            let o_in_g = oc % ocg;
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut acc = zero;
                    for ci in 0..icg {
                        let ic = gi * icg + ci;
                        for ky in 0..g.kh {
                            let ny = (oy + g.pt) as isize - (ky * g.dh) as isize;
                            if ny < 0 || !(ny as usize).is_multiple_of(g.sh) || ny as usize / g.sh >= g.ih {
                                continue;
                            }
                            let iy = ny as usize / g.sh;
                            for kx in 0..g.kw {
                                let nx = (ox + g.pl) as isize - (kx * g.dw) as isize;
                                if nx < 0 || !(nx as usize).is_multiple_of(g.sw) || nx as usize / g.sw >= g.iw {
                                    continue;
                                }
                                let ix = nx as usize / g.sw;
                                let xi = ((n * g.ic + ic) * g.ih + iy) * g.iw + ix;
                                let wi = ((ic * ocg + o_in_g) * g.kh + ky) * g.kw + kx;
                                acc = term(acc, xi, wi);
                            }
                        }
                    }
                    finish(oc, ((n * g.oc + oc) * g.oh + oy) * g.ow + ox, acc);
                }
            }
        }
    }
}
