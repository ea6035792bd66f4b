//! Loader checks with typed errors, determinism of codegen, the small tpu-mlir test net (tnet)
//! against pymlir's results, and a mutation fuzzer over real bmodels (no panic, no access
//! outside the arena).

mod common;
use bmodel_format::{Bmodel, Chip, FormatError, InstrProblem, Region};
use common::*;
use runtime::{load, RuntimeError};

fn tnet(chip: Chip) -> Vec<u8> {
    let name = chip.name();
    let m = module(&format!("reference/tpu-mlir-vectors/tnet_{name}_int8.mlir"));
    let w = weights(&format!("reference/tpu-mlir-vectors/tnet_{name}_w.npz"));
    compiler::codegen::build_bmodel(&m, &w, chip).unwrap().0
}

fn tnet_input() -> Vec<f32> {
    npz_f32("reference/tpu-mlir-vectors/res.npz", "x").iter().copied().collect()
}

/// Recompute the payload CRC after a mutation, so that mutations reach the deeper checks.
fn fix_crc(b: &mut [u8]) {
    if b.len() >= 32 {
        let crc = bmodel_format::crc::crc32(&b[32..]);
        b[20..24].copy_from_slice(&crc.to_le_bytes());
    }
}

#[test]
fn tnet_matches_pymlir_on_both_chips() {
    for chip in [Chip::Bm1684x, Chip::Cv183x] {
        let bytes = tnet(chip);
        let out = runtime::host::run_f32(&bytes, &[&tnet_input()]).unwrap();
        let want = npz_f32("reference/tpu-mlir-vectors/res.npz", &format!("{}__pool_MaxPool_f32", chip.name()));
        assert_eq!(bit_diffs(&out[0].values, want.as_slice().unwrap()), 0, "{}", chip.name());
        assert_eq!(out[0].name, "pool_MaxPool_f32");
        assert_eq!(out[0].dims, vec![1, 4, 4, 4]);
    }
}

#[test]
fn same_input_gives_same_bytes() {
    assert_eq!(tnet(Chip::Bm1684x), tnet(Chip::Bm1684x));
    let m = module("reference/tiny-yolov3/tpu-mlir/int8_cv183x/yolov3_tiny_cv183x_int8_sym_tpu.mlir");
    let w = weights("reference/tiny-yolov3/tpu-mlir/int8_cv183x/yolov3_tiny_cv183x_int8_sym_tpu_weights.npz");
    let a = compiler::codegen::build_bmodel(&m, &w, Chip::Cv183x).unwrap().0;
    let b = compiler::codegen::build_bmodel(&m, &w, Chip::Cv183x).unwrap().0;
    assert!(a == b, "codegen is not deterministic");
}

#[test]
fn rejects_truncated_bad_magic_bad_crc_and_small_arena() {
    let bytes = tnet(Chip::Bm1684x);
    let need = runtime::arena_size(&bytes).unwrap() as usize;
    let mut arena = vec![0u8; need];
    assert!(matches!(
        load(&bytes[..10], &mut arena).err(),
        Some(RuntimeError::Format(FormatError::Truncated { needed: 32, got: 10 }))
    ));
    let cut = bytes.len() - 7;
    assert_eq!(
        load(&bytes[..cut], &mut arena).err(),
        Some(RuntimeError::Format(FormatError::Truncated { needed: bytes.len(), got: cut }))
    );
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(load(&bad, &mut arena).err(), Some(RuntimeError::Format(FormatError::BadMagic { found: *b"XMRS" })));
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    match load(&bad, &mut arena).err() {
        Some(RuntimeError::Format(FormatError::BadCrc { stored, computed })) => assert_ne!(stored, computed),
        other => panic!("expected a CRC error, got {other:?}"),
    }
    let mut bad = bytes.clone();
    bad[4] = 9;
    assert_eq!(
        load(&bad, &mut arena).err(),
        Some(RuntimeError::Format(FormatError::UnsupportedVersion { found: 9, supported: 2 }))
    );
    let mut small = vec![0u8; need - 1];
    assert_eq!(
        load(&bytes, &mut small).err(),
        Some(RuntimeError::ArenaTooSmall { needed: need as u64, got: need - 1 })
    );
    let mut m = load(&bytes, &mut arena).unwrap();
    let mut out = vec![0u8; 4 * 64];
    assert_eq!(
        m.run(&[&[0u8; 5]], &mut [&mut out]).err(),
        Some(RuntimeError::InputSize { index: 0, expected: 3 * 64 * 4, got: 5 })
    );
    let msg = RuntimeError::ArenaTooSmall { needed: 10, got: 9 }.to_string();
    assert_eq!(msg, "arena too small: needs 10 bytes, got 9");
}

