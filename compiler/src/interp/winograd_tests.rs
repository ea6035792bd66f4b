//! Tests of the Winograd F(4x4, 3x3) convolution against an f64 direct convolution and the
//! interpreter's own direct path, and of the `set_fast_conv` switch.

use super::conv::{self, ConvGeom};
use super::sgemm::{self, Act};
use super::winograd::{self, WinogradFilter};
use super::*;
use crate::ir::{attr, Attrs};

/// Deterministic pseudo-random values in [-1, 1).
fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Direct 3x3 stride-1 convolution in f64: (value, sum of |terms|) per output.
fn reference(x: &[f32], xs: [usize; 4], w: &[f32], oc: usize, bias: &[f32], pads: [usize; 4]) -> Vec<(f64, f64)> {
    let [n, c, h, wd] = xs;
    let (oh, ow) = (h + pads[0] + pads[2] - 2, wd + pads[1] + pads[3] - 2);
    let mut out = Vec::with_capacity(n * oc * oh * ow);
    for b in 0..n {
        for o in 0..oc {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut s, mut mag) = (bias[o] as f64, (bias[o] as f64).abs());
                    for ci in 0..c {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (oy + ky) as isize - pads[0] as isize;
                                let ix = (ox + kx) as isize - pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv = x[((b * c + ci) * h + iy as usize) * wd + ix as usize] as f64;
                                let t = xv * w[((o * c + ci) * 3 + ky) * 3 + kx] as f64;
                                s += t;
                                mag += t.abs();
                            }
                        }
                    }
                    out.push((s, mag));
                }
            }
        }
    }
    out
}

/// Largest `|got - want| / sum|terms|` over all outputs.
fn worst_error(got: &[f32], want: &[(f64, f64)]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(&g, &(w, mag))| (g as f64 - w).abs() / mag.max(1e-30)).fold(0.0, f64::max)
}

/// Winograd and direct convolution of random data, both against the f64 reference. Odd map
/// sizes (partial tiles), pads 0/1/asymmetric, channels not multiples of 8, more than one depth
/// block (C > 256), several tile blocks and a batch of two.
#[test]
fn winograd_matches_direct_convolution_on_random_shapes() {
    if !sgemm::available() {
        return;
    }
    let cases: [([usize; 4], usize, [usize; 4]); 7] = [
        ([1, 8, 13, 13], 16, [1, 1, 1, 1]),
        ([2, 13, 7, 9], 7, [0, 0, 0, 0]),
        ([1, 19, 26, 26], 20, [1, 0, 2, 1]),
        ([1, 300, 5, 6], 13, [1, 1, 1, 1]),
        ([1, 9, 70, 45], 11, [1, 1, 1, 1]),
        ([1, 24, 3, 3], 5, [0, 0, 0, 0]),
        ([1, 10, 1, 2], 97, [1, 1, 1, 1]),
    ];
    for (i, &(xs, oc, pads)) in cases.iter().enumerate() {
        let [n, c, h, wd] = xs;
        let x = noise(n * c * h * wd, 100 + i as u64);
        let w = noise(oc * c * 9, 200 + i as u64);
        let bias = noise(oc, 300 + i as u64);
        let want = reference(&x, xs, &w, oc, &bias, pads);
        let f = WinogradFilter::new(&w, oc, c).unwrap();
        let got = winograd::conv(&x, xs, &f, Some(&bias), pads, None).unwrap();
        let (oh, ow) = (h + pads[0] + pads[2] - 2, wd + pads[1] + pads[3] - 2);
        assert_eq!(got.shape(), &[n, oc, oh, ow], "case {i}");
        let wino_err = worst_error(got.as_slice().unwrap(), &want);

        let xt = Tensor::from_shape_vec(IxDyn(&xs), x.clone()).unwrap();
        let wt = Tensor::from_shape_vec(IxDyn(&[oc, c, 3, 3]), w.clone()).unwrap();
        let bt = Tensor::from_shape_vec(IxDyn(&[oc]), bias.clone()).unwrap();
        let g = ConvGeom { kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pads, group: 1 };
        let direct = conv::conv(&xt, &wt, Some(&bt), &g, None, None).unwrap();
        let direct_err = worst_error(direct.as_slice().unwrap(), &want);
        // the direct sum is good to a few ulps of sum|terms|; the transforms add cancellation
        // (measured: direct <= 3e-7, Winograd <= 1.8e-6 of sum|terms|)
        assert!(wino_err < 5e-6, "case {i} {xs:?} oc {oc} pads {pads:?}: error {wino_err:e} (direct {direct_err:e})");
        assert!(direct_err < 1e-6, "case {i}: direct error {direct_err:e}");
    }
}

