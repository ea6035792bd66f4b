//! `bmodel_tool`: inspect bmodels written by this project (`info`: header, tensors, memory plan;
//! `dis`: the instruction listing) and compile a lowered tpu `.mlir` + weights into one (`build`).

use anyhow::{Context, Result};
use bmodel_format::{verify, Bmodel, ConvRequant, Instr, TensorRef};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Inspect or build bmodels")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the header, the network inputs/outputs and the memory plan.
    Info {
        /// bmodel file
        bmodel: PathBuf,
    },
    /// Print every instruction with its operands.
    Dis {
        /// bmodel file
        bmodel: PathBuf,
    },
    /// Compile a lowered tpu-level .mlir (and its weight npz) into a bmodel.
    Build {
        /// lowered module (`*_tpu.mlir`)
        #[arg(long)]
        mlir: PathBuf,
        /// weights npz (default: the module's `weight_file` next to the mlir)
        #[arg(long)]
        weights: Option<PathBuf>,
        /// output bmodel
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn operand(t: &TensorRef) -> String {
    let region = match t.region {
        bmodel_format::Region::Coeff => "coeff",
        bmodel_format::Region::Activation => "act",
    };
    format!("{region}@{:#x} {}x{}x{}x{} {}", t.offset, t.shape[0], t.shape[1], t.shape[2], t.shape[3], t.dtype.name())
}

fn info(m: &Bmodel<'_>, len: usize) {
    let h = &m.header;
    println!("bmodel: {} bytes, format version {}, chip {}, crc32 {:#010x}", len, h.version, m.chip().name(), h.crc);
    println!("network: {}", m.meta.name);
    println!("sections: metadata {} bytes, coefficients {} bytes at {:#x}", h.meta_len, h.coeff_len, h.coeff_offset);
    let p = &m.meta.plan;
    println!(
        "memory plan: arena {} bytes = activations {} + scratch {} (at {:#x}); alignment {}; coefficients {}",
        p.arena_size(),
        p.activation_size,
        p.scratch_size,
        p.scratch_offset,
        p.alignment,
        p.coeff_size
    );
    for (kind, list) in [("input", &m.meta.inputs), ("output", &m.meta.outputs)] {
        for t in list.iter() {
            println!(
                "{kind} '{}': dims {:?}, {}, scale {}, zero point {}, arena offset {:#x}",
                t.name,
                t.dims.as_slice(),
                t.storage.dtype.name(),
                t.scale,
                t.zero_point,
                t.storage.offset
            );
        }
    }
    println!("instructions: {}", m.meta.instr_count);
}

fn dis(m: &Bmodel<'_>) -> Result<()> {
    for (i, ins) in m.instrs().enumerate() {
        let ins = ins.map_err(|e| anyhow::anyhow!("{e}"))?;
        let ops: Vec<String> = ins.operands().iter().map(|(n, t)| format!("{n}={}", operand(t))).collect();
        let extra = match &ins {
            Instr::Conv2d { win, group, requant, relu, .. } | Instr::Deconv2d { win, group, requant, relu, .. } => {
                let q = match requant {
                    ConvRequant::MulShift { zero_point, round, .. } => format!("mulshift zp={zero_point} {round:?}"),
                    ConvRequant::Qdm { .. } => "qdm".to_string(),
                    ConvRequant::Float => "float".to_string(),
                };
                format!(
                    " k={:?} s={:?} pad={:?} d={:?} group={group} {q}{}",
                    win.kernel,
                    win.stride,
                    win.pad,
                    win.dilation,
                    if *relu { " relu" } else { "" }
                )
            }
            Instr::Pool2d { win, mode, .. } => {
                format!(" k={:?} s={:?} pad={:?} {mode:?}", win.kernel, win.stride, win.pad)
            }
            Instr::Upsample { scale, .. } => format!(" scale={scale:?}"),
            Instr::LeakyRelu { params, .. } => format!(" {params:?}"),
            Instr::MulShift { multiplier, rshift, round, zero_point, .. } => {
                format!(" m={multiplier} r={rshift} {round:?} zp={zero_point}")
            }
            Instr::ConcatPart { axis, start, requant, .. } => format!(" axis={axis} start={start} requant={requant:?}"),
            Instr::Add { params, relu, .. } => format!(" {params:?}{}", if *relu { " relu" } else { "" }),
            Instr::Mul { params, relu, .. } => format!(" {params:?}{}", if *relu { " relu" } else { "" }),
            Instr::Copy { start, strides, .. } => format!(" start={start} strides={strides:?}"),
            Instr::Pad { before, value, .. } => format!(" before={before:?} value={value:#x}"),
            Instr::Softmax { axis, .. } => format!(" axis={axis}"),
            Instr::Cast { mode, .. } => format!(" {mode:?}"),
            Instr::Relu { .. } | Instr::Lut { .. } | Instr::Sigmoid { .. } => String::new(),
        };
        println!("{i:4} {:<12} {}{extra}", ins.mnemonic(), ops.join(" "));
    }
    Ok(())
}

fn run() -> Result<()> {
    match Args::parse().cmd {
        Cmd::Info { bmodel } => {
            let bytes = read(&bmodel)?;
            let m = verify(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", bmodel.display()))?;
            info(&m, bytes.len());
        }
        Cmd::Dis { bmodel } => {
            let bytes = read(&bmodel)?;
            let m = verify(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", bmodel.display()))?;
            info(&m, bytes.len());
            dis(&m)?;
        }
        Cmd::Build { mlir, weights, output } => {
            let (module, w) = match weights {
                None => compiler::model_file::load_model(&mlir)?,
                Some(wpath) => {
                    let module = compiler::ir::text::load_module(&mlir)?;
                    let mut w = compiler::ir::weights::Weights::default();
                    for (k, v) in compiler::npz::read_npz(&wpath)? {
                        w.insert(k, v);
                    }
                    (module, w)
                }
            };
            let chip = compiler::codegen::module_chip(&module)?;
            let (bytes, report) = compiler::codegen::build_bmodel(&module, &w, chip)?;
            compiler::atomic_file::write(&output, &bytes).with_context(|| format!("writing {}", output.display()))?;
            println!(
                "wrote {} ({} bytes): arena {} bytes (naive sum of activations {}), {} instructions",
                output.display(),
                bytes.len(),
                report.arena_size,
                report.naive_sum,
                report.instr_count
            );
        }
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}
