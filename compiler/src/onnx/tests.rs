//! Import tests on the bundled real models and on small hand-built graphs.

use super::proto::*;
use super::*;
use crate::ir::Func;
use prost::Message;
use std::path::PathBuf;

fn asset(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/")).join(rel)
}

/// (kind, name, result shape) of every op of a tpu-mlir top MLIR, read line by line.
fn reference_ops(text: &str) -> Vec<(String, String, Vec<usize>)> {
    let mut locs = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#loc") {
            if let Some((num, val)) = rest.split_once(" = loc(\"") {
                locs.insert(num.to_string(), val.trim_end_matches("\")").to_string());
            }
        }
    }
    let mut ops = Vec::new();
    for line in text.lines() {
        let Some(k0) = line.find("= \"top.") else { continue };
        let kind = line[k0 + 3..].split('"').next().unwrap().to_string();
        let arrow = line.rfind("-> ").unwrap();
        let ty = &line[arrow + 3..];
        let shape = if ty.starts_with("none") {
            vec![]
        } else {
            let inner = ty.trim_start_matches("tensor<").split('>').next().unwrap();
            let dims: Vec<&str> = inner.split('x').collect();
            dims[..dims.len() - 1].iter().map(|d| d.parse().unwrap()).collect()
        };
        let loc = line.rsplit("loc(#loc").next().unwrap().trim_end_matches(')');
        ops.push((kind, locs[loc].clone(), shape));
    }
    ops
}

fn our_ops(f: &Func) -> Vec<(String, String, Vec<usize>)> {
    f.ops
        .iter()
        .map(|o| (o.kind.clone(), f.op_name(o).to_string(), f.values[o.results[0]].ty.shape().to_vec()))
        .collect()
}

fn yolov3_opts() -> ImportOptions {
    ImportOptions {
        model_name: "yolov3_tiny".into(),
        input_shapes: Some(vec![vec![1, 3, 416, 416]]),
        output_names: vec!["convolution_output1".into(), "convolution_output".into()],
        preprocess: None,
    }
}

#[test]
fn tiny_yolov3_matches_the_reference_top_mlir() {
    let (m, w) = import(&asset("models/tiny-yolov3-11.onnx"), &yolov3_opts()).unwrap();
    let text = std::fs::read_to_string(asset("reference/tiny-yolov3/tpu-mlir/yolov3_tiny.mlir")).unwrap();
    // with tpu-mlir's preprocessing flags the printed module is tpu-mlir's text, byte for byte
    let mut with_pre = yolov3_opts();
    with_pre.preprocess = Some(PreprocessConfig {
        mean: vec![0.0; 3],
        scale: vec![0.0039216f32 as f64; 3],
        pixel_format: crate::preprocess::PixelFormat::Rgb,
        channel_format: ChannelFormat::Nchw,
        keep_aspect_ratio: true,
        pad_value: 128,
        pad_type: crate::preprocess::PadType::Center,
        resize_dims: vec![],
    });
    let (mp, _) = import(&asset("models/tiny-yolov3-11.onnx"), &with_pre).unwrap();
    assert_eq!(crate::ir::text::print_module(&mp), text);
    let want = reference_ops(&text);
    assert_eq!(want.len(), 59);
    assert_eq!(our_ops(&m.func), want);
    let count = |k: &str| m.func.ops.iter().filter(|o| o.kind == k).count();
    assert_eq!((count("top.Conv"), count("top.LeakyRelu"), count("top.MaxPool")), (13, 11, 6));
    assert_eq!((count("top.Upsample"), count("top.Concat"), count("top.Weight")), (1, 1, 26));
    // the k2 s1 pool keeps its asymmetric pads
    let pool = m.func.ops.iter().find(|o| m.func.op_name(o) == "max_pooling2d_11_MaxPool").unwrap();
    assert_eq!(pool.attr_ints("pads").unwrap(), vec![0, 0, 1, 1]);
    assert_eq!(pool.attr_ints("strides").unwrap(), vec![1, 1]);
    let up = m.func.ops.iter().find(|o| o.kind == "top.Upsample").unwrap();
    assert_eq!((up.attr_i64("scale_h").unwrap(), up.attr_i64("scale_w").unwrap()), (2, 2));
    let names: Vec<&str> = m.func.returns.iter().map(|&r| m.func.values[r].name.as_str()).collect();
    assert_eq!(names, ["convolution_output1_Conv", "convolution_output_Conv"]);
    // every weight op has its data, with the op's shape
    for op in m.func.ops.iter().filter(|o| o.is_weight()) {
        let name = m.func.op_name(op);
        assert_eq!(w.get(name).unwrap().shape(), m.func.values[op.results[0]].ty.shape(), "{name}");
    }
    assert_eq!(w.map.len(), 26);
    assert_eq!(m.attrs.get("weight_file"), Some(&attr::str("yolov3_tiny_top_f32_all_weight.npz")));
    assert_eq!(m.attrs.get("FLOPs"), Some(&attr::i64(5_582_872_243)));
    let input = &m.func.ops[0];
    assert_eq!(input.kind, "top.Input");
    assert_eq!(input.attrs.get("do_preprocess"), Some(&attr::bool(false)));
}