/// Bias and the fused activations are applied after the output transform, as the direct path
/// applies them.
#[test]
fn winograd_fused_activation_equals_activation_after() {
    if !sgemm::available() {
        return;
    }
    let (xs, oc, pads) = ([1, 11, 10, 14], 9, [1, 1, 1, 1]);
    let x = noise(xs.iter().product(), 1);
    let w = noise(oc * 11 * 9, 2);
    let bias = noise(oc, 3);
    let f = WinogradFilter::new(&w, oc, 11).unwrap();
    let plain = winograd::conv(&x, xs, &f, Some(&bias), pads, None).unwrap();
    assert!(plain.iter().any(|&v| v < -0.1) && plain.iter().any(|&v| v > 0.6));
    for act in [Act::Leaky(0.1), Act::Relu(None), Act::Relu(Some(0.5))] {
        let fused = winograd::conv(&x, xs, &f, Some(&bias), pads, Some(act)).unwrap();
        let want = plain.mapv(|v| match act {
            Act::Leaky(a) => {
                if v >= 0.0 {
                    v
                } else {
                    v * a
                }
            }
            Act::Relu(l) => l.map_or(v.max(0.0), |l| v.max(0.0).min(l)),
        });
        assert_eq!(fused, want, "{act:?}");
    }
}

#[test]
fn winograd_rejects_mismatched_shapes() {
    let f = WinogradFilter::new(&noise(4 * 3 * 9, 1), 4, 3).unwrap();
    let err = winograd::conv(&noise(2 * 4 * 4, 2), [1, 2, 4, 4], &f, None, [0; 4], None).unwrap_err();
    assert_eq!(err, "input [1, 2, 4, 4] does not match the filter's 3 input channels");
    let err = winograd::conv(&noise(3 * 2 * 2, 2), [1, 3, 2, 2], &f, None, [0; 4], None).unwrap_err();
    assert_eq!(err, "window 3 does not fit input 2x2 with pads [0, 0, 0, 0]");
    let err = winograd::conv(&noise(3 * 16, 2), [1, 3, 4, 4], &f, Some(&[0.0; 3]), [0; 4], None).unwrap_err();
    assert_eq!(err, "bias has 3 elements, expected 4");
    assert_eq!(WinogradFilter::new(&[0.0; 10], 4, 3).unwrap_err(), "filter of 10 elements is not [4, 3, 3, 3]");
}

/// conv 3x3 (16 -> 24 channels, Winograd when on) -> leaky, then a 3x3 stride-2 conv and a
/// conv with 4 input channels (never Winograd).
fn net() -> (Module, Weights) {
    let mut func = Func::default();
    let mut weights = Weights::default();
    let f32t = |s: &[usize]| TensorType::f32(s.to_vec());
    let a = func.add_value("", f32t(&[1, 16, 21, 23]));
    func.args.push(a);
    let x = func.push_op("top.Input", vec![a], Attrs::new(), "x", f32t(&[1, 16, 21, 23]));
    let mut weight = |func: &mut Func, name: &str, shape: &[usize], seed: u64| {
        let data = Tensor::from_shape_vec(IxDyn(shape), noise(shape.iter().product(), seed)).unwrap();
        weights.insert(name, TensorData::F32(data));
        func.push_op("top.Weight", vec![], Attrs::new(), name, f32t(shape))
    };
    let w1 = weight(&mut func, "w1", &[24, 16, 3, 3], 5);
    let b1 = weight(&mut func, "b1", &[24], 6);
    let w2 = weight(&mut func, "w2", &[4, 24, 3, 3], 7);
    let w3 = weight(&mut func, "w3", &[8, 4, 3, 3], 8);
    let conv_attrs = |s: i64| {
        let mut at = Attrs::new();
        at.insert("kernel_shape".into(), attr::ints(&[3, 3]));
        at.insert("strides".into(), attr::ints(&[s, s]));
        at.insert("pads".into(), attr::ints(&[1, 1, 1, 1]));
        at
    };
    let c1 = func.push_op("top.Conv", vec![x, w1, b1], conv_attrs(1), "c1", f32t(&[1, 24, 21, 23]));
    let mut la = Attrs::new();
    la.insert("alpha".into(), attr::f64(0.1));
    let l1 = func.push_op("top.LeakyRelu", vec![c1], la, "l1", f32t(&[1, 24, 21, 23]));
    let c2 = func.push_op("top.Conv", vec![l1, w2], conv_attrs(2), "c2", f32t(&[1, 4, 11, 12]));
    let c3 = func.push_op("top.Conv", vec![c2, w3], conv_attrs(1), "c3", f32t(&[1, 8, 11, 12]));
    func.returns = vec![l1, c3];
    (Module { name: "wino".into(), attrs: Attrs::new(), func }, weights)
}

/// Off by default and bit-identical to before when off; on, only the eligible convolution
/// changes, by rounding, and fused and observed runs agree exactly.
#[test]
fn fast_conv_switch_changes_only_eligible_convolutions() {
    if !sgemm::available() {
        return;
    }
    let (m, w) = net();
    let mut interp = Interpreter::new(&m, &w).unwrap();
    assert!(!interp.fast_conv());
    let input = [Tensor::from_shape_vec(IxDyn(&[1, 16, 21, 23]), noise(16 * 21 * 23, 9)).unwrap()];
    let direct = interp.run(&input).unwrap();
    interp.set_fast_conv(true);
    assert!(interp.fast_conv());
    let names: Vec<&str> = interp
        .winograd
        .iter()
        .zip(&m.func.ops)
        .filter(|(f, _)| f.is_some())
        .map(|(_, op)| m.func.op_name(op))
        .collect();
    assert_eq!(names, ["c1"]);
    let fast = interp.run(&input).unwrap();
    let observed = interp.run_observe(&input, &mut |_, _| {}).unwrap();
    assert_eq!(fast, observed);
    assert_ne!(fast[0], direct[0]);
    for (f, d) in fast.iter().zip(&direct) {
        let scale = d.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let err = f.iter().zip(d.iter()).fold(0f32, |a, (&x, &y)| a.max((x - y).abs()));
        assert!(err <= 1e-5 * scale, "max error {err} of {scale}");
    }
    interp.set_fast_conv(false);
    assert!(!interp.fast_conv());
    assert_eq!(interp.run(&input).unwrap(), direct);
}

