//! The threshold tuner's early exit for 3x3 convolutions: every candidate threshold is
//! evaluated a band of output rows at a time, and a candidate is dropped as soon as a lower
//! bound of its distance exceeds the distance of a candidate already evaluated whole. The first
//! round takes an eighth of the bands of every sample for every candidate, the most promising
//! one is then completed, and every later round advances the others by a few bands of single
//! samples ([`unit_schedule`]), so that each is dropped soon after its bound passes the best.
//!
//! A candidate's distance is the mean over the samples of `sqrt(Σ (out − ref)²) / l1`; with
//! only some rows computed the sum is smaller, so the same formula over the rows done so far is
//! a lower bound. A dropped candidate is worse than a complete one, so it cannot be the one the
//! tuner picks (the first candidate with the smallest distance): the pick is the same as
//! evaluating every candidate whole. Every output value is computed exactly as the whole
//! convolution computes it ([`Interpreter::eval_conv_strips`]); only the order in which the
//! squared differences are added differs (by bands), which moves a distance by float rounding.

use super::kernels::{quantize_slice, squared_distance};
use super::tune::SampleView;
use super::CalibError;
use crate::interp::{Interpreter, Tensor};
use rayon::prelude::*;

/// Output rows of one Winograd tile (the strips are cut at tile rows).
const TILE_ROWS: usize = 4;
/// Convolutions with fewer bands are evaluated whole: with so few rounds a candidate is rarely
/// dropped early, and each round streams the filter once more. Four (13x13 maps) still gains:
/// tiny-yolov3's three 13x13 3x3 convolutions tuned 13 % faster in alternating runs.
pub(crate) const MIN_BANDS: usize = 4;
/// About this many bands a convolution is cut into (fewer, larger strips on tall maps: fewer
/// calls and less overlap between the strips).
const TARGET_BANDS: usize = 16;
/// About this many rounds follow the first one (each advances every remaining candidate by
/// 1/`LATER_ROUNDS` of its units, at least one).
const LATER_ROUNDS: usize = 24;
/// The smallest stacked call of the early exit, in bytes of strips ([`group_bytes`]).
const MIN_STACK_BYTES: usize = 2 << 20;
/// The largest one the tuner allows (tiny-yolov3's 512 -> 1024 convolution at 13x13, a 75 MB
/// transformed filter, tuned no faster with 32 MB on a quiet machine).
pub(crate) const MAX_STACK_BYTES: usize = 16 << 20;
/// Relative slack of the drop test, far above the rounding of sums taken in another order.
const SLACK: f64 = 1e-9;

/// The shapes of one convolution's input and output (one sample; `n` images).
#[derive(Debug, Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oc: usize,
    oh: usize,
    ow: usize,
    /// Rows of zero padding above the input.
    pad_top: usize,
    /// Tile rows per band (one strip).
    band: usize,
    /// Bands of the output (`oh / (4·band)` rounded up).
    bands: usize,
}

impl Geometry {
    /// Output rows of one strip.
    fn out_rows(&self) -> usize {
        TILE_ROWS * self.band
    }

    /// Input rows of one strip.
    fn in_rows(&self) -> usize {
        self.out_rows() + 2
    }
}

/// One strip of a stacked call: candidate, sample, image of the sample, band.
#[derive(Debug, Clone, Copy)]
struct Entry {
    cand: usize,
    sample: usize,
    image: usize,
    band: usize,
}

/// A candidate's squared distances so far: `[sample][image · bands + band]`, zero where not
/// computed yet (sums over all slots in slot order, so a complete candidate's total does not
/// depend on the order its rows were computed in).
#[derive(Debug, Clone)]
struct Partial {
    d2: Vec<Vec<f64>>,
    /// Units ([`Unit`]) evaluated so far.
    units_done: usize,
}

