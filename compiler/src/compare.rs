//! Similarity metrics as tpu-mlir's npz_tool computes them (flow reference 4.4), and the `cos_sim`
//! of the mixed-precision search (flow reference 3.2).
//!
//! All functions are pure, work on flat f32 slices and accumulate in f64.

use crate::ir::weights::TensorData;
use std::fmt;

/// Outcome class of one tensor comparison, with tpu-mlir's names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CompareClass {
    /// Different element counts (fails).
    NotMatch,
    /// Bit-identical values (passes).
    Equal,
    /// Both int8 and not identical (fails; only for raw integer dumps).
    NotEqual,
    /// `allclose(rtol = 10^-order, atol = 1e-8)` holds for some order >= 3 (passes).
    Close { order: u32 },
    /// Cosine and euclidean similarity both above the tolerances (passes).
    Similar,
    /// Below a tolerance (fails).
    NotSimilar,
}

impl CompareClass {
    /// True for the passing classes (EQUAL, CLOSE, SIMILAR).
    pub fn passed(self) -> bool {
        matches!(self, CompareClass::Equal | CompareClass::Close { .. } | CompareClass::Similar)
    }
}

impl fmt::Display for CompareClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompareClass::NotMatch => "NOT_MATCH",
            CompareClass::Equal => "EQUAL",
            CompareClass::NotEqual => "NOT_EQUAL",
            CompareClass::Close { .. } => "CLOSE",
            CompareClass::Similar => "SIMILAR",
            // tpu-mlir's spelling
            CompareClass::NotSimilar => "NOT_SIMLIAR",
        })
    }
}

/// Pass thresholds of a comparison (`--tolerance cos,euclid`); both must be exceeded strictly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// minimum cosine similarity
    pub cosine: f64,
    /// minimum euclidean similarity
    pub euclid: f64,
}

impl Tolerance {
    /// Parse tpu-mlir's `"0.99,0.90"` syntax.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let bad = || format!("bad tolerance '{s}': expected two numbers 'cos,euclid' such as 0.99,0.90");
        if parts.len() != 2 {
            return Err(bad());
        }
        let cosine = parts[0].parse::<f64>().map_err(|_| bad())?;
        let euclid = parts[1].parse::<f64>().map_err(|_| bad())?;
        Ok(Tolerance { cosine, euclid })
    }
}

impl Default for Tolerance {
    /// npz_tool's default `0.99,0.99`.
    fn default() -> Self {
        Tolerance { cosine: 0.99, euclid: 0.99 }
    }
}

/// Result of comparing one tensor pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorResult {
    /// outcome class
    pub class: CompareClass,
    /// cosine similarity (only computed for SIMILAR / NOT_SIMILAR)
    pub cosine: Option<f64>,
    /// euclidean similarity (only computed for SIMILAR / NOT_SIMILAR)
    pub euclid: Option<f64>,
    /// signal-to-quantization-noise ratio in dB (informational, threshold disabled as in tpu-mlir)
    pub sqnr: Option<f64>,
}

impl TensorResult {
    /// True when the class passes.
    pub fn passed(&self) -> bool {
        self.class.passed()
    }
}

/// tpu-mlir's replacement before similarity metrics: NaN -> 0, ±inf -> ±10000.
pub fn sanitize(x: f32) -> f64 {
    if x.is_nan() {
        0.0
    } else if x.is_infinite() {
        if x > 0.0 {
            10000.0
        } else {
            -10000.0
        }
    } else {
        x as f64
    }
}

