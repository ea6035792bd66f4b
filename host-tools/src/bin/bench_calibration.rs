//! `bench_calibration`: wall time and peak RSS of calibrating tiny-yolov3 on the 100 COCO
//! images (tpu-mlir: 27.0 s), plus a per-tensor comparison with tpu-mlir's own table.

use anyhow::{anyhow, Result};
use clap::Parser;
use compiler::calibration::{
    run_calibration, select_dataset, CaliMethod, CalibEvent, CalibOptions, CalibrationTable, TuneOptions,
};
use host_tools::bench::{assets, cpu_seconds, load_average, peak_rss_mib, walkthrough_import_options};
use std::path::PathBuf;
use std::time::Instant;

/// tpu-mlir v1.30.2's run_calibration.py time for the same job on this kind of machine.
const TPU_MLIR_SECONDS: f64 = 27.0;

/// Benchmark calibration of tiny-yolov3 (imported from the bundled ONNX).
#[derive(Parser, Debug)]
#[command(name = "bench_calibration", about, rename_all = "snake_case")]
struct Args {
    /// Samples (0 = all 100)
    #[arg(long, default_value_t = 0)]
    input_num: usize,
    /// Threshold method
    #[arg(long, default_value = "kl")]
    cali_method: String,
    /// Tuning samples
    #[arg(long, default_value_t = 5)]
    tune_num: usize,
    /// Also write the table here
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Print the per-tensor comparison with tpu-mlir's table
    #[arg(long)]
    compare: bool,
    /// Print the tuning time of every op (slowest first)
    #[arg(long)]
    profile: bool,
    /// Run every convolution directly (`run_calibration --exact_conv`) instead of the default
    /// Winograd convolution of the dense 3x3 ones
    #[arg(long)]
    exact_conv: bool,
    /// Accepted for older scripts: the Winograd convolution is the default now
    #[arg(long, hide = true, conflicts_with = "exact_conv")]
    fast_conv: bool,
    /// Samples the deep, small-map ops of the model run on at once in the statistics pass (1:
    /// every op one sample at a time; the table is the same either way)
    #[arg(long, default_value_t = CalibOptions::default().stack_samples)]
    stack_samples: usize,
    /// Count the entries whose threshold / min / max differ from this table (e.g. the
    /// direct-convolution table, written with --exact_conv)
    #[arg(long)]
    baseline: Option<PathBuf>,
}

fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / b.abs().max(1e-12)
    }
}

