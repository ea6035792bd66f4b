//! `bench_qtable`: wall time and peak RSS of the walkthrough's mixed-precision search on
//! tiny-yolov3 (`--min_layer_cos 0.999 --expected_cos 0.9999 --chip bm1684x`, tpu-mlir's
//! calibration table, COCO images), next to tpu-mlir's figures for the same job.

use anyhow::{anyhow, Result};
use clap::Parser;
use compiler::calibration::{select_dataset, CalibrationTable, InputLoader};
use compiler::lower::{calib::cali_map_from_table, Chip, Mode};
use compiler::search::runner::{load_samples, SimRunner};
use compiler::search::{search, SearchParams};
use host_tools::bench::{assets, cpu_seconds, load_average, peak_rss_mib, walkthrough_import_options};
use std::time::Instant;

/// tpu-mlir v1.30.2's mix_search on the same job (30 images), measured on this kind of machine.
const TPU_MLIR_SECONDS: f64 = 52.0;
/// tpu-mlir's network cos: all-INT8 and mixed, and its number of float layers.
const TPU_MLIR_COS: (f64, f64, usize) = (0.999190, 0.999577, 6);

/// Benchmark the mixed-precision search of tiny-yolov3 (imported from the bundled ONNX).
#[derive(Parser, Debug)]
#[command(name = "bench_qtable", about, rename_all = "snake_case")]
struct Args {
    /// Samples from assets/images/COCO2017
    #[arg(long, default_value_t = 30)]
    input_num: usize,
    /// Target chip
    #[arg(long, default_value = "bm1684x")]
    chip: String,
    /// Stop once the network cos exceeds this
    #[arg(long, default_value_t = 0.9999)]
    expected_cos: f64,
    /// A layer under this cos is tried in float
    #[arg(long, default_value_t = 0.999)]
    min_layer_cos: f64,
    /// Also run the search without reusing results across trials (whole network every trial)
    /// and report both times; the results must be identical.
    #[arg(long)]
    compare_no_reuse: bool,
    /// Samples run together as one batch (1: one at a time)
    #[arg(long, default_value_t = compiler::search::runner::DEFAULT_GROUP_SIZE)]
    group: usize,
    /// Also time one simulation of the final mixed model per op kind (first image).
    #[arg(long)]
    profile: bool,
}

/// Simulate the mixed model once and print the time per op kind and element type.
fn profile(
    top: &compiler::ir::Module,
    weights: &compiler::ir::weights::Weights,
    cali: &compiler::lower::CaliMap,
    chip: Chip,
    mode: Mode,
    float_layers: &[String],
    inputs: &[ndarray::ArrayD<f32>],
) -> Result<()> {
    let qtable: compiler::lower::QTable = float_layers.iter().map(|n| (n.clone(), mode)).collect();
    let opts = compiler::lower::LowerOptions {
        chip,
        mode: Mode::Int8,
        asymmetric: false,
        table: Some(cali),
        qtable: Some(&qtable),
    };
    let t = Instant::now();
    let (m, lw) = compiler::lower::lower(top, weights, &opts)?;
    println!("  profile: lower {:.3} s", t.elapsed().as_secs_f64());
    let start = Instant::now();
    let per = host_tools::bench::sim_time_per_kind(&m, &lw, inputs)?;
    println!("  profile: one simulation {:.3} s", start.elapsed().as_secs_f64());
    for (k, s) in per {
        println!("    {k:<32} {s:.3} s");
    }
    Ok(())
}

/// A hash of the whole search result (every layer cos, every trial, the float layers) through its
/// `Debug` text, which prints every f64 exactly (shortest round-trip form): two runs with the same
/// digest write the same qtable and loss table.
fn digest(result: &compiler::search::SearchResult) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{result:?}").hash(&mut h);
    h.finish()
}

