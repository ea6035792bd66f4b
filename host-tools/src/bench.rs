//! What the benchmark binaries (`bench_*`) and the real-model tests share: the bundled assets,
//! tiny-yolov3 imported exactly as the walkthrough's `model_transform` command does, and the
//! process figures (peak memory, CPU time, machine load) printed next to wall times.

use compiler::onnx::ImportOptions;
use compiler::preprocess::{ChannelFormat, PadType, PixelFormat, PreprocessConfig};
use std::path::PathBuf;

/// The bundled assets (models, photos, reference outputs) of this checkout.
pub fn assets() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets"))
}

/// The import options of the walkthrough's `model_transform` for tiny-yolov3: input 1x3x416x416,
/// outputs cut at the two heads, scale 1/255, rgb, letterbox (keep aspect ratio) padded with 128.
pub fn walkthrough_import_options() -> ImportOptions {
    ImportOptions {
        model_name: "yolov3_tiny".into(),
        input_shapes: Some(vec![vec![1, 3, 416, 416]]),
        output_names: vec!["convolution_output1".into(), "convolution_output".into()],
        preprocess: Some(PreprocessConfig {
            mean: vec![0.0; 3],
            scale: vec![0.0039216; 3],
            pixel_format: PixelFormat::Rgb,
            channel_format: ChannelFormat::Nchw,
            keep_aspect_ratio: true,
            pad_value: 128,
            pad_type: PadType::Center,
            resize_dims: vec![416, 416],
        }),
    }
}

/// Peak resident set size of this process in MiB (`VmHWM` of /proc/self/status; Linux only).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// User + system CPU time of this process so far, in seconds (/proc/self/stat, 100 ticks a
/// second), to judge a run on a loaded machine.
pub fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The 1-minute load average (the machine may be shared), `?` when unknown.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_are_read_on_linux() {
        let rss = peak_rss_mib().expect("VmHWM");
        assert!(rss > 0.1 && rss < 1e6, "{rss}");
        assert!(cpu_seconds().expect("stat") >= 0.0);
        assert!(load_average().parse::<f64>().is_ok());
    }

    #[test]
    fn walkthrough_options_cut_at_the_heads() {
        let o = walkthrough_import_options();
        assert_eq!(o.output_names, ["convolution_output1", "convolution_output"]);
        assert!(assets().join("models/tiny-yolov3-11.onnx").exists());
    }
}

/// Simulate `module` once on `inputs` and return the seconds spent per op kind and element type
/// (`"tpu.Conv2D Some(I8)"`), longest first: where one simulation's time goes.
pub fn sim_time_per_kind(
    module: &compiler::ir::Module,
    weights: &compiler::ir::weights::Weights,
    inputs: &[ndarray::ArrayD<f32>],
) -> Result<Vec<(String, f64)>, compiler::sim::SimError> {
    let f = &module.func;
    let kinds: std::collections::HashMap<&str, &str> = f
        .ops
        .iter()
        .flat_map(|op| op.results.iter().map(move |&r| (f.values[r].name.as_str(), op.kind.as_str())))
        .collect();
    let mut per: std::collections::BTreeMap<String, f64> = Default::default();
    let mut last = std::time::Instant::now();
    compiler::sim::run_observe(module, weights, inputs, &mut |name, t| {
        let kind = kinds.get(name).copied().unwrap_or("?");
        *per.entry(format!("{kind} {:?}", t.ty.elem())).or_default() += last.elapsed().as_secs_f64();
        last = std::time::Instant::now();
    })?;
    let mut v: Vec<(String, f64)> = per.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(v)
}
