//! Streaming per-tensor statistics: running min / max / abs-max and tpu-mlir's |x| histogram
//! with its order-dependent re-binning rule (`combine_histogram`, flow reference 2.3).

/// Above this many bins the old histogram is discarded and restarted (tpu-mlir's limit).
const MAX_COMBINED_BINS: usize = 8_000_000;

/// Histogram of |x| (zeros removed) over `[0, th]` with `bins` bins of width `th / (bins - 1)`;
/// bin index = `floor(|x| / width + 0.5)`.
#[derive(Debug, Clone, PartialEq)]
pub struct AbsHistogram {
    /// Counts per bin.
    pub counts: Vec<u64>,
    /// Upper end of the range (the abs-max when the layout was last chosen).
    pub th: f32,
}

impl AbsHistogram {
    /// Bin width as tpu-mlir computes it (`th / (bins - 1)`).
    pub fn width(&self) -> f32 {
        self.th / (self.counts.len() - 1) as f32
    }
}

/// Add the |x| histogram of `data` over `[0, th]` with `bins` bins into `counts` (which has at
/// least `bins` entries); values past the last bin are ignored as numpy's histogram does.
/// Large inputs are counted in parallel chunks (the counts do not depend on the split).
fn add_abs_histogram(counts: &mut [u64], data: &[f32], th: f32, bins: usize) {
    let width = th / (bins - 1) as f32;
    let (_, sample) = min_max_and_counts(data, width, bins);
    counts[..bins].iter_mut().zip(&sample).for_each(|(x, y)| *x += y);
}

/// Sequential counting: bin = floor(|x| / width + 0.5) in f32 (the value is non-negative, so the
/// truncating cast is the floor), zeros and NaN skipped (the reference the fast path is tested
/// against).
#[cfg(test)]
fn count_into(counts: &mut [u64], data: &[f32], width: f32, bins: usize) {
    for &x in data {
        if x != 0.0 && !x.is_nan() {
            let b = (x.abs() / width + 0.5) as usize;
            if b < bins {
                counts[b] += 1;
            }
        }
    }
}

/// Running statistics of one tensor over the samples seen so far.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorStats {
    /// Global minimum.
    pub min: f32,
    /// Global maximum.
    pub max: f32,
    /// Histogram of |x|; `None` while every sample was (nearly) all zero.
    pub hist: Option<AbsHistogram>,
    /// Number of bins of a fresh histogram (`--histogram_bin_num`).
    pub bin_num: usize,
    /// Samples folded in.
    pub samples: usize,
}

/// Per-sample summary of one tensor, computed in parallel before the in-order fold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleMinMax {
    /// Minimum of the sample.
    pub min: f32,
    /// Maximum of the sample.
    pub max: f32,
}

impl SampleMinMax {
    /// Min and max of a slice (NaN ignored; empty gives +inf / -inf).
    pub fn of(data: &[f32]) -> Self {
        // eight independent lanes so the loop vectorises
        let mut mn = [f32::INFINITY; 8];
        let mut mx = [f32::NEG_INFINITY; 8];
        let chunks = data.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for k in 0..8 {
                mn[k] = if c[k] < mn[k] { c[k] } else { mn[k] };
                mx[k] = if c[k] > mx[k] { c[k] } else { mx[k] };
            }
        }
        let mut lo = mn.iter().fold(f32::INFINITY, |a, &b| a.min(b));
        let mut hi = mx.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for &x in rest {
            lo = lo.min(x);
            hi = hi.max(x);
        }
        SampleMinMax { min: lo, max: hi }
    }
}

impl TensorStats {
    /// Empty statistics with `bin_num` histogram bins.
    pub fn new(bin_num: usize) -> Self {
        TensorStats { min: f32::INFINITY, max: f32::NEG_INFINITY, hist: None, bin_num: bin_num.max(2), samples: 0 }
    }

    /// max(|min|, |max|) so far.
    pub fn abs_max(&self) -> f32 {
        self.min.abs().max(self.max.abs())
    }

