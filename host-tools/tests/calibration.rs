//! Calibration on the real tiny-yolov3 (imported from the bundled ONNX) and the
//! `run_calibration` command line: table contents, method semantics, error messages.

use compiler::calibration::{
    run_calibration, select_dataset, CaliMethod, CalibOptions, CalibrationTable, Dataset, SampleKind,
};
use compiler::interp::Interpreter;
use compiler::ir::weights::Weights;
use compiler::ir::{Attr, Module};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const ASSETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets");

fn coco() -> PathBuf {
    Path::new(ASSETS).join("images/COCO2017")
}

/// tiny-yolov3 imported as the walkthrough does (`--output_names convolution_output1,convolution_output`,
/// scale 1/255, rgb, letterbox with pad 128).
fn yolo() -> &'static (Module, Weights) {
    static M: OnceLock<(Module, Weights)> = OnceLock::new();
    M.get_or_init(|| {
        let opts = host_tools::bench::walkthrough_import_options();
        compiler::onnx::import(&Path::new(ASSETS).join("models/tiny-yolov3-11.onnx"), &opts).unwrap()
    })
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("calib_it_{tag}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Write the module as `<dir>/yolov3_tiny.mlir` + its weight npz, for the command line.
fn write_model(dir: &Path) -> PathBuf {
    let (module, weights) = yolo();
    let wf = match module.attrs.get("weight_file") {
        Some(Attr::Str(s)) => s.clone(),
        _ => "yolov3_tiny_top_f32_all_weight.npz".into(),
    };
    let arrays: Vec<_> = weights.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    compiler::npz::write_npz(&dir.join(&wf), &arrays).unwrap();
    let mlir = dir.join("yolov3_tiny.mlir");
    std::fs::write(&mlir, compiler::ir::text::print_module(module)).unwrap();
    mlir
}

fn f7(v: f32) -> f64 {
    format!("{:.7}", v as f64).parse().unwrap()
}

#[test]
fn max_method_on_ten_images_gives_the_f32_run_min_max_and_abs_max_thresholds() {
    let (module, weights) = yolo();
    let ds = select_dataset(&coco(), 10).unwrap();
    let opts = CalibOptions { method: CaliMethod::Max, tune_num: 5, mlir_name: "m.mlir".into(), ..Default::default() };
    let out = run_calibration(module, weights, &ds, &opts, &mut |_| {}).unwrap();
    let t = CalibrationTable::parse(&out.table.to_text()).unwrap();
    assert_eq!(t.header.method.as_deref(), Some("max"));
    assert_eq!(t.header.sample_number, Some(10));
    assert_eq!(t.header.tune_number, None, "max is never tuned");
    // every op result (Input included), in op order, same names as tpu-mlir's table
    let reference =
        CalibrationTable::read(&Path::new(ASSETS).join("reference/tiny-yolov3/tpu-mlir/yolov3_cali_table")).unwrap();
    let names: Vec<&str> = t.entries.iter().map(|e| e.name.as_str()).collect();
    let ref_names: Vec<&str> = reference.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ref_names);

    // independent F32 run over the same 10 images, with the convolution calibration runs by
    // default (Winograd for the dense 3x3 layers)
    assert!(opts.tune.fast_conv, "the Winograd convolution is the default");
    let mut interp = Interpreter::new(module, weights).unwrap();
    interp.set_fast_conv(true);
    let loader = compiler::calibration::InputLoader::new(module).unwrap();
    let mut mins = vec![f32::INFINITY; module.func.values.len()];
    let mut maxs = vec![f32::NEG_INFINITY; module.func.values.len()];
    for s in &ds.samples {
        let inputs = loader.load(SampleKind::Image, s).unwrap();
        interp
            .run_observe(&inputs, &mut |v, t| {
                for &x in t.iter() {
                    mins[v] = mins[v].min(x);
                    maxs[v] = maxs[v].max(x);
                }
            })
            .unwrap();
    }
    for e in &t.entries {
        let v = module.func.value_by_name(&e.name).unwrap();
        assert_eq!(e.min, f7(mins[v]), "{} min", e.name);
        assert_eq!(e.max, f7(maxs[v]), "{} max", e.name);
        assert_eq!(e.threshold, f7(mins[v].abs().max(maxs[v].abs())), "{} threshold", e.name);
    }
    // the image input is in [0, 1] (pad 128/255 and pixels /255)
    assert_eq!(t.entries[0].min, 0.0);
    assert!((t.entries[0].max - 1.000008).abs() < 1e-6, "{}", t.entries[0].max);
}

