//! `bmodel_tool` on a real (small) model: build from tpu-mlir's lowered tnet, then `info` / `dis`.

use std::process::Command;

fn asset(p: &str) -> String {
    format!("{}/../assets/{p}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn bmodel_tool_builds_and_lists_tnet() {
    let dir = std::env::temp_dir().join(format!("bmodel_tool_test_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("tnet.bmodel");
    let tool = env!("CARGO_BIN_EXE_bmodel_tool");
    let st = Command::new(tool)
        .args(["build", "--mlir", &asset("reference/tpu-mlir-vectors/tnet_cv183x_int8.mlir")])
        .args(["--weights", &asset("reference/tpu-mlir-vectors/tnet_cv183x_w.npz"), "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let dis = Command::new(tool).arg("dis").arg(&out).output().unwrap();
    let text = String::from_utf8(dis.stdout).unwrap();
    assert!(text.contains("chip cv183x"), "{text}");
    assert!(text.contains("input 'input': dims [1, 3, 8, 8], f32"), "{text}");
    assert!(text.contains("output 'pool_MaxPool_f32': dims [1, 4, 4, 4], f32"), "{text}");
    let mnemonics: Vec<&str> =
        text.lines().filter_map(|l| l.split_whitespace().nth(1).filter(|_| l.starts_with("   "))).collect();
    assert_eq!(mnemonics, ["cast", "conv2d", "leaky_relu", "pool2d", "cast"], "{text}");
    assert!(text.contains("qdm"), "{text}");
    // a damaged file is rejected with the verifier's message
    let mut bytes = std::fs::read(&out).unwrap();
    bytes[0] = b'Q';
    std::fs::write(&out, &bytes).unwrap();
    let info = Command::new(tool).arg("info").arg(&out).output().unwrap();
    assert!(!info.status.success());
    assert!(String::from_utf8_lossy(&info.stderr).contains("not a bmodel: magic"));
    std::fs::remove_dir_all(&dir).ok();
}