    /// Fold one sample in (must be called in dataset order: the re-binning depends on it).
    ///
    /// Once a histogram exists, the sample's min / max and its counts under the current layout
    /// are computed in one pass; the counts are kept when the layout does not change (the new
    /// abs-max fits), else the sample is histogrammed again under the grown layout.
    pub fn update(&mut self, data: &[f32]) {
        let (mm, counted) = match &self.hist {
            Some(h) => {
                let (mm, counts) = min_max_and_counts(data, h.width(), h.counts.len());
                (mm, Some(counts))
            }
            None => (par_min_max(data), None),
        };
        self.fold(data, mm, counted);
    }

    /// As [`TensorStats::update`] with the sample's min/max already known.
    pub fn update_with(&mut self, data: &[f32], mm: SampleMinMax) {
        self.fold(data, mm, None);
    }

    /// The in-order fold; `counted` are the sample's counts under the current layout, if known.
    fn fold(&mut self, data: &[f32], mm: SampleMinMax, counted: Option<Vec<u64>>) {
        self.samples += 1;
        self.min = self.min.min(mm.min);
        self.max = self.max.max(mm.max);
        let abs_value = self.abs_max();
        let sample_abs = mm.min.abs().max(mm.max.abs());
        if sample_abs.is_nan() || sample_abs < 1e-8 {
            // all (nearly) zero: tpu-mlir skips the histogram for this sample
            return;
        }
        match &mut self.hist {
            None => {
                let mut counts = vec![0u64; self.bin_num];
                add_abs_histogram(&mut counts, data, abs_value, self.bin_num);
                self.hist = Some(AbsHistogram { counts, th: abs_value });
            }
            Some(h) => match counted {
                Some(c) if abs_value <= h.th && c.len() == h.counts.len() => {
                    h.counts.iter_mut().zip(&c).for_each(|(x, y)| *x += y);
                }
                _ => combine(h, data, abs_value, self.bin_num),
            },
        }
    }
}

/// Elements per chunk of the min / max lanes (the parallel split; a multiple of 8).
const MINMAX_CHUNK: usize = 1 << 16;

/// Parallel min/max of a slice (chunks of [`MINMAX_CHUNK`], each with [`SampleMinMax::of`]).
pub(crate) fn par_min_max(data: &[f32]) -> SampleMinMax {
    use rayon::prelude::*;
    if data.len() < MINMAX_CHUNK {
        return SampleMinMax::of(data);
    }
    data.par_chunks(MINMAX_CHUNK).map(SampleMinMax::of).reduce(
        || SampleMinMax { min: f32::INFINITY, max: f32::NEG_INFINITY },
        |a, b| SampleMinMax { min: a.min.min(b.min), max: a.max.max(b.max) },
    )
}

/// Most count arrays a split count uses: consecutive elements go to interleaved arrays so that
/// runs of equal bins do not serialise on one counter. On the 33 tensors of tiny-yolov3 (one
/// image, tpu-mlir's dump) four arrays count in 0.45 ns per element against 0.58 for two
/// (one core, best of 50; activations crowd a few dozen low bins, so equal bins recur often).
const WAYS: usize = 4;

/// Count arrays for `bins` bins: [`WAYS`] while their 16-bit counters fit the L1 cache with
/// room to spare (up to 4096 bins), two up to 16384 bins, else one.
fn ways_for(bins: usize) -> usize {
    match bins {
        0..=4096 => WAYS,
        4097..=16384 => 2,
        _ => 1,
    }
}