/// Timing of the tiny-yolov3 3x3 layer shapes, direct against Winograd (run by hand:
/// `cargo test -p compiler --lib winograd_layer_timing -- --ignored --nocapture`).
#[test]
#[ignore]
fn winograd_layer_timing() {
    if !sgemm::available() {
        return;
    }
    let layers: [(usize, usize, usize); 8] = [
        (16, 32, 208),
        (32, 64, 104),
        (64, 128, 52),
        (128, 256, 26),
        (256, 512, 13),
        (512, 1024, 13),
        (384, 256, 26),
        (3, 16, 416),
    ];
    let only: Option<usize> = std::env::var("WINO_LAYER").ok().and_then(|v| v.parse().ok());
    let threads = std::env::var("WINO_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    // images per call (the times are per image)
    let nb: usize = std::env::var("WINO_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        for (li, &(c, oc, hw)) in layers.iter().enumerate() {
            if only.is_some_and(|o| o != li) {
                continue;
            }
            let xs = [nb, c, hw, hw];
            let x = noise(nb * c * hw * hw, 1);
            let w = noise(oc * c * 9, 2);
            let bias = noise(oc, 3);
            let f = WinogradFilter::new(&w, oc, c).unwrap();
            let xt = Tensor::from_shape_vec(IxDyn(&xs), x.clone()).unwrap();
            let wt = Tensor::from_shape_vec(IxDyn(&[oc, c, 3, 3]), w.clone()).unwrap();
            let bt = Tensor::from_shape_vec(IxDyn(&[oc]), bias.clone()).unwrap();
            let pa = sgemm::PackedA::new(&w, oc, c * 9);
            let g = ConvGeom { kh: 3, kw: 3, sh: 1, sw: 1, dh: 1, dw: 1, pads: [1; 4], group: 1 };
            let act = Some(Act::Leaky(0.1));
            // CPU time of this thread (the pool's only worker with WINO_THREADS=1), so that
            // time spent descheduled on a busy machine does not count
            let cpu_ms = || -> f64 {
                let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
                s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) * 1e-6
            };
            let time = |f: &dyn Fn()| {
                let mut best = f64::MAX;
                for _ in 0..if only.is_some() { 40 } else { 15 } {
                    let t0 = cpu_ms();
                    f();
                    best = best.min((cpu_ms() - t0) / nb as f64);
                }
                best
            };
            let d = if only.is_some() {
                1.0
            } else {
                time(&|| drop(conv::conv(&xt, &wt, Some(&bt), &g, Some(&pa), act).unwrap()))
            };
            let wi = time(&|| drop(winograd::conv(&x, xs, &f, Some(&bias), [1; 4], act).unwrap()));
            let gmac = (oc * c * 9 * hw * hw) as f64 * 1e-6;
            eprintln!(
                "{c:>4} -> {oc:>4} @ {hw:>3}: direct {d:7.2} ms ({:5.1} GMAC/s)  winograd {wi:7.2} ms  x{:.2}",
                gmac / d,
                d / wi
            );
        }
    });
}

/// Wall-clock timing of the tiny-yolov3 Winograd layers on one thread (best of many runs, so a
/// busy machine disturbs it less): `WINO_BATCH` images per call, times per image.
/// `cargo test --release -p compiler --lib winograd_wall_timing -- --ignored --nocapture`
#[test]
#[ignore]
fn winograd_wall_timing() {
    if !sgemm::available() {
        return;
    }
    let layers: [(usize, usize, usize); 7] =
        [(16, 32, 208), (32, 64, 104), (64, 128, 52), (128, 256, 26), (256, 512, 13), (512, 1024, 13), (384, 256, 26)];
    let nb: usize = std::env::var("WINO_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let threads = std::env::var("WINO_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut total = 0.0;
        for &(c, oc, hw) in &layers {
            let xs = [nb, c, hw, hw];
            let x = noise(nb * c * hw * hw, 1);
            let w = noise(oc * c * 9, 2);
            let bias = noise(oc, 3);
            let f = WinogradFilter::new(&w, oc, c).unwrap();
            let act = Some(Act::Leaky(0.1));
            let mut best = f64::MAX;
            let reps = (200_000_000 / (oc * c * hw * hw * nb)).clamp(5, 60);
            for _ in 0..reps {
                let t0 = std::time::Instant::now();
                drop(winograd::conv(&x, xs, &f, Some(&bias), [1; 4], act).unwrap());
                best = best.min(t0.elapsed().as_secs_f64() * 1e3 / nb as f64);
            }
            total += best;
            let gmac = (oc * c * 9 * hw * hw) as f64 * 1e-6;
            eprintln!("{c:>4} -> {oc:>4} @ {hw:>3}: {best:7.3} ms/image ({:5.1} direct-GMAC/s)", gmac / best);
        }
        eprintln!("total {total:.3} ms/image");
    });
}

