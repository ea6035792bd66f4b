//! `bench_preprocess`: single-threaded time of loading the 100 COCO calibration images the way
//! `bench_calibration` does (JPEG decode, letterbox resize to 416x416 padded with 128, RGB,
//! scale 1/255, NCHW f32), with a split into file read + decode, resize and tensor steps, and a
//! digest of every output tensor's bits (equal digests = bit-identical outputs).

use anyhow::{anyhow, Result};
use clap::Parser;
use compiler::preprocess::{load_input, preprocess_image, read_image, resize_for_net, ReadMode};
use host_tools::bench::{assets, walkthrough_import_options};
use std::path::PathBuf;
use std::time::Instant;

/// Benchmark image loading (decode + preprocess) of the calibration images.
#[derive(Parser, Debug)]
#[command(name = "bench_preprocess", about, rename_all = "snake_case")]
struct Args {
    /// Timed passes over the images (the median pass is reported)
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Also time the steps separately (decode, resize, tensor)
    #[arg(long)]
    steps: bool,
}

/// FNV-1a of the bits of `v`, folded into `h`.
fn fnv_f32(mut h: u64, v: impl Iterator<Item = f32>) -> u64 {
    for x in v {
        for b in x.to_bits().to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// CPU time of this thread in seconds (the machine may be shared: wall time counts waiting).
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec to the valid pointer given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Median of some seconds.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    host_tools::memory::keep_freed_memory();
    let args = Args::parse();
    let dir = assets().join("images/COCO2017");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    let cfg = walkthrough_import_options()
        .preprocess
        .ok_or_else(|| anyhow!("the walkthrough's import options carry no preprocessing"))?;
    let shape = [1, 3, 416, 416];
    let n = files.len() as f64;
    let mut digest = 0xcbf29ce484222325u64;
    for f in &files {
        let x = load_input(f, Some(&cfg), &shape).map_err(|e| anyhow!("{e}"))?;
        digest = fnv_f32(digest, x.iter().copied());
    }
    let (mut whole, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..args.runs.max(1) {
        let (t, c) = (Instant::now(), thread_cpu_seconds());
        for f in &files {
            let x = load_input(f, Some(&cfg), &shape).map_err(|e| anyhow!("{e}"))?;
            std::hint::black_box(&x);
        }
        whole.push(t.elapsed().as_secs_f64());
        cpu.push(thread_cpu_seconds() - c);
    }
    println!("images: {}, output digest {digest:016x}", files.len());
    println!(
        "load_input: {:.3} ms per image wall, {:.3} ms CPU (medians of {} passes)",
        median(whole) * 1e3 / n,
        median(cpu) * 1e3 / n,
        args.runs.max(1)
    );
    if args.steps {
        let (mut dec, mut res, mut ten) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.runs.max(1) {
            let (mut d, mut r, mut t) = (0.0, 0.0, 0.0);
            for f in &files {
                let t0 = thread_cpu_seconds();
                let img = read_image(f, ReadMode::Bgr).map_err(|e| anyhow!("{e}"))?;
                let t1 = thread_cpu_seconds();
                let sized = resize_for_net(&img, &cfg, 416, 416).map_err(|e| anyhow!("{e}"))?;
                let t2 = thread_cpu_seconds();
                let x = preprocess_image(&sized, &cfg, &shape).map_err(|e| anyhow!("{e}"))?;
                let t3 = thread_cpu_seconds();
                std::hint::black_box(&x);
                d += t1 - t0;
                r += t2 - t1;
                t += t3 - t2;
            }
            dec.push(d);
            res.push(r);
            ten.push(t);
        }
        println!(
            "steps per image (CPU): read+decode {:.3} ms, resize {:.3} ms, tensor (on a 416x416 image) {:.3} ms",
            median(dec) * 1e3 / n,
            median(res) * 1e3 / n,
            median(ten) * 1e3 / n
        );
    }
    Ok(())
}