impl Partial {
    /// The tuner's distance over the rows computed so far (a lower bound until complete).
    fn distance(&self, samples: &[SampleView<'_>]) -> f64 {
        let total: f64 = self.d2.iter().zip(samples).map(|(d2, s)| d2.iter().sum::<f64>().sqrt() / s.l1).sum();
        total / samples.len().max(1) as f64
    }
}

/// The geometry of op `op_index`'s first operand and result in these samples, when every sample
/// has the same shapes and the convolution has enough bands to gain from the early exit.
fn geometry(dq: &Interpreter<'_>, op_index: usize, samples: &[SampleView<'_>]) -> Option<Geometry> {
    let first = samples.first()?;
    let x = first.operands.first().copied().flatten()?;
    let (xs, rs) = (x.shape(), first.reference_shape.as_slice());
    if xs.len() != 4 || rs.len() != 4 || xs[0] != rs[0] {
        return None;
    }
    let pads = dq.conv_pads(op_index)?;
    let tile_rows = rs[2].div_ceil(TILE_ROWS);
    let band = (tile_rows / TARGET_BANDS).max(1);
    let g = Geometry {
        n: xs[0],
        c: xs[1],
        h: xs[2],
        w: xs[3],
        oc: rs[1],
        oh: rs[2],
        ow: rs[3],
        pad_top: pads[0],
        band,
        bands: tile_rows.div_ceil(band),
    };
    let same = samples.iter().all(|s| {
        s.operands.first().copied().flatten().is_some_and(|x| x.shape() == xs)
            && s.reference_shape == first.reference_shape
            && s.l1.is_finite()
            && s.l1 > 0.0
    });
    (same && g.bands >= MIN_BANDS && g.h + pads[0] + pads[2] == g.oh + 2).then_some(g)
}

/// The bands in the order they are evaluated: spread over the image (0, 1/2, 1/4, 3/4, ... of
/// the height, the bit-reversed order), so that the first ones already sample every part of it.
fn band_order(bands: usize) -> Vec<usize> {
    let span = bands.next_power_of_two();
    let bits = span.trailing_zeros();
    let reversed = |i: usize| if bits == 0 { 0 } else { i.reverse_bits() >> (usize::BITS - bits) };
    (0..span).map(reversed).filter(|&r| r < bands).collect()
}

/// What the early exit found for one convolution.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EarlyExit {
    /// Per candidate its distance, `None` when dropped.
    pub distances: Vec<Option<f64>>,
    /// Bands evaluated, over all candidates.
    pub bands_done: usize,
    /// Bands of evaluating every candidate whole.
    pub bands_whole: usize,
}

