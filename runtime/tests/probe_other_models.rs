//! Which lowered ops of yolox_nano and FastestDet (F16, bm1684x) the code generator covers.

mod common;
use common::*;

#[test]
#[ignore = "exploration: prints the first unsupported op"]
fn probe() {
    for (model, input) in
        [("models/yolox_nano.onnx", vec![1, 3, 416, 416]), ("models/FastestDet.onnx", vec![1, 3, 352, 352])]
    {
        let opts = compiler::onnx::ImportOptions {
            model_name: "m".into(),
            input_shapes: Some(vec![input]),
            output_names: vec![],
            preprocess: None,
        };
        let (m, w) = compiler::onnx::import(&asset(model), &opts).unwrap();
        let lo = compiler::lower::LowerOptions {
            chip: compiler::lower::Chip::Bm1684x,
            mode: compiler::lower::Mode::F16,
            asymmetric: false,
            table: None,
            qtable: None,
        };
        match compiler::lower::lower(&m, &w, &lo) {
            Ok((lm, lw)) => {
                let mut kinds: Vec<&str> = lm.func.ops.iter().map(|o| o.kind.as_str()).collect();
                kinds.sort();
                kinds.dedup();
                eprintln!("{model}: kinds {kinds:?}");
                eprintln!(
                    "{model}: {:?}",
                    compiler::codegen::build_bmodel(&lm, &lw, bmodel_format::Chip::Bm1684x).err()
                );
            }
            Err(e) => eprintln!("{model}: lowering failed: {e}"),
        }
    }
}
