//! `bench_f32`: the F32 interpreter's time per image on tiny-yolov3 (416x416, cut at the two YOLO
//! heads), the cosine of its heads against ONNX Runtime's, and, when `python3 bench/f32_bench.py`
//! runs (onnxruntime installed), ONNX Runtime's time in the same run and the ratio.

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use compiler::interp::{Interpreter, Tensor};
use compiler::ir::weights::TensorData;
use compiler::onnx::ImportOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const HEADS: [&str; 2] = ["convolution_output1", "convolution_output"];

/// Benchmark the F32 interpreter against ONNX Runtime on tiny-yolov3.
#[derive(Parser, Debug)]
#[command(name = "bench_f32", about, rename_all = "snake_case")]
struct Args {
    /// Timed runs (the median is reported)
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed warm-up runs
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Threads of the rayon pool and of ONNX Runtime
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Print the median time of every op
    #[arg(long)]
    profile: bool,
    /// Skip the ONNX Runtime measurement
    #[arg(long)]
    no_ort: bool,
    /// Run the dense 3x3 convolutions as Winograd F(4x4, 3x3) (`Interpreter::set_fast_conv`)
    #[arg(long)]
    fast_conv: bool,
    /// Images per run (the whole model rebatched with `calibration::stack::rebatch`); times
    /// are reported per image
    #[arg(long, default_value_t = 1)]
    batch: usize,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b.iter()) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}

fn read_f32(path: &Path, name: &str) -> Result<Tensor> {
    let arrays = compiler::npz::read_npz(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, data) =
        arrays.into_iter().find(|(n, _)| n == name).ok_or_else(|| anyhow!("{}: no array '{name}'", path.display()))?;
    match data {
        TensorData::F32(a) => Ok(a),
        other => Ok(other.to_f32()),
    }
}

/// CPU time (user + system) this process has used, in ms (Linux `/proc/self/stat`, 100 Hz ticks).
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

/// A `key value` line of the script's output.
fn field(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
}

/// Run `bench/f32_bench.py` and return its `ort_ms_per_image` (None when it cannot run).
fn ort_ms(args: &Args) -> Option<(f64, String)> {
    let script = PathBuf::from(ROOT).join("bench/f32_bench.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--threads", &args.threads.to_string(), "--runs", &args.runs.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("f32_bench.py failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let ms = text.lines().find_map(|l| l.strip_prefix("ort_ms_per_image ").and_then(|v| v.trim().parse().ok()))?;
    Some((ms, text))
}

fn main() -> Result<()> {
    host_tools::memory::keep_freed_memory();
    let args = Args::parse();
    compiler::interp::init_thread_pool(args.threads);
    let root = PathBuf::from(ROOT);
    let opts = ImportOptions {
        model_name: "yolov3_tiny".into(),
        output_names: HEADS.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let (module, weights) = compiler::onnx::import(&root.join("assets/models/tiny-yolov3-11.onnx"), &opts)?;
    let batch = args.batch.max(1);
    let module = if batch > 1 {
        compiler::calibration::stack::rebatch(&module, batch).map_err(|e| anyhow::anyhow!("--batch {batch}: {e}"))?
    } else {
        module
    };
    let refdir = root.join("assets/reference/tiny-yolov3");
    let input = read_f32(&refdir.join("yolov3_tiny_in_f32.npz"), "input_1")?;
    let t0 = Instant::now();
    let mut interp = Interpreter::new(&module, &weights)?;
    interp.set_fast_conv(args.fast_conv);
    let prepare_ms = t0.elapsed().as_secs_f64() * 1e3;

    let inputs: Vec<Tensor> = if batch > 1 {
        let one = [input];
        let refs: Vec<&[Tensor]> = (0..batch).map(|_| &one[..]).collect();
        compiler::calibration::stack::stack_inputs(&refs).ok_or_else(|| anyhow::anyhow!("cannot stack the input"))?
    } else {
        vec![input]
    };
    for _ in 0..args.warmup {
        interp.run(&inputs)?;
    }
    let func = &module.func;
    let mut times = Vec::with_capacity(args.runs);
    let mut per_op: Vec<Vec<f64>> = vec![Vec::new(); func.values.len()];
    let mut outputs = Vec::new();
    let cpu0 = cpu_ms();
    for _ in 0..args.runs.max(1) {
        let start = Instant::now();
        let mut last = start;
        outputs = if args.profile {
            interp.run_observe(&inputs, &mut |v, _| {
                let now = Instant::now();
                per_op[v].push((now - last).as_secs_f64() * 1e3 / batch as f64);
                last = now;
            })?
        } else {
            interp.run(&inputs)?
        };
        times.push(start.elapsed().as_secs_f64() * 1e3 / batch as f64);
    }
    let cpu = cpu0.zip(cpu_ms()).map(|(a, b)| (b - a) / (times.len() * batch) as f64);
    let ours = median(&mut times);
    let ours_min = times[0];
    if args.profile {
        println!("{:<40} {:>18} {:>9}", "op", "kind", "ms");
        for op in &func.ops {
            for &r in &op.results {
                if !per_op[r].is_empty() {
                    let m = median(&mut per_op[r]);
                    println!("{:<40} {:>18} {:>9.3}", func.values[r].name, op.kind, m);
                }
            }
        }
    }
    let ort_ref = refdir.join("ort_outputs.npz");
    for (head, out) in HEADS.iter().zip(&outputs) {
        let want = read_f32(&ort_ref, head)?;
        // the first image of a batch
        let first = out.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..1)).to_owned();
        println!("cosine {head} vs ONNX Runtime: {:.7}", cosine(&first, &want));
    }
    println!("threads {}", args.threads);
    println!("fast_conv {}", args.fast_conv);
    println!("batch {batch}");
    println!("prepare_ms {prepare_ms:.1}");
    println!("ours_ms_per_image {ours:.3} (median of {} runs after {} warm-up)", times.len(), args.warmup);
    println!("ours_min_ms_per_image {ours_min:.3}");
    if let Some(cpu) = cpu {
        println!("ours_cpu_ms_per_image {cpu:.3}");
    }
    if !args.no_ort {
        match ort_ms(&args) {
            Some((ort, text)) => {
                print!("{text}");
                println!("ratio_ours_over_ort {:.3} (median wall time, full ORT graph)", ours / ort);
                if let Some(h) = field(&text, "ort_heads_only_ms_per_image ") {
                    println!("ratio_ours_over_ort_heads_only {:.3}", ours / h);
                }
                if let Some(m) = field(&text, "ort_heads_only_min_ms_per_image ") {
                    println!("ratio_min_ours_over_ort_heads_only {:.3}", ours_min / m);
                }
                if let (Some(c), Some(oc)) = (field(&text, "ort_heads_only_cpu_ms_per_image "), cpu) {
                    println!("ratio_cpu_ours_over_ort_heads_only {:.3}", oc / c);
                }
            }
            None => println!("ONNX Runtime not measured (pip install onnxruntime onnx numpy)"),
        }
    }
    Ok(())
}
