//! run_qtable on the real model: on cv183x the table is BF16, two runs write the same bytes
//! (apart from the time stamp), and bad arguments give one clear error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn asset(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets").join(rel)
}

/// Import tiny-yolov3 as model_transform does and save it in `dir`.
fn top_mlir(dir: &Path) -> PathBuf {
    let opts = host_tools::bench::walkthrough_import_options();
    let (mut m, w) = compiler::onnx::import(&asset("models/tiny-yolov3-11.onnx"), &opts).unwrap();
    let p = dir.join("yolov3_tiny.mlir");
    compiler::model_file::save_model(&p, &mut m, &w, "yolov3_tiny_top_f32_all_weight.npz").unwrap();
    p
}

fn run_qtable(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_run_qtable")).args(args).current_dir(dir).output().unwrap()
}

/// The walkthrough's search arguments (`--min_layer_cos 0.999 --expected_cos 0.9999`, tpu-mlir's
/// calibration table, the COCO photos) on `input_num` images for `chip`, writing `out` and `loss`.
fn search_args(mlir: &Path, input_num: &str, chip: &str, out: &str, loss: &str) -> Vec<String> {
    let table = asset("reference/tiny-yolov3/tpu-mlir/yolov3_cali_table");
    let data = asset("images/COCO2017");
    let fixed = ["--min_layer_cos", "0.999", "--expected_cos", "0.9999", "--loss_table", loss, "-o", out];
    [mlir.to_str().unwrap(), "--dataset", data.to_str().unwrap(), "--input_num", input_num]
        .into_iter()
        .chain(["--calibration_table", table.to_str().unwrap(), "--chip", chip])
        .chain(fixed)
        .map(str::to_string)
        .collect()
}

/// The file without its time stamp line.
fn body(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("# genetated time"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn cv183x_search_writes_bf16_tables_deterministically() {
    let dir = std::env::temp_dir().join(format!("qtable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mlir = top_mlir(&dir);
    let args = |out: &str, loss: &str| search_args(&mlir, "2", "cv183x", out, loss);
    for (q, l) in [("q1", "l1.txt"), ("q2", "l2.txt")] {
        let a = args(q, l);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = run_qtable(&dir, &a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let q1 = body(&dir.join("q1"));
    assert!(q1.contains("# chip: cv183x  mix_mode: BF16\n"), "{q1}");
    let data_lines: Vec<&str> = q1.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(!data_lines.is_empty(), "{q1}");
    assert!(data_lines.iter().all(|l| l.ends_with(" BF16")), "{q1}");
    assert_eq!(q1, body(&dir.join("q2")), "two runs give the same table");
    assert_eq!(body(&dir.join("l1.txt")), body(&dir.join("l2.txt")), "two runs give the same loss table");
    let loss = body(&dir.join("l1.txt"));
    let cos: Vec<f64> =
        loss.lines().filter_map(|l| l.split("Cos: ").nth(1)).map(|c| c.trim().parse().unwrap()).collect();
    assert!(cos.windows(2).all(|w| w[0] <= w[1]), "sorted by cos ascending:\n{loss}");

    // F16 is not a float mode of cv18xx.
    let mut a = args("q3", "l3.txt");
    a.extend(["--fp_type".to_string(), "F16".to_string()]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = run_qtable(&dir, &a);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim(), "error: --fp_type F16 is not a float mode of cv183x");
    assert!(!dir.join("q3").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The walkthrough's search on bm1684x (3 images, tpu-mlir's table): the exact float layers and
/// per-layer cos (recorded with the whole-network simulation of every trial, on the int8 weights
/// of commit b84adca, against the F32 reference with Winograd 3x3 convolutions, cos summed in 8
/// partial sums: the direct convolutions and one running sum gave the same table with cos
/// differing by up to 1.2e-9), and the same bytes with the reuse turned off
/// (`--debug_cmd no_reuse`).
#[test]
fn bm1684x_search_matches_the_recorded_tables_with_and_without_reuse() {
    let dir = std::env::temp_dir().join(format!("qtable-bm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mlir = top_mlir(&dir);
    let run = |out: &str, loss: &str, debug: &str| {
        let mut a = search_args(&mlir, "3", "bm1684x", out, loss);
        a.extend(["--debug_cmd".to_string(), debug.to_string()]);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = run_qtable(&dir, &a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let stdout = run("q", "l.txt", "");
    assert!(stdout.contains("int8 outputs_cos:0.999415 old\nmix model outputs_cos:0.999665\n"), "{stdout}");
    let q = body(&dir.join("q"));
    let layers: Vec<&str> = q.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        layers,
        [
            "conv2d_2_Conv F32",
            "leaky_re_lu_2_LeakyRelu F32",
            "max_pooling2d_3_MaxPool F32",
            "conv2d_3_Conv F32",
            "leaky_re_lu_3_LeakyRelu F32",
            "max_pooling2d_5_MaxPool F32",
            "conv2d_4_Conv F32",
            "leaky_re_lu_4_LeakyRelu F32",
            "max_pooling2d_7_MaxPool F32",
            "conv2d_5_Conv F32",
        ]
    );
    let loss = body(&dir.join("l.txt"));
    let entries: Vec<(String, String)> = loss
        .lines()
        .filter(|l| l.starts_with("No."))
        .map(|l| {
            let name = l.split("Layer: ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
            (name, l.split("Cos: ").nth(1).unwrap().trim().to_string())
        })
        .collect();
    let want = [
        ("leaky_re_lu_3_LeakyRelu", "0.9971629214507016"),
        ("max_pooling2d_7_MaxPool", "0.9978360592023761"),
        ("conv2d_2_Conv", "0.9984621924318999"),
        ("max_pooling2d_3_MaxPool", "0.9986388950291402"),
        ("conv2d_4_Conv", "0.9986645524433064"),
        ("leaky_re_lu_1_LeakyRelu", "0.9993937972080544"),
        ("max_pooling2d_1_MaxPool", "0.9995740979773495"),
        ("conv2d_1_Conv", "0.9998392046544431"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(entries, want, "{loss}");

    run("q_plain", "l_plain.txt", "no_reuse");
    assert_eq!(q, body(&dir.join("q_plain")), "reuse does not change the table");
    assert_eq!(loss, body(&dir.join("l_plain.txt")), "reuse does not change the loss table");
    let _ = std::fs::remove_dir_all(&dir);
}