#[test]
fn tiny_yolov3_fused_weights_follow_the_bn_formula() {
    let g = OnnxGraph::load(&asset("models/tiny-yolov3-11.onnx")).unwrap();
    let (_, w) = import(&asset("models/tiny-yolov3-11.onnx"), &yolov3_opts()).unwrap();
    let v = |n: &str| g.initializers[n].to_f32().iter().copied().collect::<Vec<f32>>();
    let (gamma, beta) = (v("batch_normalization_1/gamma"), v("batch_normalization_1/beta"));
    let (mean, var) = (v("batch_normalization_1/mean"), v("batch_normalization_1/var"));
    let w0 = v("conv2d_1/W");
    let fw = w.get("_v_123").unwrap().as_f32().unwrap();
    let fb = w.get("_v_129").unwrap().as_f32().unwrap();
    assert_eq!(fw.shape(), &[16, 3, 3, 3]);
    // tpu-mlir's fold: ONNX Runtime's sqrt (a fast-math estimate; 2 ulps off on channel 5)
    let root = fuse::onnxruntime_sqrt(&var.iter().map(|v| v + 0.001f32).collect::<Vec<f32>>());
    assert_ne!(root[5], (var[5] + 0.001f32).sqrt());
    let s5 = gamma[5] / root[5];
    assert_eq!(fw[[5, 1, 2, 0]], w0[5 * 27 + 9 + 6] * s5);
    assert_eq!(fb[[5]], (0.0 - mean[5]) * s5 + beta[5]);
    // unfused weights of the two plain head convs keep their initializer names
    assert_eq!(w.get("conv2d_10/B").unwrap().shape(), &[255]);
}

#[test]
fn tiny_yolov3_with_preprocess_records_it_on_the_input() {
    let mut o = yolov3_opts();
    o.preprocess = Some(PreprocessConfig {
        mean: vec![0.0; 3],
        scale: vec![0.0039216; 3],
        pixel_format: crate::preprocess::PixelFormat::Rgb,
        channel_format: ChannelFormat::Nchw,
        keep_aspect_ratio: true,
        pad_value: 128,
        pad_type: crate::preprocess::PadType::Center,
        resize_dims: vec![],
    });
    let (m, _) = import(&asset("models/tiny-yolov3-11.onnx"), &o).unwrap();
    let a = &m.func.ops[0].attrs;
    assert_eq!(a.get("resize_dims"), Some(&attr::ints(&[416, 416])));
    assert_eq!(a.get("pad_value"), Some(&attr::i64(128)));
    assert_eq!(a.get("do_preprocess"), Some(&attr::bool(true)));
}

#[test]
fn yolox_nano_imports_with_static_shapes() {
    let o = ImportOptions { model_name: "yolox_nano".into(), ..Default::default() };
    let (m, w) = import(&asset("models/yolox_nano.onnx"), &o).unwrap();
    let f = &m.func;
    assert_eq!(f.values[f.returns[0]].ty.shape(), &[1, 3549, 85]);
    let count = |k: &str| f.ops.iter().filter(|o| o.kind == k).count();
    assert_eq!(count("top.Conv"), 113);
    assert_eq!(count("top.Sigmoid"), 110);
    assert_eq!(count("top.Slice"), 8);
    assert_eq!(count("top.Upsample"), 2);
    assert_eq!(count("top.Permute"), 1);
    let focus = f.ops.iter().find(|o| f.op_name(o) == "input_Concat").unwrap();
    assert_eq!(f.values[focus.results[0]].ty.shape(), &[1, 12, 208, 208]);
    for op in f.ops.iter().filter(|o| o.is_weight()) {
        assert_eq!(w.get(f.op_name(op)).unwrap().shape(), f.values[op.results[0]].ty.shape());
    }
}