/// Cosine similarity `dot(a,b) / (|a|·|b|)` after [`sanitize`]; 0 when either vector is all zero.
/// Extra elements of the longer slice are ignored.
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (sanitize(x), sanitize(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// Euclidean similarity `1 - |a-b| / (|(a+b)/2| + 1e-7)` after [`sanitize`].
pub fn euclidean_similarity(a: &[f32], b: &[f32]) -> f64 {
    let (mut diff, mut mid) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (sanitize(x), sanitize(y));
        diff += (x - y) * (x - y);
        let m = (x + y) / 2.0;
        mid += m * m;
    }
    1.0 - diff.sqrt() / (mid.sqrt() + 1e-7)
}

/// numpy's `allclose(a, b, rtol, atol, equal_nan=True)`: `|a-b| <= atol + rtol·|b|` everywhere
/// (NaN matches NaN; an infinity matches only the same infinity).
pub fn allclose(a: &[f32], b: &[f32], rtol: f64, atol: f64) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(&x, &y)| {
            if x.is_nan() || y.is_nan() {
                return x.is_nan() && y.is_nan();
            }
            if x.is_infinite() || y.is_infinite() {
                return x == y;
            }
            let (x, y) = (x as f64, y as f64);
            (x - y).abs() <= atol + rtol * y.abs()
        })
}

/// The CLOSE order: the largest `order` in 5, 4, 3 for which `allclose(rtol = 10^-order,
/// atol = 1e-8)` holds, or `None` (tpu-mlir also tries order 2 but does not call that close).
pub fn close_order(a: &[f32], b: &[f32]) -> Option<u32> {
    (3..=5).rev().find(|&order| allclose(a, b, 10f64.powi(-(order as i32)), 1e-8))
}

/// SQNR in dB of `b` against the signal `a` (zeros of `a` skipped), after [`sanitize`];
/// `inf` when signal or noise has no variance.
pub fn sqnr(a: &[f32], b: &[f32]) -> f64 {
    let pairs: Vec<(f64, f64)> =
        a.iter().zip(b).map(|(&x, &y)| (sanitize(x), sanitize(y))).filter(|(x, _)| *x != 0.0).collect();
    if pairs.is_empty() {
        return f64::INFINITY;
    }
    let n = pairs.len() as f64;
    let mean_s = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_n = pairs.iter().map(|p| p.0 - p.1).sum::<f64>() / n;
    let var_s: f64 = pairs.iter().map(|p| (p.0 - mean_s).powi(2)).sum();
    let var_n: f64 = pairs.iter().map(|p| (p.0 - p.1 - mean_n).powi(2)).sum();
    if var_s == 0.0 || var_n == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (var_s / var_n).log10()
}

/// Partial sums of [`cos_sim`]: element `j` goes to partial sum `j % COS_LANES`.
pub const COS_LANES: usize = 8;

/// `(Σ x·y, Σ x·x, Σ y·y)` with `x = fx(xs[j])`, `y = fy(ys[j])` over the common length, each
/// summed in [`COS_LANES`] partial sums (element `j` into partial `j % COS_LANES`, in order) that
/// are then added pairwise: independent chains the processor runs side by side, and at least as
/// accurate as one running sum. Without `NORM`, `Σ y·y` is not summed (0). Every caller that
/// must agree with [`cos_sim`] bit for bit sums through this function.
#[inline(always)]
pub fn lane_sums<X: Copy, Y: Copy, const NORM: bool>(
    xs: &[X],
    ys: &[Y],
    fx: impl Fn(X) -> f64,
    fy: impl Fn(Y) -> f64,
) -> (f64, f64, f64) {
    const L: usize = COS_LANES;
    let n = xs.len().min(ys.len());
    let (xs, ys) = (&xs[..n], &ys[..n]);
    let (mut dot, mut na, mut nb) = ([0f64; L], [0f64; L], [0f64; L]);
    let mut add = |l: usize, x: f64, y: f64| {
        dot[l] += x * y;
        na[l] += x * x;
        if NORM {
            nb[l] += y * y;
        }
    };
    let (xc, yc) = (xs.chunks_exact(L), ys.chunks_exact(L));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (xk, yk) in xc.zip(yc) {
        for l in 0..L {
            add(l, fx(xk[l]), fy(yk[l]));
        }
    }
    lane_sums_finish::<X, Y, NORM>((dot, na, nb), xr, yr, fx, fy)
}