/// `Bᵀ d` of one 6-vector, written as the scalar phase 1 computed it before the AVX2 version:
/// `4·d0 − 5·d2 + d4` left to right, no fused multiply-add.
fn bt_reference(d: [f32; 6]) -> [f32; 6] {
    let m4 = d[4] - 4.0 * d[2];
    let m3 = d[3] - 4.0 * d[1];
    let n4 = d[4] - d[2];
    let n3 = 2.0 * (d[3] - d[1]);
    [4.0 * d[0] - 5.0 * d[2] + d[4], m4 + m3, m4 - m3, n4 + n3, n4 - n3, 4.0 * d[1] - 5.0 * d[3] + d[5]]
}

/// `Bᵀ d B` of the zero-padded 6x6 input patch of tile (`ty`, `tx`) of channel `ch` of image
/// `b` (`x` [n, c, h, w] as `xs`, `pads` top and left first): `Bᵀ` down the 6 columns, then
/// along the rows; element `yi·6 + xi` is point (yi, xi).
fn input_tile_reference(x: &[f32], xs: [usize; 4], pads: [usize; 4], at: (usize, usize, usize, usize)) -> [f32; 36] {
    let [_, c, h, wd] = xs;
    let (b, ch, ty, tx) = at;
    let value = |i: usize, j: usize| {
        let iy = (ty * 4 + i) as isize - pads[0] as isize;
        let ix = (tx * 4 + j) as isize - pads[1] as isize;
        if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
            0.0
        } else {
            x[((b * c + ch) * h + iy as usize) * wd + ix as usize]
        }
    };
    // vert[ξy][j]: Bᵀ down column j
    let mut vert = [[0f32; 6]; 6];
    for j in 0..6 {
        let col = bt_reference([0, 1, 2, 3, 4, 5].map(|i| value(i, j)));
        for (row, val) in vert.iter_mut().zip(col) {
            row[j] = val;
        }
    }
    let mut out = [0f32; 36];
    for (yi, &vrow) in vert.iter().enumerate() {
        out[yi * 6..yi * 6 + 6].copy_from_slice(&bt_reference(vrow));
    }
    out
}

/// Phase 1 tile by tile in plain scalar code: `Bᵀ` down the 6 columns of each zero-padded 6x6
/// patch, then along its rows, each value stored at its place in the packed layout (per block
/// of `tb` tiles, per point ξ a [c, tb] matrix cut into depth blocks of `KC` rows, each cut into
/// panels of `NR` tiles).
fn transformed_input_reference(x: &[f32], xs: [usize; 4], pads: [usize; 4], tb: usize) -> Vec<f32> {
    let [n, c, h, wd] = xs;
    let (oh, ow) = (h + pads[0] + pads[2] - 2, wd + pads[1] + pads[3] - 2);
    let (th, tw) = (oh.div_ceil(4), ow.div_ceil(4));
    let nt = n * th * tw;
    let block_len = 36 * c * tb;
    let mut v = vec![0f32; nt.div_ceil(tb) * block_len];
    for tt in 0..nt {
        let (b, ty, tx) = (tt / (th * tw), tt / tw % th, tt % tw);
        let (blk, tl) = (tt / tb, tt % tb);
        for ch in 0..c {
            let tile = input_tile_reference(x, xs, pads, (b, ch, ty, tx));
            let k0 = ch / sgemm::KC * sgemm::KC;
            let kc = sgemm::KC.min(c - k0);
            for (p, &val) in tile.iter().enumerate() {
                let point = blk * block_len + p * c * tb;
                v[point + k0 * tb + (tl / sgemm::NR) * kc * sgemm::NR + (ch - k0) * sgemm::NR + tl % sgemm::NR] = val;
            }
        }
    }
    v
}

/// The AVX2 phase 1 (8 tiles at a time, stored straight into the packed layout) gives the same
/// bits as the scalar form, zeros in the unused lanes included: odd sizes, pads 0/1/2 and
/// asymmetric, a batch of three, channel counts not multiples of 8, more than one depth block
/// (C > 256), tile rows not multiples of 8 or 16 and more than one tile block, maps 4 tiles wide
/// (two tile rows per vector) with an even and an odd number of tile rows; the input has zeros
/// of both signs.
#[test]
fn winograd_input_transform_is_bit_identical_to_scalar_form() {
    if !sgemm::available() {
        return;
    }
    let cases: [([usize; 4], [usize; 4]); 12] = [
        ([1, 3, 13, 13], [1, 1, 1, 1]),
        ([2, 13, 7, 9], [0, 0, 0, 0]),
        ([3, 5, 26, 26], [1, 0, 2, 1]),
        ([1, 300, 5, 6], [1, 1, 1, 1]),
        ([1, 9, 70, 45], [1, 1, 1, 1]),
        ([1, 24, 3, 3], [0, 0, 0, 0]),
        ([1, 10, 1, 2], [1, 1, 1, 1]),
        ([2, 7, 37, 67], [2, 2, 0, 1]),
        ([1, 2, 9, 133], [0, 2, 2, 0]),
        ([1, 4, 104, 104], [1, 1, 1, 1]),
        ([1, 2, 11, 16], [0, 0, 0, 0]),
        ([2, 260, 13, 13], [1, 1, 1, 1]),
    ];
    for (i, &(xs, pads)) in cases.iter().enumerate() {
        let [n, c, h, wd] = xs;
        let mut x = noise(n * c * h * wd, 500 + i as u64);
        for (k, v) in x.iter_mut().enumerate().step_by(7) {
            *v = if k % 2 == 0 { 0.0 } else { -0.0 };
        }
        let f = WinogradFilter::new(&noise(5 * c * 9, 2), 5, c).unwrap();
        let mut got = Vec::new();
        let tb = winograd::transformed_input(&x, xs, &f, pads, &mut got).unwrap();
        let want = transformed_input_reference(&x, xs, pads, tb);
        assert_eq!(got.len(), want.len(), "case {i}");
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "case {i} {xs:?} pads {pads:?}: element {k}: {g} vs {w}");
        }
    }
}

