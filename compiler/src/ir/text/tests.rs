use super::*;
use crate::ir::{attr, Attr, Attrs, ElemType, Module, Quant, TensorType};

const REFERENCE_MLIR: &[&str] = &[
    "reference/tiny-yolov3/tpu-mlir/yolov3_tiny.mlir",
    "reference/tiny-yolov3/tpu-mlir/int8_bm1684x/yolov3_tiny_bm1684x_int8_sym_tpu.mlir",
    "reference/tiny-yolov3/tpu-mlir/int8_cv183x/yolov3_tiny_cv183x_int8_sym_tpu.mlir",
    "reference/tiny-yolov3/tpu-mlir/F16/yolov3_tiny_bm1684x_f16_tpu.mlir",
    "reference/tiny-yolov3/tpu-mlir/BF16/yolov3_tiny_bm1684x_bf16_tpu.mlir",
    "reference/tpu-mlir-vectors/c_bm1684x.mlir",
    "reference/tpu-mlir-vectors/c_cv183x.mlir",
    "reference/tpu-mlir-vectors/cnet.mlir",
    "reference/tpu-mlir-vectors/tnet.mlir",
    "reference/tpu-mlir-vectors/tnet_bm1684x_int8.mlir",
    "reference/tpu-mlir-vectors/tnet_cv183x_int8.mlir",
    "reference/tpu-mlir-vectors/tnet_origin.mlir",
];

