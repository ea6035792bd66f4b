//! Shared helpers of the end-to-end tests in `tests/tests/`: where the assets and the host-tools
//! binaries are, and the walkthrough's model_transform flags.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of the bundled assets (`assets/<rel>`).
pub fn asset(rel: &str) -> PathBuf {
    root().join("assets").join(rel)
}

/// The host-tools binary `name` of the profile this test runs in (`target/<profile>/<name>`),
/// building the binaries once when they are missing (a no-op after `cargo test` built them).
pub fn tool(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>
        let dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
        let profile = dir.file_name().and_then(|s| s.to_str()).unwrap_or("debug").to_string();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", "host-tools", "--bins"]).current_dir(root());
        if profile == "release" {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("cargo build of host-tools");
        assert!(st.success(), "building host-tools failed");
        dir
    });
    dir.join(name)
}

/// A fresh empty directory under the system temp dir, unique to this process and `tag`.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("e2e_{tag}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// The walkthrough's `model_transform` flags for tiny-yolov3 (everything but the model and the
/// output file).
pub const YOLO_FLAGS: &[&str] = &[
    "--model_name",
    "yolov3_tiny",
    "--input_shapes",
    "[[1,3,416,416]]",
    "--scale",
    "0.0039216,0.0039216,0.0039216",
    "--pixel_format",
    "rgb",
    "--keep_aspect_ratio",
    "--pad_value",
    "128",
    "--output_names=convolution_output1,convolution_output",
];