/// Min / max of `data` (as [`par_min_max`]) and its |x| counts with bin width `width` over
/// `bins` bins (as [`add_abs_histogram`]), in one pass over the data.
fn min_max_and_counts(data: &[f32], width: f32, bins: usize) -> (SampleMinMax, Vec<u64>) {
    use rayon::prelude::*;
    let ways = ways_for(bins);
    if data.len() < MINMAX_CHUNK || bins > 1 << 20 {
        let mut counts = vec![0u32; ways * (bins + 1)];
        let mut mm = SampleMinMax { min: f32::INFINITY, max: f32::NEG_INFINITY };
        for c in data.chunks(MINMAX_CHUNK) {
            let m = min_max_count_chunk(c, width, bins, ways, &mut counts);
            mm = SampleMinMax { min: mm.min.min(m.min), max: mm.max.max(m.max) };
        }
        return (mm, fold_ways(&counts, bins, ways));
    }
    let empty = || (SampleMinMax { min: f32::INFINITY, max: f32::NEG_INFINITY }, vec![0u32; ways * (bins + 1)]);
    let (mm, counts) = data
        .par_chunks(MINMAX_CHUNK)
        .fold(empty, |(mm, mut counts), c| {
            let m = min_max_count_chunk(c, width, bins, ways, &mut counts);
            (SampleMinMax { min: mm.min.min(m.min), max: mm.max.max(m.max) }, counts)
        })
        .reduce(empty, |(a, mut ca), (b, cb)| {
            ca.iter_mut().zip(&cb).for_each(|(x, y)| *x += y);
            (SampleMinMax { min: a.min.min(b.min), max: a.max.max(b.max) }, ca)
        });
    (mm, fold_ways(&counts, bins, ways))
}

/// Sum the `ways` interleaved count arrays (of `bins + 1` entries) into one of `bins`.
fn fold_ways(counts: &[u32], bins: usize, ways: usize) -> Vec<u64> {
    let stride = bins + 1;
    let mut out: Vec<u64> = counts[..bins].iter().map(|&c| c as u64).collect();
    for w in 1..ways {
        out.iter_mut().zip(&counts[w * stride..w * stride + bins]).for_each(|(o, &c)| *o += c as u64);
    }
    out
}

/// Elements a chunk split over two arrays may have to be counted in 16-bit counters (each
/// array then gets at most `u16::MAX` values; four arrays get fewer).
const NARROW_COUNT_MAX: usize = 2 * u16::MAX as usize;

thread_local! {
    /// The 16-bit count arrays of the last chunk this thread counted (kept for the next one).
    static NARROW_COUNTS: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One chunk: its min / max with the lanes of [`SampleMinMax::of`] (same result bit for bit),
/// and its counts added into `counts` (`ways` arrays of `bins + 1`, element `j` into array
/// `j % ways`; 1 or [`WAYS`]). A split chunk is counted in 16-bit counters first (half the
/// cache lines for the scattered increments).
fn min_max_count_chunk(data: &[f32], width: f32, bins: usize, ways: usize, counts: &mut [u32]) -> SampleMinMax {
    assert!(counts.len() >= ways * (bins + 1), "count arrays too short");
    if ways > 1 && data.len() <= NARROW_COUNT_MAX {
        return NARROW_COUNTS.with(|cell| {
            let mut narrow = cell.borrow_mut();
            narrow.clear();
            narrow.resize(ways * (bins + 1), 0);
            let mm = count_chunk(data, width, bins, ways, narrow.as_mut_slice());
            counts.iter_mut().zip(narrow.iter()).for_each(|(c, &n)| *c += n as u32);
            mm
        });
    }
    count_chunk(data, width, bins, ways, counts)
}

/// [`min_max_count_into`] compiled for AVX2 when the CPU has it (the hot loop must sit in the
/// `target_feature` function itself: a closure inside one is compiled without the feature).
fn count_chunk<C: Counter>(data: &[f32], width: f32, bins: usize, ways: usize, counts: &mut [C]) -> SampleMinMax {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { count_chunk_avx2(data, width, bins, ways, counts) };
        }
    }
    min_max_count_into(data, width, bins, ways, counts)
}

/// [`min_max_count_into`] with AVX2 (same IEEE results, wider vectors).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn count_chunk_avx2<C: Counter>(
    data: &[f32],
    width: f32,
    bins: usize,
    ways: usize,
    counts: &mut [C],
) -> SampleMinMax {
    min_max_count_into(data, width, bins, ways, counts)
}

