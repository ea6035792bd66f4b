//! KL-divergence threshold of one |x| histogram, as tpu-mlir's `calibration_math.so`
//! (`kl_diversity_hist`) and `find_threshold` compute it (flow reference 2.4).

/// Candidate granularity: the quantized distribution has 128 levels (int8 magnitude).
pub const KL_BINS: usize = 128;

/// Histograms longer than this are halved (adjacent bins merged) before the search.
const MAX_KL_HIST: usize = 64 * 2048;

/// Threshold of a histogram of |x| with bin `width`: pads to a multiple of 128, merges bin pairs
/// while longer than 131072, then picks the candidate `i = 128k` with the smallest KL divergence
/// and returns `width * 128 * (m + 1)` in f32 arithmetic.
pub fn kl_threshold(hist: &[u64], width: f32) -> f32 {
    let mut h: Vec<u64> = hist.to_vec();
    let mut width = width;
    pad_to_multiple(&mut h, KL_BINS);
    while h.len() > MAX_KL_HIST {
        h = h.chunks(2).map(|c| c.iter().sum()).collect();
        pad_to_multiple(&mut h, KL_BINS);
        width *= 2.0;
    }
    let divs = kl_divergences(&h, KL_BINS);
    let m = first_min_index(&divs);
    width * (m as f32 + 1.0) * KL_BINS as f32
}

fn pad_to_multiple(h: &mut Vec<u64>, m: usize) {
    let rem = h.len() % m;
    if rem != 0 || h.is_empty() {
        h.resize(h.len() + (m - rem), 0);
    }
}

/// First index of the minimum (strict `>` scan, as the C code; NaN never wins).
fn first_min_index(v: &[f32]) -> usize {
    let mut best = 0;
    for i in 1..v.len() {
        if v[best] > v[i] {
            best = i;
        }
    }
    best
}

/// KL divergence for every candidate `i = bins, 2*bins, ..., len` (len a multiple of `bins`),
/// mirroring the C arithmetic: P, Q and their sums in f32, each term's log10 in f64 and the
/// running sum rounded to f32 after every term.
pub fn kl_divergences(hist: &[u64], bins: usize) -> Vec<f32> {
    let n = hist.len();
    let count = hist.iter().sum::<u64>() as f32;
    let candidates: Vec<usize> = (1..=n / bins).map(|k| k * bins).collect();
    use rayon::prelude::*;
    candidates.par_iter().map(|&i| kl_for_candidate(hist, i, bins, count)).collect()
}

fn kl_for_candidate(hist: &[u64], i: usize, bins: usize, count: f32) -> f32 {
    // P: the first i bins with the tail folded into bin i-1, normalised by the total count.
    let mut p = vec![0f32; i];
    for (j, &c) in hist.iter().enumerate() {
        p[j.min(i - 1)] += c as f32;
    }
    for x in p.iter_mut() {
        *x /= count;
    }
    // Q: 128 groups of i/128 bins; each non-empty bin gets the group's mean over non-empty bins.
    let mut sum = 0f32;
    for &c in &hist[..i] {
        sum += c as f32;
    }
    let expand = i / bins;
    let mut q = vec![0f32; i];
    for g in 0..bins {
        let group = &hist[g * expand..(g + 1) * expand];
        let mut sum_bin = 0f32;
        let mut nz = 0f32;
        for &c in group {
            sum_bin += c as f32;
            nz += if c > 0 { 1.0 } else { 0.0 };
        }
        let nz = if nz == 0.0 { 1.0 } else { nz };
        let base = sum_bin / nz / sum;
        for (k, &c) in group.iter().enumerate() {
            q[g * expand + k] = if c > 0 { base } else { 0.0 };
        }
    }
    let mut kl = 0f32;
    for j in 0..i {
        let pj = p[j] as f64;
        let term = pj * ((pj + 1e-30).log10() - (q[j] as f64 + 1e-30).log10());
        kl = (kl as f64 + term) as f32;
    }
    kl
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic synthetic histogram: a decaying bulk plus a sparse long tail.
    fn synthetic(n: usize) -> Vec<u64> {
        (0..n)
            .map(|j| {
                let bulk = (1.0e6 * (-(j as f64) / 60.0).exp()) as u64;
                let tail = if j % 97 == 3 { 5 } else { 0 };
                bulk + tail
            })
            .collect()
    }

    // Golden values computed once with a Python/numpy re-implementation of flow reference 2.4
    // (float32 P/Q and sums, float64 log10 terms accumulated into a float32), see the report.
    #[test]
    fn kl_matches_python_reimplementation() {
        let h = synthetic(2048);
        let width = 0.01f32;
        let divs = kl_divergences(&h, KL_BINS);
        assert_eq!(divs.len(), 16);
        let th = kl_threshold(&h, width);
        assert_eq!(th, PY_TH_2048);
        for (d, e) in divs.iter().zip(PY_KL_2048.iter()) {
            assert_eq!(*d, *e as f32);
        }
    }

    #[test]
    fn long_histograms_are_padded_and_halved() {
        // 140000 bins -> padded to 140032 -> halved to 70016 (547 candidates), width doubled.
        let h = synthetic(140_000);
        let th = kl_threshold(&h, 0.001);
        assert_eq!(th, PY_TH_LONG);
    }

    #[test]
    fn a_single_spike_picks_the_first_candidate() {
        let mut h = vec![0u64; 2048];
        h[10] = 1000;
        assert_eq!(kl_threshold(&h, 0.5), 0.5 * 128.0);
    }

    const PY_TH_2048: f32 = 6.399999618530273_f64 as f32;
    const PY_TH_LONG: f32 = 0.5120000243186951_f64 as f32;
    const PY_KL_2048: [f64; 16] = [
        0.15982533991336823,
        0.019236722961068153,
        0.0023108727764338255,
        0.0003406675241421908,
        0.00015044842439237982,
        0.00017957082309294492,
        0.00026419988716952503,
        0.0003375541418790817,
        0.00042093158117495477,
        0.0005123558803461492,
        0.0006157843163236976,
        0.0007292177178896964,
        0.0008507012971676886,
        0.000984117155894637,
        0.001127550145611167,
        0.001279050367884338,
    ];
}
