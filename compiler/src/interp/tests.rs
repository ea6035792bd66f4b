//! Unit tests of the interpreter: every op on small hand-computed cases, the run loop's
//! contract (observe, outputs, errors) and dense/direct convolution against a naive reference.

use super::*;
use crate::ir::{attr, Attr, Attrs, Func, Module, TensorType};
use ndarray::ArrayD;

/// A tensor from a shape and row-major data.
fn t(shape: &[usize], data: Vec<f32>) -> Tensor {
    ArrayD::from_shape_vec(IxDyn(shape), data).unwrap()
}

/// 0, 1, 2, ... in a tensor of `shape`.
fn iota(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    t(shape, (0..n).map(|i| i as f32).collect())
}

/// Deterministic pseudo-random values in [-1, 1).
fn noise(shape: &[usize], seed: u64) -> Tensor {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    t(shape, v)
}

fn attrs(list: &[(&str, Attr)]) -> Attrs {
    list.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// Hand-built graph: arguments behind `top.Input`, weights, ops.
#[derive(Default)]
struct Graph {
    func: Func,
    weights: Weights,
}

impl Graph {
    fn input(&mut self, name: &str, shape: &[usize]) -> ValueId {
        let a = self.func.add_value("", TensorType::f32(shape.to_vec()));
        self.func.args.push(a);
        self.func.push_op("top.Input", vec![a], Attrs::new(), name, TensorType::f32(shape.to_vec()))
    }
    fn weight(&mut self, name: &str, data: Tensor) -> ValueId {
        let ty = TensorType::f32(data.shape().to_vec());
        self.weights.insert(name, TensorData::F32(data));
        self.func.push_op("top.Weight", vec![], Attrs::new(), name, ty)
    }
    fn none(&mut self) -> ValueId {
        let r = self.func.add_value("none", TensorType::None);
        self.func.ops.push(Op { kind: "top.None".into(), operands: vec![], results: vec![r], attrs: Attrs::new() });
        r
    }
    fn op(&mut self, kind: &str, operands: Vec<ValueId>, a: &[(&str, Attr)], name: &str, shape: &[usize]) -> ValueId {
        self.func.push_op(kind, operands, attrs(a), name, TensorType::f32(shape.to_vec()))
    }
    fn module(mut self, returns: Vec<ValueId>) -> (Module, Weights) {
        self.func.returns = returns;
        (Module { name: "test".into(), attrs: Attrs::new(), func: self.func }, self.weights)
    }
}

/// Run one op: `x` is the single input, `consts` become weights; returns every result.
fn run_op_multi(kind: &str, x: &Tensor, consts: &[Tensor], a: &[(&str, Attr)], out: &[&[usize]]) -> Vec<Tensor> {
    let mut g = Graph::default();
    let xi = g.input("x", x.shape());
    let mut operands = vec![xi];
    for (i, c) in consts.iter().enumerate() {
        operands.push(g.weight(&format!("w{i}"), c.clone()));
    }
    let mut results = Vec::new();
    for (i, s) in out.iter().enumerate() {
        results.push(g.func.add_value(format!("y{i}"), TensorType::f32(s.to_vec())));
    }
    g.func.ops.push(Op { kind: kind.into(), operands, results: results.clone(), attrs: attrs(a) });
    let (m, w) = g.module(results);
    let interp = Interpreter::new(&m, &w).unwrap();
    interp.run(&[x.clone()]).unwrap()
}

fn run_op(kind: &str, x: &Tensor, consts: &[Tensor], a: &[(&str, Attr)], out: &[usize]) -> Tensor {
    run_op_multi(kind, x, consts, a, &[out]).remove(0)
}

fn assert_close(got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.shape(), want.shape(), "shape");
    for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
        assert!((a - b).abs() <= tol * (1.0 + b.abs()), "element {i}: got {a}, want {b}");
    }
}

fn conv_attrs(k: [i64; 2], s: [i64; 2], p: [i64; 4], d: [i64; 2], group: i64) -> Vec<(&'static str, Attr)> {
    vec![
        ("kernel_shape", attr::ints(&k)),
        ("strides", attr::ints(&s)),
        ("pads", attr::ints(&p)),
        ("dilations", attr::ints(&d)),
        ("group", attr::i64(group)),
        ("do_relu", attr::bool(false)),
        ("relu_limit", attr::f64(-1.0)),
    ]
}

/// Straightforward convolution used as the reference of the fast paths.
fn naive_conv(x: &Tensor, w: &Tensor, b: &[f32], s: [usize; 2], p: [usize; 4], d: [usize; 2], group: usize) -> Tensor {
    let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (oc, icg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
    let oh = (h + p[0] + p[2] - d[0] * (kh - 1) - 1) / s[0] + 1;
    let ow = (wd + p[1] + p[3] - d[1] * (kw - 1) - 1) / s[1] + 1;
    let ocg = oc / group;
    let _ = c;
    let mut out = Tensor::zeros(IxDyn(&[n, oc, oh, ow]));
    for bi in 0..n {
        for o in 0..oc {
            let gi = o / ocg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b[o] as f64;
                    for ci in 0..icg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * s[0] + ky * d[0]) as isize - p[0] as isize;
                                let ix = (ox * s[1] + kx * d[1]) as isize - p[1] as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    acc +=
                                        (x[[bi, gi * icg + ci, iy as usize, ix as usize]] * w[[o, ci, ky, kx]]) as f64;
                                }
                            }
                        }
                    }
                    out[[bi, o, oy, ox]] = acc as f32;
                }
            }
        }
    }
    out
}

#[test]
fn conv_1x1_kernel_sums_with_bias() {
    let x = t(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect());
    let w = t(&[1, 1, 2, 2], vec![1.0; 4]);
    let b = t(&[1], vec![0.5]);
    let y = run_op("top.Conv", &x, &[w, b], &conv_attrs([2, 2], [1, 1], [0; 4], [1, 1], 1), &[1, 1, 2, 2]);
    assert_eq!(y, t(&[1, 1, 2, 2], vec![12.5, 16.5, 24.5, 28.5]));
}