/// The vector stores of phase 2 (8 whole tiles side by side stored as rows, other tiles with
/// one 128-bit store per tile row) put the same bits in the same places as storing value by
/// value: maps whose tile rows are shorter than 8 tiles, not multiples of 8, cut at the right
/// and bottom edges, a batch, more than one tile block, bias and activation.
#[test]
fn winograd_vector_stores_equal_value_by_value_stores() {
    if !sgemm::available() {
        return;
    }
    let cases: [([usize; 4], usize, [usize; 4]); 9] = [
        ([1, 8, 13, 13], 16, [1, 1, 1, 1]),
        ([2, 13, 7, 9], 7, [0, 0, 0, 0]),
        ([3, 5, 26, 26], 20, [1, 0, 2, 1]),
        ([1, 9, 70, 45], 11, [1, 1, 1, 1]),
        ([1, 10, 1, 2], 9, [1, 1, 1, 1]),
        ([2, 6, 37, 67], 13, [2, 2, 0, 1]),
        ([1, 4, 52, 52], 6, [1, 1, 1, 1]),
        ([1, 16, 104, 104], 32, [1, 1, 1, 1]),
        ([1, 300, 9, 11], 40, [1, 1, 1, 1]),
    ];
    for (i, &(xs, oc, pads)) in cases.iter().enumerate() {
        let [n, c, h, wd] = xs;
        let x = noise(n * c * h * wd, 700 + i as u64);
        let f = WinogradFilter::new(&noise(oc * c * 9, 800 + i as u64), oc, c).unwrap();
        let bias = noise(oc, 900 + i as u64);
        for act in [None, Some(Act::Leaky(0.1))] {
            let got = winograd::conv(&x, xs, &f, Some(&bias), pads, act).unwrap();
            let want = winograd::conv_spill_store(&x, xs, &f, Some(&bias), pads, act).unwrap();
            assert_eq!(got.shape(), want.shape());
            for (k, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "case {i} {xs:?} pads {pads:?}: element {k}");
            }
        }
    }
}

/// CPU time of phase 1 alone on the tiny-yolov3 3x3 layer shapes, one thread (run by hand:
/// `cargo test -p compiler --lib winograd_input_timing -- --ignored --nocapture`).
#[test]
#[ignore]
fn winograd_input_timing() {
    if !sgemm::available() {
        return;
    }
    let layers: [(usize, usize, usize); 8] = [
        (3, 16, 416),
        (16, 32, 208),
        (32, 64, 104),
        (64, 128, 52),
        (128, 256, 26),
        (256, 512, 13),
        (512, 1024, 13),
        (384, 256, 26),
    ];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| {
        let mut total = 0.0;
        for &(c, oc, hw) in &layers {
            let xs = [1, c, hw, hw];
            let x = noise(c * hw * hw, 1);
            let f = WinogradFilter::new(&noise(oc * c * 9, 2), oc, c).unwrap();
            let (mut best, mut v) = (f64::MAX, Vec::new());
            for _ in 0..30 {
                let t0 = std::time::Instant::now();
                winograd::transformed_input(&x, xs, &f, [1; 4], &mut v).unwrap();
                best = best.min(t0.elapsed().as_secs_f64() * 1e3);
            }
            total += best;
            eprintln!("{c:>4} -> {oc:>4} @ {hw:>3}: phase 1 {best:7.3} ms");
        }
        eprintln!("total {total:.3} ms");
    });
}

/// The filter transform written straight into the packed layout equals transforming into 36
/// plain matrices and packing each, bit for bit (output channels not a multiple of the panel
/// height, one channel, many).
#[test]
fn filter_packed_directly_equals_packed_one_by_one() {
    for (oc, c) in [(1, 1), (5, 3), (6, 8), (13, 16), (64, 7), (130, 33)] {
        let w = noise(oc * c * 9, (oc * 31 + c) as u64);
        let direct = WinogradFilter::new(&w, oc, c).unwrap();
        let one_by_one = WinogradFilter::packed_one_by_one(&w, oc, c);
        assert_eq!(direct.packed().len(), one_by_one.len());
        for (a, b) in direct.packed().iter().zip(&one_by_one) {
            let bits = |p: &sgemm::PackedA| p.packed_data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!((a.m, a.k), (b.m, b.k));
            assert_eq!(bits(a), bits(b), "oc {oc} c {c}");
        }
    }
    assert!(WinogradFilter::new(&[0.0; 10], 1, 1).is_err());
}

