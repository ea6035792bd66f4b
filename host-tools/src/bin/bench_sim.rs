//! `bench_sim`: wall and CPU time of the chip simulator alone on tiny-yolov3 (tpu-mlir's
//! calibration table, COCO images), one sample per run and several samples stacked along the
//! batch axis, with every value wanted (as the mixed-precision search wants them) and the
//! prepared-weights cache warm. Checks that every batch gives every sample's values byte for
//! byte as the single-sample runs do.

use anyhow::{anyhow, bail, Result};
use clap::Parser;
use compiler::calibration::{select_dataset, CalibrationTable, InputLoader};
use compiler::lower::{calib::cali_map_from_table, Chip, LowerOptions, Mode, QTable};
use compiler::sim::{self, SimCache};
use host_tools::bench::{assets, cpu_seconds, load_average, walkthrough_import_options};
use ndarray::ArrayD;
use rayon::prelude::*;
use std::hash::{Hash, Hasher};
use std::time::Instant;

/// Benchmark the simulator on tiny-yolov3.
#[derive(Parser, Debug)]
#[command(name = "bench_sim", about, rename_all = "snake_case")]
struct Args {
    /// Samples from assets/images/COCO2017
    #[arg(long, default_value_t = 30)]
    input_num: usize,
    /// Target chip
    #[arg(long, default_value = "bm1684x")]
    chip: String,
    /// Batch sizes to time (samples stacked per run), comma-separated
    #[arg(long, default_value = "1,5", value_delimiter = ',')]
    batch: Vec<usize>,
    /// Timed passes over all samples per batch size (the best is reported too)
    #[arg(long, default_value_t = 2)]
    reps: usize,
    /// Layers kept in float (F32 on bm1684x, BF16 on cv18xx), comma-separated; "search" for the
    /// ten layers the walkthrough's search keeps in float on bm1684x
    #[arg(long, value_delimiter = ',')]
    float_layers: Vec<String>,
    /// Check that every batch size gives every sample's values byte for byte alike (an extra,
    /// untimed pass)
    #[arg(long)]
    check: bool,
    /// Also time one single-sample simulation per op kind
    #[arg(long)]
    profile: bool,
}

/// The float layers of bench_qtable's result on bm1684x.
const SEARCH_FLOAT_LAYERS: &[&str] = &[
    "conv2d_2_Conv",
    "leaky_re_lu_2_LeakyRelu",
    "max_pooling2d_3_MaxPool",
    "conv2d_3_Conv",
    "leaky_re_lu_3_LeakyRelu",
    "max_pooling2d_5_MaxPool",
    "conv2d_4_Conv",
    "leaky_re_lu_4_LeakyRelu",
    "max_pooling2d_7_MaxPool",
    "conv2d_5_Conv",
];

/// Per sample, a hash of the bytes of its row of every computed value (in value order).
fn sample_hashes(computed: &[Option<std::sync::Arc<sim::SimTensor>>], batch: usize) -> Vec<u64> {
    let mut hs: Vec<_> = (0..batch).map(|_| std::collections::hash_map::DefaultHasher::new()).collect();
    for (v, t) in computed.iter().enumerate() {
        let Some(t) = t else { continue };
        let bytes = raw_bytes(&t.data);
        let row = bytes.len() / batch;
        for (i, h) in hs.iter_mut().enumerate() {
            v.hash(h);
            h.write(&bytes[i * row..(i + 1) * row]);
        }
    }
    hs.into_iter().map(|h| h.finish()).collect()
}

/// The stored bytes of a value (native endianness), without a copy when the storage is standard.
fn raw_bytes(d: &sim::SimData) -> std::borrow::Cow<'_, [u8]> {
    use sim::SimData;
    fn bytes<T: Copy>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [u8]> {
        let s = a.as_slice().expect("standard layout");
        // SAFETY: plain integer / float storage, every byte initialised.
        std::borrow::Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(s.as_ptr() as *const u8, std::mem::size_of_val(s))
        })
    }
    match d {
        SimData::F32(a) => bytes(a),
        SimData::I8(a) => bytes(a),
        SimData::U8(a) => bytes(a),
        SimData::I32(a) => bytes(a),
        SimData::F16(a) | SimData::BF16(a) => bytes(a),
    }
}

/// Minor page faults and system CPU seconds of this process so far (/proc/self/stat).
fn faults_and_sys() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = s.rsplit_once(')').map_or("", |r| r.1).split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (num(7), num(12) / 100.0)
}

