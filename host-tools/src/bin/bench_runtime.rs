//! Benchmark of the no_std runtime on tiny-yolov3 INT8 (bm1684x): ms per image for the run alone,
//! a whole `model_runner`-like invocation (read bmodel + input npz, load, run, write output npz),
//! the slowest instructions, and the arena size against the naive sum of all tensors.

use anyhow::{Context, Result};
use clap::Parser;
use compiler::ir::weights::{TensorData, Weights};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Time the bmodel runtime on tiny-yolov3 INT8")]
struct Args {
    /// Timed runs per measurement.
    #[arg(long, default_value_t = 5)]
    iterations: usize,
    /// Chip: bm1684x or cv183x.
    #[arg(long, default_value = "bm1684x")]
    chip: String,
    /// Print the slowest instructions.
    #[arg(long)]
    profile: bool,
}

fn assets() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets"))
}

fn read_weights(p: &Path) -> Result<Weights> {
    let mut w = Weights::default();
    for (k, v) in compiler::npz::read_npz(p).with_context(|| format!("reading {}", p.display()))? {
        w.insert(k, v);
    }
    Ok(w)
}

/// One `model_runner`-like invocation: everything from the files on disk to the output npz.
fn whole_run(bmodel: &Path, input: &Path, out: &Path) -> Result<()> {
    let bytes = std::fs::read(bmodel)?;
    let inputs = compiler::npz::read_npz(input)?;
    let (_, data) = inputs.first().context("empty input npz")?;
    let x = data.to_f32();
    let outs = runtime::host::run_f32(&bytes, &[x.as_slice().context("input not contiguous")?])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let arrays: Vec<(String, TensorData)> = outs
        .into_iter()
        .map(|o| Ok((o.name, TensorData::F32(ndarray::ArrayD::from_shape_vec(o.dims, o.values)?))))
        .collect::<Result<_>>()?;
    compiler::npz::write_npz(out, &arrays)?;
    Ok(())
}

fn main() -> Result<()> {
    host_tools::memory::keep_freed_memory();
    let a = Args::parse();
    let (dir, prefix) = match a.chip.as_str() {
        "bm1684x" => ("int8_bm1684x", "yolov3_tiny_bm1684x_int8_sym"),
        "cv183x" => ("int8_cv183x", "yolov3_tiny_cv183x_int8_sym"),
        other => anyhow::bail!("unknown chip {other}"),
    };
    let chip = bmodel_format::Chip::from_name(&a.chip).context("chip")?;
    let base = assets().join("reference/tiny-yolov3/tpu-mlir").join(dir);
    let text = std::fs::read_to_string(base.join(format!("{prefix}_tpu.mlir")))?;
    let module = compiler::ir::text::parse_module(&text)?;
    let weights = read_weights(&base.join(format!("{prefix}_tpu_weights.npz")))?;
    let t = Instant::now();
    let (bytes, report) = compiler::codegen::build_bmodel(&module, &weights, chip)?;
    println!(
        "codegen: {:.1} ms, bmodel {} bytes, {} instructions",
        t.elapsed().as_secs_f64() * 1e3,
        bytes.len(),
        report.instr_count
    );
    println!(
        "arena: {} bytes (activations {} + scratch {}), naive sum of all activation tensors {} bytes ({:.1}x), {} in-place ops",
        report.arena_size,
        report.activation_size,
        report.scratch_size,
        report.naive_sum,
        report.naive_sum as f64 / report.activation_size as f64,
        report.in_place
    );
    let tmp = std::env::temp_dir().join(format!("bench_runtime_{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let bm_path = tmp.join("yolov3_tiny.bmodel");
    std::fs::write(&bm_path, &bytes)?;
    let input_path = assets().join("reference/tiny-yolov3/yolov3_tiny_in_f32.npz");

    // run only (arena allocated once, input already encoded)
    let size = runtime::arena_size(&bytes).map_err(|e| anyhow::anyhow!("{e}"))? as usize;
    let mut arena = vec![0u8; size];
    let x = compiler::npz::read_npz(&input_path)?.remove(0).1.to_f32();
    let mut m = runtime::load(&bytes, &mut arena).map_err(|e| anyhow::anyhow!("{e}"))?;
    let enc = runtime::host::encode_input(&m.inputs()[0].clone(), x.as_slice().context("input")?);
    m.input_mut(0).map_err(|e| anyhow::anyhow!("{e}"))?.copy_from_slice(&enc);
    m.invoke().map_err(|e| anyhow::anyhow!("{e}"))?; // warm-up
    let mut best = f64::MAX;
    let mut total = 0.0;
    for _ in 0..a.iterations {
        let t = Instant::now();
        m.invoke().map_err(|e| anyhow::anyhow!("{e}"))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        best = best.min(ms);
        total += ms;
    }
    println!("run only: {:.1} ms/image mean, {:.1} ms best ({} runs)", total / a.iterations as f64, best, a.iterations);
    if a.profile {
        let mut times = vec![(0.0f64, String::new()); report.instr_count];
        let start = std::cell::Cell::new(Instant::now());
        m.invoke_observed(
            |_, _| start.set(Instant::now()),
            |i, ins| {
                times[i] = (
                    start.get().elapsed().as_secs_f64() * 1e3,
                    format!("{i:3} {} {:?}", ins.mnemonic(), ins.output().shape),
                )
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        times.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (ms, what) in times.iter().take(12) {
            println!("  {ms:7.2} ms  {what}");
        }
    }
    // whole model_runner-like invocation
    let out_path = tmp.join("out.npz");
    let mut best = f64::MAX;
    let mut total = 0.0;
    for _ in 0..a.iterations {
        let t = Instant::now();
        whole_run(&bm_path, &input_path, &out_path)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        best = best.min(ms);
        total += ms;
    }
    println!(
        "whole run (read bmodel + npz, load+verify, run, write npz): {:.1} ms mean, {:.1} ms best; tpu-mlir cmodel model_runner: 6100 ms; target <= 600 ms",
        total / a.iterations as f64,
        best
    );
    std::fs::remove_dir_all(&tmp).ok();
    Ok(())
}