/// Mean tuner distance of each candidate threshold of `ths` on a 3x3 stride-1 convolution, `None`
/// for the candidates dropped on the way (each worse than a complete one); `Ok(None)` when the
/// convolution does not suit the early exit (not 3x3 stride 1, or fewer than [`MIN_BANDS`]
/// bands) and the caller evaluates the candidates whole. `max_stack_bytes` caps the strips of
/// one stacked call ([`group_bytes`]).
pub(crate) fn candidate_distances(
    dq: &Interpreter<'_>,
    op_index: usize,
    samples: &[SampleView<'_>],
    ths: &[f64],
    max_stack_bytes: usize,
) -> Result<Option<EarlyExit>, CalibError> {
    let Some(g) = geometry(dq, op_index, samples) else { return Ok(None) };
    let stack_bytes = group_bytes(&g, max_stack_bytes);
    let inputs: Vec<std::borrow::Cow<'_, [f32]>> =
        samples.iter().map(|s| s.operands[0].map(super::tune::elements).unwrap_or_default()).collect();
    let slots = g.n * g.bands;
    let mut partial = vec![Partial { d2: vec![vec![0.0; slots]; samples.len()], units_done: 0 }; ths.len()];
    let (units, first, step) = unit_schedule(g.bands, samples.len());
    let run = |cands: &[usize], round: &[Unit], partial: &mut [Partial]| -> Result<(), CalibError> {
        let entries = round_entries(cands, g.n, round);
        let d2 = strip_distances(dq, op_index, &g, samples, &inputs, ths, &entries, stack_bytes)?;
        for (e, d) in entries.iter().zip(d2) {
            partial[e.cand].d2[e.sample][e.image * g.bands + e.band] = d;
        }
        for &c in cands {
            partial[c].units_done += round.len();
        }
        Ok(())
    };
    // round one for every candidate; then the most promising one whole, as the first bound
    let all: Vec<usize> = (0..ths.len()).collect();
    run(&all, &units[..first], &mut partial)?;
    let bounds: Vec<f64> = partial.iter().map(|p| p.distance(samples)).collect();
    let lead = (0..ths.len()).min_by(|&a, &b| bounds[a].total_cmp(&bounds[b])).unwrap_or(0);
    run(&[lead], &units[first..], &mut partial)?;
    let mut best = partial[lead].distance(samples);
    let mut dropped = vec![false; ths.len()];
    let mut at = first;
    while at < units.len() {
        let mut alive = Vec::new();
        for c in 0..ths.len() {
            if dropped[c] || partial[c].units_done == units.len() {
                continue;
            }
            if partial[c].distance(samples) > best * (1.0 + SLACK) {
                dropped[c] = true;
            } else {
                alive.push(c);
            }
        }
        if alive.is_empty() {
            break;
        }
        let end = (at + step).min(units.len());
        run(&alive, &units[at..end], &mut partial)?;
        at = end;
        for &c in &alive {
            if partial[c].units_done == units.len() {
                best = best.min(partial[c].distance(samples));
            }
        }
    }
    let distances = partial
        .iter()
        .zip(&dropped)
        .map(|(p, &gone)| (!gone && p.units_done == units.len()).then(|| p.distance(samples)))
        .collect();
    // counted in bands of every sample, as the statistics report them
    let units_done: usize = partial.iter().map(|p| p.units_done).sum();
    let bands_done = (units_done + samples.len() / 2) / samples.len().max(1);
    Ok(Some(EarlyExit { distances, bands_done, bands_whole: ths.len() * g.bands }))
}

/// Bytes of the strips of one stacked call: about the size of the convolution's transformed
/// filter, which every call streams once per block of tiles (a large filter wants many strips
/// per call), but at least [`MIN_STACK_BYTES`] and at most `max` (a small filter gains from
/// groups whose input, transformed input and result stay in the caches between the phases:
/// tiny-yolov3's 3 -> 16 convolution at 416x416 and its 16 -> 32 one at 208x208 tuned 1.3x and
/// 2x faster with 2 MB than with 16 MB groups, its 512 -> 1024 one at 13x13 slower).
fn group_bytes(g: &Geometry, max: usize) -> usize {
    let filter = 4 * 36 * g.c * g.oc; // 6x6 transformed points per channel pair, in f32
    filter.clamp(MIN_STACK_BYTES.min(max), max)
}

/// One band of one sample (every image of it): what the rounds after the first advance each
/// remaining candidate by, so that a candidate is dropped as soon as a few more of its rows
/// lift its bound past the best, not only after every sample's rows of a band.
#[derive(Debug, Clone, Copy)]
struct Unit {
    sample: usize,
    band: usize,
}

/// The units of a convolution of `bands` bands on `samples` samples in evaluation order (bands
/// spread over the image as [`band_order`] gives them, each band for every sample in turn), the
/// units of the first round (the first eighth of the bands for every sample) and the units of
/// each later round (about 1/[`LATER_ROUNDS`] of them).
fn unit_schedule(bands: usize, samples: usize) -> (Vec<Unit>, usize, usize) {
    let units: Vec<Unit> =
        band_order(bands).into_iter().flat_map(|band| (0..samples).map(move |sample| Unit { sample, band })).collect();
    let first = bands.div_ceil(8).max(1) * samples;
    let step = (units.len() / LATER_ROUNDS).max(1);
    (units, first, step)
}

/// The strips of one round: every candidate of `cands` on every image of every unit of `round`, the candidates innermost, so that the strips next to each other in a
/// stacked call read the same input rows and compare with the same reference rows (which then
/// stay in cache) instead of every candidate sweeping all samples in turn.
fn round_entries(cands: &[usize], images: usize, round: &[Unit]) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(cands.len() * images * round.len());
    for u in round {
        for image in 0..images {
            entries.extend(cands.iter().map(|&cand| Entry { cand, sample: u.sample, image, band: u.band }));
        }
    }
    entries
}