/// Shapes of the schedule tests: the large tiny-yolov3 maps (C = 3, 16), odd sizes, pads 0/1/
/// asymmetric, batches of 2 and 3, output channels not multiples of 6 or 16, maps 4 tiles wide,
/// a map wider than one fused block, and C > KC (the whole-input plan only).
const PLAN_CASES: [([usize; 4], usize, [usize; 4]); 12] = [
    ([1, 3, 416, 416], 16, [1, 1, 1, 1]),
    ([1, 16, 208, 208], 32, [1, 1, 1, 1]),
    ([2, 3, 37, 45], 13, [1, 1, 1, 1]),
    ([3, 16, 29, 31], 19, [0, 0, 0, 0]),
    ([1, 16, 52, 52], 32, [1, 0, 2, 1]),
    ([2, 5, 9, 70], 7, [1, 1, 1, 1]),
    ([1, 7, 6, 6], 5, [0, 0, 0, 0]),
    ([1, 2, 9, 840], 6, [1, 1, 1, 1]),
    ([2, 16, 13, 13], 12, [1, 1, 1, 1]),
    ([1, 40, 26, 26], 33, [1, 1, 1, 1]),
    ([4, 3, 104, 104], 16, [1, 1, 1, 1]),
    ([1, 300, 9, 11], 40, [1, 1, 1, 1]),
];

/// Every schedule of the two phases gives the same bits as the whole-input plan (the one the
/// earlier versions had): the automatic choice and fused blocks of whole rows, parts of rows,
/// one panel, more tiles than the map and sub-blocks of one and two panels, with and without
/// bias and activation.
#[test]
fn winograd_plans_give_identical_bits() {
    if !sgemm::available() {
        return;
    }
    let fused = [(208, 0), (50, 16), (16, 16), (100_000, 32), (7, 0), (104, 0)];
    for (i, &(xs, oc, pads)) in PLAN_CASES.iter().enumerate() {
        let [n, c, h, wd] = xs;
        let x = noise(n * c * h * wd, 1100 + i as u64);
        let f = WinogradFilter::new(&noise(oc * c * 9, 1200 + i as u64), oc, c).unwrap();
        let bias = noise(oc, 1300 + i as u64);
        for (bias, act) in [(None, None), (Some(&bias[..]), Some(Act::Leaky(0.1)))] {
            let want = winograd::conv_planned(&x, xs, &f, bias, pads, act, winograd::Plan::Whole).unwrap();
            let mut plans = vec![winograd::Plan::Auto];
            if c <= sgemm::KC {
                plans.extend(fused.iter().map(|&(tiles, sub)| winograd::Plan::Fused { tiles, sub }));
            }
            for plan in plans {
                let got = winograd::conv_planned(&x, xs, &f, bias, pads, act, plan).unwrap();
                assert_eq!(got.shape(), want.shape());
                for (k, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                    assert_eq!(g.to_bits(), w.to_bits(), "case {i} {xs:?} {plan:?}: element {k}");
                }
            }
        }
    }
}