fn asset_text(p: &str) -> String {
    let path = format!("{}/../assets/{p}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load(p: &str) -> Module {
    parse_module(&asset_text(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn reference_files_print_back_byte_for_byte() {
    for p in REFERENCE_MLIR {
        let text = asset_text(p);
        let m = parse_module(&text).unwrap_or_else(|e| panic!("{p}: {e}"));
        let printed = print_module(&m);
        // tpuc-opt output ends with an empty line, the python importer's (tnet_origin) does not
        if printed != text && printed.trim_end() != text.trim_end() {
            let line = printed.lines().zip(text.lines()).position(|(a, b)| a != b);
            let diff = line.map(|l| (printed.lines().nth(l).unwrap(), text.lines().nth(l).unwrap()));
            panic!("{p}: printed text differs at line {line:?}: {diff:#?}");
        }
        let again = parse_module(&printed).unwrap();
        assert_eq!(again, m, "{p}: parse(print(m)) != m");
        assert_eq!(print_module(&again), printed, "{p}");
    }
}

#[test]
fn top_module_structure_and_values() {
    let m = load("reference/tiny-yolov3/tpu-mlir/yolov3_tiny.mlir");
    assert_eq!(m.name, "yolov3_tiny");
    assert_eq!(m.attrs.get("weight_file"), Some(&attr::str("yolov3_tiny_top_f32_all_weight.npz")));
    assert_eq!(m.attrs.get("FLOPs"), Some(&attr::i64(5582872243)));
    let f = &m.func;
    assert_eq!(f.args.len(), 1);
    assert_eq!(f.values[f.args[0]].ty, TensorType::f32(vec![1, 3, 416, 416]));
    assert_eq!(f.ops.len(), 59);
    let input = &f.ops[0];
    assert_eq!(input.kind, "top.Input");
    assert_eq!(f.op_name(input), "input_1");
    assert_eq!(input.attrs.get("scale"), Some(&Attr::FloatArray(vec![0.0039216000586748123; 3])));
    assert_eq!(input.attr_i64("pad_value").unwrap(), 128);
    let conv = &f.ops[3];
    assert_eq!(f.op_name(conv), "conv2d_1_Conv");
    assert_eq!(conv.operands, vec![f.ops[0].results[0], f.ops[1].results[0], f.ops[2].results[0]]);
    assert_eq!(conv.attr_f64("relu_limit").unwrap(), -1.0);
    assert_eq!(f.ops[4].attr_f64("alpha").unwrap(), 0.10000000149011612);
    let concat = f.ops.iter().find(|o| o.kind == "top.Concat").unwrap();
    assert_eq!(concat.attrs.get("axis"), Some(&Attr::Int(1, "si32".into())));
    let names: Vec<&str> = f.returns.iter().map(|&r| f.values[r].name.as_str()).collect();
    assert_eq!(names, ["convolution_output1_Conv", "convolution_output_Conv"]);
}

#[test]
fn lowered_int8_values() {
    let m = load("reference/tiny-yolov3/tpu-mlir/int8_bm1684x/yolov3_tiny_bm1684x_int8_sym_tpu.mlir");
    let f = &m.func;
    assert_eq!(m.attrs.get("state"), Some(&attr::str("TPU_LOWERED")));
    assert!(f.ops[0].is_none());
    assert_eq!(f.values[f.ops[0].results[0]].ty, TensorType::None);
    let input_ty = &f.values[f.ops[1].results[0]].ty;
    assert_eq!(input_ty.quant(), Some(Quant::Calibrated { min: 0.0, max: 0.99409919999999996 }));
    let cast = &f.ops[2];
    assert_eq!(f.op_name(cast), "input_1conv2d_1_Conv_ui8");
    assert_eq!(
        f.values[cast.results[0]].ty,
        TensorType::Tensor {
            shape: vec![1, 3, 416, 416],
            elem: ElemType::UI8,
            quant: Some(Quant::Uniform { signed: false, bits: 8, scale: 0.0038984282352941173, zero_point: 0 }),
        }
    );
    assert_eq!(cast.attrs.get("round_mode"), Some(&attr::tpu_enum("round_mode", "HalfAwayFromZero")));
    assert_eq!(f.values[f.ops[3].results[0]].ty.elem(), Some(ElemType::SI8));
    let conv = &f.ops[5];
    assert_eq!(conv.kind, "tpu.Conv2D");
    assert_eq!(
        conv.attr_ints("multiplier").unwrap(),
        vec![
            79469, 584799, 211623, 299855, 524227, 971315, 1414801, 172697, 1516791, 228311, 54831, 886163, 45021,
            63825, 470001, 143645
        ]
    );
    assert_eq!(conv.attr_ints("rshift").unwrap()[..3], [27, 29, 30]);
    assert_eq!(conv.attr_str("quant_mode").unwrap(), "MultiplierShift");
    match f.values[conv.results[0]].ty.quant() {
        Some(Quant::Uniform { signed: true, bits: 8, scale, zero_point: 0 }) => assert_eq!(scale, 0.34890278110236217),
        other => panic!("{other:?}"),
    }
    let lrelu = &f.ops[6];
    assert_eq!(lrelu.attrs.get("multiplier"), Some(&attr::si32(51)));
    let up = f.ops.iter().find(|o| o.kind == "tpu.Upsample").unwrap();
    assert_eq!(up.operands[1], f.ops[0].results[0]);
}

#[test]
fn generic_cpu_param_dictionary_is_flattened() {
    let m = load("reference/tpu-mlir-vectors/c_cv183x.mlir");
    let op = &m.func.ops[2];
    assert_eq!(op.kind, "tpu.GenericCpu");
    assert_eq!(op.attrs.get("param_from"), Some(&attr::str("FP32")));
    assert_eq!(op.attrs.get("param_to"), Some(&attr::str("INT8")));
    assert_eq!(op.attrs.get("param_scale"), Some(&Attr::Float(127.0, "f32".into())));
    assert_eq!(op.attr_str("cpu_op_name").unwrap(), "quant");
}

#[test]
fn unranked_tensors_round_trip() {
    let m = load("reference/tpu-mlir-vectors/tnet_origin.mlir");
    let conv = &m.func.ops[4];
    assert_eq!(
        m.func.values[conv.results[0]].ty,
        TensorType::Tensor { shape: vec![UNRANKED_DIM], elem: ElemType::F32, quant: None }
    );
}

/// A module exercising the forms tpu-mlir's files do not contain.
fn synthetic() -> Module {
    let mut m = Module { name: "syn".into(), attrs: Attrs::new(), func: Default::default() };
    m.attrs.insert("state".into(), attr::str("TOP_F32"));
    let f = &mut m.func;
    let a = f.add_value("in:0/x", TensorType::f32(vec![2, 4]));
    f.args.push(a);
    let none = f.push_op("top.None", vec![], Attrs::new(), "", TensorType::None);
    let mut at = Attrs::new();
    at.insert("axis".into(), attr::i64(1));
    at.insert("split_size".into(), attr::ints(&[2, 2]));
    at.insert("weird key".into(), attr::str("quote \" and \\ and \n"));
    at.insert("names".into(), Attr::StrArray(vec!["a".into(), "b".into()]));
    at.insert("f".into(), Attr::Float(-3.3333333333333335e-6, "f64".into()));
    at.insert("bare".into(), Attr::Int(-7, String::new()));
    at.insert("big".into(), attr::f64(1e300));
    at.insert("nan".into(), Attr::Float(f64::INFINITY, "f32".into()));
    let r0 = f.add_value("part_a", TensorType::f32(vec![2, 2]));
    let r1 = f.add_value("part_b", TensorType::f32(vec![2, 2]));
    f.ops.push(crate::ir::Op { kind: "top.Split".into(), operands: vec![a], results: vec![r0, r1], attrs: at });
    let q = TensorType::Tensor {
        shape: vec![2, 2],
        elem: ElemType::SI8,
        quant: Some(Quant::Uniform { signed: true, bits: 8, scale: 0.5, zero_point: -3 }),
    };
    let add = f.push_op("top.Add", vec![r1, r0, none], Attrs::new(), "add", q);
    let scalar = f.push_op("top.Weight", vec![], Attrs::new(), "w", TensorType::f32(vec![]));
    f.returns = vec![add, r0, scalar];
    m
}

#[test]
fn synthetic_forms_round_trip() {
    let m = synthetic();
    let text = print_module(&m);
    assert!(text.contains("%1:2 = \"top.Split\"(%arg0)"), "{text}");
    assert!(text.contains("\"top.Add\"(%1#1, %1#0, %0)"), "{text}");
    assert!(text.contains("!quant.uniform<i8:f32, 5.000000e-01:-3>"), "{text}");
    assert!(text.contains("\"weird key\" = \"quote \\\" and \\\\ and \\0A\""), "{text}");
    assert!(text.contains("nan = 0x7F800000 : f32"), "{text}");
    assert!(text.contains("tensor<f32>"), "{text}");
    assert!(text.contains("loc(fused[#loc"), "{text}");
    let back = parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, m);
    assert_eq!(print_module(&back), text);
}

#[test]
fn errors_name_line_column_and_expectation() {
    let text = asset_text("reference/tpu-mlir-vectors/tnet.mlir");
    let broken = text.replace("%4 = \"top.LeakyRelu\"(%3)", "%4 = \"top.LeakyRelu\"(%3 %2)");
    let e = parse_module(&broken).unwrap_err();
    assert_eq!((e.line, e.column), (8, 29), "{e}");
    assert_eq!(e.msg, "expected ',' or ')'");

    let broken = text.replace("tensor<4x3x3x3xf32> loc(#loc2)", "tensor<4x3x3x3xf31> loc(#loc2)");
    let e = parse_module(&broken).unwrap_err();
    assert_eq!(e.line, 5);
    assert!(e.msg.starts_with("expected an element type"), "{e}");

    let broken = text.replace("\"top.MaxPool\"(%4)", "\"top.MaxPool\"(%9)");
    let e = parse_module(&broken).unwrap_err();
    assert_eq!(e.to_string(), "line 9, column 24: use of undefined value %9");

    let broken = text.replace("#loc6 = loc(\"pool_MaxPool\")\n", "");
    let e = parse_module(&broken).unwrap_err();
    assert_eq!(e.msg, "undefined location alias #loc6");

    let broken =
        text.replace("(tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>", "(tensor<1x4x8x9xf32>) -> tensor<1x4x4x4xf32>");
    let e = parse_module(&broken).unwrap_err();
    assert!(e.msg.contains("has type tensor<1x4x8x8xf32> at its definition but tensor<1x4x8x9xf32> here"), "{e}");
}

#[test]
fn no_panic_on_truncated_or_mangled_input() {
    let text = asset_text("reference/tpu-mlir-vectors/c_cv183x.mlir");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut failures = 0;
    for _ in 0..300 {
        let mut cut = (next() % text.len() as u64) as usize;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        if parse_module(&text[..cut]).is_err() {
            failures += 1;
        }
        // replace one byte by a random ASCII character
        let mut bytes = text.clone().into_bytes();
        let p = (next() % bytes.len() as u64) as usize;
        bytes[p] = b" !\"#%()*+,-.0123456789:<=>@[]{}abcxz"[(next() % 36) as usize];
        let _ = parse_module(&String::from_utf8_lossy(&bytes));
    }
    assert!(failures > 280, "truncated files should fail to parse ({failures})");
    let deep = format!(
        "module {{ func.func @main() {{ return loc({}unknown{}) }} }}",
        "fused[".repeat(5000),
        "]".repeat(5000)
    );
    assert!(parse_module(&deep).is_err());
}