fn main() -> Result<()> {
    host_tools::memory::keep_freed_memory();
    let args = Args::parse();
    let chip = Chip::parse(&args.chip).ok_or_else(|| anyhow!("--chip '{}': unknown chip", args.chip))?;
    let mode = if chip.is_cv18xx() { Mode::BF16 } else { Mode::F32 };
    let opts = walkthrough_import_options();
    let assets = assets();
    let (top, weights) =
        compiler::onnx::import(&assets.join("models/tiny-yolov3-11.onnx"), &opts).map_err(|e| anyhow!("{e}"))?;
    let table = CalibrationTable::read(&assets.join("reference/tiny-yolov3/tpu-mlir/yolov3_cali_table"))?;
    let cali = cali_map_from_table(&table);
    let dataset = select_dataset(&assets.join("images/COCO2017"), args.input_num)?;
    let loader = InputLoader::new(&top)?;
    let params = SearchParams { expected_cos: args.expected_cos, min_layer_cos: args.min_layer_cos };
    println!("load average at start: {}", load_average());

    let start = Instant::now();
    let samples = load_samples(&loader, &dataset)?;
    let t_load = start.elapsed().as_secs_f64();
    let mut runner = SimRunner::with_group_size(&top, &weights, &cali, chip, mode, samples, Vec::new(), args.group)?;
    // The second search (without reuse) needs every layer's reference again.
    runner.set_keep_references(args.compare_no_reuse);
    let t_ref = start.elapsed().as_secs_f64() - t_load;
    let result = search(&runner, &params, &mut |_, _, _| {})?;
    let secs = start.elapsed().as_secs_f64();
    let st = runner.stats();

    println!(
        "run_qtable search of tiny-yolov3, {} images, {}, --min_layer_cos {} --expected_cos {}",
        runner.sample_count(),
        chip.name(),
        args.min_layer_cos,
        args.expected_cos
    );
    println!(
        "  wall time           {secs:.2} s (tpu-mlir {TPU_MLIR_SECONDS:.0} s, not in this run: {:.2}x its speed)",
        TPU_MLIR_SECONDS / secs
    );
    println!(
        "    of which           inputs {t_load:.2} s, float reference {t_ref:.2} s, {} evaluations: lower {:.2} s, signatures {:.2} s, simulate + compare {:.2} s",
        st.evaluations,
        st.lower.as_secs_f64(),
        st.signatures.as_secs_f64(),
        st.simulate.as_secs_f64()
    );
    println!(
        "    ops simulated      {} of {} ({:.0} % reused)",
        st.ops_run,
        st.ops_run + st.ops_reused,
        100.0 * st.ops_reused as f64 / (st.ops_run + st.ops_reused).max(1) as f64
    );
    println!(
        "  cos                 INT8 {:.6} -> mixed {:.6} with {} {} layers (tpu-mlir: {:.6} -> {:.6}, {} layers)",
        result.int8_cos,
        result.mixed_cos,
        result.float_layers.len(),
        mode.name(),
        TPU_MLIR_COS.0,
        TPU_MLIR_COS.1,
        TPU_MLIR_COS.2
    );
    println!("  float layers        {}", result.float_layers.join(", "));
    println!("  sample groups       {:?} (each run as one batch)", runner.group_sizes());
    println!("  peak RSS            {:.0} MiB", peak_rss_mib().unwrap_or(f64::NAN));
    println!("  trials              {}", result.trials.len());
    println!("  result digest       {:016x} (every cos, bit for bit: equal digests = equal tables)", digest(&result));

    if args.compare_no_reuse {
        runner.set_reuse(false);
        let t = Instant::now();
        let plain = search(&runner, &params, &mut |_, _, _| {})?;
        let plain_secs = t.elapsed().as_secs_f64();
        println!(
            "  without reuse       search {plain_secs:.2} s vs {:.2} s with reuse (ratio {:.2}); results {}",
            secs - t_load - t_ref,
            plain_secs / (secs - t_load - t_ref),
            if plain == result { "identical" } else { "DIFFERENT" }
        );
    }
    if args.profile {
        profile(
            &top,
            &weights,
            &cali,
            chip,
            mode,
            &result.float_layers,
            &loader.load(dataset.kind, &dataset.samples[0])?,
        )?;
    }
    println!("load average at end: {}", load_average());
    println!("cpu time (user + system, whole process): {:.1} s", cpu_seconds().unwrap_or(f64::NAN));
    Ok(())
}