fn main() -> Result<()> {
    host_tools::memory::keep_freed_memory();
    let args = Args::parse();
    let opts = walkthrough_import_options();
    let onnx = assets().join("models/tiny-yolov3-11.onnx");
    let (module, weights) = compiler::onnx::import(&onnx, &opts).map_err(|e| anyhow!("{e}"))?;
    let dataset = select_dataset(&assets().join("images/COCO2017"), args.input_num)?;
    let copts = CalibOptions {
        method: CaliMethod::parse(&args.cali_method)?,
        tune_num: args.tune_num,
        mlir_name: "yolov3_tiny.mlir".into(),
        tune: TuneOptions { fast_conv: !args.exact_conv, ..TuneOptions::default() },
        stack_samples: args.stack_samples,
        ..CalibOptions::default()
    };
    let load_before = load_average();
    let cpu0 = cpu_seconds().unwrap_or(f64::NAN);
    let start = Instant::now();
    // phase boundaries from the progress events: last sample done, last op tuned
    let mut stats_done = None;
    // wall time of each op's tuning: the time between its Tune event and the one before
    let mut tune_times: Vec<(usize, f64)> = Vec::new();
    let mut last_event = 0.0;
    let mut on_event = |e: CalibEvent<'_>| {
        let now = start.elapsed().as_secs_f64();
        match e {
            CalibEvent::Sample { done, total } if done == total => {
                stats_done = Some((now, cpu_seconds().unwrap_or(f64::NAN) - cpu0));
            }
            CalibEvent::Tune { done, .. } => tune_times.push((done - 1, now - last_event)),
            _ => {}
        }
        last_event = now;
    };
    let out = run_calibration(&module, &weights, &dataset, &copts, &mut on_event)?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds().unwrap_or(f64::NAN) - cpu0;
    if let Some(o) = &args.output {
        out.table.write(o)?;
    }
    println!(
        "calibration of tiny-yolov3, {} images, method {}, tune_num {}, {} convolution: {:.2} s (tpu-mlir {:.1} s, not in this run: {:.2}x its speed), peak RSS {:.0} MiB",
        out.samples_used,
        copts.method.name(),
        copts.tune_num,
        if args.exact_conv { "direct" } else { "Winograd" },
        secs,
        TPU_MLIR_SECONDS,
        TPU_MLIR_SECONDS / secs,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    let (stats, stats_cpu) = stats_done.unwrap_or((f64::NAN, f64::NAN));
    println!(
        "  statistics {:.2} s (CPU {:.2} s), thresholds + tuning {:.2} s (CPU {:.2} s); CPU {:.2} s ({:.2} cores busy); load average {} before, {} after",
        stats,
        stats_cpu,
        secs - stats,
        cpu - stats_cpu,
        cpu,
        cpu / secs,
        load_before,
        load_average()
    );
    let t = &out.times;
    println!(
        "  statistics {:.2} s: folding {:.2} s, waiting for decoding {:.2} s; thresholds {:.2} s; tuning: references {:.2} s, op runs {:.2} s, shortcuts {:.2} s",
        t.statistics.as_secs_f64(),
        t.observe.as_secs_f64(),
        t.load_wait.as_secs_f64(),
        t.thresholds.as_secs_f64(),
        t.tune_reference.as_secs_f64(),
        t.tune_run.as_secs_f64(),
        t.tune_shortcut.as_secs_f64()
    );
    if t.early_exit_bands_whole > 0 {
        println!(
            "  tuning early exit: {} of {} candidate bands evaluated ({:.0} %)",
            t.early_exit_bands,
            t.early_exit_bands_whole,
            100.0 * t.early_exit_bands as f64 / t.early_exit_bands_whole as f64
        );
    }
    if args.profile {
        tune_times.sort_by(|a, b| b.1.total_cmp(&a.1));
        let f = &module.func;
        for (i, secs) in tune_times.iter().take(20) {
            let op = &f.ops[*i];
            println!("  tune {:<16} {:<28} {:.3} s", op.kind, f.op_name(op), secs);
        }
    }
    if let Some(b) = &args.baseline {
        let base = CalibrationTable::read(b)?;
        let (mut th, mut min, mut max, mut missing) = (0, 0, 0, 0);
        let mut worst = 0f64;
        for e in &out.table.entries {
            let Some(r) = base.get(&e.name) else {
                missing += 1;
                continue;
            };
            // compare the printed values, as the table files hold them
            let text = |v: f64| format!("{v:.7}");
            th += usize::from(text(e.threshold) != text(r.threshold));
            min += usize::from(text(e.min) != text(r.min));
            max += usize::from(text(e.max) != text(r.max));
            worst = worst.max(rel(e.threshold, r.threshold));
        }
        println!(
            "  against {}: {} of {} thresholds differ (largest relative difference {:.2e}), {} min, {} max; {} entries not in it",
            b.display(),
            th,
            out.table.entries.len(),
            worst,
            min,
            max,
            missing
        );
    }
    if args.compare {
        let reference = CalibrationTable::read(&assets().join("reference/tiny-yolov3/tpu-mlir/yolov3_cali_table"))?;
        let mut worst = [0f64; 3];
        for e in &out.table.entries {
            if let Some(r) = reference.get(&e.name) {
                worst[0] = worst[0].max(rel(e.min, r.min));
                worst[1] = worst[1].max(rel(e.max, r.max));
                worst[2] = worst[2].max(rel(e.threshold, r.threshold));
            }
        }
        println!(
            "largest relative difference from tpu-mlir's table: min {:.2e}, max {:.2e}, threshold {:.2e}",
            worst[0], worst[1], worst[2]
        );
        println!(
            "{:<28} {:>11} {:>11} {:>9} | {:>11} {:>11} {:>9} | {:>11} {:>11} {:>9} | {:>11}",
            "tensor", "min", "ref min", "rel", "max", "ref max", "rel", "th", "ref th", "rel", "untuned th"
        );
        for (e, u) in out.table.entries.iter().zip(&out.untuned) {
            let Some(r) = reference.get(&e.name) else {
                println!("{:<28} not in tpu-mlir's table", e.name);
                continue;
            };
            println!(
                "{:<28} {:>11.5} {:>11.5} {:>9.2e} | {:>11.5} {:>11.5} {:>9.2e} | {:>11.5} {:>11.5} {:>9.2e} | {:>11.5}",
                e.name,
                e.min,
                r.min,
                rel(e.min, r.min),
                e.max,
                r.max,
                rel(e.max, r.max),
                e.threshold,
                r.threshold,
                rel(e.threshold, r.threshold),
                u.threshold
            );
        }
    }
    Ok(())
}
