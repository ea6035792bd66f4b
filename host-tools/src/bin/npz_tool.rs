//! npz_tool: tpu-mlir's npz utility. `compare` checks a target npz against a reference with the
//! similarity rules of tpu-mlir's npz_tool (exit code 255 when a tensor fails); `dump` prints the
//! shape, type, first values and statistics of the arrays of a file.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use compiler::compare::{compare_data, sampled_indices, CompareClass, TensorResult, Tolerance};
use compiler::ir::weights::TensorData;
use compiler::npz::read_npz;
use std::path::{Path, PathBuf};

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "npz_tool", about = "Compare or inspect npz tensor files (tpu-mlir's npz_tool)")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Compare the tensors two files have in common (names taken in the reference's order).
    /// Passes when every compared tensor is EQUAL, CLOSE (allclose at rtol 1e-3 or tighter) or
    /// SIMILAR (cosine and euclidean similarity above the tolerances). Beyond 200 common tensors
    /// only every len/200-th one and the last one are compared.
    Compare {
        /// target file (the result under test)
        target: PathBuf,
        /// reference file
        reference: PathBuf,
        /// minimum cosine and euclidean similarity, "cos,euclid"
        #[arg(long, default_value = "0.99,0.99")]
        tolerance: String,
        /// comma-separated tensor names to skip
        #[arg(long, default_value = "")]
        excepts: String,
        /// print shape, type and similarity values of every tensor (repeat for more)
        #[arg(short, long, action = clap::ArgAction::Count)]
        verbose: u8,
    },
    /// Print shape, element type, the first values and min/max/mean/std of each array.
    Dump {
        /// npz file
        file: PathBuf,
        /// only this array
        name: Option<String>,
    },
}

fn dtype(d: &TensorData) -> &'static str {
    match d {
        TensorData::F32(_) => "float32",
        TensorData::I8(_) => "int8",
        TensorData::U8(_) => "uint8",
        TensorData::I32(_) => "int32",
        TensorData::U16(_) => "uint16",
        TensorData::I64(_) => "int64",
    }
}

fn shape_str(s: &[usize]) -> String {
    match s.len() {
        1 => format!("({},)", s[0]),
        _ => format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

fn print_result(name: &str, d: &TensorData, r: &TensorResult, verbose: u8) {
    println!("[{:<32}] {:>12} [{:>6}]", name, r.class.to_string(), if r.passed() { "PASSED" } else { "FAILED" });
    if verbose > 0 {
        println!("    {} {} ", shape_str(d.shape()), dtype(d));
        if let CompareClass::Close { order } = r.class {
            println!("    close order            = {order}");
        }
        if let (Some(c), Some(e), Some(s)) = (r.cosine, r.euclid, r.sqnr) {
            println!("    cosine_similarity      = {c:.6}");
            println!("    euclidean_similarity   = {e:.6}");
            println!("    sqnr_similarity        = {s:.6}");
        }
    }
}

/// Returns whether every compared tensor passed.
fn compare(target: &Path, reference: &Path, tolerance: &str, excepts: &str, verbose: u8) -> Result<bool> {
    let tol = Tolerance::parse(tolerance).map_err(anyhow::Error::msg)?;
    let excepts: Vec<&str> = excepts.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let t = read_npz(target)?;
    let r = read_npz(reference)?;
    let names: Vec<&str> =
        r.iter().map(|(n, _)| n.as_str()).filter(|n| t.iter().any(|(m, _)| m == n) && !excepts.contains(n)).collect();
    if names.is_empty() {
        bail!("{} and {} have no tensor name in common", target.display(), reference.display());
    }
    let get = |set: &[(String, TensorData)], n: &str| set.iter().find(|(m, _)| m == n).map(|(_, d)| d.clone());
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let (mut min_cos, mut min_euc, mut min_sqnr) = (1.0f64, 1.0f64, f64::INFINITY);
    for i in sampled_indices(names.len()) {
        let name = names[i];
        let (Some(a), Some(b)) = (get(&t, name), get(&r, name)) else { continue };
        let res = compare_data(&a, &b, tol);
        print_result(name, &a, &res, verbose);
        if res.passed() {
            passed += 1;
        } else {
            failed += 1;
        }
        let key = match res.class {
            CompareClass::Equal => "equal",
            CompareClass::Close { .. } => "close",
            CompareClass::Similar => "similar",
            CompareClass::NotEqual => "not equal",
            CompareClass::NotSimilar => "not similar",
            CompareClass::NotMatch => "not match",
        };
        *counts.entry(key).or_default() += 1;
        if let (Some(c), Some(e), Some(s)) = (res.cosine, res.euclid, res.sqnr) {
            min_cos = min_cos.min(c);
            min_euc = min_euc.min(e);
            min_sqnr = min_sqnr.min(s);
        }
    }
    let c = |k: &str| counts.get(k).copied().unwrap_or(0);
    println!("{} compared", passed + failed);
    println!("{passed} passed");
    println!("  {} equal, {} close, {} similar", c("equal"), c("close"), c("similar"));
    println!("{failed} failed");
    println!("  {} not equal, {} not similar, {} not match", c("not equal"), c("not similar"), c("not match"));
    println!("min_similiarity = ({min_cos}, {min_euc}, {min_sqnr})");
    println!("Target    {}", target.display());
    println!("Reference {}", reference.display());
    if failed == 0 {
        println!("npz compare PASSED.");
    } else {
        println!("npz compare FAILED.");
    }
    Ok(failed == 0)
}

fn dump(file: &Path, only: Option<&str>) -> Result<()> {
    let arrays = read_npz(file)?;
    let mut shown = 0;
    for (name, d) in &arrays {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        shown += 1;
        let v: Vec<f64> = d.to_f32().iter().map(|&x| x as f64).collect();
        println!("{name}: shape {} {}", shape_str(d.shape()), dtype(d));
        let first: Vec<String> = v.iter().take(8).map(|x| format!("{x}")).collect();
        println!("    first: [{}{}]", first.join(", "), if v.len() > 8 { ", ..." } else { "" });
        if !v.is_empty() {
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            println!("    min {min} max {max} mean {mean:.6} std {std:.6}");
        }
    }
    if let (Some(o), 0) = (only, shown) {
        bail!("{}: no array named '{o}'", file.display());
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    let result = match &args.cmd {
        Cmd::Compare { target, reference, tolerance, excepts, verbose } => {
            compare(target, reference, tolerance, excepts, *verbose).context("npz_tool compare")
        }
        Cmd::Dump { file, name } => dump(file, name.as_deref()).map(|_| true).context("npz_tool dump"),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(255),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