/// Issue 3's acceptance: the default run (KL + tuning on 5 images, Winograd convolution) on
/// the 100 COCO images gives every tensor's min and max within 1e-4 relative of tpu-mlir's
/// table and every threshold within 1%.
#[test]
fn default_run_on_the_hundred_images_matches_tpu_mlir_table() {
    let (module, weights) = yolo();
    let ds = select_dataset(&coco(), 100).unwrap();
    let opts = CalibOptions { mlir_name: "yolov3_tiny.mlir".into(), ..Default::default() };
    let out = run_calibration(module, weights, &ds, &opts, &mut |_| {}).unwrap();
    let t = &out.table;
    assert_eq!(t.header.sample_number, Some(100));
    assert_eq!(t.header.tune_number, Some(5));
    let reference =
        CalibrationTable::read(&Path::new(ASSETS).join("reference/tiny-yolov3/tpu-mlir/yolov3_cali_table")).unwrap();
    assert_eq!(t.entries.len(), reference.entries.len());
    let rel = |a: f64, b: f64| if a == b { 0.0 } else { (a - b).abs() / b.abs().max(1e-12) };
    let mut raised = 0;
    for (e, u) in t.entries.iter().zip(&out.untuned) {
        let r = reference.get(&e.name).unwrap_or_else(|| panic!("{} not in tpu-mlir's table", e.name));
        assert!(rel(e.min, r.min) <= 1e-4, "{} min {} vs tpu-mlir {}", e.name, e.min, r.min);
        assert!(rel(e.max, r.max) <= 1e-4, "{} max {} vs tpu-mlir {}", e.name, e.max, r.max);
        assert!(
            rel(e.threshold, r.threshold) <= 1e-2,
            "{} threshold {} vs tpu-mlir {}",
            e.name,
            e.threshold,
            r.threshold
        );
        raised += usize::from(e.threshold > u.threshold * (1.0 + 1e-6));
    }
    // tuning did something (tpu-mlir's table has tuned thresholds above their KL values too)
    assert!(raised >= 5, "tuning raised only {raised} thresholds");
}

/// The deep ops run on groups of samples in the statistics pass (2; 3 and 4 with a short last
/// group; the default) give the table of running every op one sample at a time, byte for byte,
/// tuning included.
#[test]
fn stacking_samples_does_not_change_the_table() {
    let (module, weights) = yolo();
    let ds = select_dataset(&coco(), 5).unwrap();
    let run = |stack_samples: usize| {
        let opts = CalibOptions { tune_num: 2, stack_samples, mlir_name: "m.mlir".into(), ..Default::default() };
        let out = run_calibration(module, weights, &ds, &opts, &mut |_| {}).unwrap();
        (out.table.entries, out.untuned)
    };
    let one = run(1);
    for n in [2, 3, 4, CalibOptions::default().stack_samples] {
        assert!(one == run(n), "{n} samples per group");
    }
}

/// Unreadable samples skipped (`skip_bad`) inside and at the end of the groups the deep ops run
/// on give the table of the dataset without them, whatever the group size.
#[test]
fn skipped_samples_inside_groups_leave_the_table_of_the_rest() {
    let (module, weights) = yolo();
    let good = select_dataset(&coco(), 6).unwrap();
    let dir = tmpdir("skip_groups");
    let bad = dir.join("broken.jpg");
    std::fs::write(&bad, b"\xFF\xD8 not a jpeg").unwrap();
    let mut with_bad = good.samples.clone();
    with_bad.insert(3, vec![bad.clone()]);
    with_bad.insert(1, vec![bad.clone()]);
    with_bad.push(vec![bad.clone()]);
    let bad_ds = Dataset { samples: with_bad, kind: good.kind };
    let run = |ds: &Dataset, stack_samples: usize| {
        let opts = CalibOptions {
            tune_num: 2,
            stack_samples,
            skip_bad: true,
            mlir_name: "m.mlir".into(),
            ..Default::default()
        };
        let out = run_calibration(module, weights, ds, &opts, &mut |_| {}).unwrap();
        assert_eq!(out.samples_used, 6);
        (out.table.entries, out.untuned, out.skipped.len())
    };
    let (entries, untuned, skipped) = run(&good, 1);
    assert_eq!(skipped, 0);
    for n in [1, 2, 4] {
        let (e, u, s) = run(&bad_ds, n);
        assert_eq!(s, 3, "{n} samples per group");
        assert!(e == entries && u == untuned, "{n} samples per group");
    }
}