/// Σ (out − ref)² of each entry's tile row: the strips fake-quantized with their candidate's
/// threshold, stacked along the batch axis in groups of about `stack_bytes`, convolved, and
/// compared with the sample's reference rows.
#[allow(clippy::too_many_arguments)]
fn strip_distances(
    dq: &Interpreter<'_>,
    op_index: usize,
    g: &Geometry,
    samples: &[SampleView<'_>],
    inputs: &[std::borrow::Cow<'_, [f32]>],
    ths: &[f64],
    entries: &[Entry],
    stack_bytes: usize,
) -> Result<Vec<f64>, CalibError> {
    let model_err = |e: crate::interp::InterpError| CalibError::Model(e.to_string());
    let in_len = g.c * g.in_rows() * g.w;
    let out_len = g.oc * g.out_rows() * g.ow;
    let per = (stack_bytes / (4 * in_len.max(out_len).max(1))).clamp(1, entries.len().max(1));
    let mut out = Vec::with_capacity(entries.len());
    let mut buf: Vec<f32> = Vec::new();
    for group in entries.chunks(per) {
        // every element is written by `fill_strip`: only grown, never cleared
        buf.truncate(group.len() * in_len);
        buf.resize(group.len() * in_len, 0.0);
        buf.par_chunks_mut(in_len).zip(group.par_iter()).for_each(|(dst, e)| {
            let s = (127.0 / ths[e.cand]) as f32;
            let x = &inputs[e.sample][e.image * g.c * g.h * g.w..][..g.c * g.h * g.w];
            fill_strip(x, g, e.band, s, dst);
        });
        let stacked =
            Tensor::from_shape_vec(ndarray::IxDyn(&[group.len(), g.c, g.in_rows(), g.w]), std::mem::take(&mut buf))
                .map_err(|e| CalibError::Model(format!("tuning: op #{op_index}: {e}")))?;
        let result = dq.eval_conv_strips(op_index, &stacked).map_err(model_err)?;
        buf = stacked.into_raw_vec_and_offset().0;
        let res = super::tune::elements(&result);
        if res.len() != group.len() * out_len {
            return Err(CalibError::Model(format!(
                "tuning: op #{op_index} gave {} elements for {} strips of {out_len}",
                res.len(),
                group.len()
            )));
        }
        let d: Vec<f64> = res
            .par_chunks(out_len)
            .zip(group.par_iter())
            .map(|(o, e)| band_distance(&samples[e.sample].reference, o, g, e))
            .collect();
        out.extend(d);
    }
    Ok(out)
}

/// The input rows under output band `band` of one image (`x` [c, h, w]), fake-quantized with
/// scale `s`, zero outside the image, into `dst` [c, in_rows, w].
fn fill_strip(x: &[f32], g: &Geometry, band: usize, s: f32, dst: &mut [f32]) {
    for (ch, plane) in dst.chunks_exact_mut(g.in_rows() * g.w).enumerate() {
        for (i, line) in plane.chunks_exact_mut(g.w).enumerate() {
            let iy = (band * g.out_rows() + i) as isize - g.pad_top as isize;
            if iy < 0 || iy as usize >= g.h {
                line.fill(0.0);
            } else {
                let at = (ch * g.h + iy as usize) * g.w;
                quantize_slice(&x[at..at + g.w], line, s);
            }
        }
    }
}

/// Σ (out − ref)² over the output rows of one strip that lie inside the output (`o` is the
/// strip's [oc, out_rows, ow] result), channel by channel.
fn band_distance(reference: &[f32], o: &[f32], g: &Geometry, e: &Entry) -> f64 {
    let y0 = e.band * g.out_rows();
    let valid = g.out_rows().min(g.oh - y0);
    let mut sum = 0f64;
    for ch in 0..g.oc {
        let r = &reference[((e.image * g.oc + ch) * g.oh + y0) * g.ow..][..valid * g.ow];
        let got = &o[ch * g.out_rows() * g.ow..][..valid * g.ow];
        sum += squared_distance(r, got);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every band of every sample is scheduled exactly once; the first round is the first
    /// eighth of the bands (spread over the image) for every sample; later rounds are not empty.
    #[test]
    fn unit_schedule_covers_every_band_of_every_sample_once() {
        for (bands, samples) in [(4, 5), (7, 3), (13, 1), (18, 5), (26, 5), (104, 2)] {
            let order = band_order(bands);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..bands).collect::<Vec<_>>(), "{bands} bands");
            let (units, first, step) = unit_schedule(bands, samples);
            let mut seen = vec![vec![0; bands]; samples];
            for u in &units {
                seen[u.sample][u.band] += 1;
            }
            assert!(seen.iter().flatten().all(|&k| k == 1), "{bands} bands, {samples} samples");
            let first_bands = bands.div_ceil(8);
            assert_eq!(first, first_bands * samples);
            assert!(units[..first].iter().all(|u| order[..first_bands].contains(&u.band)));
            assert!(step >= 1 && step <= units.len().div_ceil(LATER_ROUNDS).max(1));
        }
        assert_eq!(band_order(4), [0, 2, 1, 3]);
    }

    /// Small filters get small stacked calls, large ones large calls, within the caller's cap.
    #[test]
    fn group_bytes_follow_the_filter_within_the_bounds() {
        let g =
            |c: usize, oc: usize| Geometry { n: 1, c, h: 13, w: 13, oc, oh: 13, ow: 13, pad_top: 1, band: 1, bands: 4 };
        assert_eq!(group_bytes(&g(3, 16), MAX_STACK_BYTES), MIN_STACK_BYTES);
        assert_eq!(group_bytes(&g(128, 256), MAX_STACK_BYTES), 4 * 36 * 128 * 256);
        assert_eq!(group_bytes(&g(512, 1024), MAX_STACK_BYTES), MAX_STACK_BYTES);
        assert_eq!(group_bytes(&g(512, 1024), 1 << 16), 1 << 16);
        assert_eq!(group_bytes(&g(3, 16), 1 << 16), 1 << 16);
    }
}