#[test]
fn conv_pads_and_stride() {
    let x = iota(&[1, 1, 4, 4]);
    let w = t(&[1, 1, 3, 3], vec![1.0; 9]);
    let mut g = Graph::default();
    let xi = g.input("x", &[1, 1, 4, 4]);
    let wi = g.weight("w", w);
    let none = g.none();
    let y =
        g.op("top.Conv", vec![xi, wi, none], &conv_attrs([3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 1), "y", &[1, 1, 2, 2]);
    let (m, ws) = g.module(vec![y]);
    let out = Interpreter::new(&m, &ws).unwrap().run(&[x]).unwrap();
    assert_eq!(out[0], t(&[1, 1, 2, 2], vec![10.0, 24.0, 51.0, 90.0]));
}

#[test]
fn conv_dilation() {
    let x = iota(&[1, 1, 5, 5]);
    let w = t(&[1, 1, 2, 2], vec![1.0; 4]);
    let b = t(&[1], vec![0.0]);
    let y = run_op("top.Conv", &x, &[w, b], &conv_attrs([2, 2], [1, 1], [0; 4], [2, 2], 1), &[1, 1, 3, 3]);
    let want: Vec<f32> = (0..9).map(|i| 24.0 + 4.0 * (i % 3) as f32 + 20.0 * (i / 3) as f32).collect();
    assert_eq!(y, t(&[1, 1, 3, 3], want));
}

#[test]
fn conv_group_two() {
    // channels (0,1) -> out 0, (2,3) -> out 1
    let x = t(&[1, 4, 1, 2], vec![1.0, 2.0, 10.0, 20.0, 100.0, 200.0, 1000.0, 2000.0]);
    let w = t(&[2, 2, 1, 1], vec![1.0, 2.0, 3.0, 4.0]);
    let b = t(&[2], vec![0.0, 1.0]);
    let y = run_op("top.Conv", &x, &[w, b], &conv_attrs([1, 1], [1, 1], [0; 4], [1, 1], 2), &[1, 2, 1, 2]);
    assert_eq!(y, t(&[1, 2, 1, 2], vec![21.0, 42.0, 4301.0, 8601.0]));
}

#[test]
fn conv_depthwise_with_asymmetric_pads() {
    // 2 channels, 3x3 kernel of ones, pads top 1 left 0 bottom 0 right 1
    let x = iota(&[1, 2, 3, 3]);
    let w = t(&[2, 1, 3, 3], vec![1.0; 18]);
    let b = t(&[2], vec![0.0, 0.0]);
    let y = run_op("top.Conv", &x, &[w, b], &conv_attrs([3, 3], [1, 1], [1, 0, 0, 1], [1, 1], 2), &[1, 2, 2, 2]);
    // channel 0, out (0,0): rows -1..1, cols 0..2 -> rows 0,1 cols 0..2: 0+1+2+3+4+5 = 15
    // out (0,1): cols 1..3 -> cols 1,2: 1+2+4+5 = 12; row 1 sees all rows: 36 and 27;
    // channel 1 adds 9 per covered cell (6, 4, 9, 6 cells)
    assert_eq!(y, t(&[1, 2, 2, 2], vec![15.0, 12.0, 36.0, 27.0, 69.0, 48.0, 117.0, 81.0]));
}

#[test]
fn conv_fast_paths_match_naive_reference() {
    // (input [n,c,h,w], oc, kernel, strides, pads, dilations, group)
    let cases: &[([usize; 4], usize, [usize; 2], [usize; 2], [usize; 4], [usize; 2], usize)] = &[
        ([1, 3, 37, 41], 16, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
        ([2, 8, 19, 23], 12, [3, 3], [2, 2], [0, 1, 2, 1], [1, 1], 1),
        ([1, 16, 13, 13], 40, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 1),
        ([1, 64, 11, 9], 24, [3, 3], [1, 1], [2, 2, 2, 2], [2, 2], 1),
        ([1, 16, 70, 70], 8, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 1),
        ([1, 24, 15, 15], 24, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 24),
        ([1, 24, 15, 15], 48, [5, 5], [1, 1], [2, 2, 2, 2], [1, 1], 24),
        ([1, 32, 9, 9], 64, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 4),
        ([1, 8, 9, 9], 8, [3, 3], [1, 2], [1, 0, 1, 2], [1, 1], 2),
        ([1, 4, 40, 40], 32, [7, 7], [2, 2], [3, 3, 3, 3], [1, 1], 1),
        ([1, 64, 40, 40], 13, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
        ([1, 300, 7, 7], 7, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 1),
    ];
    for (i, &(xs, oc, k, s, p, d, g)) in cases.iter().enumerate() {
        let x = noise(&xs, 1 + i as u64);
        let w = noise(&[oc, xs[1] / g, k[0], k[1]], 100 + i as u64);
        let b = noise(&[oc], 200 + i as u64);
        let want = naive_conv(&x, &w, b.as_slice().unwrap(), s, p, d, g);
        let a = conv_attrs(
            [k[0] as i64, k[1] as i64],
            [s[0] as i64, s[1] as i64],
            [p[0] as i64, p[1] as i64, p[2] as i64, p[3] as i64],
            [d[0] as i64, d[1] as i64],
            g as i64,
        );
        let y = run_op("top.Conv", &x, &[w, b], &a, want.shape());
        assert_close(&y, &want, 1e-5);
    }
}

#[test]
fn conv_1d() {
    let x = t(&[1, 1, 5], vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    let w = t(&[1, 1, 3], vec![1.0, 0.0, -1.0]);
    let b = t(&[1], vec![0.0]);
    let a = vec![
        ("kernel_shape", attr::ints(&[3])),
        ("strides", attr::ints(&[2])),
        ("pads", attr::ints(&[1, 1])),
        ("dilations", attr::ints(&[1])),
        ("group", attr::i64(1)),
    ];
    // padded: 0 1 2 3 4 5 0 ; windows at 0,2,4: 0-2, 2-4, 4-0
    let y = run_op("top.Conv", &x, &[w, b], &a, &[1, 1, 3]);
    assert_eq!(y, t(&[1, 1, 3], vec![-2.0, -2.0, 4.0]));
}

#[test]
fn conv_with_do_relu_and_limit() {
    let x = t(&[1, 1, 1, 3], vec![-1.0, 2.0, 9.0]);
    let w = t(&[1, 1, 1, 1], vec![1.0]);
    let b = t(&[1], vec![0.0]);
    let mut a = conv_attrs([1, 1], [1, 1], [0; 4], [1, 1], 1);
    a.push(("do_relu", attr::bool(true)));
    a.push(("relu_limit", attr::f64(6.0)));
    let y = run_op("top.Conv", &x, &[w, b], &a, &[1, 1, 1, 3]);
    assert_eq!(y, t(&[1, 1, 1, 3], vec![0.0, 2.0, 6.0]));
}

fn deconv_attrs(k: [i64; 2], s: [i64; 2], p: [i64; 4]) -> Vec<(&'static str, Attr)> {
    vec![
        ("kernel_shape", attr::ints(&k)),
        ("strides", attr::ints(&s)),
        ("pads", attr::ints(&p)),
        ("dilations", attr::ints(&[1, 1])),
        ("group", attr::i64(1)),
        ("output_padding", attr::ints(&[0, 0])),
        ("do_relu", attr::bool(false)),
    ]
}

#[test]
fn deconv_stride_two_spreads_pixels() {
    let x = t(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let w = t(&[1, 1, 2, 2], vec![1.0; 4]);
    let b = t(&[1], vec![0.0]);
    let y = run_op("top.Deconv", &x, &[w, b], &deconv_attrs([2, 2], [2, 2], [0; 4]), &[1, 1, 4, 4]);
    let want = vec![1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.];
    assert_eq!(y, t(&[1, 1, 4, 4], want));
}

#[test]
fn deconv_stride_one_overlaps_and_pads_crop() {
    let x = t(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let w = t(&[1, 1, 2, 2], vec![1.0; 4]);
    let b = t(&[1], vec![0.5]);
    let y = run_op("top.Deconv", &x, &[w.clone(), b.clone()], &deconv_attrs([2, 2], [1, 1], [0; 4]), &[1, 1, 3, 3]);
    assert_eq!(y, t(&[1, 1, 3, 3], vec![1.5, 3.5, 2.5, 4.5, 10.5, 6.5, 3.5, 7.5, 4.5]));
    let y = run_op("top.Deconv", &x, &[w, b], &deconv_attrs([2, 2], [1, 1], [1, 1, 1, 1]), &[1, 1, 1, 1]);
    assert_eq!(y, t(&[1, 1, 1, 1], vec![10.5]));
}

#[test]
fn deconv_two_output_channels() {
    // filter [IC=1, OC=2, 1, 1]: out0 = 2x, out1 = -x
    let x = t(&[1, 1, 1, 2], vec![1.0, 3.0]);
    let w = t(&[1, 2, 1, 1], vec![2.0, -1.0]);
    let b = t(&[2], vec![0.0, 1.0]);
    let y = run_op("top.Deconv", &x, &[w, b], &deconv_attrs([1, 1], [1, 1], [0; 4]), &[1, 2, 1, 2]);
    assert_eq!(y, t(&[1, 2, 1, 2], vec![2.0, 6.0, 0.0, -2.0]));
}

fn pool_attrs(k: [i64; 2], s: [i64; 2], p: [i64; 4], include: bool) -> Vec<(&'static str, Attr)> {
    vec![
        ("kernel_shape", attr::ints(&k)),
        ("strides", attr::ints(&s)),
        ("pads", attr::ints(&p)),
        ("count_include_pad", attr::bool(include)),
        ("keepdims", attr::bool(true)),
    ]
}

#[test]
fn maxpool_padded_cells_never_win() {
    let x = t(&[1, 1, 3, 3], (1..=9).map(|v| -(v as f32)).collect());
    let y = run_op("top.MaxPool", &x, &[], &pool_attrs([2, 2], [2, 2], [0, 0, 1, 1], false), &[1, 1, 2, 2]);
    assert_eq!(y, t(&[1, 1, 2, 2], vec![-1.0, -3.0, -7.0, -9.0]));
}

#[test]
fn maxpool_stride_one_tiny_yolo_style() {
    // 2x2 stride 1 with pads [0,0,1,1] keeps the size (tiny-yolov3's sixth pool)
    let x = t(&[1, 1, 2, 2], vec![1.0, 5.0, 3.0, 2.0]);
    let y = run_op("top.MaxPool", &x, &[], &pool_attrs([2, 2], [1, 1], [0, 0, 1, 1], false), &[1, 1, 2, 2]);
    assert_eq!(y, t(&[1, 1, 2, 2], vec![5.0, 5.0, 3.0, 2.0]));
}

#[test]
fn avgpool_count_include_pad_or_not() {
    let x = t(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect());
    let y = run_op("top.AvgPool", &x, &[], &pool_attrs([2, 2], [2, 2], [0, 0, 1, 1], false), &[1, 1, 2, 2]);
    assert_eq!(y, t(&[1, 1, 2, 2], vec![3.0, 4.5, 7.5, 9.0]));
    let y = run_op("top.AvgPool", &x, &[], &pool_attrs([2, 2], [2, 2], [0, 0, 1, 1], true), &[1, 1, 2, 2]);
    assert_eq!(y, t(&[1, 1, 2, 2], vec![3.0, 2.25, 3.75, 2.25]));
}

#[test]
fn global_average_pool() {
    let x = iota(&[1, 2, 2, 3]);
    let y = run_op("top.AvgPool", &x, &[], &pool_attrs([2, 3], [1, 1], [0; 4], false), &[1, 2, 1, 1]);
    assert_eq!(y, t(&[1, 2, 1, 1], vec![2.5, 8.5]));
}

#[test]
fn unary_activations() {
    let x = t(&[1, 6], vec![-4.0, -1.0, 0.0, 0.5, 3.0, 8.0]);
    let cases: Vec<(&str, Vec<(&str, Attr)>, Vec<f32>)> = vec![
        ("top.Relu", vec![("relu_limit", attr::f64(-1.0))], vec![0.0, 0.0, 0.0, 0.5, 3.0, 8.0]),
        ("top.Relu", vec![("relu_limit", attr::f64(6.0))], vec![0.0, 0.0, 0.0, 0.5, 3.0, 6.0]),
        ("top.LeakyRelu", vec![("alpha", attr::f64(0.25))], vec![-1.0, -0.25, 0.0, 0.5, 3.0, 8.0]),
        ("top.Clip", vec![("min", attr::f64(-1.5)), ("max", attr::f64(2.0))], vec![-1.5, -1.0, 0.0, 0.5, 2.0, 2.0]),
        (
            "top.HardSigmoid",
            vec![("alpha", attr::f64(0.25)), ("beta", attr::f64(0.5))],
            vec![0.0, 0.25, 0.5, 0.625, 1.0, 1.0],
        ),
        ("top.HardSwish", vec![], vec![-0.0, -1.0 / 3.0, 0.0, 0.5 * (0.5 / 6.0 + 0.5), 3.0, 8.0]),
        ("top.AddConst", vec![("const_val", attr::f64(1.5))], vec![-2.5, 0.5, 1.5, 2.0, 4.5, 9.5]),
        ("top.MulConst", vec![("const_val", attr::f64(-2.0))], vec![8.0, 2.0, -0.0, -1.0, -6.0, -16.0]),
        (
            "top.SubConst",
            vec![("const_val", attr::f64(1.0)), ("is_reverse", attr::bool(true))],
            vec![5.0, 2.0, 1.0, 0.5, -2.0, -7.0],
        ),
        (
            "top.SubConst",
            vec![("const_val", attr::f64(1.0)), ("is_reverse", attr::bool(false))],
            vec![-5.0, -2.0, -1.0, -0.5, 2.0, 7.0],
        ),
    ];
    for (kind, a, want) in cases {
        let y = run_op(kind, &x, &[], &a, &[1, 6]);
        assert_close(&y, &t(&[1, 6], want), 1e-7);
    }
    let y = run_op("top.Sigmoid", &x, &[], &[], &[1, 6]);
    assert_close(&y, &x.mapv(|v| 1.0 / (1.0 + (-v).exp())), 1e-7);
    assert_eq!(y[[0, 2]], 0.5);
    let y = run_op("top.Tanh", &x, &[], &[], &[1, 6]);
    assert_close(&y, &t(&[1, 6], vec![-0.99932930, -0.76159416, 0.0, 0.46211716, 0.99505475, 0.99999977]), 1e-6);
    let y = run_op("top.Exp", &x, &[], &[], &[1, 6]);
    assert_close(&y, &t(&[1, 6], vec![0.018315639, 0.36787944, 1.0, 1.6487213, 20.085537, 2980.958]), 1e-6);
}

#[test]
fn binary_ops_broadcast_like_numpy() {
    // a [2,1,3] op b [4,1] -> [2,4,3]
    let a = iota(&[2, 1, 3]);
    let b = t(&[4, 1], vec![10.0, 20.0, 30.0, 40.0]);
    let y = run_op("top.Add", &a, &[b.clone()], &[], &[2, 4, 3]);
    assert_eq!(y.shape(), &[2, 4, 3]);
    assert_eq!(y[[1, 2, 1]], 4.0 + 30.0);
    assert_eq!(y[[0, 3, 2]], 2.0 + 40.0);
    let y = run_op("top.Sub", &a, &[b.clone()], &[], &[2, 4, 3]);
    assert_eq!(y[[1, 0, 0]], 3.0 - 10.0);
    // smaller first operand: b - a
    let y = run_op("top.Sub", &b, &[a.clone()], &[], &[2, 4, 3]);
    assert_eq!(y[[1, 0, 0]], 10.0 - 3.0);
    assert_eq!(y[[0, 3, 2]], 40.0 - 2.0);
    let y = run_op("top.Div", &a, &[t(&[], vec![2.0])], &[], &[2, 1, 3]);
    assert_eq!(y, t(&[2, 1, 3], vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]));
    // per-channel weight [C,1,1] times NCHW
    let x = iota(&[1, 2, 2, 2]);
    let y = run_op("top.Mul", &x, &[t(&[2, 1, 1], vec![1.0, -1.0])], &[], &[1, 2, 2, 2]);
    assert_eq!(y, t(&[1, 2, 2, 2], vec![0.0, 1.0, 2.0, 3.0, -4.0, -5.0, -6.0, -7.0]));
    // same shapes, with do_relu
    let y = run_op("top.Add", &x, &[x.mapv(|v| -2.0 * v)], &[("do_relu", attr::bool(true))], &[1, 2, 2, 2]);
    assert_eq!(y, t(&[1, 2, 2, 2], vec![0.0; 8]));
    let y = run_op("top.Sub", &x, &[t(&[2, 1, 1], vec![1.0, 2.0])], &[], &[1, 2, 2, 2]);
    assert_eq!(y, t(&[1, 2, 2, 2], vec![-1.0, 0.0, 1.0, 2.0, 2.0, 3.0, 4.0, 5.0]));
}

#[test]
fn binary_shapes_that_do_not_broadcast_are_an_error() {
    let mut g = Graph::default();
    let a = g.input("a", &[2, 3]);
    let b = g.weight("b", iota(&[2, 2]));
    let y = g.op("top.Add", vec![a, b], &[], "sum", &[2, 3]);
    let (m, w) = g.module(vec![y]);
    let err = Interpreter::new(&m, &w).unwrap().run(&[iota(&[2, 3])]).unwrap_err();
    assert_eq!(err.to_string(), "op 'sum' (top.Add): shapes [2, 3] and [2, 2] do not broadcast");
}

#[test]
fn scale_and_prelu_per_channel() {
    let x = t(&[1, 2, 1, 2], vec![1.0, -2.0, 3.0, -4.0]);
    let y = run_op("top.Scale", &x, &[t(&[2], vec![2.0, 3.0]), t(&[2], vec![1.0, -1.0])], &[], &[1, 2, 1, 2]);
    assert_eq!(y, t(&[1, 2, 1, 2], vec![3.0, -3.0, 8.0, -13.0]));
    let y = run_op("top.PRelu", &x, &[t(&[2, 1, 1], vec![0.5, 0.25])], &[], &[1, 2, 1, 2]);
    assert_eq!(y, t(&[1, 2, 1, 2], vec![1.0, -1.0, 3.0, -1.0]));
}

#[test]
fn matmul_with_bias_and_batch() {
    let a = iota(&[2, 3]);
    let b = t(&[3, 2], vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let y = run_op("top.MatMul", &a, &[b.clone(), t(&[2], vec![0.5, -0.5])], &[], &[2, 2]);
    assert_eq!(y, t(&[2, 2], vec![2.5, 2.5, 8.5, 8.5]));
    let a3 = iota(&[2, 1, 3]);
    let y = run_op("top.MatMul", &a3, &[b], &[], &[2, 1, 2]);
    assert_eq!(y, t(&[2, 1, 2], vec![2.0, 3.0, 8.0, 9.0]));
}

#[test]
fn reshape_permute_concat() {
    let x = iota(&[1, 2, 3]);
    let y = run_op("top.Reshape", &x, &[], &[("shape", attr::ints(&[3, -1]))], &[3, 2]);
    assert_eq!(y, iota(&[3, 2]));
    let y = run_op("top.Permute", &x, &[], &[("order", attr::ints(&[0, 2, 1]))], &[1, 3, 2]);
    assert_eq!(y, t(&[1, 3, 2], vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]));
    let y = run_op("top.Concat", &x, &[t(&[1, 1, 3], vec![9.0; 3])], &[("axis", attr::i64(1))], &[1, 3, 3]);
    assert_eq!(y, t(&[1, 3, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 9.0, 9.0]));
    let y = run_op("top.Concat", &x, &[t(&[1, 2, 1], vec![7.0, 8.0])], &[("axis", attr::i64(-1))], &[1, 2, 4]);
    assert_eq!(y, t(&[1, 2, 4], vec![0.0, 1.0, 2.0, 7.0, 3.0, 4.0, 5.0, 8.0]));
}

#[test]
fn softmax_along_axis() {
    let x = t(&[1, 3], vec![1.0, 2.0, 3.0]);
    let y = run_op("top.Softmax", &x, &[], &[("axis", attr::i64(1))], &[1, 3]);
    assert_close(&y, &t(&[1, 3], vec![0.09003057, 0.24472847, 0.66524096]), 1e-6);
    let x = t(&[2, 2], vec![0.0, 5.0, 0.0, 5.0]);
    let y = run_op("top.Softmax", &x, &[], &[("axis", attr::i64(0))], &[2, 2]);
    assert_close(&y, &t(&[2, 2], vec![0.5; 4]), 1e-7);
}

#[test]
fn slice_with_steps_and_negative_step() {
    let x = iota(&[2, 10]);
    let a = [("offset", attr::ints(&[1, 1])), ("ends", attr::ints(&[2, 8])), ("steps", attr::ints(&[1, 3]))];
    let y = run_op("top.Slice", &x, &[], &a, &[1, 3]);
    assert_eq!(y, t(&[1, 3], vec![11.0, 14.0, 17.0]));
    let a = [("offset", attr::ints(&[0, 9])), ("ends", attr::ints(&[1, -1])), ("steps", attr::ints(&[1, -4]))];
    let y = run_op("top.Slice", &x, &[], &a, &[1, 3]);
    assert_eq!(y, t(&[1, 3], vec![9.0, 5.0, 1.0]));
}

#[test]
fn gather_scalar_and_vector_indices() {
    let x = iota(&[2, 3]);
    let y = run_op("top.Gather", &x, &[t(&[], vec![1.0])], &[("axis", attr::i64(1))], &[2]);
    assert_eq!(y, t(&[2], vec![1.0, 4.0]));
    let y = run_op("top.Gather", &x, &[t(&[2], vec![2.0, 0.0])], &[("axis", attr::i64(1))], &[2, 2]);
    assert_eq!(y, t(&[2, 2], vec![2.0, 0.0, 5.0, 3.0]));
    let y = run_op("top.Gather", &x, &[t(&[1], vec![-1.0])], &[("axis", attr::i64(0))], &[1, 3]);
    assert_eq!(y, t(&[1, 3], vec![3.0, 4.0, 5.0]));
}

#[test]
fn split_gives_one_result_per_part() {
    let x = iota(&[1, 5]);
    let a = [("axis", attr::i64(1)), ("split_size", attr::ints(&[2, 3]))];
    let ys = run_op_multi("top.Split", &x, &[], &a, &[&[1, 2], &[1, 3]]);
    assert_eq!(ys, vec![t(&[1, 2], vec![0.0, 1.0]), t(&[1, 3], vec![2.0, 3.0, 4.0])]);
}

#[test]
fn pad_modes() {
    let x = t(&[1, 3], vec![1.0, 2.0, 3.0]);
    let p = ("paddings", attr::ints(&[0, 2, 0, 2]));
    let y =
        run_op("top.Pad", &x, &[], &[p.clone(), ("mode", attr::str("constant")), ("val", attr::f64(-1.0))], &[1, 7]);
    assert_eq!(y, t(&[1, 7], vec![-1.0, -1.0, 1.0, 2.0, 3.0, -1.0, -1.0]));
    let y = run_op("top.Pad", &x, &[], &[p.clone(), ("mode", attr::str("reflect"))], &[1, 7]);
    assert_eq!(y, t(&[1, 7], vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]));
    let y = run_op("top.Pad", &x, &[], &[p, ("mode", attr::str("edge"))], &[1, 7]);
    assert_eq!(y, t(&[1, 7], vec![1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]));
    // leading axis padded with a constant, trailing cropped
    let y = run_op("top.Pad", &x, &[], &[("paddings", attr::ints(&[1, 0, 0, -1])), ("val", attr::f64(0.0))], &[2, 2]);
    assert_eq!(y, t(&[2, 2], vec![0.0, 0.0, 1.0, 2.0]));
}

#[test]
fn upsample_nearest_integer() {
    let x = t(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let y = run_op("top.Upsample", &x, &[], &[("scale_h", attr::i64(2)), ("scale_w", attr::i64(2))], &[1, 1, 4, 4]);
    let want = vec![1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.];
    assert_eq!(y, t(&[1, 1, 4, 4], want));
}

fn interp_attrs(mode: &str, coord: &str, sh: f64, sw: f64) -> Vec<(&'static str, Attr)> {
    vec![
        ("mode", attr::str(mode)),
        ("coord_mode", attr::str(coord)),
        ("scale_h", attr::f64(sh)),
        ("scale_w", attr::f64(sw)),
    ]
}

#[test]
fn interp_modes() {
    let x = t(&[1, 1, 1, 2], vec![1.0, 2.0]);
    let y = run_op("top.Interp", &x, &[], &interp_attrs("nearest", "asymmetric", 1.0, 2.0), &[1, 1, 1, 4]);
    assert_eq!(y, t(&[1, 1, 1, 4], vec![1.0, 1.0, 2.0, 2.0]));
    let y = run_op("top.Interp", &x, &[], &interp_attrs("linear", "half_pixel", 1.0, 2.0), &[1, 1, 1, 4]);
    assert_eq!(y, t(&[1, 1, 1, 4], vec![1.0, 1.25, 1.75, 2.0]));
    let y = run_op("top.Interp", &x, &[], &interp_attrs("linear", "pytorch_half_pixel", 1.0, 2.0), &[1, 1, 1, 4]);
    assert_eq!(y, t(&[1, 1, 1, 4], vec![1.0, 1.25, 1.75, 2.0]));
    let y = run_op("top.Interp", &x, &[], &interp_attrs("linear", "align_corners", 1.0, 1.5), &[1, 1, 1, 3]);
    assert_eq!(y, t(&[1, 1, 1, 3], vec![1.0, 1.5, 2.0]));
    let y = run_op("top.Interp", &x, &[], &interp_attrs("linear", "asymmetric", 1.0, 2.0), &[1, 1, 1, 4]);
    assert_eq!(y, t(&[1, 1, 1, 4], vec![1.0, 1.5, 2.0, 2.0]));
    // bilinear in both axes: 2x2 -> 3x3 align_corners gives the centre average
    let x = t(&[1, 1, 2, 2], vec![0.0, 2.0, 4.0, 6.0]);
    let y = run_op("top.Interp", &x, &[], &interp_attrs("linear", "align_corners", 1.5, 1.5), &[1, 1, 3, 3]);
    assert_eq!(y, t(&[1, 1, 3, 3], vec![0.0, 1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0, 6.0]));
    // nearest half_pixel downscale by 2 picks odd... (x+0.5)*2-0.5 = 0.5, 2.5 -> round half down: 0, 2
    let x = iota(&[1, 1, 1, 4]);
    let y = run_op("top.Interp", &x, &[], &interp_attrs("nearest", "half_pixel", 1.0, 0.5), &[1, 1, 1, 2]);
    assert_eq!(y, t(&[1, 1, 1, 2], vec![0.0, 2.0]));
}

#[test]
fn reduce_modes() {
    let x = iota(&[2, 3]);
    let a = |mode: &str, keep: bool| {
        vec![("mode", attr::str(mode)), ("axes", attr::ints(&[1])), ("keepdims", attr::bool(keep))]
    };
    assert_eq!(run_op("top.Reduce", &x, &[], &a("ReduceMean", true), &[2, 1]), t(&[2, 1], vec![1.0, 4.0]));
    assert_eq!(run_op("top.Reduce", &x, &[], &a("ReduceMax", false), &[2]), t(&[2], vec![2.0, 5.0]));
    assert_eq!(run_op("top.Reduce", &x, &[], &a("ReduceSum", false), &[2]), t(&[2], vec![3.0, 12.0]));
    let all = [("mode", attr::str("ReduceSum")), ("axes", attr::ints(&[0, -1])), ("keepdims", attr::bool(false))];
    assert_eq!(run_op("top.Reduce", &x, &[], &all, &[]), t(&[], vec![15.0]));
}

/// input -> conv -> leaky -> {maxpool -> out0, add(leaky, leaky) -> out1}
fn small_net() -> (Module, Weights) {
    let mut g = Graph::default();
    let x = g.input("data", &[1, 2, 4, 4]);
    let w = g.weight("conv_w", noise(&[3, 2, 3, 3], 7));
    let b = g.weight("conv_b", t(&[3], vec![0.1, -0.2, 0.3]));
    let c =
        g.op("top.Conv", vec![x, w, b], &conv_attrs([3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1), "conv", &[1, 3, 4, 4]);
    let l = g.op("top.LeakyRelu", vec![c], &[("alpha", attr::f64(0.1))], "leaky", &[1, 3, 4, 4]);
    let p = g.op("top.MaxPool", vec![l], &pool_attrs([2, 2], [2, 2], [0; 4], false), "pool", &[1, 3, 2, 2]);
    let s = g.op("top.Add", vec![l, l], &[], "sum", &[1, 3, 4, 4]);
    g.module(vec![p, s])
}

#[test]
fn run_observe_sees_every_op_result_once_in_order() {
    let (m, w) = small_net();
    let interp = Interpreter::new(&m, &w).unwrap();
    let x = noise(&[1, 2, 4, 4], 3);
    let mut seen = Vec::new();
    let outs = interp
        .run_observe(std::slice::from_ref(&x), &mut |v, t| {
            seen.push((m.func.values[v].name.clone(), t.shape().to_vec()))
        })
        .unwrap();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["data", "conv", "leaky", "pool", "sum"]);
    assert_eq!(seen[1].1, vec![1, 3, 4, 4]);
    // outputs agree with run_all and with eval_op on the stored intermediates
    let all = interp.run_all(std::slice::from_ref(&x)).unwrap();
    let leaky = m.func.value_by_name("leaky").unwrap();
    let conv = m.func.value_by_name("conv").unwrap();
    assert_eq!(outs[0], *all[m.func.returns[0]].as_ref().unwrap());
    assert_eq!(outs[1], all[leaky].as_ref().unwrap() * 2.0);
    assert!(all[m.func.value_by_name("conv_w").unwrap()].is_none());
    // conv is op 3 (Input, Weight, Weight, Conv): its filter and bias come from the store
    let again = interp.eval_op(3, &[Some(&x), None, None]).unwrap();
    assert_eq!(again[0], *all[conv].as_ref().unwrap());
    let leaky_again = interp.eval_op(4, &[all[conv].as_ref()]).unwrap();
    assert_eq!(leaky_again[0], *all[leaky].as_ref().unwrap());
    // a second run gives identical results
    assert_eq!(interp.run(std::slice::from_ref(&x)).unwrap(), outs);
}

/// Bits of a tensor's elements, for exact comparisons.
fn bits(t: &Tensor) -> Vec<u32> {
    t.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn spans_give_the_whole_run_and_a_stacked_tail_gives_each_sample_bit_for_bit() {
    let (m, w) = small_net();
    let mut interp = Interpreter::new(&m, &w).unwrap();
    for fast in [false, true] {
        interp.set_fast_conv(fast);
        let xs = [noise(&[1, 2, 4, 4], 11), noise(&[1, 2, 4, 4], 12), noise(&[1, 2, 4, 4], 13)];
        let alone: Vec<Vec<Option<Tensor>>> =
            xs.iter().map(|x| interp.run_all(std::slice::from_ref(x)).unwrap()).collect();
        // ops: Input, Weight, Weight, Conv, LeakyRelu | MaxPool, Add
        let (cut, leaky) = (5, m.func.value_by_name("leaky").unwrap());
        let mut envs = Vec::new();
        for (x, all) in xs.iter().zip(&alone) {
            let mut env = Vec::new();
            let mut seen = Vec::new();
            interp
                .run_span(
                    0..cut,
                    1,
                    std::slice::from_ref(x),
                    &mut env,
                    SpanMode::Observe(&mut |v, t| seen.push((v, bits(t)))),
                )
                .unwrap();
            let want: Vec<(ValueId, Vec<u32>)> = ["data", "conv", "leaky"]
                .iter()
                .map(|n| m.func.value_by_name(n).unwrap())
                .map(|v| (v, bits(all[v].as_ref().unwrap())))
                .collect();
            assert_eq!(seen, want, "fast {fast}");
            // only what the tail reads is left
            let left: Vec<ValueId> = (0..env.len()).filter(|&v| env[v].is_some()).collect();
            assert_eq!(left, [leaky]);
            envs.push(env);
        }
        let parts: Vec<ndarray::ArrayViewD<'_, f32>> = envs.iter().map(|e| e[leaky].as_ref().unwrap().view()).collect();
        let mut tail = vec![None; m.func.values.len()];
        tail[leaky] = Some(ndarray::concatenate(ndarray::Axis(0), &parts).unwrap());
        interp.run_span(cut..interp.op_count(), 3, &[], &mut tail, SpanMode::KeepAll).unwrap();
        for name in ["pool", "sum"] {
            let v = m.func.value_by_name(name).unwrap();
            let stacked = tail[v].as_ref().unwrap();
            assert_eq!(stacked.shape()[0], 3, "{name}");
            for (k, all) in alone.iter().enumerate() {
                let one = all[v].as_ref().unwrap();
                let slice = stacked.index_axis(ndarray::Axis(0), k);
                assert_eq!(
                    slice.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    bits(one),
                    "{name} sample {k} fast {fast}"
                );
            }
        }
        // a stacked span whose results do not stack the declared type is an error naming the op
        let mut bad = vec![None; m.func.values.len()];
        bad[leaky] = Some(noise(&[2, 3, 4, 4], 5));
        let err = interp.run_span(cut..interp.op_count(), 3, &[], &mut bad, SpanMode::KeepAll).unwrap_err();
        assert!(err.to_string().starts_with("op 'pool' (top.MaxPool): computed shape [2, 3, 2, 2] differs"), "{err}");
    }
}

#[test]
fn errors_name_the_op() {
    let (m, w) = small_net();
    let mut w2 = w.clone();
    w2.map.remove("conv_b");
    let err = Interpreter::new(&m, &w2).err().unwrap();
    assert_eq!(err.to_string(), "op 'conv_b' (top.Weight): no such weight in the weight store");

    let interp = Interpreter::new(&m, &w).unwrap();
    let err = interp.run(&[iota(&[1, 2, 4, 5])]).unwrap_err();
    assert_eq!(err.to_string(), "input 0: shape [1, 2, 4, 5] does not match the argument type [1, 2, 4, 4]");
    let err = interp.run(&[]).unwrap_err();
    assert_eq!(err.to_string(), "input 0: 0 inputs given, the function takes 1");

    let mut g = Graph::default();
    let x = g.input("x", &[1, 2]);
    let y = g.op("top.Frobnicate", vec![x], &[], "weird", &[1, 2]);
    let (m, w) = g.module(vec![y]);
    let err = Interpreter::new(&m, &w).unwrap().run(&[iota(&[1, 2])]).unwrap_err();
    assert_eq!(err.to_string(), "op 'weird': unsupported op type top.Frobnicate");

    let mut g = Graph::default();
    let x = g.input("x", &[1, 2]);
    let y = g.op("top.LeakyRelu", vec![x], &[], "leaky", &[1, 2]);
    let (m, w) = g.module(vec![y]);
    let err = Interpreter::new(&m, &w).unwrap().run(&[iota(&[1, 2])]).unwrap_err();
    assert_eq!(err.to_string(), "op 'leaky' (top.LeakyRelu): missing attribute 'alpha'");

    let mut g = Graph::default();
    let x = g.input("x", &[1, 2]);
    let y = g.op("top.Relu", vec![x], &[], "relu", &[1, 3]);
    let (m, w) = g.module(vec![y]);
    let err = Interpreter::new(&m, &w).unwrap().run(&[iota(&[1, 2])]).unwrap_err();
    assert_eq!(err.to_string(), "op 'relu' (top.Relu): computed shape [1, 2] differs from the result type [1, 3]");
}

#[test]
fn weights_of_other_types_are_converted_once() {
    let mut g = Graph::default();
    let x = g.input("x", &[3]);
    let idx = g.func.push_op("top.Weight", vec![], Attrs::new(), "idx", TensorType::f32(vec![2]));
    g.weights.insert("idx", TensorData::I64(ndarray::arr1(&[2i64, 0]).into_dyn()));
    let y = g.op("top.Gather", vec![x, idx], &[("axis", attr::i64(0))], "g", &[2]);
    let (m, w) = g.module(vec![y]);
    let out = Interpreter::new(&m, &w).unwrap().run(&[t(&[3], vec![5.0, 6.0, 7.0])]).unwrap();
    assert_eq!(out[0], t(&[2], vec![7.0, 5.0]));
}

#[test]
fn fused_conv_activation_in_run_equals_observed_run() {
    // conv -> leaky (dense, partial tiles) and depthwise conv -> relu6; run() fuses both pairs
    let mut g = Graph::default();
    let x = g.input("x", &[1, 8, 17, 19]);
    let w = g.weight("w", noise(&[13, 8, 3, 3], 11));
    let b = g.weight("b", noise(&[13], 12));
    let c =
        g.op("top.Conv", vec![x, w, b], &conv_attrs([3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1), "c", &[1, 13, 17, 19]);
    let l = g.op("top.LeakyRelu", vec![c], &[("alpha", attr::f64(0.1))], "l", &[1, 13, 17, 19]);
    let dw = g.weight("dw", noise(&[13, 1, 3, 3], 13));
    let db = g.weight("db", noise(&[13], 14));
    let d =
        g.op("top.Conv", vec![l, dw, db], &conv_attrs([3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 13), "d", &[1, 13, 9, 10]);
    let r = g.op("top.Relu", vec![d], &[("relu_limit", attr::f64(0.5))], "r", &[1, 13, 9, 10]);
    let (m, w) = g.module(vec![l, r]);
    let interp = Interpreter::new(&m, &w).unwrap();
    let input = [noise(&[1, 8, 17, 19], 15)];
    let fused = interp.run(&input).unwrap();
    let mut seen = 0;
    let observed = interp.run_observe(&input, &mut |_, _| seen += 1).unwrap();
    assert_eq!(seen, 5);
    assert_eq!(fused, observed);
    assert!(fused[0].iter().any(|&v| v < 0.0) && fused[1].iter().all(|&v| (0.0..=0.5).contains(&v)));
}

/// A 3x3 stride-1 convolution evaluated on row strips (each strip the input rows under 4·b
/// output rows, zero rows outside the image) gives those output rows of the whole run bit for
/// bit, with the Winograd filter and with the direct one; strips that do not fit are refused.
#[test]
fn conv_strips_give_the_rows_of_the_whole_convolution() {
    let (c, h, w) = (16, 21, 23);
    let mut g = Graph::default();
    let xi = g.input("x", &[1, c, h, w]);
    let wt = g.weight("w", noise(&[24, c, 3, 3], 5));
    let b = g.weight("b", noise(&[24], 6));
    let y =
        g.op("top.Conv", vec![xi, wt, b], &conv_attrs([3, 3], [1, 1], [1, 0, 2, 1], [1, 1], 1), "y", &[1, 24, 22, 22]);
    let (m, ws) = g.module(vec![y]);
    let conv = m.func.ops.iter().position(|o| o.kind == "top.Conv").unwrap();
    let x = noise(&[1, c, h, w], 7);
    for fast in [true, false] {
        let mut interp = Interpreter::new(&m, &ws).unwrap();
        interp.set_fast_conv(fast);
        assert_eq!(interp.runs_winograd(conv), fast && sgemm::available());
        let pads = interp.conv_pads(conv).expect("a 3x3 stride-1 convolution");
        assert_eq!(pads, [1, 0, 2, 1]);
        let whole = interp.eval_op(conv, &[Some(&x), None, None]).unwrap().remove(0);
        let (oc, oh, ow) = (whole.shape()[1], whole.shape()[2], whole.shape()[3]);
        let xs = x.as_slice().unwrap();
        for band in [1usize, 2] {
            let rows = 4 * band;
            let strips = oh.div_ceil(rows);
            let mut data = vec![0f32; strips * c * (rows + 2) * w];
            for (s, strip) in data.chunks_exact_mut(c * (rows + 2) * w).enumerate() {
                for (ch, plane) in strip.chunks_exact_mut((rows + 2) * w).enumerate() {
                    for (i, line) in plane.chunks_exact_mut(w).enumerate() {
                        let iy = (s * rows + i) as isize - pads[0] as isize;
                        if iy >= 0 && (iy as usize) < h {
                            let at = (ch * h + iy as usize) * w;
                            line.copy_from_slice(&xs[at..at + w]);
                        }
                    }
                }
            }
            let got = interp.eval_conv_strips(conv, &t(&[strips, c, rows + 2, w], data)).unwrap();
            assert_eq!(got.shape(), &[strips, oc, rows, ow]);
            for s in 0..strips {
                for o in 0..oc {
                    for yy in 0..rows.min(oh - s * rows) {
                        for xx in 0..ow {
                            let (a, b) = (got[[s, o, yy, xx]], whole[[0, o, s * rows + yy, xx]]);
                            assert_eq!(
                                a.to_bits(),
                                b.to_bits(),
                                "fast {fast} band {band}: strip {s} ch {o} row {yy} col {xx}"
                            );
                        }
                    }
                }
            }
        }
        let err = interp.eval_conv_strips(conv, &Tensor::zeros(IxDyn(&[1, c, 6, w + 1]))).unwrap_err();
        assert_eq!(err.to_string(), "op 'y' (top.Conv): strips [1, 16, 6, 24] do not fit the input [1, 16, 21, 23]");
    }
}