/// FNV-1a hash of the bits of `v`.
fn bits_hash(v: impl Iterator<Item = f32>) -> u64 {
    v.fold(0xcbf2_9ce4_8422_2325, |h, x| (h ^ x.to_bits() as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The outputs of [`winograd::conv`] (the automatic plan) hash to the values that the
/// implementation before the fused plan (commit 4614357) gave on the same inputs, bias and
/// activation: the calibration tables built on it do not move.
#[test]
fn winograd_outputs_equal_the_earlier_implementation() {
    if !sgemm::available() {
        return;
    }
    let mut got_hashes = [0u64; 12];
    for (i, &(xs, oc, pads)) in PLAN_CASES.iter().enumerate() {
        let [n, c, h, wd] = xs;
        let x = noise(n * c * h * wd, 1100 + i as u64);
        let f = WinogradFilter::new(&noise(oc * c * 9, 1200 + i as u64), oc, c).unwrap();
        let bias = noise(oc, 1300 + i as u64);
        let got = winograd::conv(&x, xs, &f, Some(&bias), pads, Some(Act::Leaky(0.1))).unwrap();
        let hash = bits_hash(got.iter().copied());
        got_hashes[i] = hash;
    }
    if std::env::var("WINO_PRINT_HASHES").is_ok() {
        eprintln!("{got_hashes:#018x?}");
    }
    assert_eq!(got_hashes, EARLIER_HASHES);
}

/// [`winograd_outputs_equal_the_earlier_implementation`]'s hashes, printed by that test
/// (`WINO_PRINT_HASHES=1`) on the code of commit 4614357.
const EARLIER_HASHES: [u64; 12] = [
    0xccfe_18ff_774f_dd02,
    0x778c_1afb_7a78_ddbd,
    0x6f0c_fee1_4d20_1f5a,
    0x9a56_742a_950f_b3b3,
    0x2d7c_acd4_f7be_dc02,
    0x8703_e3b0_14df_ad2d,
    0xb40c_b370_8cff_5090,
    0x1447_1825_9c34_d4cd,
    0x7ac2_fcd8_acff_fee0,
    0x597e_504e_ae3e_536c,
    0x3740_e6f9_7d11_f326,
    0x18e2_8b67_136e_92a4,
];

/// Wall time of the schedules ([`winograd::Plan`]) on the large tiny-yolov3 maps, alternating
/// the plans run by run, medians (run by hand: `WINO_PLANS="-1:0 0:0 208:0"` for the automatic
/// plan, the whole-input plan and fused (tiles, sub) plans; `WINO_THREADS` (2), `WINO_BATCH`,
/// `WINO_RUNS`, `WINO_LAYER` (index), `WINO_CPU=1` (the worker's CPU time), `WINO_FLUSH=1`;
/// `cargo test --release -p compiler --lib winograd_plan_timing -- --ignored --nocapture`).
#[test]
#[ignore]
fn winograd_plan_timing() {
    if !sgemm::available() {
        return;
    }
    let env = |k: &str| std::env::var(k).ok();
    let plans: Vec<winograd::Plan> = env("WINO_PLANS")
        .unwrap_or_else(|| "-1:0 0:0".into())
        .split_whitespace()
        .filter_map(|p| {
            let (a, b) = p.split_once(':')?;
            let (tb, sub): (i64, usize) = (a.parse().ok()?, b.parse().ok()?);
            Some(match tb {
                -1 => winograd::Plan::Auto,
                0 => winograd::Plan::Whole,
                _ => winograd::Plan::Fused { tiles: tb as usize, sub },
            })
        })
        .collect();
    let nb: usize = env("WINO_BATCH").and_then(|v| v.parse().ok()).unwrap_or(1);
    let threads = env("WINO_THREADS").and_then(|v| v.parse().ok()).unwrap_or(2);
    let runs = env("WINO_RUNS").and_then(|v| v.parse().ok()).unwrap_or(41);
    // WINO_CPU=1: CPU time of the pool's worker (meaningful with WINO_THREADS=1), which time
    // spent descheduled on a busy machine does not inflate
    let cpu = env("WINO_CPU").is_some_and(|v| v == "1");
    keep_freed_memory();
    // WINO_FLUSH=1: write 64 MB before every call (the caches hold none of its data)
    let flush = env("WINO_FLUSH").is_some_and(|v| v == "1");
    let mut junk = vec![0f32; if flush { 16 << 20 } else { 0 }];
    let layers: [(usize, usize, usize); 5] =
        [(3, 16, 416), (16, 32, 208), (32, 64, 104), (64, 128, 52), (128, 256, 26)];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let only: Option<usize> = env("WINO_LAYER").and_then(|v| v.parse().ok());
        for (li, &(c, oc, hw)) in layers.iter().enumerate() {
            if only.is_some_and(|o| o != li) {
                continue;
            }
            let xs = [nb, c, hw, hw];
            let x = noise(nb * c * hw * hw, 1);
            let f = WinogradFilter::new(&noise(oc * c * 9, 2), oc, c).unwrap();
            let bias = noise(oc, 3);
            let act = Some(Act::Leaky(0.1));
            let mut times = vec![Vec::new(); plans.len()];
            for _ in 0..runs {
                for (pi, &plan) in plans.iter().enumerate() {
                    if flush {
                        // a cold output buffer and input, as in a model run
                        junk.iter_mut().for_each(|v| *v += 1.0);
                        std::hint::black_box(&junk);
                    }
                    let (t0, c0) = (std::time::Instant::now(), thread_cpu_ms());
                    let r = winograd::conv_planned(&x, xs, &f, Some(&bias), [1; 4], act, plan);
                    let ms = if cpu { thread_cpu_ms() - c0 } else { t0.elapsed().as_secs_f64() * 1e3 };
                    times[pi].push(ms / nb as f64);
                    if r.is_err() {
                        times[pi].clear();
                        break;
                    }
                }
            }
            let line: Vec<String> = times
                .iter_mut()
                .zip(&plans)
                .map(|(t, p)| {
                    t.sort_by(f64::total_cmp);
                    format!("{p:?} {:.3}", t.get(t.len() / 2).copied().unwrap_or(f64::NAN))
                })
                .collect();
            eprintln!("{c:>4} -> {oc:>4} @ {hw:>3}: {}", line.join("  "));
        }
    });
}

/// CPU time this thread has run, in ms (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, Linux).
fn thread_cpu_ms() -> f64 {
    /// `struct timespec` of 64-bit Linux.
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    /// `CLOCK_THREAD_CPUTIME_ID`.
    const THREAD_CPUTIME: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    let rc = unsafe { clock_gettime(THREAD_CPUTIME, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.sec as f64 * 1e3 + ts.nsec as f64 * 1e-6
}

/// glibc: keep freed blocks below 32 MiB in the heap (as the benchmark tools do), so that each
/// run's output does not come from fresh zeroed pages.
fn keep_freed_memory() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    /// glibc's `M_TRIM_THRESHOLD` and `M_MMAP_THRESHOLD`.
    const TRIM: i32 = -1;
    const MMAP: i32 = -3;
    // SAFETY: mallopt only changes allocator parameters.
    unsafe {
        mallopt(MMAP, 32 << 20);
        mallopt(TRIM, 1 << 30);
    }
}

/// `Aᵀ v` of one 6-vector with the operations of the vector output transform, in order.
fn at_reference(v: [f32; 6]) -> [f32; 4] {
    let (a, b) = (v[1] + v[2], v[1] - v[2]);
    let (c, d) = (v[3] + v[4], v[3] - v[4]);
    [v[0] + a + c, 2f32.mul_add(d, b), 4f32.mul_add(c, a), 8f32.mul_add(d, b) + v[5]]
}

/// The whole Winograd convolution in plain scalar code, tile by tile: the input transform of
/// [`bt_reference`], per point one FMA chain over the input channels in increasing order from
/// zero (the filter taken from the packed matrices), `Aᵀ M A`, bias, leaky ReLU (0.1).
fn winograd_reference(x: &[f32], xs: [usize; 4], f: &WinogradFilter, bias: &[f32], pads: [usize; 4]) -> Vec<f32> {
    let [n, c, h, wd] = xs;
    let oc = f.out_channels();
    let (oh, ow) = (h + pads[0] + pads[2] - 2, wd + pads[1] + pads[3] - 2);
    let (th, tw) = (oh.div_ceil(4), ow.div_ceil(4));
    let u = |xi: usize, o: usize, ch: usize| {
        f.packed()[xi].packed_data()[(o / sgemm::MR) * c * sgemm::MR + ch * sgemm::MR + o % sgemm::MR]
    };
    let mut out = vec![0f32; n * oc * oh * ow];
    let mut v = vec![[0f32; 36]; c];
    for tt in 0..n * th * tw {
        let (b, ty, tx) = (tt / (th * tw), tt / tw % th, tt % tw);
        for (ch, vc) in v.iter_mut().enumerate() {
            *vc = input_tile_reference(x, xs, pads, (b, ch, ty, tx));
        }
        for o in 0..oc {
            let mut m = [0f32; 36];
            for (xi, mx) in m.iter_mut().enumerate() {
                *mx = v.iter().enumerate().fold(0f32, |s, (ch, vc)| u(xi, o, ch).mul_add(vc[xi], s));
            }
            let cols: Vec<[f32; 4]> = (0..6).map(|s| at_reference([0, 1, 2, 3, 4, 5].map(|r| m[r * 6 + s]))).collect();
            for i in 0..4.min(oh - ty * 4) {
                let y = at_reference([0, 1, 2, 3, 4, 5].map(|s| cols[s][i]));
                for (j, &yj) in y.iter().enumerate().take(4.min(ow - tx * 4)) {
                    let z = yj + bias[o];
                    out[((b * oc + o) * oh + ty * 4 + i) * ow + tx * 4 + j] = if z >= 0.0 { z } else { z * 0.1 };
                }
            }
        }
    }
    out
}

/// [`winograd::conv`] equals the scalar form bit for bit on shapes of each schedule (two
/// threads, so that the automatic plan is the same on every machine): the fused plan on 32
/// input channels with a filter beyond the old 32k-float limit and on 64 channels in GEMM
/// sub-blocks, the whole-input plan with two tile blocks whose last one is partial by more than
/// one panel (its GEMMs stop early), tile counts ending 1 and 4 tiles into a panel (half-width
/// GEMM tiles) and 9 (full), C > KC (two depth blocks) with output channels in several chunks,
/// and maps cut at the edges.
#[test]
fn winograd_equals_scalar_form_bit_for_bit() {
    if !sgemm::available() {
        return;
    }
    let cases: [([usize; 4], usize, [usize; 4]); 8] = [
        ([2, 32, 104, 104], 64, [1, 1, 1, 1]),
        ([1, 64, 120, 120], 64, [1, 1, 1, 1]),
        ([1, 40, 26, 26], 20, [1, 1, 1, 1]),
        ([1, 20, 52, 52], 6, [1, 1, 1, 1]),
        ([4, 400, 26, 26], 30, [1, 1, 1, 1]),
        ([2, 300, 13, 13], 110, [1, 1, 1, 1]),
        ([1, 300, 59, 61], 13, [1, 0, 1, 2]),
        ([3, 9, 22, 30], 7, [0, 0, 0, 0]),
    ];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    pool.install(|| {
        for (i, &(xs, oc, pads)) in cases.iter().enumerate() {
            let [n, c, h, wd] = xs;
            let x = noise(n * c * h * wd, 1500 + i as u64);
            let f = WinogradFilter::new(&noise(oc * c * 9, 1600 + i as u64), oc, c).unwrap();
            let bias = noise(oc, 1700 + i as u64);
            let got = winograd::conv(&x, xs, &f, Some(&bias), pads, Some(Act::Leaky(0.1))).unwrap();
            let want = winograd_reference(&x, xs, &f, &bias, pads);
            assert_eq!(got.len(), want.len(), "case {i}");
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "case {i} {xs:?} oc {oc}: element {k}: {g} vs {w}");
            }
        }
    });
}