/// The end of [`lane_sums`] for code that sums the whole chunks of [`COS_LANES`] elements its own
/// way (vector registers): add the last `xr.len()` (< `COS_LANES`) elements to the first
/// partial sums and total the partial sums pairwise.
#[inline(always)]
pub fn lane_sums_finish<X: Copy, Y: Copy, const NORM: bool>(
    (mut dot, mut na, mut nb): ([f64; COS_LANES], [f64; COS_LANES], [f64; COS_LANES]),
    xr: &[X],
    yr: &[Y],
    fx: impl Fn(X) -> f64,
    fy: impl Fn(Y) -> f64,
) -> (f64, f64, f64) {
    for (l, (&x, &y)) in xr.iter().zip(yr).enumerate().take(COS_LANES) {
        let (x, y) = (fx(x), fy(y));
        dot[l] += x * y;
        na[l] += x * x;
        if NORM {
            nb[l] += y * y;
        }
    }
    let total = |p: [f64; COS_LANES]| ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
    (total(dot), total(na), total(nb))
}

/// [`cos_sim`] of the sums of [`lane_sums`]: `0.5 + 0.5·dot/(|a|·|b|)`, 0.5 when either norm is 0
/// or the quotient is NaN.
pub fn cos_sim_of_sums(dot: f64, na: f64, nb: f64) -> f64 {
    let c = if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) };
    0.5 + 0.5 * if c.is_nan() { 0.0 } else { c }
}

/// The search's layer similarity `0.5 + 0.5·cosine` (tpu-mlir `cos_sim`): 1 identical, 0.5
/// orthogonal or either vector zero, 0 opposite. NaN inputs count as 0 (as [`sanitize`] says).
/// The cosine is [`cosine_similarity`]'s with the sums taken by [`lane_sums`] (equal up to
/// rounding).
pub fn cos_sim(a: &[f32], b: &[f32]) -> f64 {
    let (dot, na, nb) = lane_sums::<f32, f32, true>(a, b, sanitize, sanitize);
    cos_sim_of_sums(dot, na, nb)
}

/// Compare a target tensor with a reference the way npz_tool does: NOT_MATCH on size mismatch,
/// EQUAL when identical, CLOSE at order >= 3, else SIMILAR iff cosine and euclidean similarity
/// both exceed the tolerances.
pub fn compare_tensors(target: &[f32], reference: &[f32], tol: Tolerance) -> TensorResult {
    let none = |class| TensorResult { class, cosine: None, euclid: None, sqnr: None };
    if target.len() != reference.len() {
        return none(CompareClass::NotMatch);
    }
    if target.iter().zip(reference).all(|(x, y)| x == y) {
        return none(CompareClass::Equal);
    }
    if let Some(order) = close_order(target, reference) {
        return none(CompareClass::Close { order });
    }
    let cosine = cosine_similarity(target, reference);
    let euclid = euclidean_similarity(target, reference);
    let class =
        if cosine > tol.cosine && euclid > tol.euclid { CompareClass::Similar } else { CompareClass::NotSimilar };
    TensorResult { class, cosine: Some(cosine), euclid: Some(euclid), sqnr: Some(sqnr(target, reference)) }
}

/// Values of stored data as npz_tool sees them: bf16 bit patterns (uint16) expanded to f32,
/// everything else converted numerically.
pub fn as_compared_f32(d: &TensorData) -> Vec<f32> {
    match d {
        TensorData::U16(a) => a.iter().map(|&b| f32::from_bits((b as u32) << 16)).collect(),
        TensorData::F32(a) => a.iter().copied().collect(),
        other => other.to_f32().iter().copied().collect(),
    }
}

/// Compare two stored arrays; two int8 arrays must be identical (NOT_EQUAL otherwise).
pub fn compare_data(target: &TensorData, reference: &TensorData, tol: Tolerance) -> TensorResult {
    if let (TensorData::I8(a), TensorData::I8(b)) = (target, reference) {
        if a.len() == b.len() && a.iter().zip(b.iter()).any(|(x, y)| x != y) {
            return TensorResult { class: CompareClass::NotEqual, cosine: None, euclid: None, sqnr: None };
        }
    }
    compare_tensors(&as_compared_f32(target), &as_compared_f32(reference), tol)
}

