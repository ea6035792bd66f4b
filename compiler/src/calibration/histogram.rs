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
    use rayon::prelude::*;
    let width = th / (bins - 1) as f32;
    const CHUNK: usize = 1 << 18;
    if data.len() >= 2 * CHUNK && bins <= 1 << 16 {
        let partial = data
            .par_chunks(CHUNK)
            .map(|c| {
                let mut local = vec![0u64; bins];
                count_into(&mut local, c, width, bins);
                local
            })
            .reduce(
                || vec![0u64; bins],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        counts[..bins].iter_mut().zip(&partial).for_each(|(x, y)| *x += y);
    } else {
        count_into(counts, data, width, bins);
    }
}

/// Sequential counting: bin = floor(|x| / width + 0.5) in f32 (the value is non-negative, so the
/// truncating cast is the floor), zeros and NaN skipped. Bin indices are computed in blocks (a
/// loop the compiler vectorises) before the scattered increments.
fn count_into(counts: &mut [u64], data: &[f32], width: f32, bins: usize) {
    const BLOCK: usize = 1024;
    let mut idx = [0f32; BLOCK];
    for block in data.chunks(BLOCK) {
        let idx = &mut idx[..block.len()];
        for (o, &x) in idx.iter_mut().zip(block) {
            *o = x.abs() / width + 0.5;
        }
        for (&v, &x) in idx.iter().zip(block) {
            // zeros and NaN never count
            if x != 0.0 && !x.is_nan() {
                let b = v as usize;
                if b < bins {
                    counts[b] += 1;
                }
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
    pub fn update(&mut self, data: &[f32]) {
        let mm = SampleMinMax::of(data);
        self.update_with(data, mm);
    }

    /// As [`TensorStats::update`] with the sample's min/max already known.
    pub fn update_with(&mut self, data: &[f32], mm: SampleMinMax) {
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
            Some(h) => combine(h, data, abs_value, self.bin_num),
        }
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