#[test]
fn rejects_out_of_region_operand() {
    let bytes = tnet(Chip::Bm1684x);
    let m = Bmodel::parse(&bytes).unwrap();
    let mut instrs: Vec<_> = m.instrs().map(|i| i.unwrap()).collect();
    let act = m.meta.plan.activation_size;
    // move the conv output past the end of the activation region
    let idx = instrs.iter().position(|i| i.mnemonic() == "conv2d").unwrap();
    instrs[idx].for_each_operand_mut(|t| {
        if t.region == Region::Activation && t.shape[1] == 4 {
            t.offset = act - 8;
        }
    });
    let meta = &m.meta;
    let bad = bmodel_format::writer::write_bmodel(
        m.chip(),
        meta.name,
        meta.plan,
        &meta.inputs,
        &meta.outputs,
        &instrs,
        m.coeff,
    )
    .unwrap();
    let mut arena = vec![0u8; meta.plan.arena_size() as usize];
    match load(&bad, &mut arena).err() {
        Some(RuntimeError::Format(FormatError::BadInstr {
            index,
            mnemonic: "conv2d",
            problem: InstrProblem::OutOfRegion { operand: "y", end, region_size },
        })) => {
            assert_eq!(index as usize, idx);
            assert_eq!(region_size, act as u64);
            assert!(end > region_size);
        }
        other => panic!("expected an out-of-region error, got {other:?}"),
    }
    // a coefficient operand past the blob
    let mut instrs2: Vec<_> = m.instrs().map(|i| i.unwrap()).collect();
    instrs2[idx].for_each_operand_mut(|t| {
        if t.region == Region::Coeff {
            t.offset = m.coeff.len() as u32;
        }
    });
    let bad = bmodel_format::writer::write_bmodel(
        m.chip(),
        meta.name,
        meta.plan,
        &meta.inputs,
        &meta.outputs,
        &instrs2,
        m.coeff,
    )
    .unwrap();
    let err = load(&bad, &mut arena).err().unwrap();
    assert!(err.to_string().starts_with("invalid bmodel: instruction 1 (conv2d): operand 'w' ends at byte"), "{err}");
}

/// xorshift64* generator (deterministic fuzzing without extra crates).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_bmodels_never_panic() {
    let seeds = [tnet(Chip::Bm1684x), tnet(Chip::Cv183x)];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut rejected, mut ran, mut panics) = (0usize, 0usize, 0usize);
    let iterations = 20000;
    for it in 0..iterations {
        let seed = &seeds[it % 2];
        let mut b = seed.clone();
        // mutate mostly the header + metadata (where the structure is), sometimes anywhere
        let meta_end = 32 + u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
        for _ in 0..1 + rng.below(4) {
            let pos = if rng.below(4) == 0 { rng.below(b.len()) } else { rng.below(meta_end.min(b.len())) };
            match rng.below(3) {
                0 => b[pos] ^= 1 << rng.below(8),
                1 => b[pos] = rng.next() as u8,
                _ => b[pos] = [0u8, 0xFF, 0x7F, 0x80][rng.below(4)],
            }
        }
        if rng.below(8) == 0 {
            b.truncate(rng.below(b.len()));
        }
        if rng.below(10) != 0 {
            fix_crc(&mut b);
        }
        let outcome = common::load_and_run_untrusted(&b);
        match outcome {
            Ok(true) => ran += 1,
            Ok(false) => rejected += 1,
            Err(_) => panics += 1,
        }
    }
    eprintln!(
        "fuzz: {iterations} mutated bmodels, {rejected} rejected by the loader, {ran} loaded and ran, {panics} panics"
    );
    assert_eq!(panics, 0);
    assert!(ran > 50 && rejected > 50, "fuzzer did not exercise both paths: ran {ran}, rejected {rejected}");
}