#[test]
fn fastestdet_imports_with_static_shapes() {
    let o = ImportOptions { model_name: "FastestDet".into(), ..Default::default() };
    let (m, _) = import(&asset("models/FastestDet.onnx"), &o).unwrap();
    let f = &m.func;
    assert_eq!(f.values[f.returns[0]].ty.shape(), &[1, 85, 22, 22]);
    let count = |k: &str| f.ops.iter().filter(|o| o.kind == k).count();
    assert_eq!(count("top.Conv"), 70);
    assert_eq!(count("top.Gather"), 26);
    assert_eq!(count("top.Relu"), 48);
    assert_eq!(count("top.Softmax"), 1);
    assert_eq!(count("top.Pad"), 1);
    assert_eq!(count("top.AvgPool"), 1);
    assert_eq!(m.attrs.get("weight_file"), Some(&attr::str("fastestdet_top_f32_all_weight.npz")));
}

// ---- small hand-built models ----

fn tensor(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        float_data: data,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| TensorShapeDimension {
            dim_value: if d > 0 { Some(d) } else { None },
            dim_param: if d > 0 { None } else { Some("N".into()) },
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor { elem_type: data_type::FLOAT, shape: Some(TensorShapeProto { dim }) }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: format!("{op}_node"),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), ints: v.to_vec(), r#type: attribute_type::INTS, ..Default::default() }
}

fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, inputs: Vec<ValueInfoProto>, outputs: &[&str]) -> Vec<u8> {
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(GraphProto {
            node: nodes,
            initializer: inits,
            input: inputs,
            output: outputs.iter().map(|o| value_info(o, &[])).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("onnx_import_test_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn conv_bn_model() -> Vec<u8> {
    let w: Vec<f32> = (0..2 * 3 * 3 * 3).map(|i| ((i * 7 % 11) as f32 - 5.0) / 8.0).collect();
    model(
        vec![
            node("Conv", &["x", "w", "b"], &["c"], vec![ints_attr("pads", &[1, 1, 1, 1])]),
            node("BatchNormalization", &["c", "g", "be", "m", "v"], &["bn"], vec![]),
            node("Relu", &["bn"], &["y"], vec![]),
        ],
        vec![
            tensor("w", &[2, 3, 3, 3], w),
            tensor("b", &[2], vec![0.25, -0.5]),
            tensor("g", &[2], vec![1.5, 0.5]),
            tensor("be", &[2], vec![0.1, -0.2]),
            tensor("m", &[2], vec![0.3, -0.7]),
            tensor("v", &[2], vec![2.0, 0.25]),
        ],
        vec![value_info("x", &[1, 3, 4, 4])],
        &["y"],
    )
}

#[test]
fn bn_folding_gives_the_same_conv_output() {
    let p = temp_file("conv_bn.onnx", &conv_bn_model());
    let o = ImportOptions { model_name: "t".into(), ..Default::default() };
    let (fused, fw) = import(&p, &o).unwrap();
    let (plain, pw) = import_with(&p, &o, Simplify { fuse_batchnorm: false }).unwrap();
    let kinds = |f: &Func| f.ops.iter().map(|o| o.kind.as_str().to_string()).collect::<Vec<_>>();
    assert_eq!(kinds(&fused.func), ["top.Input", "top.Weight", "top.Weight", "top.Conv", "top.Relu"]);
    assert_eq!(
        kinds(&plain.func),
        ["top.Input", "top.Weight", "top.Weight", "top.Conv", "top.Weight", "top.Weight", "top.Scale", "top.Relu"]
    );
    // 1 input + 6 initializers + 3 node outputs = 10 values -> _v_28 / _v_34
    assert!(fw.get("_v_28").is_some() && fw.get("_v_34").is_some());
    // evaluate conv (+scale) at one output pixel by hand on a ramp input
    let x: Vec<f32> = (0..48).map(|i| (i as f32 - 20.0) / 10.0).collect();
    let conv_at = |w: &ndarray::ArrayD<f32>, b: f32, oc: usize, oy: usize, ox: usize| -> f32 {
        let mut acc = b;
        for ic in 0..3 {
            for ky in 0..3 {
                for kx in 0..3 {
                    let (iy, ix) = (oy as i64 + ky as i64 - 1, ox as i64 + kx as i64 - 1);
                    if (0..4).contains(&iy) && (0..4).contains(&ix) {
                        acc += w[[oc, ic, ky, kx]] * x[ic * 16 + iy as usize * 4 + ix as usize];
                    }
                }
            }
        }
        acc
    };
    let f32w = |w: &Weights, n: &str| w.get(n).unwrap().as_f32().unwrap().clone();
    let (wf, bf) = (f32w(&fw, "_v_28"), f32w(&fw, "_v_34"));
    let (w0, b0) = (f32w(&pw, "w"), f32w(&pw, "b"));
    let (sc, bi) = (f32w(&pw, "bn_scale"), f32w(&pw, "bn_bias"));
    for oc in 0..2 {
        for (oy, ox) in [(0, 0), (1, 2), (3, 3)] {
            let a = conv_at(&wf, bf[[oc]], oc, oy, ox);
            let b = conv_at(&w0, b0[[oc]], oc, oy, ox) * sc[[oc]] + bi[[oc]];
            assert!((a - b).abs() < 1e-5, "oc {oc} ({oy},{ox}): {a} vs {b}");
        }
    }
}

#[test]
fn shape_subgraphs_are_folded() {
    // y = Reshape(x, Concat(Gather(Shape(x), 0), [-1]))  -> top.Reshape [2, 12]
    let bytes = model(
        vec![
            node("Shape", &["x"], &["s"], vec![]),
            node("Gather", &["s", "zero"], &["n"], vec![]),
            node("Unsqueeze", &["n", "ax0"], &["n1"], vec![]),
            node(
                "Concat",
                &["n1", "minus1"],
                &["shape"],
                vec![AttributeProto { name: "axis".into(), i: 0, r#type: attribute_type::INT, ..Default::default() }],
            ),
            node("Reshape", &["x", "shape"], &["y"], vec![]),
        ],
        vec![
            TensorProto { name: "zero".into(), data_type: data_type::INT64, int64_data: vec![0], ..Default::default() },
            TensorProto {
                name: "ax0".into(),
                dims: vec![1],
                data_type: data_type::INT64,
                int64_data: vec![0],
                ..Default::default()
            },
            TensorProto {
                name: "minus1".into(),
                dims: vec![1],
                data_type: data_type::INT64,
                int64_data: vec![-1],
                ..Default::default()
            },
        ],
        vec![value_info("x", &[0, 3, 4])],
        &["y"],
    );
    let p = temp_file("shape.onnx", &bytes);
    let o = ImportOptions { model_name: "t".into(), input_shapes: Some(vec![vec![2, 3, 4]]), ..Default::default() };
    let (m, w) = import(&p, &o).unwrap();
    assert_eq!(
        our_ops(&m.func),
        vec![
            ("top.Input".to_string(), "x".to_string(), vec![2, 3, 4]),
            ("top.Reshape".to_string(), "y_Reshape".to_string(), vec![2, 12]),
        ]
    );
    assert!(w.map.is_empty());
    // without --input_shapes the symbolic batch is an error
    let o = ImportOptions { model_name: "t".into(), ..Default::default() };
    assert_eq!(
        import(&p, &o).unwrap_err().to_string(),
        "input shapes: input 'x' has dynamic dims [?,3,4]; give --input_shapes"
    );
}

#[test]
fn bad_files_and_options_give_clear_errors() {
    let o = ImportOptions { model_name: "t".into(), ..Default::default() };
    // truncated
    let full = std::fs::read(asset("models/FastestDet.onnx")).unwrap();
    let p = temp_file("truncated.onnx", &full[..full.len() / 2]);
    let e = import(&p, &o).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: not a valid ONNX model: ", p.display())), "{e}");
    // not ONNX at all
    let p = asset("images/misc/dog.jpg");
    let e = import(&p, &o).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: not a valid ONNX model: ", p.display())), "{e}");
    let p = temp_file("text.onnx", b"hello, this is not a model\n");
    let e = import(&p, &o).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: not a valid ONNX model: ", p.display())), "{e}");
    // unknown op
    let bytes = model(
        vec![node("Relu", &["x"], &["r"], vec![]), node("FancyOp", &["r"], &["y"], vec![])],
        vec![],
        vec![value_info("x", &[1, 4])],
        &["y"],
    );
    let p = temp_file("unknown.onnx", &bytes);
    assert_eq!(
        import(&p, &o).unwrap_err().to_string(),
        "unsupported ONNX op type 'FancyOp' (node 'FancyOp_node'); cut the graph before it with --output_names"
    );
    // ... and cutting before it works
    let cut = ImportOptions { output_names: vec!["r".into()], ..o.clone() };
    let (m, _) = import(&p, &cut).unwrap();
    assert_eq!(m.func.ops.last().unwrap().kind, "top.Relu");
    // output names that do not exist
    let bad = ImportOptions { output_names: vec!["r".into(), "nope".into(), "gone".into()], ..o.clone() };
    assert_eq!(import(&p, &bad).unwrap_err().to_string(), "output names not found in the graph: nope, gone");
    // wrong number of input shapes
    let two = ImportOptions { input_shapes: Some(vec![vec![1, 4], vec![1, 4]]), ..o };
    assert_eq!(
        import(&p, &two).unwrap_err().to_string(),
        "input shapes: 2 shape(s) given but the (cut) graph has 1 input(s): x"
    );
}

/// ConvTranspose, AveragePool(ceil), Clip(inputs), HardSigmoid, Pad(reflect), Slice(steps),
/// Transpose, Softmax, ReduceMean, Flatten, Gemm(transB, alpha, beta), PRelu, Resize(linear),
/// Split, Sub, GlobalAveragePool: the interpreter on our import vs ONNX Runtime 1.23's outputs
/// (testdata/opmix.py made the model and the numbers).
#[test]
fn op_mix_matches_onnxruntime() {
    let p = temp_file("opmix.onnx", include_bytes!("testdata/opmix.onnx"));
    let o = ImportOptions { model_name: "opmix".into(), ..Default::default() };
    let (m, w) = import(&p, &o).unwrap();
    let x: Vec<f32> = (0..50).map(|i| ((i as f64 * 0.7 + 0.3).sin() * 0.8) as f32).collect();
    let x = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[1, 2, 5, 5]), x).unwrap();
    let outs = crate::interp::Interpreter::new(&m, &w).unwrap().run(&[x]).unwrap();
    let want_l = [0.898_287_8_f32, -0.106_380_88, 0.114_225_42, 0.292_969_94];
    assert_eq!(outs[0].shape(), &[1, 4]);
    for (a, b) in outs[0].iter().zip(want_l) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    assert_eq!(outs[1].shape(), &[1, 1, 1, 1]);
    assert!((outs[1][[0, 0, 0, 0]] - -0.050_283_97_f32).abs() < 1e-6, "{}", outs[1]);
    let kinds: Vec<&str> = m.func.ops.iter().map(|o| o.short_kind()).filter(|k| *k != "Weight").collect();
    assert_eq!(
        kinds,
        [
            "Input",
            "Deconv",
            "AvgPool",
            "Clip",
            "HardSigmoid",
            "Pad",
            "Slice",
            "Permute",
            "Softmax",
            "Reduce",
            "Reshape",
            "MatMul",
            "PRelu",
            "Interp",
            "Split",
            "Sub",
            "AvgPool"
        ]
    );
}

#[test]
fn imported_modules_round_trip_through_the_text_form() {
    for (model, name) in [("models/yolox_nano.onnx", "yolox_nano"), ("models/FastestDet.onnx", "FastestDet")] {
        let o = ImportOptions { model_name: name.into(), ..Default::default() };
        let (m, _) = import(&asset(model), &o).unwrap();
        let text = crate::ir::text::print_module(&m);
        let back = crate::ir::text::parse_module(&text).unwrap();
        assert_eq!(back, m, "{name}");
    }
}
