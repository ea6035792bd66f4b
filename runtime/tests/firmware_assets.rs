//! The firmware example embeds a small bmodel, its input and the expected output. This test
//! regenerates them from tpu-mlir's tnet vectors and checks the committed files are current
//! (set `FIRMWARE_REGEN=1` to rewrite them).

mod common;
use common::*;

#[test]
fn firmware_assets_are_current() {
    let m = module("reference/tpu-mlir-vectors/tnet_bm1684x_int8.mlir");
    let w = weights("reference/tpu-mlir-vectors/tnet_bm1684x_w.npz");
    let (bmodel, report) = compiler::codegen::build_bmodel(&m, &w, bmodel_format::Chip::Bm1684x).unwrap();
    let x: Vec<f32> = npz_f32("reference/tpu-mlir-vectors/res.npz", "x").iter().copied().collect();
    let input: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let out = runtime::host::run_f32(&bmodel, &[&x]).unwrap();
    let want = npz_f32("reference/tpu-mlir-vectors/res.npz", "bm1684x__pool_MaxPool_f32");
    assert_eq!(bit_diffs(&out[0].values, want.as_slice().unwrap()), 0);
    assert!(report.arena_size <= 16 * 1024, "firmware arena is 16 KiB, model needs {}", report.arena_size);
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../firmware-examples/assets"));
    let files = [("tnet.bmodel", bmodel), ("input.bin", input), ("expected.bin", out[0].raw.clone())];
    for (name, bytes) in files {
        let p = dir.join(name);
        if std::env::var_os("FIRMWARE_REGEN").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            let tmp = p.with_extension("tmp");
            std::fs::write(&tmp, &bytes).unwrap();
            std::fs::rename(&tmp, &p).unwrap();
        }
        let committed = std::fs::read(&p).unwrap_or_default();
        assert!(
            committed == bytes,
            "{} is stale: run FIRMWARE_REGEN=1 cargo test -p runtime --test firmware_assets",
            p.display()
        );
    }
}