fn main() -> Result<()> {
    host_tools::memory::keep_freed_memory();
    let args = Args::parse();
    let chip = Chip::parse(&args.chip).ok_or_else(|| anyhow!("--chip '{}': unknown chip", args.chip))?;
    let float_mode = if chip.is_cv18xx() { Mode::BF16 } else { Mode::F32 };
    let float_layers: Vec<String> = if args.float_layers == ["search"] {
        SEARCH_FLOAT_LAYERS.iter().map(|s| s.to_string()).collect()
    } else {
        args.float_layers.clone()
    };
    let qtable: QTable = float_layers.iter().map(|n| (n.clone(), float_mode)).collect();
    let assets = assets();
    let table = CalibrationTable::read(&assets.join("reference/tiny-yolov3/tpu-mlir/yolov3_cali_table"))?;
    let cali = cali_map_from_table(&table);
    let dataset = select_dataset(&assets.join("images/COCO2017"), args.input_num)?;
    let n = dataset.samples.len();
    println!(
        "simulator on tiny-yolov3, {n} images, {}, {} float layers; load average {}",
        chip.name(),
        float_layers.len(),
        load_average()
    );
    let mut reference: Option<Vec<u64>> = None;
    for &b in &args.batch {
        if b == 0 || n % b != 0 {
            bail!("--batch {b}: must divide the {n} samples");
        }
        let mut opts = walkthrough_import_options();
        opts.input_shapes = Some(vec![vec![b, 3, 416, 416]]);
        let (top, weights) =
            compiler::onnx::import(&assets.join("models/tiny-yolov3-11.onnx"), &opts).map_err(|e| anyhow!("{e}"))?;
        let lopts =
            LowerOptions { chip, mode: Mode::Int8, asymmetric: false, table: Some(&cali), qtable: Some(&qtable) };
        let (m, lw) = compiler::lower::lower(&top, &weights, &lopts)?;
        let loader = InputLoader::new(&top)?;
        let runs: Vec<Vec<ArrayD<f32>>> = (0..n / b)
            .into_par_iter()
            .map(|r| {
                let group: Vec<&[std::path::PathBuf]> =
                    dataset.samples[r * b..(r + 1) * b].iter().map(|s| s.as_slice()).collect();
                loader.load_batched(dataset.kind, &group)
            })
            .collect::<Result<_, _>>()?;
        let nv = m.func.values.len();
        let seeds = vec![None; nv];
        let wanted = vec![true; nv];
        let cache = SimCache::new();
        let one = |inputs: &Vec<ArrayD<f32>>, hash: bool| -> Result<Vec<u64>> {
            let computed = sim::run_seeded_cached(&m, &lw, inputs, &seeds, &wanted, &cache)?;
            Ok(if hash { sample_hashes(&computed, b) } else { Vec::new() })
        };
        // Warm: the cache prepares every weight.
        let t = Instant::now();
        one(&runs[0], false)?;
        let warm = t.elapsed().as_secs_f64();
        let mut walls = Vec::new();
        let mut cpus = Vec::new();
        let (f0, s0) = faults_and_sys();
        for _ in 0..args.reps.max(1) {
            let (c0, t) = (cpu_seconds().unwrap_or(f64::NAN), Instant::now());
            runs.par_iter().try_for_each(|r| one(r, false).map(|_| ()))?;
            walls.push(t.elapsed().as_secs_f64());
            cpus.push(cpu_seconds().unwrap_or(f64::NAN) - c0);
        }
        let hashes = if args.check {
            runs.par_iter().map(|r| one(r, true)).collect::<Result<Vec<_>>>()?.concat()
        } else {
            Vec::new()
        };
        let (f1, s1) = faults_and_sys();
        let reps = args.reps.max(1) as f64;
        let best = walls.iter().copied().fold(f64::INFINITY, f64::min);
        let fmt = |v: &[f64]| v.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(" ");
        println!(
            "  batch {b:>2}: first run {warm:.2} s; {n} samples: wall {} s (best {best:.2}), cpu {} s; per pass {:.0} page faults, {:.2} s system; load {}",
            fmt(&walls),
            fmt(&cpus),
            (f1 - f0) / reps,
            (s1 - s0) / reps,
            load_average()
        );
        match &reference {
            _ if !args.check => {}
            None => reference = Some(hashes),
            Some(r) if *r == hashes => println!("           every value of every sample equals the first batch size's"),
            Some(_) => bail!("batch {b}: values differ from the first batch size's"),
        }
        if args.profile && b == args.batch[0] {
            let start = Instant::now();
            let per = host_tools::bench::sim_time_per_kind(&m, &lw, &runs[0])?;
            println!("  profile (no cache, packing included): {:.3} s", start.elapsed().as_secs_f64());
            for (k, s) in per.iter().take(8) {
                println!("    {k:<32} {s:.3} s");
            }
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    reference.hash(&mut h);
    println!("values digest {:016x}", h.finish());
    Ok(())
}