/// Min / max of `data` and its counts added into `counts` (16 or 32-bit counters; the caller
/// makes sure they cannot overflow): per block, one loop computes the min / max lanes and the
/// bins, then the bins are counted.
#[inline(always)]
fn min_max_count_into<C: Counter>(
    data: &[f32],
    width: f32,
    bins: usize,
    ways: usize,
    counts: &mut [C],
) -> SampleMinMax {
    const BLOCK: usize = 1024;
    let stride = bins + 1;
    assert!(counts.len() >= ways * stride && matches!(ways, 1 | 2 | WAYS), "count arrays too short");
    let mut mn = [f32::INFINITY; 8];
    let mut mx = [f32::NEG_INFINITY; 8];
    let mut idx = [0u32; BLOCK];
    let whole = data.len() / 8 * 8;
    for block in data[..whole].chunks(BLOCK) {
        let idx = &mut idx[..block.len()];
        for (c, o) in block.chunks_exact(8).zip(idx.chunks_exact_mut(8)) {
            for k in 0..8 {
                mn[k] = if c[k] < mn[k] { c[k] } else { mn[k] };
                mx[k] = if c[k] > mx[k] { c[k] } else { mx[k] };
                o[k] = bin_of(c[k], width, bins);
            }
        }
        count_bins(idx, stride, ways, counts);
    }
    let mut lo = mn.iter().fold(f32::INFINITY, |a, &b| a.min(b));
    let mut hi = mx.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let rest = &data[whole..];
    for (o, &x) in idx.iter_mut().zip(rest) {
        lo = lo.min(x);
        hi = hi.max(x);
        *o = bin_of(x, width, bins);
    }
    count_bins(&idx[..rest.len()], stride, ways, counts);
    SampleMinMax { min: lo, max: hi }
}

/// The bin of `x` as [`count_into`] computes it, `floor(|x| / width + 0.5)`, branch-free: zeros,
/// NaN and everything at or past `bins` go to the extra bin `bins` (ignored).
#[inline(always)]
fn bin_of(x: f32, width: f32, bins: usize) -> u32 {
    // exact: bins < 2^24
    let v = (x.abs() / width + 0.5).min(bins as f32);
    // SAFETY: v is NaN-free (min with a number gives the number) and in [0.5, bins], which
    // fits an i32.
    let i = unsafe { v.to_int_unchecked::<i32>() } as u32;
    if x == 0.0 {
        bins as u32
    } else {
        i
    }
}

/// Count bins (each at most `bins = stride - 1`): element `j` into array `j % ways`.
#[inline(always)]
fn count_bins<C: Counter>(idx: &[u32], stride: usize, ways: usize, counts: &mut [C]) {
    match ways {
        WAYS => count_interleaved::<C, WAYS>(idx, stride, counts),
        2 => count_interleaved::<C, 2>(idx, stride, counts),
        _ => {
            for &i in idx {
                counts[i as usize].bump();
            }
        }
    }
}

/// Count bins over `W` interleaved arrays of `stride` counters: element `j` into array `j % W`.
#[inline(always)]
fn count_interleaved<C: Counter, const W: usize>(idx: &[u32], stride: usize, counts: &mut [C]) {
    assert!(counts.len() >= W * stride, "count arrays too short");
    let c = counts.as_mut_ptr();
    let groups = idx.chunks_exact(W);
    let rest = groups.remainder();
    for q in groups {
        for (k, &b) in q.iter().enumerate() {
            // SAFETY: b < stride (the caller's bins), so k·stride + b < W·stride <= counts.len()
            // (asserted above).
            unsafe { (*c.add(k * stride + b as usize)).bump() };
        }
    }
    for (k, &b) in rest.iter().enumerate() {
        counts[k * stride + b as usize].bump();
    }
}