#[test]
fn kl_with_tuning_never_lowers_thresholds_and_writes_the_tuned_header() {
    let (module, weights) = yolo();
    let ds = select_dataset(&coco(), 2).unwrap();
    let opts = CalibOptions { tune_num: 1, mlir_name: "yolov3_tiny.mlir".into(), ..Default::default() };
    let out = run_calibration(module, weights, &ds, &opts, &mut |_| {}).unwrap();
    let t = &out.table;
    assert_eq!(t.header.method.as_deref(), Some("['kl']"));
    assert_eq!(t.header.tune_number, Some(1));
    assert_eq!(t.header.histogram_bins, Some(2048));
    let mut raised = 0;
    for (e, u) in t.entries.iter().zip(&out.untuned) {
        let abs = e.min.abs().max(e.max.abs());
        let kl7: f64 = format!("{:.7}", u.threshold).parse().unwrap();
        assert!(e.threshold >= kl7, "{}: tuned {} < KL {}", e.name, e.threshold, kl7);
        assert!(e.threshold <= abs * (1.0 + 1e-6), "{}: {} > abs max {}", e.name, e.threshold, abs);
        assert!(u.threshold <= abs * (1.0 + 1e-6));
        if e.threshold > kl7 {
            raised += 1;
        }
    }
    assert!(raised >= 5, "tuning raised only {raised} thresholds");
    // the network outputs have no consumer: never tuned
    let last = t.entries.last().unwrap();
    assert_eq!(last.threshold, format!("{:.7}", out.untuned.last().unwrap().threshold).parse::<f64>().unwrap());
}

#[test]
fn fast_conv_moves_thresholds_only_at_rounding_level() {
    let (module, weights) = yolo();
    let ds = select_dataset(&coco(), 3).unwrap();
    let run = |fast_conv: bool| {
        let tune = compiler::calibration::TuneOptions { fast_conv, ..Default::default() };
        let opts = CalibOptions { tune_num: 2, tune, mlir_name: "m.mlir".into(), ..Default::default() };
        run_calibration(module, weights, &ds, &opts, &mut |_| {}).unwrap().table
    };
    let (direct, fast) = (run(false), run(true));
    assert_eq!(direct.entries.len(), fast.entries.len());
    let mut moved = 0;
    for (d, f) in direct.entries.iter().zip(&fast.entries) {
        assert_eq!(d.name, f.name);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1e-3);
        assert!(close(d.min, f.min) && close(d.max, f.max), "{}: {d:?} vs {f:?}", d.name);
        assert!((d.threshold - f.threshold).abs() <= 1e-3 * d.threshold, "{}: {d:?} vs {f:?}", d.name);
        moved += usize::from(d != f);
    }
    // the Winograd path was taken: the 3x3 convolutions' outputs differ in the last digits
    assert!(moved >= 5, "only {moved} entries differ");
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_run_calibration"))
}

