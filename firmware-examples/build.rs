//! Link the firmware without the C runtime or libc: our own `_start`, raw syscalls, and the
//! mem* functions defined in `src/mem.rs`.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("x86_64") && target.contains("linux") {
        println!("cargo:rustc-link-arg-bins=-nostartfiles");
        println!("cargo:rustc-link-arg-bins=-nostdlib");
        println!("cargo:rustc-link-arg-bins=-static");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=assets");
}