/// Indices (into `names`) that npz_tool compares: all of them up to 200 names; beyond that every
/// `len/200`-th name (when that step exceeds 1) plus the last one, which is usually an output.
pub fn sampled_indices(len: usize) -> Vec<usize> {
    let step = len / 200;
    if len <= 200 || step <= 1 {
        return (0..len).collect();
    }
    let mut idx: Vec<usize> = (0..len).step_by(step).collect();
    if idx.last() != Some(&(len - 1)) {
        idx.push(len - 1);
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_euclid_hand_values() {
        // a = (1,2,2), b = (2,1,2): dot 8, |a| = |b| = 3 -> 8/9
        let (a, b) = ([1.0f32, 2.0, 2.0], [2.0f32, 1.0, 2.0]);
        assert!((cosine_similarity(&a, &b) - 8.0 / 9.0).abs() < 1e-15);
        // |a-b| = sqrt(2), (a+b)/2 = (1.5,1.5,2) with norm sqrt(8.5)
        let e = 1.0 - 2f64.sqrt() / (8.5f64.sqrt() + 1e-7);
        assert!((euclidean_similarity(&a, &b) - e).abs() < 1e-15);
        assert!((cos_sim(&a, &b) - (0.5 + 4.0 / 9.0)).abs() < 1e-15);
        // opposite vectors
        assert!((cosine_similarity(&[1.0, -1.0], &[-1.0, 1.0]) + 1.0).abs() < 1e-15);
        assert!(cos_sim(&[1.0, -1.0], &[-1.0, 1.0]).abs() < 1e-15);
        // zero vector: cosine 0, cos_sim 0.5
        assert_eq!(cosine_similarity(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
        assert_eq!(cos_sim(&[0.0, 0.0], &[0.0, 0.0]), 0.5);
        // identical: euclid = 1 exactly
        assert_eq!(euclidean_similarity(&a, &a), 1.0);
    }

    #[test]
    fn cos_sim_sums_in_lanes() {
        // 11 elements: lanes 0..2 get two terms, the others one; the pairwise total of the lanes.
        let a: Vec<f32> = (0..11).map(|i| (i as f32 - 4.5) * 0.37).collect();
        let b: Vec<f32> = (0..11).map(|i| ((i * 7 % 11) as f32 - 5.0) * 1.3).collect();
        let mut p = [[0f64; COS_LANES]; 3];
        for j in 0..11 {
            let (x, y) = (a[j] as f64, b[j] as f64);
            p[0][j % COS_LANES] += x * y;
            p[1][j % COS_LANES] += x * x;
            p[2][j % COS_LANES] += y * y;
        }
        let t = |p: &[f64; 8]| ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
        let want = 0.5 + 0.5 * t(&p[0]) / (t(&p[1]).sqrt() * t(&p[2]).sqrt());
        assert_eq!(cos_sim(&a, &b).to_bits(), want.to_bits());
        // The same cosine as the running sums up to rounding.
        assert!((cos_sim(&a, &b) - (0.5 + 0.5 * cosine_similarity(&a, &b))).abs() < 1e-15);
        // Without the norm of y, its sum is 0; the other two are the same.
        let (d, na, nb) = lane_sums::<f32, f32, false>(&a, &b, sanitize, sanitize);
        assert_eq!((d.to_bits(), na.to_bits(), nb), (t(&p[0]).to_bits(), t(&p[1]).to_bits(), 0.0));
        // NaN and infinity are sanitized first: (NaN, inf) against (0, 10000) is identical.
        assert_eq!(cos_sim(&[f32::NAN, f32::INFINITY], &[0.0, 10000.0]), 1.0);
    }

    #[test]
    fn nan_and_inf_are_replaced() {
        assert_eq!(sanitize(f32::NAN), 0.0);
        assert_eq!(sanitize(f32::NEG_INFINITY), -10000.0);
        // (nan, 3) vs (0, 3) -> identical after sanitising
        assert_eq!(cosine_similarity(&[f32::NAN, 3.0], &[0.0, 3.0]), 1.0);
        // (inf, 0) vs (10000, 0)
        assert_eq!(euclidean_similarity(&[f32::INFINITY, 0.0], &[10000.0, 0.0]), 1.0);
    }

    #[test]
    fn classes_follow_npz_tool() {
        let tol = Tolerance::default();
        assert_eq!(compare_tensors(&[1.0, 2.0], &[1.0], tol).class, CompareClass::NotMatch);
        assert_eq!(compare_tensors(&[1.0, 2.0], &[1.0, 2.0], tol).class, CompareClass::Equal);
        // relative error 5e-6: allclose at 1e-5 (order 5) but not 1e-6
        let r = compare_tensors(&[1.000005, 2.0], &[1.0, 2.0], tol);
        assert_eq!(r.class, CompareClass::Close { order: 5 });
        // relative error 5e-4 -> order 3, still CLOSE
        assert_eq!(close_order(&[1.0005, 2.0], &[1.0, 2.0]), Some(3));
        // 5e-3 -> order 2, not CLOSE; cosine ~1, euclid = 1 - 0.005/|(1.0025, 2)| ~ 0.99776
        let r = compare_tensors(&[1.005, 2.0], &[1.0, 2.0], tol);
        assert_eq!(r.class, CompareClass::Similar);
        let x = 1.005f32 as f64;
        let mid = (((x + 1.0) / 2.0).powi(2) + 4.0).sqrt();
        let diff = x - 1.0;
        assert!((r.euclid.unwrap() - (1.0 - diff / (mid + 1e-7))).abs() < 1e-12);
        // 10 % error on one of two elements: euclid ~0.955 < 0.99 -> NOT_SIMILAR
        let r = compare_tensors(&[1.1, 2.0], &[1.0, 2.0], tol);
        assert_eq!(r.class, CompareClass::NotSimilar);
        assert!(!r.passed());
        assert!(compare_tensors(&[1.1, 2.0], &[1.0, 2.0], Tolerance { cosine: 0.99, euclid: 0.9 }).passed());
        // NaN at the same place is close (equal_nan)
        assert_eq!(compare_tensors(&[f32::NAN, 1.0], &[f32::NAN, 1.0], tol).class, CompareClass::Close { order: 5 });
        assert_eq!(CompareClass::NotSimilar.to_string(), "NOT_SIMLIAR");
    }

    #[test]
    fn int8_and_bf16_data() {
        use ndarray::{ArrayD, IxDyn};
        let a = TensorData::I8(ArrayD::from_shape_vec(IxDyn(&[2]), vec![1, 2]).unwrap());
        let b = TensorData::I8(ArrayD::from_shape_vec(IxDyn(&[2]), vec![1, 3]).unwrap());
        assert_eq!(compare_data(&a, &b, Tolerance::default()).class, CompareClass::NotEqual);
        let h = TensorData::U16(ArrayD::from_shape_vec(IxDyn(&[2]), vec![0x3f80, 0xc000]).unwrap());
        assert_eq!(as_compared_f32(&h), vec![1.0, -2.0]);
    }

    #[test]
    fn tolerance_parsing() {
        assert_eq!(Tolerance::parse("0.99,0.90").unwrap(), Tolerance { cosine: 0.99, euclid: 0.90 });
        assert_eq!(
            Tolerance::parse("0.99").unwrap_err(),
            "bad tolerance '0.99': expected two numbers 'cos,euclid' such as 0.99,0.90"
        );
    }

    #[test]
    fn subsampling_rule() {
        assert_eq!(sampled_indices(5), vec![0, 1, 2, 3, 4]);
        assert_eq!(sampled_indices(399).len(), 399); // step 1: everything
        let idx = sampled_indices(1000); // step 5: 0,5,..,995 then the last
        assert_eq!(idx.len(), 201);
        assert_eq!(idx[1], 5);
        assert_eq!(*idx.last().unwrap(), 999);
        assert_eq!(sampled_indices(401), (0..401).step_by(2).collect::<Vec<_>>());
        // 400 is last
    }

    #[test]
    fn sqnr_hand_value() {
        // signal (1,-1) zero mean, var 2; noise (0.1,-0.1) zero mean, var 0.02 -> 20 dB
        let s = sqnr(&[1.0, -1.0], &[0.9, -0.9]);
        assert!((s - 20.0).abs() < 1e-5, "{s}");
    }
}