#[test]
fn command_line_writes_a_table_and_reports_bad_inputs() {
    let dir = tmpdir("cli");
    let mlir = write_model(&dir);
    // a small dataset: two real images
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for n in ["000000124798.jpg", "000000366711.jpg"] {
        std::fs::copy(coco().join(n), data.join(n)).unwrap();
    }
    let table = dir.join("yolov3_cali_table");
    let o = cli()
        .args([mlir.to_str().unwrap(), "--dataset", data.to_str().unwrap(), "--cali_method", "max", "-o"])
        .arg(&table)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = CalibrationTable::read(&table).unwrap();
    assert_eq!(t.entries.len(), 33);
    assert_eq!(t.header.sample_number, Some(2));
    assert_eq!(t.header.mlir.as_deref(), Some(mlir.to_str().unwrap()));
    for e in &t.entries {
        assert_eq!(e.threshold, e.min.abs().max(e.max.abs()), "{}", e.name);
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");

    // --exact_conv gives the library's direct-convolution table; --fast_conv (the old switch)
    // is accepted and gives the default table
    let direct_opts = CalibOptions {
        method: CaliMethod::Max,
        tune: compiler::calibration::TuneOptions { fast_conv: false, ..Default::default() },
        ..Default::default()
    };
    let direct = run_calibration(&yolo().0, &yolo().1, &select_dataset(&data, 0).unwrap(), &direct_opts, &mut |_| {})
        .unwrap()
        .table;
    // as written (7 decimals)
    let direct = CalibrationTable::parse(&direct.to_text()).unwrap();
    for (flag, want) in [("--exact_conv", &direct.entries), ("--fast_conv", &t.entries)] {
        let out = dir.join("t_flag");
        let o = cli()
            .args([mlir.to_str().unwrap(), "--dataset", data.to_str().unwrap(), "--cali_method", "max", flag, "-o"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{flag}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(&CalibrationTable::read(&out).unwrap().entries, want, "{flag}");
    }
    assert_ne!(direct.entries, t.entries, "the default is not the direct convolution");

    // a corrupt image: the error names the file; --skip_bad warns and goes on
    let bad = data.join("000000000001.jpg");
    std::fs::write(&bad, b"not a jpeg").unwrap();
    let o = cli()
        .args([mlir.to_str().unwrap(), "--dataset", data.to_str().unwrap(), "--cali_method", "max", "-o"])
        .arg(dir.join("t2"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with(&format!("error: {}: ", bad.display())), "{err}");
    assert!(!dir.join("t2").exists());
    let o = cli()
        .args([mlir.to_str().unwrap(), "--dataset", data.to_str().unwrap(), "--cali_method", "max", "--skip_bad", "-o"])
        .arg(dir.join("t3"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("warning: skipped: {}: ", bad.display())), "{err}");
    let t3 = CalibrationTable::read(&dir.join("t3")).unwrap();
    assert_eq!(t3.entries, t.entries, "the bad image contributes nothing");

    // an empty dataset, a data list naming a missing file, an unknown method
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = cli().args([mlir.to_str().unwrap(), "--dataset", empty.to_str().unwrap(), "-o", "x"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim_end(),
        format!("error: dataset: {}: no image (jpg/jpeg/png/bmp), npy or npz files found", empty.display())
    );
    let list = dir.join("list.txt");
    std::fs::write(&list, format!("{}\n{}/missing.jpg\n", data.join("000000124798.jpg").display(), data.display()))
        .unwrap();
    let o = cli().args([mlir.to_str().unwrap(), "--data_list", list.to_str().unwrap(), "-o", "x"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim_end(),
        format!("error: dataset: {}:2: {}/missing.jpg: no such file", list.display(), data.display())
    );
    let o = cli()
        .args([mlir.to_str().unwrap(), "--data_list", list.to_str().unwrap(), "--cali_method", "aciq", "-o", "x"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim_end(),
        "error: unknown calibration method 'aciq' (expected kl, max, percentile9999 or mse)"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_input_shape_that_does_not_fit_is_an_error_naming_the_file() {
    let (module, weights) = yolo();
    let dir = tmpdir("shape");
    let npy = dir.join("x.npy");
    // a 1x3x8x8 float32 npy: does not fit 1x3x416x416
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let mut header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 8, 8), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, 4 * 3 * 64));
    std::fs::write(&npy, bytes).unwrap();
    let ds = Dataset { samples: vec![vec![npy.clone()]], kind: SampleKind::Npy };
    let opts = CalibOptions { method: CaliMethod::Max, ..Default::default() };
    let err = run_calibration(module, weights, &ds, &opts, &mut |_| {}).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}: ", npy.display())), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