/// A histogram counter (16 or 32 bits).
trait Counter: Copy {
    /// Add one.
    fn bump(&mut self);
}

impl Counter for u16 {
    #[inline(always)]
    fn bump(&mut self) {
        *self += 1;
    }
}

impl Counter for u32 {
    #[inline(always)]
    fn bump(&mut self) {
        *self += 1;
    }
}

/// Python / numpy floor division of float32 values (`a // b`, via fmod as `npy_divmodf` does).
fn py_floor_div(a: f32, b: f32) -> f32 {
    let m = a % b; // C fmod
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        div -= 1.0;
    }
    if div != 0.0 {
        let f = div.floor();
        if div - f > 0.5 {
            f + 1.0
        } else {
            f
        }
    } else {
        0.0
    }
}

/// tpu-mlir's `combine_histogram`: same layout if the new abs-max fits, else grow by whole
/// old steps (`th / nbins`) and add the old counts into the first bins.
fn combine(h: &mut AbsHistogram, data: &[f32], new_th: f32, bin_num: usize) {
    let old_th = h.th;
    let old_bins = h.counts.len();
    if new_th <= old_th {
        add_abs_histogram(&mut h.counts, data, old_th, old_bins);
        return;
    }
    // f32 arithmetic throughout, as numpy does on float32 scalars
    let old_step = old_th / old_bins as f32;
    let k = py_floor_div(new_th - old_th, old_step) as usize + 1;
    let new_bins = old_bins + k;
    if new_bins > MAX_COMBINED_BINS {
        let mut counts = vec![0u64; bin_num];
        add_abs_histogram(&mut counts, data, new_th, bin_num);
        *h = AbsHistogram { counts, th: new_th };
        return;
    }
    let th = k as f32 * old_step + old_th;
    let mut counts = vec![0u64; new_bins];
    add_abs_histogram(&mut counts, data, th, new_bins);
    for (c, o) in counts.iter_mut().zip(h.counts.iter()) {
        *c += o;
    }
    *h = AbsHistogram { counts, th };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_bins_by_rounding_and_drops_zeros() {
        let mut s = TensorStats::new(5);
        // abs max 4 -> width 1; 0 is dropped, 0.4 -> bin 0, 0.5 -> bin 1, -2.6 -> bin 3
        s.update(&[0.0, 0.4, 0.5, -2.6, 4.0]);
        let h = s.hist.as_ref().unwrap();
        assert_eq!(h.counts, vec![1, 1, 0, 1, 1]);
        assert_eq!(h.width(), 1.0);
        assert_eq!((s.min, s.max), (-2.6, 4.0));
    }

    #[test]
    fn fast_counting_equals_the_reference_rule() {
        let mut data: Vec<f32> = (0..300_001u64).map(|i| ((i * 7919) % 100_003) as f32 / 977.0 - 51.0).collect();
        data.extend([0.0, -0.0, f32::NAN, f32::INFINITY, -f32::INFINITY, 1e30, 2.5, -2.5]);
        for (width, bins) in [(0.05f32, 2048usize), (0.0123, 5000), (0.3, 20_000), (0.001, 2_000_000)] {
            let mut want = vec![0u64; bins];
            count_into(&mut want, &data, width, bins);
            let (mm, got) = min_max_and_counts(&data, width, bins);
            assert_eq!(got, want, "width {width} bins {bins}");
            assert_eq!((mm.min, mm.max), (f32::NEG_INFINITY, f32::INFINITY));
            let (mm, _) = min_max_and_counts(&data[..300_001], width, bins);
            assert_eq!(mm, par_min_max(&data[..300_001]));
            assert_eq!(mm, SampleMinMax::of(&data[..300_001]));
        }
    }

    /// One bin taking every value (the 16-bit counters' worst case): through the parallel
    /// chunks, and one chunk straight at the 16-bit limit (u16::MAX per array) and just past it
    /// (32-bit counters).
    #[test]
    fn counting_one_crowded_bin_does_not_overflow() {
        for len in [65_535usize, 65_536, 65_537, 300_001] {
            let data = vec![-1.25f32; len];
            let (mm, got) = min_max_and_counts(&data, 0.05, 2048);
            assert_eq!(got[25], len as u64, "{len} values");
            assert_eq!(got.iter().sum::<u64>(), len as u64);
            assert_eq!((mm.min, mm.max), (-1.25, -1.25));
        }
        for ways in [2, WAYS] {
            for len in [NARROW_COUNT_MAX - 1, NARROW_COUNT_MAX, NARROW_COUNT_MAX + 4] {
                let data = vec![-1.25f32; len];
                let mut counts = vec![0u32; ways * 2049];
                let mm = min_max_count_chunk(&data, 0.05, 2048, ways, &mut counts);
                assert_eq!(fold_ways(&counts, 2048, ways)[25], len as u64, "{len} values in one chunk, {ways} ways");
                assert_eq!((mm.min, mm.max), (-1.25, -1.25));
            }
        }
        // every count-array choice gives the reference counts
        let data: Vec<f32> = (0..70_001u64).map(|i| ((i * 7919) % 10_007) as f32 / 97.0 - 51.0).collect();
        for (bins, ways) in [(2048usize, WAYS), (4096, WAYS), (4097, 2), (16_384, 2), (16_385, 1)] {
            assert_eq!(ways_for(bins), ways, "{bins} bins");
            let width = 52.0 / (bins - 1) as f32;
            let mut want = vec![0u64; bins];
            count_into(&mut want, &data, width, bins);
            assert_eq!(min_max_and_counts(&data, width, bins).1, want, "{bins} bins");
        }
    }

    #[test]
    fn fused_update_equals_the_two_pass_update() {
        let sample = |s: usize| -> Vec<f32> {
            (0..200_000usize)
                .map(|j| (((j * 7919 + s * 104_729) % 100_003) as f32 / 1000.0 - 50.0) * (1.0 + s as f32 * 0.1))
                .collect()
        };
        let (mut fused, mut two_pass) = (TensorStats::new(2048), TensorStats::new(2048));
        for s in [0usize, 3, 1, 5, 2, 5, 0] {
            let d = sample(s);
            fused.update(&d);
            two_pass.update_with(&d, SampleMinMax::of(&d));
        }
        assert_eq!(fused, two_pass);
        assert!(fused.hist.as_ref().unwrap().counts.len() > 2048);
    }

    #[test]
    fn all_zero_samples_have_no_histogram() {
        let mut s = TensorStats::new(2048);
        s.update(&[0.0, 0.0]);
        assert!(s.hist.is_none());
        assert_eq!(s.abs_max(), 0.0);
    }

    #[test]
    fn growth_follows_combine_histogram() {
        // Values checked against tpu-mlir's combine_histogram re-run in numpy.
        let mut s = TensorStats::new(8);
        s.update(&[7.0, 1.0, 3.5]); // th 7, width 1: bins 7, 1, 4 (3.5+0.5)
        assert_eq!(s.hist.as_ref().unwrap().counts, vec![0, 1, 0, 0, 1, 0, 0, 1]);
        s.update(&[2.0]); // fits: same layout
        assert_eq!(s.hist.as_ref().unwrap().counts, vec![0, 1, 1, 0, 1, 0, 0, 1]);
        // new abs max 10: old_step = 7/8 = 0.875, k = int(3 // 0.875 + 1) = 4, 12 bins,
        // th = 4*0.875 + 7 = 10.5, width = 10.5/11
        s.update(&[10.0, 0.9]);
        let h = s.hist.as_ref().unwrap();
        assert_eq!(h.counts.len(), 12);
        assert_eq!(h.th, 10.5);
        // 10/(10.5/11)+0.5 = 10.976 -> 10 ; 0.9/(0.954545)+0.5 = 1.44 -> 1
        assert_eq!(h.counts, vec![0, 2, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0]);
    }
}
